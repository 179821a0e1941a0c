/**
 * Test helpers for the packet filter: a renderer that prints compiled nft JSON rules in nft's own syntax (so
 * assertions read like `nft list table`), an evaluator that runs a compiled input chain over one packet, and a
 * reference model of the verdict tailscaled gives (TS wgengine/filter/filter.go `runIn4`/`runIn6`, match.go) with
 * Weft's documented differences (self-address check, MagicDNS drop, TSMP never admitted, conntrack for replies).
 */
import type { CompiledFilter, Json, NftRuleset } from '../../../../src-main/engine/filter/compile.ts';
import { hasDeprecatedBits, parseAddr, parseFilterAddr, ruleProtos } from '../../../../src-main/engine/filter/compile.ts';
import type { FilterRule } from '../../../../src-main/protocol/control/tailcfg.ts';

type Obj = { [k: string]: Json };
const isObj = (v: Json | undefined): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export interface RuleView {
  chain: string;
  comment: string | undefined;
  text: string;
  expr: Obj[];
}

/** Every `add rule` of a ruleset, with its expression rendered as text. */
export function rulesOf(rs: NftRuleset | null): RuleView[] {
  const out: RuleView[] = [];
  for (const cmd of rs?.nftables ?? []) {
    const add = cmd['add'];
    if (!isObj(add) || !isObj(add['rule'])) continue;
    const r = add['rule'];
    const expr = (r['expr'] as Obj[]) ?? [];
    out.push({ chain: String(r['chain']), comment: typeof r['comment'] === 'string' ? r['comment'] : undefined, text: expr.map(renderExpr).join(' '), expr });
  }
  return out;
}

/** The accept rules generated from FilterRules (their comments start with "weft: rule"), as text. */
export function acceptTexts(c: CompiledFilter): string[] {
  return rulesOf(c.ruleset)
    .filter((r) => r.comment?.startsWith('weft: rule'))
    .map((r) => r.text);
}

function renderValue(v: Json): string {
  if (typeof v === 'string' || typeof v === 'number') return String(v);
  if (Array.isArray(v)) return v.map(renderValue).join(',');
  if (isObj(v)) {
    const p = v['prefix'];
    if (isObj(p)) return `${String(p['addr'])}/${String(p['len'])}`;
    const r = v['range'];
    if (Array.isArray(r)) return `${renderValue(r[0]!)}-${renderValue(r[1]!)}`;
    const s = v['set'];
    if (Array.isArray(s)) return `{ ${s.map(renderValue).join(', ')} }`;
  }
  return JSON.stringify(v);
}

function renderLeft(l: Json): string {
  if (isObj(l)) {
    const m = l['meta'];
    if (isObj(m)) return m['key'] === 'iifname' ? 'iifname' : `meta ${String(m['key'])}`;
    const ct = l['ct'];
    if (isObj(ct)) return `ct ${String(ct['key'])}`;
    const p = l['payload'];
    if (isObj(p)) return `${String(p['protocol'])} ${String(p['field'])}`;
  }
  return JSON.stringify(l);
}

function renderExpr(e: Obj): string {
  const m = e['match'];
  if (isObj(m)) return `${renderLeft(m['left']!)}${m['op'] === '!=' ? ' !=' : ''} ${renderValue(m['right']!)}`;
  return Object.keys(e)[0]!;
}

// ---------------------------------------------------------------------------------------------------------
// Evaluation

export interface Packet {
  iif: string;
  family: 4 | 6;
  src: string;
  dst: string;
  /** IP protocol number (1 for ICMPv4, 58 for ICMPv6). */
  proto: number;
  /** Destination port (TCP, UDP, SCTP). */
  dport?: number;
  ct?: 'new' | 'established' | 'related' | 'invalid';
}

const PROTO_NAMES: Record<string, number> = { icmp: 1, 'ipv6-icmp': 58, tcp: 6, udp: 17, sctp: 132, gre: 47, esp: 50 };

function numOf(v: Json): number {
  return typeof v === 'number' ? v : (PROTO_NAMES[String(v)] ?? Number(v));
}

/** Whether `x` is in the nft value `v` (address, prefix, range, set; numbers for ports and protocols). */
function contains(v: Json, x: bigint | number, family: 4 | 6 | null): boolean {
  const addr = (t: Json): bigint => parseAddr(String(t))!.n;
  if (isObj(v) && Array.isArray(v['set'])) return v['set'].some((e) => contains(e, x, family));
  if (isObj(v) && Array.isArray(v['range'])) {
    const [a, b] = v['range'] as [Json, Json];
    return family === null ? numOf(a) <= Number(x) && Number(x) <= numOf(b) : addr(a) <= BigInt(x) && BigInt(x) <= addr(b);
  }
  if (isObj(v) && isObj(v['prefix'])) {
    const p = v['prefix'];
    const host = BigInt((family === 4 ? 32 : 128) - Number(p['len']));
    return BigInt(x) >> host === addr(p['addr']!) >> host;
  }
  return family === null ? numOf(v) === Number(x) : addr(v) === BigInt(x);
}

