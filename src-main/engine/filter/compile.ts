/**
 * The packet filter from control (`MapResponse.PacketFilters`, a list of tailcfg.FilterRule) compiled into one
 * nftables transaction, in nft's JSON form (libnftables-json(5)). Pure: no I/O; nft.ts loads the result.
 *
 * Address strings are read the way tailscaled reads them (TS wgengine/filter/tailcfg.go `parseIPSet`,
 * `MatchesFromFilterRules`): `*` is 0.0.0.0/0 plus ::/0; `cap:<name>` is a capability source (skipped here; an
 * error as a destination); text with `/` is a CIDR that must be masked; text with exactly one `-` is an
 * inclusive range `a-b`; anything else is one address. A bad entry is skipped with a reason and the rest of the
 * rule and of the filter still apply. IPProto values outside 0..255 are dropped. A filter that uses the
 * deprecated `SrcBits` or `DstPorts[].Bits` is refused by tailscaled as a whole, so here it admits nothing.
 *
 * What a rule admits follows tailscaled's evaluation (TS wgengine/filter/filter.go `runIn4`/`runIn6`, match.go):
 * - a rule takes part in IPv4 only with at least one IPv4 source and one IPv4 destination (same for IPv6);
 * - ICMP is admitted from a rule's sources to its destinations whatever its IPProto and ports (`matchIPsOnly`);
 * - TCP, UDP and SCTP need the protocol in IPProto and the port in the destination's range; no IPProto means
 *   TCP, UDP, ICMPv4 and ICMPv6;
 * - any other protocol needs it in IPProto and a destination entry of exactly ports 0-65535
 *   (`matchProtoAndIPsOnlyIfAllPorts`);
 * - capability-only rules (CapGrant, no DstPorts) admit nothing.
 *
 * Where Weft differs (it filters in the kernel, tailscaled in user space between WireGuard and its TUN):
 * - replies and related ICMP errors pass by conntrack (`ct state established,related`), not by tailscaled's
 *   stateless "not a SYN" and 512-flow UDP cache, so stray non-SYN TCP and unsolicited ICMP replies are dropped;
 * - the destination must be one of this node's own addresses: Linux is a weak host, so without this check a
 *   peer could reach the host's LAN or container addresses through the tunnel (tailscaled's "local nets" check);
 *   the destinations of a rule are cut down to the self addresses at compile time, so `*` means "any of mine";
 * - packets from peers to the MagicDNS addresses 100.100.100.100 and fd7a:115c:a1e0::53 are dropped: they are
 *   local addresses on Weft's interface, and tailscaled never counts them as a peer-reachable local net;
 * - TSMP (IP protocol 99) has no handler in Weft and is never admitted;
 * - forwarding for peers (subnet routes, exit node) is not offered yet: the `forward` chain drops what comes in
 *   on the interface unless it belongs to a connection made from this side.
 *
 * The table is replaced whole in one transaction: `add table` (a no-op if it exists), `delete table`, then the
 * table defined in full (nftables wiki "Atomic rule replacement"; `flush table` would keep named sets). If the
 * kernel refuses any part, the old table stays. Chains match `iifname`, not `iif`: `iif` resolves the index when
 * the rule loads and fails while the interface is absent. Every accept rule and every drop has a counter and a
 * comment naming the FilterRule it comes from, so `nft list table inet weft_<iface>` explains a verdict.
 *
 * A hostile control server must not exhaust memory: the output is capped at MAX_NFT_ITEMS rules plus set
 * elements and MAX_RULESET_BYTES of JSON, above which compiling refuses (an error, never a throw) and the caller
 * keeps the last good filter.
 */
import type { FilterRule } from '../../protocol/control/tailcfg.ts';
import { bytesToIp, ipToBytes } from '../../protocol/wire/addr.ts';

// ---------------------------------------------------------------------------------------------------------
// nftables JSON (libnftables-json(5))

export type Json = string | number | boolean | null | Json[] | { [k: string]: Json };

