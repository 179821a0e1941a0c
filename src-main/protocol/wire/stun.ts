/**
 * STUN codec (RFC 5389 / RFC 8489, with the RFC 5780 NAT-behaviour-discovery attributes).
 *
 * Shared by the client (engine/netcheck) and the server (server/stun). Pure: bytes in, bytes out.
 *
 * Message layout (all big-endian):
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |0 0|     STUN Message Type     |         Message Length        |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |                  Magic Cookie = 0x2112A442                    |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |                  Transaction ID (96 bits)                     |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |  Attribute Type               |  Attribute Length (unpadded)  |
 *   |  Value ... padded to a multiple of 4 bytes                    |
 *
 * Address attributes (MAPPED-ADDRESS, XOR-MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS):
 *   [0x00][family 1=IPv4 2=IPv6][port u16][address 4 or 16 bytes]
 *   XOR-MAPPED-ADDRESS XORs the port with the top 16 bits of the cookie and the address with
 *   cookie||transaction-id.
 *
 * MESSAGE-INTEGRITY is HMAC-SHA1 over the message up to the attribute, with the header length counting
 * through the end of MESSAGE-INTEGRITY. FINGERPRINT is CRC-32 of the message up to the attribute, with the
 * header length counting through FINGERPRINT, XOR 0x5354554E.
 *
 * Parsers never throw: they return `{ kind: 'malformed', reason }`. Bytes past the header's length are
 * accepted and ignored (forward compatibility, and some servers pad datagrams).
 *
 * Tailscale compatibility (dataplane-protocol §7): `encodeTailscaleRequest` builds the exact 40-byte request
 * Tailscale clients send (SOFTWARE "tailnode" + FINGERPRINT), `parseTailscaleBindingRequest` applies the
 * acceptance rules of Tailscale's STUN servers, and `encodeTailscaleResponse` builds their 32/44-byte answer.
 */
import { hmac } from '@noble/hashes/hmac.js';
import { md5, sha1 } from '@noble/hashes/legacy.js';
import { bytesToIp, ipToBytes, isV4Mapped, type UdpAddr } from './addr.ts';
import { crc32 } from './crc32.ts';
import { bytesEqual } from './hex.ts';

export const HEADER_LEN = 20;
export const MAGIC_COOKIE = 0x2112a442;
export const TXID_LEN = 12;
const COOKIE_BYTES = new Uint8Array([0x21, 0x12, 0xa4, 0x42]);
const FINGERPRINT_XOR = 0x5354554e;
const MI_LEN = 20;
const FP_LEN = 4;

/** Message types (method + class) this codebase uses. */
export const StunType = {
  BindingRequest: 0x0001,
  BindingIndication: 0x0011,
  BindingSuccess: 0x0101,
  BindingError: 0x0111,
} as const;

/** Attribute types (RFC 5389, 5780, 8489, plus the off-spec 0x8020 some servers send). */
export const Attr = {
  MappedAddress: 0x0001,
  ChangeRequest: 0x0003,
  Username: 0x0006,
  MessageIntegrity: 0x0008,
  ErrorCode: 0x0009,
  UnknownAttributes: 0x000a,
  Realm: 0x0014,
  Nonce: 0x0015,
  XorMappedAddress: 0x0020,
  Padding: 0x0026,
  ResponsePort: 0x0027,
  XorMappedAddressAlt: 0x8020,
  Software: 0x8022,
  AlternateServer: 0x8023,
  Fingerprint: 0x8028,
  ResponseOrigin: 0x802b,
  OtherAddress: 0x802c,
} as const;

/** The SOFTWARE value Tailscale clients send and Tailscale's STUN servers require. */
export const TAILSCALE_SOFTWARE = 'tailnode';

export interface StunAttribute {
  type: number;
  value: Uint8Array;
  /** Offset of the attribute header within the message (set by the parser). */
  offset: number;
}

export interface StunMessage {
  kind: 'stun';
  type: number;
  txid: Uint8Array;
  attrs: StunAttribute[];
  /** The message bytes up to the header's length (trailing datagram bytes trimmed). */
  raw: Uint8Array;
}

export interface Malformed {
  kind: 'malformed';
  reason: string;
}

export type ParseResult<T> = T | Malformed;

const malformed = (reason: string): Malformed => ({ kind: 'malformed', reason });

/** Reports whether `b` has the shape of a STUN message: 20+ bytes, top two bits zero, magic cookie. */
export function isStun(b: Uint8Array): boolean {
  return (
    b.length >= HEADER_LEN &&
    (b[0]! & 0xc0) === 0 &&
    b[4] === COOKIE_BYTES[0] &&
    b[5] === COOKIE_BYTES[1] &&
    b[6] === COOKIE_BYTES[2] &&
    b[7] === COOKIE_BYTES[3]
  );
}

