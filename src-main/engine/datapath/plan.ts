/**
 * Kernel-side port sharing: WireGuard binds the public UDP port P itself, Node binds its own socket Q for disco
 * and STUN, and a small nftables table in the host's own namespace makes Q's traffic leave and arrive as P, so the
 * NAT in front of the host sees one flow and the mapping that STUN and disco discover is the one WireGuard uses.
 * Pure: this file plans and checks the nft JSON (libnftables-json(5)); nft.ts loads it.
 *
 *   table inet weft_dp_<iface> {
 *     chain pre  { type filter hook prerouting priority raw; policy accept;            # -300: before conntrack
 *       udp dport P udp length >= 46 @th,64,48 0x5453f09f92ac fib daddr type local udp dport set Q       # disco
 *       udp dport P udp length >= 28 @th,72,8 0x01 @th,96,32 0x2112a442 fib daddr type local udp dport set Q # STUN
 *     }
 *     chain out  { type filter hook output priority filter; policy accept;
 *       udp sport Q meta mark set meta mark | MARK }                                    # Node's own packets
 *     chain post { type filter hook postrouting priority srcnat + 10; policy accept;    # after conntrack, srcnat
 *       meta mark & MARK == MARK udp sport Q udp sport set P }
 *   }
 *
 * - Disco: `@th,64,48` is the first 6 bytes of the UDP payload, the disco magic "TS" + U+1F4AC; 46 = the UDP
 *   header plus the 38 bytes magicsock wants before it looks at a packet (protocol/wire/disco.ts HEADER_LEN).
 * - STUN: payload byte 1 is 0x01 for a Binding request and a Binding success response (RFC 8489 §5, §18.2), and
 *   bytes 4-7 are the magic cookie 0x2112A442; 28 = UDP header plus the 20-byte STUN header. The method byte
 *   matters: without it a WireGuard session whose receiver index happened to equal the cookie bytes would go to
 *   Node until the next rekey.
 * - `fib daddr type local` and the output-chain mark leave forwarded traffic (containers, VMs that use the same
 *   ports) alone. The route lookup comes last: every inbound packet passes this chain, and only disco- and
 *   STUN-shaped ones to port P should pay for a lookup (first it cost WireGuard's bulk traffic one per packet).
 * - Conntrack is kept, not bypassed with `notrack`: conntrack records Node's flow as sport Q (before the
 *   postrouting rewrite), and replies are rewritten back to Q at priority raw, before conntrack looks them up, so
 *   they match Node's own entry and a stateful host firewall (`ct state established,related accept`) lets them
 *   in. Untracked packets would be dropped by such a firewall.
 * - The outbound rewrite runs after srcnat: a NAT on the host itself rewrites ports from its conntrack tuple,
 *   which would undo an earlier rewrite.
 * - A consequence the engine must plan for: Node's punch opens the NAT for P but not the host firewall for
 *   WireGuard's own flow, so both WireGuards must send early (Tailscale issue #13140 describes the same
 *   "disco works, WireGuard blocked" state for its raw disco listener).
 *
 * The same design in other clients: NetBird's `sharedsock` lets kernel WireGuard own the port and receives STUN
 * through a raw socket with a BPF filter on the cookie; Tailscale's raw disco listener matched the disco magic
 * with BPF (off by default since tailscale PR #13483).
 *
 * The table is replaced whole in one transaction, as the ACL filter does (filter/compile.ts; nftables wiki
 * "Atomic rule replacement"): `add table` (a no-op if it exists), `delete table`, then the table defined in full.
 */
import { MAGIC as DISCO_MAGIC, HEADER_LEN as DISCO_HEADER_LEN } from '../../protocol/wire/disco.ts';
import { MAGIC_COOKIE as STUN_MAGIC_COOKIE } from '../../protocol/wire/stun.ts';
import {
  DATAPATH_MARK,
  DATAPATH_PRIO_OUTPUT,
  DATAPATH_PRIO_POSTROUTING,
  DATAPATH_PRIO_PREROUTING,
  DATAPATH_TABLE_PREFIX,
} from '../constants.ts';
import type { Json, NftRuleset } from '../filter/compile.ts';
import { isWeftInterfaceName } from '../wg/iface.ts';

export interface DataPathPlan {
  /** The nft table (inet family), see dataPathTableName. */
  table: string;
  /** The public port WireGuard binds (P). */
  publicPort: number;
  /** Node's disco and STUN socket (Q); its packets leave as P. */
  discoPort: number;
  /** The packet-mark bit(s) that tag Node's own packets between output and postrouting. @default DATAPATH_MARK */
  mark?: number;
}

/** The data path's nft table for a Weft interface ("weft0" → "weft_dp_weft0"). */
export function dataPathTableName(iface: string): string {
  return `${DATAPATH_TABLE_PREFIX}${iface}`;
}

const FAMILY = 'inet';
export const CHAIN_PRE = 'pre';
export const CHAIN_OUT = 'out';
export const CHAIN_POST = 'post';