/** One nft JSON document: a list of commands (`add`, `delete`) run as one transaction. */
export interface NftRuleset {
  nftables: { [k: string]: Json }[];
}

export interface CompiledFilter {
  /** The nft table this ruleset (re)defines. */
  table: string;
  /**
   * The nft JSON. When `error` is set this is the allow-established-only ruleset, to install if no
   * good filter is in place yet (fail closed); null only when not even that can be built (bad interface or
   * table name).
   */
  ruleset: NftRuleset | null;
  /** FilterRule entries received. */
  ruleCount: number;
  /** Accept rules generated from them (per rule, family and protocol class); 0 when `error` is set. */
  nftRuleCount: number;
  /** Entries that were skipped, with the reason (rule indexes count from 0); bounded. */
  skipped: string[];
  /** Why this filter cannot be enforced (the caller keeps the last good one); null when it can. */
  error: string | null;
}

/** Largest ruleset compiled: accept rules plus the elements of their sets and the ports they list. */
export const MAX_NFT_ITEMS = 20_000;
/** Largest ruleset as JSON text: nft.ts passes it as arguments, which the kernel caps (ARG_MAX, usually 2 MiB). */
export const MAX_RULESET_BYTES = 1_000_000;
/** Most `skipped` entries reported; one more line says how many were left out. */
const MAX_SKIPPED = 64;

/** The MagicDNS addresses on Weft's interface; never reachable from peers (see header). */
import { QUAD100_V4, QUAD100_V6 } from '../constants.ts';

const PROTO_ICMP = 1;
const PROTO_TCP = 6;
const PROTO_UDP = 17;
const PROTO_ICMPV6 = 58;
const PROTO_TSMP = 99;
const PROTO_SCTP = 132;
/** Protocols that take ports, in the order their rules are emitted. */
const PORT_PROTOS = [PROTO_TCP, PROTO_UDP, PROTO_SCTP] as const;
const PORT_PROTO_NAME: Record<number, 'tcp' | 'udp' | 'sctp'> = { [PROTO_TCP]: 'tcp', [PROTO_UDP]: 'udp', [PROTO_SCTP]: 'sctp' };
/** No IPProto: TCP, UDP, ICMPv4, ICMPv6 (TS wgengine/filter/tailcfg.go `defaultProtos`). */
const DEFAULT_PROTOS = [PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ICMPV6];

// ---------------------------------------------------------------------------------------------------------
// Address sets as sorted, merged integer spans

export type Family = 4 | 6;

/** An inclusive run of addresses of one family. */
export interface Span {
  lo: bigint;
  hi: bigint;
}

/** Addresses of both families, each as sorted, non-overlapping, non-adjacent spans. */
export interface AddrSet {
  v4: Span[];
  v6: Span[];
}

const MAX = { 4: (1n << 32n) - 1n, 6: (1n << 128n) - 1n } as const;
const BITS = { 4: 32, 6: 128 } as const;

/** Sorted and merged copy of `spans` (overlapping and adjacent spans become one). */
function normalizeSpans(spans: readonly Span[]): Span[] {
  const sorted = [...spans].sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
  const out: Span[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last && s.lo <= last.hi + 1n) {
      if (s.hi > last.hi) last.hi = s.hi;
    } else out.push({ lo: s.lo, hi: s.hi });
  }
  return out;
}

/** The addresses in both normalized span lists. */
export function intersectSpans(a: readonly Span[], b: readonly Span[]): Span[] {
  const out: Span[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    const lo = x.lo > y.lo ? x.lo : y.lo;
    const hi = x.hi < y.hi ? x.hi : y.hi;
    if (lo <= hi) out.push({ lo, hi });
    if (x.hi < y.hi) i++;
    else j++;
  }
  return out;
}

/** Whether normalized `outer` contains every address of normalized `inner`. */
export function coversSpans(outer: readonly Span[], inner: readonly Span[]): boolean {
  const both = intersectSpans(outer, inner);
  return both.length === inner.length && both.every((s, k) => s.lo === inner[k]!.lo && s.hi === inner[k]!.hi);
}

