/**
 * The MagicDNS resolver's answers: one DNS query in, one of "here are the response bytes", "forward the query to
 * these upstreams" or "drop it" out. Pure and total: no I/O, never throws. The I/O around it is ./server.ts.
 *
 * Behaviour, after tailscaled's quad-100 (Tailscale net/dns/resolver/tsdns.go `respond`, `resolveLocal`,
 * `resolveLocalReverse`; forwarder.go for sizes), on the plan from ./plan.ts:
 *   - A / AAAA for a known name: exactly one record, TTL 5 s. A known name without that type: NOERROR, no data.
 *     Bare single-label names are looked up under the MagicDNS suffix when MagicDNS is on;
 *   - PTR for known addresses (in-addr.arpa / ip6.arpa names, RFC 1035 §3.5, RFC 3596 §2.5);
 *   - NS, SOA, AXFR and HINFO for local names: NOTIMP;
 *   - unknown names under a local suffix: NXDOMAIN; names that exist only because names below them do (the
 *     zone apexes, `ts.example.com.` above `laptop.ts.example.com.`) get NOERROR/no data instead, since an
 *     NXDOMAIN there would deny everything below (RFC 8020). Negative answers carry an SOA with a 10 s TTL
 *     (RFC 2308) so that resolvers cache them briefly;
 *   - `.onion` (RFC 7686) and DNS-SD browse names under reverse zones (RFC 6763 §11): NXDOMAIN, never forwarded;
 *   - anything else: forward to the longest matching route suffix; a route with no usable upstream, or no route
 *     at all, gives SERVFAIL;
 *   - malformed queries: FORMERR when the 12-byte header can be read, else dropped; responses (QR set) are dropped;
 *     other opcodes get NOTIMP, several questions FORMERR, EDNS versions above 0 BADVERS (RFC 6891 §6.1.3).
 * Sizes: responses are capped at 4095 bytes; over UDP the limit is 512 bytes without EDNS, or the EDNS size
 * (RFC 6891 §6.2.5), and a larger response is cut to its question with TC set (RFC 1035 §4.1.1, RFC 2181 §9).
 * `fitResponse` applies the same limits to forwarded answers.
 *
 * All encoding and decoding goes through dns-packet. The only bytes read by hand are a header's ID and flags: to
 * address a FORMERR to a message dns-packet cannot decode, and to check QR, TC and the RCODE without decoding.
 */
import dnsPacket, { type Answer, type DecodedPacket, type OptAnswer, type Packet, type Question } from 'dns-packet';
import { bytesToIp, ipToBytes } from '../../protocol/wire/addr.ts';
import { QUAD100_NAME, lowerAscii, underSuffix, type DnsPlan } from './plan.ts';

export type Transport = 'udp' | 'tcp';

export type DnsReply = { kind: 'answer'; bytes: Uint8Array } | { kind: 'forward'; upstreams: readonly string[] } | { kind: 'drop' };

/** TTL of positive local answers (tailscaled at HEAD; released versions used 600 s). */
export const TTL_SECONDS = 5;
/** TTL (and SOA minimum) of negative local answers. */
export const NEGATIVE_TTL_SECONDS = 10;
/** Largest response quad-100 sends, on either transport (forwarder.go `maxResponseBytes`). */
export const MAX_RESPONSE_BYTES = 4095;
/** UDP payload limit without EDNS (RFC 1035 §4.2.1). */
export const PLAIN_UDP_BYTES = 512;
/** The EDNS UDP size quad-100 advertises in its own answers (the DNS flag day 2020 value). */
export const ADVERTISED_EDNS_SIZE = 1232;

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export type Rcode = (typeof RCODE)[keyof typeof RCODE];

const FLAG_QR = 0x8000;
const OPCODE_MASK = 0x7800;
const FLAG_AA = 0x0400;
const FLAG_TC = 0x0200;
const FLAG_RD = 0x0100;
const FLAG_RA = 0x0080;
const FLAG_CD = 0x0010;
/** EDNS extended RCODE BADVERS = 16: upper 8 bits 1, header RCODE 0 (RFC 6891 §6.1.3). */
const BADVERS_EXTENDED = 1;