const UDP_HEADER_LEN = 8;
/** Bits from the start of the transport header to the UDP payload. */
const PAYLOAD_BIT = UDP_HEADER_LEN * 8;

/** The 6-byte disco magic as one integer (0x5453f09f92ac = 92719496008364, below 2^53 and so exact). */
export const DISCO_MAGIC_INT = DISCO_MAGIC.reduce((n, b) => n * 256 + b, 0);
/** STUN's Binding method in the low byte of the message type (RFC 8489 §18.2): requests and success responses. */
const STUN_BINDING_LOW_BYTE = 0x01;
const STUN_HEADER_LEN = 20;

type Expr = { [k: string]: Json };

const udp = (field: 'sport' | 'dport' | 'length'): Json => ({ payload: { protocol: 'udp', field } });
const th = (offset: number, len: number): Json => ({ payload: { base: 'th', offset, len } });
const match = (op: '==' | '>=', left: Json, right: Json): Expr => ({ match: { op, left, right } });
const mangle = (key: Json, value: Json): Expr => ({ mangle: { key, value } });
const mark: Json = { meta: { key: 'mark' } };
const fibLocal: Expr = match('==', { fib: { result: 'type', flags: ['daddr'] } }, 'local');

/**
 * The nft JSON that (re)defines the data path table for ports P and Q (see the header). Pure; the values are not
 * checked here: NftDataPath runs validateDataPath on the result before anything reaches nft.
 */
export function dataPathRuleset(p: DataPathPlan): NftRuleset {
  const { table, publicPort: P, discoPort: Q } = p;
  const bit = p.mark ?? DATAPATH_MARK;
  const tableObj = { table: { family: FAMILY, name: table } };
  const chain = (name: string, hook: string, prio: number): { [k: string]: Json } => ({
    add: { chain: { family: FAMILY, table, name, type: 'filter', hook, prio, policy: 'accept' } },
  });
  const rule = (chainName: string, comment: string, expr: Expr[]): { [k: string]: Json } => ({
    add: { rule: { family: FAMILY, table, chain: chainName, comment, expr } },
  });
  return {
    nftables: [
      { add: tableObj },
      { delete: tableObj },
      { add: tableObj },
      chain(CHAIN_PRE, 'prerouting', DATAPATH_PRIO_PREROUTING),
      chain(CHAIN_OUT, 'output', DATAPATH_PRIO_OUTPUT),
      chain(CHAIN_POST, 'postrouting', DATAPATH_PRIO_POSTROUTING),
      rule(CHAIN_PRE, 'disco to the disco socket', [
        match('==', udp('dport'), P),
        match('>=', udp('length'), UDP_HEADER_LEN + DISCO_HEADER_LEN),
        match('==', th(PAYLOAD_BIT, 48), DISCO_MAGIC_INT),
        fibLocal,
        mangle(udp('dport'), Q),
      ]),
      rule(CHAIN_PRE, 'STUN binding to the disco socket', [
        match('==', udp('dport'), P),
        match('>=', udp('length'), UDP_HEADER_LEN + STUN_HEADER_LEN),
        match('==', th(PAYLOAD_BIT + 8, 8), STUN_BINDING_LOW_BYTE),
        match('==', th(PAYLOAD_BIT + 32, 32), STUN_MAGIC_COOKIE),
        fibLocal,
        mangle(udp('dport'), Q),
      ]),
      rule(CHAIN_OUT, 'mark the disco socket', [match('==', udp('sport'), Q), mangle(mark, { '|': [mark, bit] })]),
      rule(CHAIN_POST, 'disco socket leaves as the public port', [
        match('==', { '&': [mark, bit] }, bit),
        match('==', udp('sport'), Q),
        mangle(udp('sport'), P),
      ]),
    ],
  };
}

/** The JSON that deletes the data path table (no error when it does not exist: it is created first, in the same transaction). */
export function removeDataPathRuleset(table: string): NftRuleset {
  const tableObj = { table: { family: FAMILY, name: table } };
  return { nftables: [{ add: tableObj }, { delete: tableObj }] };
}

// ---------------------------------------------------------------------------------------------------------
// Validation, right before submitting

/** What a data path ruleset may touch. */
export interface DataPathScope {
  /** The Weft interface the table belongs to. */
  iface: string;
  /** The only table it may touch; must be dataPathTableName(iface). */
  table: string;
  /** P and Q, the only ports a rule may match or set; absent for a removal, which may use no port at all. */
  ports?: { publicPort: number; discoPort: number };
}

export type Verdict = { ok: true } | { ok: false; reason: string };

const PORT_FIELDS = new Set(['sport', 'dport']);
const L4 = new Set(['udp', 'tcp', 'udplite', 'sctp', 'dccp', 'th']);
const EXPR_KINDS = new Set(['match', 'mangle']);