/** Whether normalized `spans` hold `x` (binary search). */
export function spansContain(spans: readonly Span[], x: bigint): boolean {
  let lo = 0;
  let hi = spans.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const s = spans[mid]!;
    if (x < s.lo) hi = mid - 1;
    else if (x > s.hi) lo = mid + 1;
    else return true;
  }
  return false;
}

/** Parses one address with Go's netip strictness (no zones, no leading zeros in IPv4); null when malformed. */
export function parseAddr(text: string): { family: Family; n: bigint } | null {
  if (text.length === 0 || text.length > 45 || text.includes('%')) return null;
  if (!text.includes(':') && !/^(0|[1-9]\d{0,2})(\.(0|[1-9]\d{0,2})){3}$/.test(text)) return null;
  const b = ipToBytes(text);
  if (!b) return null;
  let n = 0n;
  for (const byte of b) n = (n << 8n) | BigInt(byte);
  return { family: b.length === 4 ? 4 : 6, n };
}

/** Address text of an integer address (IPv6 in RFC 5952 form). */
function formatAddr(family: Family, n: bigint): string {
  const len = family === 4 ? 4 : 16;
  const b = new Uint8Array(len);
  let v = n;
  for (let i = len - 1; i >= 0; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return bytesToIp(b);
}

/** One FilterRule address string, read as tailscaled reads it. */
export type ParsedAddr = { kind: 'ip'; set: AddrSet } | { kind: 'cap'; name: string } | { kind: 'error'; reason: string };

function single(family: Family, lo: bigint, hi: bigint): AddrSet {
  return family === 4 ? { v4: [{ lo, hi }], v6: [] } : { v4: [], v6: [{ lo, hi }] };
}

/** Parses a SrcIPs or DstPorts[].IP string (see the header for the forms). */
export function parseFilterAddr(text: string): ParsedAddr {
  if (text === '*') return { kind: 'ip', set: { v4: [{ lo: 0n, hi: MAX[4] }], v6: [{ lo: 0n, hi: MAX[6] }] } };
  if (text.startsWith('cap:')) return { kind: 'cap', name: text.slice(4) };
  if (text.includes('/')) {
    const slash = text.indexOf('/');
    const a = parseAddr(text.slice(0, slash));
    const bitsText = text.slice(slash + 1);
    if (!a || !/^(0|[1-9]\d{0,2})$/.test(bitsText) || Number(bitsText) > BITS[a.family]) return { kind: 'error', reason: 'not a CIDR prefix' };
    const host = BigInt(BITS[a.family] - Number(bitsText));
    const size = 1n << host;
    if (a.n % size !== 0n) return { kind: 'error', reason: 'prefix has host bits set' };
    return { kind: 'ip', set: single(a.family, a.n, a.n + size - 1n) };
  }
  if (text.split('-').length === 2) {
    const [l, r] = text.split('-') as [string, string];
    const a = parseAddr(l);
    const b = parseAddr(r);
    if (!a || !b) return { kind: 'error', reason: 'range end is not an IP address' };
    if (a.family !== b.family) return { kind: 'error', reason: 'range mixes IPv4 and IPv6' };
    if (a.n > b.n) return { kind: 'error', reason: 'range start is after its end' };
    return { kind: 'ip', set: single(a.family, a.n, b.n) };
  }
  const a = parseAddr(text);
  if (!a) return { kind: 'error', reason: 'not an IP address' };
  return { kind: 'ip', set: single(a.family, a.n, a.n) };
}

/** Whether the filter is refused as a whole for carrying deprecated bit counts (TS tailcfg.go: nil filter). */
export function hasDeprecatedBits(rules: readonly FilterRule[]): boolean {
  return rules.some((r) => {
    const srcBits: unknown = r['SrcBits'];
    if (srcBits !== undefined && srcBits !== null && !(Array.isArray(srcBits) && srcBits.length === 0)) return true;
    return (r.DstPorts ?? []).some((d) => d.Bits !== undefined && d.Bits !== null);
  });
}

/** Valid IPProto values of a rule (0..255 integers); `null` when it has none, meaning the default set. */
export function ruleProtos(r: FilterRule): { protos: number[] | null; dropped: number[] } {
  const raw = r.IPProto ?? [];
  if (raw.length === 0) return { protos: null, dropped: [] };
  const protos: number[] = [];
  const dropped: number[] = [];
  for (const p of raw) {
    if (Number.isInteger(p) && p >= 0 && p <= 255) {
      if (!protos.includes(p)) protos.push(p);
    } else dropped.push(p);
  }
  return { protos, dropped };
}

/** An inclusive port range. */
export interface PortSpan {
  first: number;
  last: number;
}

/** Sorted and merged copy of `ports`. */
export function normalizePorts(ports: readonly PortSpan[]): PortSpan[] {
  const sorted = [...ports].sort((a, b) => a.first - b.first);
  const out: PortSpan[] = [];
  for (const p of sorted) {
    const last = out[out.length - 1];
    if (last && p.first <= last.last + 1) last.last = Math.max(last.last, p.last);
    else out.push({ ...p });
  }
  return out;
}

/** One usable DstPorts entry: its addresses (normalized) and its inclusive port range. */
export interface RuleDst {
  set: AddrSet;
  ports: PortSpan;
}

/**
 * The sources (normalized, capability sources left out) and the usable destinations of a rule. Entries that
 * cannot be used are reported through `onSkip` and left out: malformed addresses, `cap:` destinations, port
 * ranges outside 0..65535 or reversed.
 */
export function parseRuleAddrs(r: FilterRule, onSkip: (why: string) => void): { sources: AddrSet; dsts: RuleDst[] } {
  const v4: Span[] = [];
  const v6: Span[] = [];
  for (const s of r.SrcIPs ?? []) {
    const p = parseFilterAddr(s);
    if (p.kind === 'cap') onSkip(`source ${show(s)} is a capability, not an address; skipped`);
    else if (p.kind === 'error') onSkip(`source ${show(s)} skipped: ${p.reason}`);
    else {
      v4.push(...p.set.v4);
      v6.push(...p.set.v6);
    }
  }
  const dsts: RuleDst[] = [];
  for (const d of r.DstPorts ?? []) {
    const ip = d.IP ?? '';
    const first = d.Ports?.First ?? 0;
    const last = d.Ports?.Last ?? 0;
    if (!Number.isInteger(first) || !Number.isInteger(last) || first < 0 || last > 65535 || first > last) {
      onSkip(`destination ${show(ip)} skipped: bad port range ${String(first)}-${String(last)}`);
      continue;
    }
    const p = parseFilterAddr(ip);
    if (p.kind === 'cap') onSkip(`destination ${show(ip)} skipped: a capability cannot be a destination`);
    else if (p.kind === 'error') onSkip(`destination ${show(ip)} skipped: ${p.reason}`);
    else dsts.push({ set: p.set, ports: { first, last } });
  }
  return { sources: { v4: normalizeSpans(v4), v6: normalizeSpans(v6) }, dsts };
}

/** Short, printable form of untrusted text for a reason string. */
function show(s: string): string {
  return JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s);
}