const padLen = (n: number): number => (4 - (n % 4)) % 4;

/** Parses a STUN message and walks its attributes. Never throws. */
export function parseStun(b: Uint8Array): ParseResult<StunMessage> {
  if (b.length < HEADER_LEN) return malformed('shorter than the 20-byte STUN header');
  if ((b[0]! & 0xc0) !== 0) return malformed('top two bits of the message type are not zero');
  if (!isStun(b)) return malformed('magic cookie missing');
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const type = dv.getUint16(0);
  const length = dv.getUint16(2);
  if (length % 4 !== 0) return malformed(`message length ${length} is not a multiple of 4`);
  if (HEADER_LEN + length > b.length) return malformed(`message length ${length} exceeds the datagram`);
  const raw = b.subarray(0, HEADER_LEN + length);
  const attrs: StunAttribute[] = [];
  let off = HEADER_LEN;
  const end = HEADER_LEN + length;
  // Bounded: every iteration advances by at least 4 bytes.
  while (off < end) {
    if (off + 4 > end) return malformed('truncated attribute header');
    const at = dv.getUint16(off);
    const alen = dv.getUint16(off + 2);
    const next = off + 4 + alen + padLen(alen);
    if (off + 4 + alen > end) return malformed(`attribute 0x${at.toString(16)} overruns the message`);
    attrs.push({ type: at, value: b.subarray(off + 4, off + 4 + alen), offset: off });
    off = Math.min(next, end);
  }
  return { kind: 'stun', type, txid: b.slice(8, 20), attrs, raw };
}

/** Returns the first attribute of the given type, or undefined. */
export function findAttr(msg: StunMessage, type: number): StunAttribute | undefined {
  return msg.attrs.find((a) => a.type === type);
}

// ---------------------------------------------------------------------------------------------------------
// Attribute value codecs

function decodeAddress(v: Uint8Array, xorWith: Uint8Array | null): UdpAddr | Malformed {
  if (v.length < 4) return malformed('address attribute shorter than 4 bytes');
  const family = v[1];
  const alen = family === 1 ? 4 : family === 2 ? 16 : 0;
  if (alen === 0) return malformed(`unknown address family ${family}`);
  if (v.length < 4 + alen) return malformed('address attribute truncated');
  let port = (v[2]! << 8) | v[3]!;
  const addr = v.slice(4, 4 + alen);
  if (xorWith) {
    port ^= MAGIC_COOKIE >>> 16;
    for (let i = 0; i < alen; i++) addr[i]! ^= xorWith[i]!;
  }
  const ipBytes = isV4Mapped(addr) ? addr.subarray(12) : addr;
  return { ip: bytesToIp(ipBytes), port };
}

function encodeAddress(a: UdpAddr, xorWith: Uint8Array | null): Uint8Array {
  const ip = ipToBytes(a.ip);
  if (!ip) throw new Error(`not an IP address: ${a.ip}`);
  if (a.port < 0 || a.port > 65535 || !Number.isInteger(a.port)) throw new Error(`bad port: ${a.port}`);
  const out = new Uint8Array(4 + ip.length);
  out[1] = ip.length === 4 ? 1 : 2;
  const port = xorWith ? a.port ^ (MAGIC_COOKIE >>> 16) : a.port;
  out[2] = port >> 8;
  out[3] = port & 0xff;
  for (let i = 0; i < ip.length; i++) out[4 + i] = xorWith ? ip[i]! ^ xorWith[i]! : ip[i]!;
  return out;
}

const xorKey = (txid: Uint8Array): Uint8Array => {
  const k = new Uint8Array(16);
  k.set(COOKIE_BYTES, 0);
  k.set(txid, 4);
  return k;
};

const utf8 = new TextEncoder();
const utf8d = new TextDecoder('utf-8', { fatal: false });