/** Runs the compiled `input` chain over one packet: 'accept' or 'drop' (the chain policy accepts). */
export function evaluateInput(rs: NftRuleset | null, pkt: Packet): 'accept' | 'drop' {
  const ct = pkt.ct ?? 'new';
  for (const rule of rulesOf(rs).filter((r) => r.chain === 'input')) {
    let ok = true;
    let verdict: 'accept' | 'drop' | null = null;
    for (const e of rule.expr) {
      if ('accept' in e) verdict = 'accept';
      else if ('drop' in e) verdict = 'drop';
      const m = e['match'];
      if (!isObj(m) || !ok) continue;
      const left = m['left']!;
      const right = m['right']!;
      const neg = m['op'] === '!=';
      let hit: boolean;
      if (isObj(left) && isObj(left['meta'])) {
        const key = left['meta']['key'];
        if (key === 'iifname') hit = right === pkt.iif;
        else if (key === 'nfproto') hit = right === (pkt.family === 4 ? 'ipv4' : 'ipv6');
        else if (key === 'l4proto') hit = contains(right, pkt.proto, null);
        else throw new Error(`unknown meta ${String(key)}`);
      } else if (isObj(left) && isObj(left['ct'])) {
        hit = Array.isArray(right) ? right.includes(ct) : right === ct;
      } else if (isObj(left) && isObj(left['payload'])) {
        const proto = String(left['payload']['protocol']);
        const field = String(left['payload']['field']);
        if (proto === 'ip' || proto === 'ip6') {
          // The implicit dependency: `ip ...` only sees IPv4 packets, whatever the operator.
          if ((proto === 'ip') !== (pkt.family === 4)) {
            ok = false;
            continue;
          }
          hit = contains(right, parseAddr(field === 'saddr' ? pkt.src : pkt.dst)!.n, pkt.family);
        } else {
          if (PROTO_NAMES[proto] !== pkt.proto || pkt.dport === undefined) {
            ok = false;
            continue;
          }
          hit = contains(right, pkt.dport, null);
        }
      } else throw new Error(`unknown match ${JSON.stringify(left)}`);
      if (hit === neg) ok = false;
    }
    if (ok && verdict) return verdict;
  }
  return 'accept';
}

// ---------------------------------------------------------------------------------------------------------
// Reference model

function inSet(texts: readonly string[], addr: string): boolean {
  const a = parseAddr(addr)!;
  return texts.some((t) => {
    const p = parseFilterAddr(t);
    if (p.kind !== 'ip') return false;
    return (a.family === 4 ? p.set.v4 : p.set.v6).some((s) => s.lo <= a.n && a.n <= s.hi);
  });
}

function hasFamily(texts: readonly string[], family: 4 | 6): boolean {
  return texts.some((t) => {
    const p = parseFilterAddr(t);
    return p.kind === 'ip' && (family === 4 ? p.set.v4 : p.set.v6).length > 0;
  });
}

const validPorts = (d: FilterRule['DstPorts'][number]): boolean => d.Ports.First >= 0 && d.Ports.Last <= 65535 && d.Ports.First <= d.Ports.Last;

/** The verdict for a new inbound packet on `iface`, as tailscaled would give it with Weft's differences. */
export function modelVerdict(rules: readonly FilterRule[] | null, selfAddrs: readonly string[], iface: string, pkt: Packet): 'accept' | 'drop' {
  // MagicDNS's addresses answer the host only (its own queries arrive on lo), whatever the interface.
  if (pkt.iif !== 'lo' && (pkt.dst === '100.100.100.100' || pkt.dst === 'fd7a:115c:a1e0::53')) return 'drop';
  if (pkt.iif !== iface) return 'accept';
  const ct = pkt.ct ?? 'new';
  if (ct === 'established' || ct === 'related') return 'accept';
  if (ct === 'invalid') return 'drop';
  if (pkt.dst === '100.100.100.100' || pkt.dst === 'fd7a:115c:a1e0::53') return 'drop';
  const self = selfAddrs.map((a) => a.replace(/\/\d+$/, ''));
  if (!self.some((s) => parseAddr(s)!.n === parseAddr(pkt.dst)!.n && parseAddr(s)!.family === pkt.family)) return 'drop';
  if (rules === null || hasDeprecatedBits(rules)) return 'drop';
  for (const r of rules) {
    const srcs = r.SrcIPs;
    const dsts = r.DstPorts.filter((d) => validPorts(d) && parseFilterAddr(d.IP).kind === 'ip');
    if (!hasFamily(srcs, pkt.family) || !dsts.some((d) => hasFamily([d.IP], pkt.family))) continue;
    if (!inSet(srcs, pkt.src)) continue;
    const { protos } = ruleProtos(r);
    const list = protos ?? [6, 17, 1, 58];
    const icmp = pkt.family === 4 ? 1 : 58;
    if (pkt.proto === icmp) {
      if (dsts.some((d) => inSet([d.IP], pkt.dst))) return 'accept';
    } else if (pkt.proto === 6 || pkt.proto === 17 || pkt.proto === 132) {
      if (list.includes(pkt.proto) && dsts.some((d) => inSet([d.IP], pkt.dst) && d.Ports.First <= pkt.dport! && pkt.dport! <= d.Ports.Last)) return 'accept';
    } else if (pkt.proto !== 0 && pkt.proto !== 99 && pkt.proto !== 1 && pkt.proto !== 58) {
      if (list.includes(pkt.proto) && dsts.some((d) => inSet([d.IP], pkt.dst) && d.Ports.First === 0 && d.Ports.Last === 65535)) return 'accept';
    }
  }
  return 'drop';
}