/** Self addresses by family ("100.64.0.3/32" or bare), minus the MagicDNS ones; invalid ones reported. */
export function selfSpans(selfAddrs: readonly string[], onBad?: (why: string) => void): AddrSet {
  const v4: Span[] = [];
  const v6: Span[] = [];
  const q4 = parseAddr(QUAD100_V4)!.n;
  const q6 = parseAddr(QUAD100_V6)!.n;
  for (const text of selfAddrs) {
    const slash = text.indexOf('/');
    const a = parseAddr(slash < 0 ? text : text.slice(0, slash));
    if (!a) {
      onBad?.(`self address ${show(text)}: not an IP address`);
      continue;
    }
    if (a.family === 4 && a.n !== q4) v4.push({ lo: a.n, hi: a.n });
    if (a.family === 6 && a.n !== q6) v6.push({ lo: a.n, hi: a.n });
  }
  return { v4: normalizeSpans(v4), v6: normalizeSpans(v6) };
}

// ---------------------------------------------------------------------------------------------------------
// Naming

/**
 * The nft table that holds the filter for one interface: `weft_` plus the name with every character outside
 * [A-Za-z0-9] written as `_xx` (hex), so the result is a valid nft identifier and distinct interfaces never share
 * a table ("weft0" → "weft_weft0", "wg-1" → "weft_wg_2d1").
 */