/** Attribute builders: each returns {type, value} ready for encodeStun. */
export const attr = {
  xorMappedAddress: (a: UdpAddr, txid: Uint8Array): AttrInput => ({ type: Attr.XorMappedAddress, value: encodeAddress(a, xorKey(txid)) }),
  mappedAddress: (a: UdpAddr): AttrInput => ({ type: Attr.MappedAddress, value: encodeAddress(a, null) }),
  responseOrigin: (a: UdpAddr): AttrInput => ({ type: Attr.ResponseOrigin, value: encodeAddress(a, null) }),
  otherAddress: (a: UdpAddr): AttrInput => ({ type: Attr.OtherAddress, value: encodeAddress(a, null) }),
  software: (s: string): AttrInput => ({ type: Attr.Software, value: utf8.encode(s) }),
  username: (s: string): AttrInput => ({ type: Attr.Username, value: utf8.encode(s) }),
  changeRequest: (changeIp: boolean, changePort: boolean): AttrInput => ({
    type: Attr.ChangeRequest,
    value: new Uint8Array([0, 0, 0, (changeIp ? 4 : 0) | (changePort ? 2 : 0)]),
  }),
  errorCode: (code: number, reason: string): AttrInput => {
    const r = utf8.encode(reason);
    const v = new Uint8Array(4 + r.length);
    v[2] = Math.floor(code / 100) & 0x07;
    v[3] = code % 100;
    v.set(r, 4);
    return { type: Attr.ErrorCode, value: v };
  },
  unknownAttributes: (types: number[]): AttrInput => {
    const v = new Uint8Array(types.length * 2);
    types.forEach((t, i) => {
      v[i * 2] = t >> 8;
      v[i * 2 + 1] = t & 0xff;
    });
    return { type: Attr.UnknownAttributes, value: v };
  },
  raw: (type: number, value: Uint8Array): AttrInput => ({ type, value }),
};

export interface AttrInput {
  type: number;
  value: Uint8Array;
}

/** Reads the mapped address: XOR-MAPPED-ADDRESS, else the off-spec 0x8020, else MAPPED-ADDRESS. */
export function mappedAddress(msg: StunMessage): UdpAddr | null {
  const key = xorKey(msg.txid);
  for (const [t, x] of [
    [Attr.XorMappedAddress, true],
    [Attr.XorMappedAddressAlt, true],
    [Attr.MappedAddress, false],
  ] as const) {
    const a = findAttr(msg, t);
    if (!a) continue;
    const r = decodeAddress(a.value, x ? key : null);
    if (!('kind' in r)) return r;
  }
  return null;
}

/** Reads a plain (non-XOR) address attribute such as OTHER-ADDRESS or RESPONSE-ORIGIN. */
export function addressAttr(msg: StunMessage, type: number): UdpAddr | null {
  const a = findAttr(msg, type);
  if (!a) return null;
  const r = decodeAddress(a.value, type === Attr.XorMappedAddress || type === Attr.XorMappedAddressAlt ? xorKey(msg.txid) : null);
  return 'kind' in r ? null : r;
}

export function softwareAttr(msg: StunMessage): string | null {
  const a = findAttr(msg, Attr.Software);
  return a ? utf8d.decode(a.value) : null;
}

export function changeRequestAttr(msg: StunMessage): { changeIp: boolean; changePort: boolean } | null {
  const a = findAttr(msg, Attr.ChangeRequest);
  if (!a || a.value.length < 4) return null;
  const f = a.value[3]!;
  return { changeIp: (f & 4) !== 0, changePort: (f & 2) !== 0 };
}

export function errorCodeAttr(msg: StunMessage): { code: number; reason: string } | null {
  const a = findAttr(msg, Attr.ErrorCode);
  if (!a || a.value.length < 4) return null;
  return { code: (a.value[2]! & 0x07) * 100 + a.value[3]!, reason: utf8d.decode(a.value.subarray(4)) };
}

// ---------------------------------------------------------------------------------------------------------
// Encoding

export interface EncodeOptions {
  /** Key for MESSAGE-INTEGRITY (HMAC-SHA1); omitted when not given. */
  integrityKey?: Uint8Array;
  /** Append FINGERPRINT as the last attribute. */
  fingerprint?: boolean;
  /** Byte used to pad attribute values to 4 bytes (RFC 5389 says any; RFC 5769's samples use 0x20). */
  padByte?: number;
}

/** Encodes a STUN message. Throws on programmer error (bad txid length), never on the receive path. */
export function encodeStun(type: number, txid: Uint8Array, attrs: AttrInput[], opts: EncodeOptions = {}): Uint8Array {
  if (txid.length !== TXID_LEN) throw new Error(`STUN transaction ID must be ${TXID_LEN} bytes`);
  const bodyLen = attrs.reduce((n, a) => n + 4 + a.value.length + padLen(a.value.length), 0);
  const total = HEADER_LEN + bodyLen + (opts.integrityKey ? 4 + MI_LEN : 0) + (opts.fingerprint ? 4 + FP_LEN : 0);
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  dv.setUint16(0, type & 0x3fff);
  dv.setUint32(4, MAGIC_COOKIE);
  out.set(txid, 8);
  let off = HEADER_LEN;
  for (const a of attrs) {
    dv.setUint16(off, a.type);
    dv.setUint16(off + 2, a.value.length);
    out.set(a.value, off + 4);
    const pad = padLen(a.value.length);
    if (opts.padByte) out.fill(opts.padByte, off + 4 + a.value.length, off + 4 + a.value.length + pad);
    off += 4 + a.value.length + pad;
  }
  if (opts.integrityKey) {
    dv.setUint16(2, off + 4 + MI_LEN - HEADER_LEN);
    const mac = hmac(sha1, opts.integrityKey, out.subarray(0, off));
    dv.setUint16(off, Attr.MessageIntegrity);
    dv.setUint16(off + 2, MI_LEN);
    out.set(mac, off + 4);
    off += 4 + MI_LEN;
  }
  if (opts.fingerprint) {
    dv.setUint16(2, off + 4 + FP_LEN - HEADER_LEN);
    const fp = (crc32(out.subarray(0, off)) ^ FINGERPRINT_XOR) >>> 0;
    dv.setUint16(off, Attr.Fingerprint);
    dv.setUint16(off + 2, FP_LEN);
    dv.setUint32(off + 4, fp);
    off += 4 + FP_LEN;
  }
  dv.setUint16(2, off - HEADER_LEN);
  return out;
}