/** Types a local name never has here, answered NOTIMP as tailscaled does. */
const NOTIMP_TYPES = new Set(['NS', 'SOA', 'AXFR', 'HINFO']);

function toBuffer(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** ID and flags of a message, or null when it is shorter than a header. */
function readHeader(msg: Uint8Array): { id: number; flags: number } | null {
  if (msg.byteLength < 12) return null;
  const v = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  return { id: v.getUint16(0), flags: v.getUint16(2) };
}

/** The FQDN (lowercase, trailing dot) of a decoded name. */
function fqdnOf(name: string): string {
  if (name === '.' || name === '') return '.';
  return `${lowerAscii(name.replace(/\.$/, ''))}.`;
}

function isOpt(a: Answer): a is OptAnswer {
  return a.type === 'OPT';
}

/** What a response needs from its query. */
interface QueryCtx {
  id: number;
  flags: number;
  question: Question | null;
  opt: OptAnswer | null;
  transport: Transport;
}

/** The largest response the asker takes: 4095 over TCP; over UDP 512, or its EDNS size (at least 512). */
function sizeLimit(opt: OptAnswer | null, transport: Transport): number {
  if (transport === 'tcp') return MAX_RESPONSE_BYTES;
  if (!opt) return PLAIN_UDP_BYTES;
  return Math.min(MAX_RESPONSE_BYTES, Math.max(PLAIN_UDP_BYTES, opt.udpPayloadSize));
}

/** The OPT record of our own answers to an EDNS query. */
function ourOpt(query: OptAnswer, extendedRcode = 0): OptAnswer {
  return {
    type: 'OPT',
    name: '.',
    udpPayloadSize: ADVERTISED_EDNS_SIZE,
    extendedRcode,
    ednsVersion: 0,
    // The DO bit is echoed (RFC 3225 §3); quad-100 never signs, so there is nothing more to it.
    flags: query.flags & dnsPacket.DNSSEC_OK,
    flag_do: query.flag_do,
    options: [],
  };
}

/** Encodes a packet, cutting it to its question (and OPT) with TC set when it exceeds `limit`. */
function encodeWithin(p: Packet, limit: number): Uint8Array {
  const full = dnsPacket.encode(p);
  if (full.byteLength <= limit) return full;
  const cut: Packet = {
    ...p,
    flags: (p.flags ?? 0) | FLAG_TC,
    answers: [],
    authorities: [],
    additionals: (p.additionals ?? []).filter(isOpt),
  };
  const small = dnsPacket.encode(cut);
  if (small.byteLength <= limit) return small;
  // Only a question longer than the limit could get here (names are ≤ 255 bytes, limits ≥ 512); keep the header.
  return dnsPacket.encode({ ...cut, questions: [], additionals: [] });
}

/** Builds our response to a query. */
function build(ctx: QueryCtx, rcode: number, opts: { answers?: Answer[]; authorities?: Answer[]; aa?: boolean; extendedRcode?: number } = {}): Uint8Array {
  const flags = (ctx.flags & (OPCODE_MASK | FLAG_RD | FLAG_CD)) | FLAG_RA | (opts.aa ? FLAG_AA : 0) | (rcode & 0xf);
  const p: Packet = {
    type: 'response',
    id: ctx.id,
    flags,
    questions: ctx.question ? [ctx.question] : [],
    answers: opts.answers ?? [],
    authorities: opts.authorities ?? [],
    additionals: ctx.opt ? [ourOpt(ctx.opt, opts.extendedRcode)] : [],
  };
  return encodeWithin(p, sizeLimit(ctx.opt, ctx.transport));
}

function answer(bytes: Uint8Array): DnsReply {
  return { kind: 'answer', bytes };
}

/** The question of a decoded query in a form dns-packet can encode again (an unknown class cannot be). */
function echoable(q: Question): Question | null {
  const cls = q.class ?? 'IN';
  return String(cls).startsWith('UNKNOWN_') ? null : { name: q.name, type: q.type, class: cls };
}

/** The address a reverse-lookup name stands for (d.c.b.a.in-addr.arpa., 32 nibbles + ip6.arpa.), else null. */
export function reverseNameToIp(fqdn: string): string | null {
  const labels = fqdn.replace(/\.$/, '').split('.');
  if (fqdn.endsWith('.in-addr.arpa.') && labels.length === 6) {
    const octets = labels.slice(0, 4).reverse();
    if (!octets.every((o) => /^(0|[1-9][0-9]{0,2})$/.test(o) && Number(o) <= 255)) return null;
    return bytesToIp(Uint8Array.from(octets.map(Number)));
  }
  if (fqdn.endsWith('.ip6.arpa.') && labels.length === 34) {
    const nibbles = labels.slice(0, 32).reverse();
    if (!nibbles.every((n) => /^[0-9a-f]$/.test(n))) return null;
    const b = new Uint8Array(16);
    for (let i = 0; i < 16; i++) b[i] = parseInt(nibbles[2 * i]! + nibbles[2 * i + 1]!, 16);
    return bytesToIp(b);
  }
  return null;
}

/** The reverse-lookup name of an address, or null when it is not one. */
export function ipToReverseName(ip: string): string | null {
  const b = ipToBytes(ip);
  if (!b) return null;
  if (b.length === 4) return `${[...b].reverse().join('.')}.in-addr.arpa.`;
  const nibbles: string[] = [];
  for (const x of b) nibbles.push((x >> 4).toString(16), (x & 0xf).toString(16));
  return `${nibbles.reverse().join('.')}.ip6.arpa.`;
}

/** DNS-SD browse domains under reverse zones (RFC 6763 §11): never forwarded, as tailscaled does. */
function isServiceDiscoveryReverse(fqdn: string): boolean {
  return /^(b|db|r|dr|lb)\._dns-sd\._udp\.(.+\.)?(in-addr|ip6)\.arpa\.$/.test(fqdn);
}

/** Names that exist only because names below them do (empty non-terminals and zone apexes), per plan. */
const nonTerminals = new WeakMap<DnsPlan, ReadonlySet<string>>();

function emptyNonTerminals(plan: DnsPlan): ReadonlySet<string> {
  const cached = nonTerminals.get(plan);
  if (cached) return cached;
  const out = new Set<string>();
  const addAncestors = (name: string, self: boolean): void => {
    let n = name;
    if (self) out.add(n);
    for (;;) {
      const dot = n.indexOf('.');
      if (dot < 0 || dot === n.length - 1) break;
      n = n.slice(dot + 1);
      out.add(n);
    }
  };
  for (const name of plan.records.keys()) addAncestors(name, false);
  for (const ip of plan.reverse.keys()) {
    const r = ipToReverseName(ip);
    if (r) addAncestors(r, false);
  }
  for (const s of plan.localSuffixes) addAncestors(s, true);
  nonTerminals.set(plan, out);
  return out;
}

/** The longest route or local suffix covering `name`: local wins a tie. */
function bestRoute(plan: DnsPlan, name: string): { kind: 'local'; suffix: string } | { kind: 'forward'; suffix: string; upstreams: readonly string[] } | null {
  let best: { kind: 'local'; suffix: string } | { kind: 'forward'; suffix: string; upstreams: readonly string[] } | null = null;
  const len = (s: string): number => (s === '.' ? 0 : s.length);
  for (const s of plan.localSuffixes) {
    if (underSuffix(name, s) && (!best || len(s) > len(best.suffix))) best = { kind: 'local', suffix: s };
  }
  for (const [s, ups] of plan.routes) {
    if (underSuffix(name, s) && (!best || len(s) > len(best.suffix))) best = { kind: 'forward', suffix: s, upstreams: ups };
  }
  return best;
}

/** The SOA of a negative local answer for `zone`. */
function negativeSoa(zone: string): Answer {
  return {
    type: 'SOA',
    name: zone,
    ttl: NEGATIVE_TTL_SECONDS,
    class: 'IN',
    data: {
      mname: QUAD100_NAME,
      rname: `hostmaster.${QUAD100_NAME}`,
      serial: 1,
      refresh: 3600,
      retry: 600,
      expire: 86400,
      minimum: NEGATIVE_TTL_SECONDS,
    },
  };
}

/**
 * Answers one query (see the file comment). `plan` null (no netmap yet) answers SERVFAIL to everything well-formed.
 */
export function respond(plan: DnsPlan | null, query: Uint8Array, transport: Transport): DnsReply {
  try {
    return respondUnsafe(plan, query, transport);
  } catch {
    // dns-packet throws on bad input; everything decodable was handled above, so this is a last resort.
    const h = readHeader(query);
    if (!h || h.flags & FLAG_QR) return { kind: 'drop' };
    try {
      return answer(build({ id: h.id, flags: h.flags, question: null, opt: null, transport }, RCODE.SERVFAIL));
    } catch {
      return { kind: 'drop' };
    }
  }
}

function respondUnsafe(plan: DnsPlan | null, query: Uint8Array, transport: Transport): DnsReply {
  const h = readHeader(query);
  if (!h || h.flags & FLAG_QR) return { kind: 'drop' };
  const bare: QueryCtx = { id: h.id, flags: h.flags, question: null, opt: null, transport };

  let pkt: DecodedPacket;
  try {
    pkt = dnsPacket.decode(toBuffer(query));
  } catch {
    return answer(build(bare, RCODE.FORMERR));
  }
  const opts = (pkt.additionals ?? []).filter(isOpt);
  if (opts.length > 1) return answer(build(bare, RCODE.FORMERR));
  const opt = opts[0] ?? null;
  const questions = pkt.questions ?? [];
  const q0 = questions[0];
  const ctx: QueryCtx = { ...bare, opt, question: questions.length === 1 && q0 ? echoable(q0) : null };

  if ((h.flags & OPCODE_MASK) !== 0) return answer(build(ctx, RCODE.NOTIMP));
  if (questions.length !== 1 || !q0) return answer(build(ctx, RCODE.FORMERR));
  if (opt && opt.ednsVersion > 0) return answer(build(ctx, RCODE.NOERROR, { extendedRcode: BADVERS_EXTENDED }));
  if (!ctx.question) return answer(build(ctx, RCODE.NOTIMP));
  if (!plan) return answer(build(ctx, RCODE.SERVFAIL));

  const name = fqdnOf(q0.name);
  const type = String(q0.type);
  const cls = String(q0.class ?? 'IN');
  const inClass = cls === 'IN' || cls === 'ANY';

  if (name === 'onion.' || name.endsWith('.onion.') || isServiceDiscoveryReverse(name)) return answer(build(ctx, RCODE.NXDOMAIN));

  // The name itself, or a bare label under the MagicDNS suffix.
  let rec = plan.records.get(name);
  if (!rec && plan.magicSuffix && name !== '.' && name.indexOf('.') === name.length - 1) rec = plan.records.get(`${name}${plan.magicSuffix}`);
  const ptrIp = name.endsWith('.arpa.') ? reverseNameToIp(name) : null;
  const ptr = ptrIp !== null ? plan.reverse.get(ptrIp) : undefined;
  const route = bestRoute(plan, name);
  const zone = route?.kind === 'local' ? route.suffix : name;

  if (rec || ptr) {
    if (!inClass || NOTIMP_TYPES.has(type)) return answer(build(ctx, RCODE.NOTIMP));
    const owner = q0.name;
    const v4 = rec?.v4[0];
    const v6 = rec?.v6[0];
    let data: Answer | null = null;
    if ((type === 'A' || type === 'ANY') && v4) data = { type: 'A', name: owner, ttl: TTL_SECONDS, class: 'IN', data: v4 };
    else if ((type === 'AAAA' || (type === 'ANY' && !v4)) && v6) data = { type: 'AAAA', name: owner, ttl: TTL_SECONDS, class: 'IN', data: v6 };
    else if ((type === 'PTR' || type === 'ANY') && ptr) data = { type: 'PTR', name: owner, ttl: TTL_SECONDS, class: 'IN', data: ptr };
    if (data) return answer(build(ctx, RCODE.NOERROR, { answers: [data], aa: true }));
    return answer(build(ctx, RCODE.NOERROR, { authorities: [negativeSoa(zone)], aa: true }));
  }

  if (route?.kind === 'local') {
    if (emptyNonTerminals(plan).has(name)) {
      if (!inClass || NOTIMP_TYPES.has(type)) return answer(build(ctx, RCODE.NOTIMP));
      return answer(build(ctx, RCODE.NOERROR, { authorities: [negativeSoa(zone)], aa: true }));
    }
    return answer(build(ctx, RCODE.NXDOMAIN, { authorities: [negativeSoa(zone)], aa: true }));
  }
  if (route?.kind === 'forward' && route.upstreams.length > 0) return { kind: 'forward', upstreams: route.upstreams };
  return answer(build(ctx, RCODE.SERVFAIL));
}

/** The query's context for a response of ours, or null when no response can be addressed. */
function contextOf(query: Uint8Array, transport: Transport): QueryCtx | null {
  const h = readHeader(query);
  if (!h || h.flags & FLAG_QR) return null;
  try {
    const pkt = dnsPacket.decode(toBuffer(query));
    const questions = pkt.questions ?? [];
    const opt = (pkt.additionals ?? []).find(isOpt) ?? null;
    const q0 = questions[0];
    return { id: h.id, flags: h.flags, question: questions.length === 1 && q0 ? echoable(q0) : null, opt, transport };
  } catch {
    return { id: h.id, flags: h.flags, question: null, opt: null, transport };
  }
}

/** An error response (SERVFAIL for timeouts and overload) to `query`; null when the query has no header. */
export function errorResponse(query: Uint8Array, transport: Transport, rcode: Rcode): Uint8Array | null {
  const ctx = contextOf(query, transport);
  if (!ctx) return null;
  try {
    return build(ctx, rcode);
  } catch {
    return null;
  }
}

/**
 * Applies quad-100's size limits to an upstream's `response` to `query`: returned as-is when it fits, else cut to
 * its question with TC set. An oversized response that cannot be decoded becomes SERVFAIL.
 */
export function fitResponse(response: Uint8Array, query: Uint8Array, transport: Transport): Uint8Array {
  const ctx = contextOf(query, transport);
  const limit = sizeLimit(ctx?.opt ?? null, transport);
  if (response.byteLength <= limit) return response;
  try {
    const p = dnsPacket.decode(toBuffer(response));
    return encodeWithin({ type: 'response', id: p.id, flags: p.flags, questions: p.questions, answers: p.answers, authorities: p.authorities, additionals: p.additionals }, limit);
  } catch {
    return (ctx && errorResponse(query, transport, RCODE.SERVFAIL)) ?? response.subarray(0, 0);
  }
}

/** Whether a response has TC set; false for anything shorter than a header. */
export function isTruncated(response: Uint8Array): boolean {
  const h = readHeader(response);
  return h !== null && (h.flags & FLAG_TC) !== 0;
}

/** The RCODE of a response, or null when it has no header. */
export function rcodeOf(response: Uint8Array): number | null {
  const h = readHeader(response);
  return h === null ? null : h.flags & 0xf;
}

/** The transaction ID of a message, or null when it has no header. */
export function idOf(msg: Uint8Array): number | null {
  return readHeader(msg)?.id ?? null;
}