export function filterTableName(iface: string): string {
  let out = 'weft_';
  for (const ch of iface) {
    if (/^[A-Za-z0-9]$/.test(ch)) out += ch;
    else for (const byte of new TextEncoder().encode(ch)) out += `_${byte.toString(16).padStart(2, '0')}`;
  }
  return out;
}

/** Interface names Weft uses: what Linux allows (≤15 bytes, no '/', ':' or space), narrowed to safe characters. */
const IFACE_RE = /^[A-Za-z0-9_.-]{1,15}$/;
/** nft identifiers (nftables scanner: a letter or '_' first), within the kernel's 256-byte table name limit. */
const TABLE_RE = /^[A-Za-z_][A-Za-z0-9_]{0,254}$/;

// ---------------------------------------------------------------------------------------------------------
// Ruleset building

type Expr = { [k: string]: Json };

const FAMILY = 'inet';
const CHAIN_INPUT = 'input';
const CHAIN_FORWARD = 'forward';

const accept: Expr = { accept: null };
const drop: Expr = { drop: null };
const counter: Expr = { counter: null };

function match(op: '==' | '!=' | 'in', left: Json, right: Json): Expr {
  return { match: { op, left, right } };
}
const addrField = (family: Family, field: 'saddr' | 'daddr'): Json => ({ payload: { protocol: family === 4 ? 'ip' : 'ip6', field } });

/** The nft value for one span: an address, a prefix object, or a range. */
function spanValue(family: Family, s: Span): Json {
  if (s.lo === s.hi) return formatAddr(family, s.lo);
  const size = s.hi - s.lo + 1n;
  if ((size & (size - 1n)) === 0n && s.lo % size === 0n) {
    let host = 0;
    while (1n << BigInt(host) < size) host++;
    return { prefix: { addr: formatAddr(family, s.lo), len: BITS[family] - host } };
  }
  return { range: [formatAddr(family, s.lo), formatAddr(family, s.hi)] };
}

/** A single value, or an anonymous set (nft makes it an interval set when it holds prefixes or ranges). */
function valueOrSet(values: Json[]): Json {
  return values.length === 1 ? values[0]! : { set: values };
}

function addrMatch(family: Family, field: 'saddr' | 'daddr', spans: readonly Span[]): Expr {
  return match('==', addrField(family, field), valueOrSet(spans.map((s) => spanValue(family, s))));
}

const portValue = (p: PortSpan): Json => (p.first === p.last ? p.first : { range: [p.first, p.last] });
const isAllPorts = (ports: readonly PortSpan[]): boolean => ports.length === 1 && ports[0]!.first === 0 && ports[0]!.last === 65535;

class Builder {
  readonly commands: { [k: string]: Json }[] = [];
  items = 0;
  acceptRules = 0;

  constructor(readonly table: string) {}

  rule(chain: string, expr: Expr[], comment?: string): void {
    const rule: { [k: string]: Json } = { family: FAMILY, table: this.table, chain, expr };
    if (comment !== undefined) rule['comment'] = comment;
    this.commands.push({ add: { rule } });
  }

  /** An accept rule generated from a FilterRule; `size` is its set elements plus one. */
  acceptRule(expr: Expr[], comment: string, size: number): void {
    this.items += size;
    this.acceptRules++;
    if (this.items <= MAX_NFT_ITEMS) this.rule(CHAIN_INPUT, [...expr, counter, accept], comment);
  }

  get overflow(): boolean {
    return this.items > MAX_NFT_ITEMS;
  }
}