function isObj(v: Json | undefined): v is { [k: string]: Json } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Short printable form of a value for a reason string. */
function show(v: Json | undefined): string {
  const s = v === undefined ? 'nothing' : JSON.stringify(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

const isPort = (n: number): boolean => Number.isInteger(n) && n >= 1 && n <= 65535;

/** Reports whether `left` is a transport port field (`udp dport`, `tcp sport`, `th dport`, ...). */
function isPortField(left: Json | undefined): boolean {
  if (!isObj(left) || !isObj(left['payload'])) return false;
  const p = left['payload'];
  return typeof p['protocol'] === 'string' && L4.has(p['protocol']) && typeof p['field'] === 'string' && PORT_FIELDS.has(p['field']);
}

/**
 * Checks a data path ruleset right before it is submitted: every command adds or deletes the one expected table
 * (family inet) or a chain or rule in it; the interface is a Weft interface and the table its data path table;
 * chains are plain filter chains that accept by default; rules only match and rewrite (no verdicts, jumps or NAT
 * statements), and every port they match or set is P or Q exactly. Never throws: a refusal comes with a reason.
 */
export function validateDataPath(ruleset: NftRuleset, scope: DataPathScope): Verdict {
  const { iface, table } = scope;
  const no = (reason: string): Verdict => ({ ok: false, reason });
  if (!isWeftInterfaceName(iface)) return no(`interface ${show(iface)} is not a Weft interface`);
  if (table !== dataPathTableName(iface)) return no(`table ${show(table)} is not the data path table of ${iface} (${dataPathTableName(iface)})`);
  const ports = new Set<number>();
  if (scope.ports) {
    const { publicPort: P, discoPort: Q } = scope.ports;
    if (!isPort(P) || !isPort(Q)) return no(`ports must be integers 1-65535, got public ${show(P)} and disco ${show(Q)}`);
    if (P === Q) return no(`the public and disco ports must differ (both ${P})`);
    ports.add(P).add(Q);
  }
  if (ruleset.nftables.length === 0) return no('an empty command list');

  const own = ports.size === 0 ? 'none in a removal' : [...ports].join(' or ');
  const portOk = (v: Json | undefined, where: string): string | null =>
    typeof v === 'number' && ports.has(v) ? null : `${where}: port ${show(v)} is not Weft's own (${own})`;

  /** Every port field used in an expression tree, checked against `value` (match right side or mangle value). */
  const checkExpr = (e: Json, where: string): string | null => {
    if (!isObj(e)) return `${where}: ${show(e)} is not an expression`;
    const kinds = Object.keys(e);
    const kind = kinds[0];
    if (kinds.length !== 1 || kind === undefined || !EXPR_KINDS.has(kind)) return `${where}: ${show(e)} is not a match or a rewrite`;
    const body = e[kind];
    if (!isObj(body)) return `${where}: malformed ${kind}`;
    const left = kind === 'match' ? body['left'] : body['key'];
    const right = kind === 'match' ? body['right'] : body['value'];
    if (isPortField(left)) return portOk(right, where);
    // A port field anywhere else (inside a set, a map or a binary operation) is refused, so nothing escapes the check.
    if (JSON.stringify(body).includes('"sport"') || JSON.stringify(body).includes('"dport"')) return `${where}: ${show(e)} uses a port in a form the data path never does`;
    return null;
  };

  for (const [i, cmd] of ruleset.nftables.entries()) {
    const at = `command ${i}`;
    if (!isObj(cmd)) return no(`${at} is not an object`);
    const verbs = Object.keys(cmd);
    const verb = verbs[0];
    if (verbs.length !== 1 || (verb !== 'add' && verb !== 'delete')) return no(`${at}: only add and delete, got ${show(verbs)}`);
    const obj = cmd[verb];
    if (!isObj(obj)) return no(`${at}: malformed ${verb}`);
    const objs = Object.keys(obj);
    const what = objs[0];
    if (objs.length !== 1 || (what !== 'table' && what !== 'chain' && what !== 'rule')) return no(`${at}: only tables, chains and rules, got ${show(objs)}`);
    const o = obj[what];
    if (!isObj(o)) return no(`${at}: malformed ${what}`);
    if (o['family'] !== FAMILY) return no(`${at}: family ${show(o['family'])}, not ${FAMILY}`);
    const name = what === 'table' ? o['name'] : o['table'];
    if (name !== table) return no(`${at}: touches table ${show(name)}, not ${table}`);
    if (what === 'chain' && verb === 'add') {
      if (o['type'] !== 'filter' || o['policy'] !== 'accept') return no(`${at}: chain ${show(o['name'])} must be a filter chain with policy accept`);
    }
    if (what === 'rule' && verb === 'add') {
      const expr = o['expr'];
      if (!Array.isArray(expr)) return no(`${at}: rule without expressions`);
      for (const [j, e] of expr.entries()) {
        const bad = checkExpr(e, `${at} expression ${j}`);
        if (bad !== null) return no(bad);
      }
    }
  }
  return { ok: true };
}