/** Copies the message prefix up to `attrOffset` and rewrites its length to end `extra` bytes after it. */
function prefixWithLength(msg: StunMessage, attrOffset: number, extra: number): Uint8Array {
  const p = msg.raw.slice(0, attrOffset);
  new DataView(p.buffer).setUint16(2, attrOffset + extra - HEADER_LEN);
  return p;
}

/** Reports whether the message has a FINGERPRINT attribute, last, with the right CRC. */
export function verifyFingerprint(msg: StunMessage): boolean {
  const last = msg.attrs[msg.attrs.length - 1];
  if (!last || last.type !== Attr.Fingerprint || last.value.length !== FP_LEN) return false;
  const want = (crc32(prefixWithLength(msg, last.offset, 4 + FP_LEN)) ^ FINGERPRINT_XOR) >>> 0;
  const got = new DataView(last.value.buffer, last.value.byteOffset, 4).getUint32(0);
  return want === got;
}

/** Reports whether MESSAGE-INTEGRITY is present and matches HMAC-SHA1 under `key`. */
export function verifyMessageIntegrity(msg: StunMessage, key: Uint8Array): boolean {
  const mi = findAttr(msg, Attr.MessageIntegrity);
  if (!mi || mi.value.length !== MI_LEN) return false;
  const mac = hmac(sha1, key, prefixWithLength(msg, mi.offset, 4 + MI_LEN));
  return bytesEqual(mac, mi.value);
}

/** Short-term credential key: the password's UTF-8 bytes (SASLprep is the identity for ASCII). */
export function shortTermKey(password: string): Uint8Array {
  return utf8.encode(password);
}

/** Long-term credential key: MD5(username ":" realm ":" password). */
export function longTermKey(username: string, realm: string, password: string): Uint8Array {
  return md5(utf8.encode(`${username}:${realm}:${password}`));
}

// ---------------------------------------------------------------------------------------------------------
// Tailscale's forms

/** The exact 40-byte binding request Tailscale clients send. */
export function encodeTailscaleRequest(txid: Uint8Array, extra: AttrInput[] = []): Uint8Array {
  return encodeStun(StunType.BindingRequest, txid, [attr.software(TAILSCALE_SOFTWARE), ...extra], { fingerprint: true });
}

/** Tailscale's binding response: header plus XOR-MAPPED-ADDRESS only. */
export function encodeTailscaleResponse(txid: Uint8Array, mapped: UdpAddr): Uint8Array {
  return encodeStun(StunType.BindingSuccess, txid, [attr.xorMappedAddress(mapped, txid)]);
}

/**
 * Applies Tailscale's STUN server acceptance rules to a request: binding request, SOFTWARE "tailnode",
 * FINGERPRINT last and correct. Returns the transaction ID.
 */
export function parseTailscaleBindingRequest(b: Uint8Array): ParseResult<{ kind: 'request'; txid: Uint8Array; msg: StunMessage }> {
  const msg = parseStun(b);
  if (msg.kind === 'malformed') return msg;
  if (msg.type !== StunType.BindingRequest) return malformed('not a binding request');
  if (softwareAttr(msg) !== TAILSCALE_SOFTWARE) return malformed('request came from non-Tailscale software');
  if (!verifyFingerprint(msg)) return malformed('missing or bad FINGERPRINT');
  return { kind: 'request', txid: msg.txid, msg };
}

/** Parses a binding success response the way Tailscale clients do: txid and mapped address. */
export function parseBindingResponse(b: Uint8Array): ParseResult<{ kind: 'response'; txid: Uint8Array; mapped: UdpAddr; msg: StunMessage }> {
  const msg = parseStun(b);
  if (msg.kind === 'malformed') return msg;
  if (msg.type !== StunType.BindingSuccess) return malformed('not a binding success response');
  const mapped = mappedAddress(msg);
  if (!mapped) return malformed('response has no usable mapped address');
  return { kind: 'response', txid: msg.txid, mapped, msg };
}