/** Table, chains and everything before the accept rules of the input chain. */
function head(b: Builder, iface: string, self: AddrSet, quad100: boolean): void {
  const tableObj = { table: { family: FAMILY, name: b.table } };
  b.commands.push({ add: tableObj }, { delete: tableObj }, { add: tableObj });
  for (const [name, hook] of [
    [CHAIN_INPUT, 'input'],
    [CHAIN_FORWARD, 'forward'],
  ] as const) {
    b.commands.push({ add: { chain: { family: FAMILY, table: b.table, name, type: 'filter', hook, prio: 0, policy: 'accept' } } });
  }
  const notMine = match('!=', { meta: { key: 'iifname' } }, iface);
  const ctOk = match('in', { ct: { key: 'state' } }, ['established', 'related']);
  const ctInvalid = match('in', { ct: { key: 'state' } }, ['invalid']);

  // MagicDNS's addresses live on the tunnel interface, and Linux is weak-host: without this the LAN (or a
  // container) could query quad-100 through this machine. Only the host itself may (its queries arrive on lo).
  if (quad100) {
    const notLo = match('!=', { meta: { key: 'iifname' } }, 'lo');
    b.rule(CHAIN_INPUT, [notLo, match('==', addrField(4, 'daddr'), QUAD100_V4), counter, drop], 'weft: MagicDNS is for this host only');
    b.rule(CHAIN_INPUT, [notLo, match('==', addrField(6, 'daddr'), QUAD100_V6), counter, drop], 'weft: MagicDNS is for this host only');
  }
  // Anything not from the tunnel leaves this chain (other tables still judge it).
  b.rule(CHAIN_INPUT, [notMine, accept]);
  b.rule(CHAIN_INPUT, [ctOk, counter, accept], 'weft: replies');
  b.rule(CHAIN_INPUT, [ctInvalid, counter, drop], 'weft: invalid');
  if (quad100) {
    b.rule(CHAIN_INPUT, [match('==', addrField(4, 'daddr'), QUAD100_V4), counter, drop], 'weft: peers may not use MagicDNS');
    b.rule(CHAIN_INPUT, [match('==', addrField(6, 'daddr'), QUAD100_V6), counter, drop], 'weft: peers may not use MagicDNS');
  }
  for (const family of [4, 6] as const) {
    const mine = family === 4 ? self.v4 : self.v6;
    const notSelf =
      mine.length > 0 ? match('!=', addrField(family, 'daddr'), valueOrSet(mine.map((s) => spanValue(family, s)))) : match('==', { meta: { key: 'nfproto' } }, family === 4 ? 'ipv4' : 'ipv6');
    b.rule(CHAIN_INPUT, [notSelf, counter, drop], `weft: not an address of this node (ipv${family})`);
  }
}

/** The input chain's final drop, and the forward chain. */
function tail(b: Builder, iface: string): void {
  b.rule(CHAIN_INPUT, [counter, drop], 'weft: not allowed by the tailnet policy');
  b.rule(CHAIN_FORWARD, [match('!=', { meta: { key: 'iifname' } }, iface), accept]);
  b.rule(CHAIN_FORWARD, [match('in', { ct: { key: 'state' } }, ['established', 'related']), counter, accept], 'weft: replies');
  b.rule(CHAIN_FORWARD, [counter, drop], 'weft: no routing for peers');
}

/** Collects skip reasons, bounded. */
class Skips {
  readonly list: string[] = [];
  private more = 0;
  add(s: string): void {
    if (this.list.length < MAX_SKIPPED) this.list.push(s);
    else this.more++;
  }
  done(): string[] {
    return this.more > 0 ? [...this.list, `… and ${this.more} more`] : this.list;
  }
}

/** Emits the accept rules of one FilterRule. */
function compileRule(b: Builder, skips: Skips, r: FilterRule, i: number, self: AddrSet): void {
  const dstEntries = r.DstPorts ?? [];
  if (dstEntries.length === 0) {
    const caps = (r.CapGrant ?? []).length > 0;
    skips.add(`rule ${i}: ${caps ? 'capability grant only (CapGrant)' : 'no destinations'}, admits no packets`);
    return;
  }

  const { sources: src, dsts } = parseRuleAddrs(r, (why) => skips.add(`rule ${i}: ${why}`));

  const { protos: listed, dropped } = ruleProtos(r);
  if (dropped.length > 0) skips.add(`rule ${i}: IPProto ${dropped.join(', ')} outside 0..255 dropped`);
  const protos = listed ?? DEFAULT_PROTOS;
  const portProtos = PORT_PROTOS.filter((p) => protos.includes(p));
  const otherProtos = protos.filter((p) => ![PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, PROTO_SCTP].includes(p)).sort((a, b) => a - b);
  const unsupported = otherProtos.filter((p) => p === 0 || p === PROTO_TSMP);
  if (unsupported.length > 0) skips.add(`rule ${i}: IPProto ${unsupported.join(', ')} never admitted (0: not a transport protocol; 99: TSMP, which Weft does not handle)`);
  const others = otherProtos.filter((p) => p !== 0 && p !== PROTO_TSMP);

  for (const family of [4, 6] as const) {
    if (b.overflow) return;
    const sources = family === 4 ? src.v4 : src.v6;
    const famDsts = dsts.map((d) => ({ spans: family === 4 ? d.set.v4 : d.set.v6, ports: d.ports })).filter((d) => d.spans.length > 0);
    // tailscaled: a rule takes part in a family only with a source and a destination of that family.
    if (sources.length === 0 || famDsts.length === 0) continue;
    const mine = family === 4 ? self.v4 : self.v6;
    const wholeFamily = sources.length === 1 && sources[0]!.lo === 0n && sources[0]!.hi === MAX[family];
    const srcExpr = wholeFamily ? match('==', { meta: { key: 'nfproto' } }, family === 4 ? 'ipv4' : 'ipv6') : addrMatch(family, 'saddr', sources);
    const srcSize = wholeFamily ? 1 : sources.length;
    const tag = `weft: rule ${i} ipv${family}`;

    // ICMP: any destination of this family, whatever the protocols and ports.
    const icmpDst = intersectSpans(normalizeSpans(famDsts.flatMap((d) => d.spans)), mine);
    if (icmpDst.length === 0) continue;
    b.acceptRule([srcExpr, addrMatch(family, 'daddr', icmpDst), match('==', { meta: { key: 'l4proto' } }, family === 4 ? PROTO_ICMP : PROTO_ICMPV6)], `${tag} icmp`, 1 + srcSize + icmpDst.length);

    // TCP/UDP/SCTP: per self address, the ports of the entries that contain it; addresses with equal ports
    // share a rule (usually there is one address per family, so one rule per protocol).
    if (portProtos.length > 0) {
      const groups = new Map<string, { addrs: Span[]; ports: PortSpan[] }>();
      for (const s of mine) {
        // Self spans hold at most selfAddrs.length addresses in all, so this loop is small.
        for (let a = s.lo; a <= s.hi; a++) {
          const ports = normalizePorts(famDsts.filter((d) => spansContain(d.spans, a)).map((d) => d.ports));
          if (ports.length === 0) continue;
          const key = ports.map((p) => `${p.first}-${p.last}`).join(',');
          const g = groups.get(key) ?? { addrs: [], ports };
          g.addrs.push({ lo: a, hi: a });
          groups.set(key, g);
        }
      }
      for (const p of portProtos) {
        for (const g of groups.values()) {
          const addrs = normalizeSpans(g.addrs);
          const portExpr = isAllPorts(g.ports)
            ? match('==', { meta: { key: 'l4proto' } }, p)
            : match('==', { payload: { protocol: PORT_PROTO_NAME[p]!, field: 'dport' } }, valueOrSet(g.ports.map(portValue)));
          b.acceptRule([srcExpr, addrMatch(family, 'daddr', addrs), portExpr], `${tag} ${PORT_PROTO_NAME[p]!}`, 1 + srcSize + addrs.length + g.ports.length);
        }
      }
    }

    // Other protocols: only to entries that open every port.
    if (others.length > 0) {
      const allPortDst = intersectSpans(normalizeSpans(famDsts.filter((d) => d.ports.first === 0 && d.ports.last === 65535).flatMap((d) => d.spans)), mine);
      if (allPortDst.length > 0) {
        b.acceptRule(
          [srcExpr, addrMatch(family, 'daddr', allPortDst), match('==', { meta: { key: 'l4proto' } }, valueOrSet(others))],
          `${tag} proto ${others.join(',')}`.slice(0, 120),
          1 + srcSize + allPortDst.length + others.length,
        );
      }
    }
  }
}

export interface FilterTarget {
  /** Weft's WireGuard interface; only traffic arriving on it is judged. */
  iface: string;
  /** The nft table (inet family) this filter owns; see filterTableName. */
  table: string;
  /** This node's addresses (`Node.Addresses`: "100.64.0.3/32", "fd7a:115c:a1e0::3/128"; bare addresses too). */
  selfAddrs: readonly string[];
  /**
   * Whether the explicit drop of peers' packets to the MagicDNS addresses is emitted (default true). Those
   * addresses are never self addresses here, so the self check drops them either way; the explicit rule only
   * counts them separately.
   */
  quad100?: boolean;
}

/**
 * Compiles the effective packet filter (all named filters concatenated) for one interface. `rules === null`
 * means no netmap yet: only replies to this node's own connections are admitted. Never throws.
 */
export function compileFilter(rules: readonly FilterRule[] | null, t: FilterTarget): CompiledFilter {
  const skips = new Skips();
  const ruleCount = rules?.length ?? 0;
  if (!IFACE_RE.test(t.iface)) return { table: t.table, ruleset: null, ruleCount, nftRuleCount: 0, skipped: [], error: `bad interface name ${show(t.iface)}` };
  if (!TABLE_RE.test(t.table)) return { table: t.table, ruleset: null, ruleCount, nftRuleCount: 0, skipped: [], error: `bad nft table name ${show(t.table)}` };

  const self = selfSpans(t.selfAddrs, (why) => skips.add(why));
  const quad100 = t.quad100 ?? true;
  const closed = (): NftRuleset => {
    const b = new Builder(t.table);
    head(b, t.iface, self, quad100);
    tail(b, t.iface);
    return { nftables: b.commands };
  };

  if (rules === null) return { table: t.table, ruleset: closed(), ruleCount: 0, nftRuleCount: 0, skipped: skips.done(), error: null };
  if (hasDeprecatedBits(rules)) {
    skips.add('the filter uses the deprecated SrcBits/Bits fields, which tailscaled rejects as a whole: nothing is admitted');
    return { table: t.table, ruleset: closed(), ruleCount, nftRuleCount: 0, skipped: skips.done(), error: null };
  }

  const b = new Builder(t.table);
  head(b, t.iface, self, quad100);
  for (let i = 0; i < rules.length && !b.overflow; i++) compileRule(b, skips, rules[i]!, i, self);
  if (b.overflow) {
    return {
      table: t.table,
      ruleset: closed(),
      ruleCount,
      nftRuleCount: 0,
      skipped: skips.done(),
      error: `the filter is too large: more than ${MAX_NFT_ITEMS} nft rules and set elements`,
    };
  }
  tail(b, t.iface);
  const ruleset = { nftables: b.commands };
  if (JSON.stringify(ruleset).length > MAX_RULESET_BYTES) {
    return { table: t.table, ruleset: closed(), ruleCount, nftRuleCount: 0, skipped: skips.done(), error: `the filter is too large: more than ${MAX_RULESET_BYTES} bytes of nft JSON` };
  }
  return { table: t.table, ruleset, ruleCount, nftRuleCount: b.acceptRules, skipped: skips.done(), error: null };
}

/** The JSON that deletes a filter table (no error when it does not exist: it is created first, in the same transaction). */
export function removeTable(table: string): NftRuleset {
  const tableObj = { table: { family: FAMILY, name: table } };
  return { nftables: [{ add: tableObj }, { delete: tableObj }] };
}
