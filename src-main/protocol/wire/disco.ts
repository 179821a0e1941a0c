/**
 * Disco codec: Tailscale's peer-discovery messages (dataplane-protocol §3; Tailscale `disco/disco.go` and
 * `wgengine/magicsock` handleDiscoMessage). Pure: bytes in, bytes out. The engine's path layer sends and receives
 * these on the shared UDP socket (classified by engine/paths/demux.ts) and inside DERP SendPacket/RecvPacket frames
 * (§3.8); the box is protocol/crypto/nacl-box.ts.
 *
 * Outer packet (what goes on the wire, naked UDP or a DERP payload):
 *
 *    0      6                                38                       62
 *   +------+----------------------------------+------------------------+------------------------------+
 *   | magic| sender disco public key (32)     | nonce (24)             | tag (16) ‖ ciphertext (n)    |
 *   +------+----------------------------------+------------------------+------------------------------+
 *   magic = 54 53 F0 9F 92 AC ("TS" + U+1F4AC)   box = NaCl crypto_box under beforenm(sender priv, recipient pub)
 *   looksLikeDisco: ≥ 38 bytes + magic (magicsock)   looksLikeDiscoWrapper: ≥ 62 bytes + magic (DERP server, parser)
 *   smallest real packet: 62 + 16 + 2 = 80 bytes
 *
 * Inner payload (the n plaintext bytes):
 *
 *   [type u8][version u8 = 0][body ...]          receivers ignore trailing bytes they do not understand
 *
 *   0x01 Ping         [txid 12][sender node key 32, omitted by ≤ 1.16][padding p zero bytes (path-MTU probes)]
 *                     body ≥ 12; a node key is read only when ≥ 44 bytes remain; the rest counts as padding;
 *                     an all-zero key means "no key" both ways (Go's NodeKey.IsZero)
 *   0x02 Pong         [txid 12][src IP 16, IPv4 as ::ffff:a.b.c.d][src port u16 BE]     body ≥ 30
 *   0x03 CallMeMaybe  { [IP 16][port u16 BE] } × k                                    lenient: version ≠ 0, an empty
 *                     body or a length that is not a multiple of 18 yields zero endpoints, not an error
 *   0x04–0x09         peer-relay messages (BindUDPRelayEndpoint…, CallMeMaybeVia, Allocate…). Weft has no peer
 *                     relays, so these parse to {kind:'unsupported'} and the receiver drops them silently (errata)
 *
 * Parsers and openers never throw: they return `{ kind: 'malformed', reason }` or a typed drop result. Encoders
 * throw only on programmer error (wrong key lengths, bad addresses).
 */
import { TAG_LEN, openWithShared, sealWithShared } from '../crypto/nacl-box.ts';
import { bytesToIp, ipToBytes, isV4Mapped, type UdpAddr } from './addr.ts';

export const MAGIC = new Uint8Array([0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac]);
export const MAGIC_LEN = 6;
export const KEY_LEN = 32;
export const NONCE_LEN = 24;
/** Magic + sender key: the part magicsock checks before looking the sender up. */
export const HEADER_LEN = MAGIC_LEN + KEY_LEN; // 38
/** Magic + sender key + nonce: Go's LooksLikeDiscoWrapper minimum (DERP server). */
export const WRAPPER_LEN = HEADER_LEN + NONCE_LEN; // 62
/** Inner header: type + version. */
export const MSG_HEADER_LEN = 2;
/** Smallest packet that can carry a message: wrapper + tag + inner header. */
export const MIN_PACKET_LEN = WRAPPER_LEN + TAG_LEN + MSG_HEADER_LEN; // 80
export const TXID_LEN = 12;
export const NODE_KEY_LEN = 32;
/** One IP:port as carried by Pong and CallMeMaybe: 16-byte IPv6 (v4-mapped for IPv4) + u16 port. */
export const ADDR_PORT_LEN = 18;
export const PING_BODY_MIN = TXID_LEN; // 12
export const PING_BODY_WITH_KEY = TXID_LEN + NODE_KEY_LEN; // 44
export const PONG_BODY_LEN = TXID_LEN + ADDR_PORT_LEN; // 30
export const VERSION_0 = 0;

export const DiscoType = {
  Ping: 0x01,
  Pong: 0x02,
  CallMeMaybe: 0x03,
  BindUDPRelayEndpoint: 0x04,
  BindUDPRelayEndpointChallenge: 0x05,
  BindUDPRelayEndpointAnswer: 0x06,
  CallMeMaybeVia: 0x07,
  AllocateUDPRelayEndpointRequest: 0x08,
  AllocateUDPRelayEndpointResponse: 0x09,
} as const;

const FIRST_RELAY_TYPE = DiscoType.BindUDPRelayEndpoint;
const LAST_RELAY_TYPE = DiscoType.AllocateUDPRelayEndpointResponse;

export interface DiscoPing {
  kind: 'ping';
  txid: Uint8Array;
  /** Sender's node public key, a hint only (§3.3); null when omitted (clients ≤ 1.16) or all zero. */
  nodeKey: Uint8Array | null;
  /** Bytes after the TxID (and node key); zero bytes on encode. */
  padding: number;
}

export interface DiscoPong {
  kind: 'pong';
  txid: Uint8Array;
  /** Where the ping came from as the peer saw it. A v4-mapped address is reported as plain IPv4. */
  src: UdpAddr;
}

export interface DiscoCallMeMaybe {
  kind: 'call-me-maybe';
  endpoints: UdpAddr[];
}

/** A peer-relay message (0x04–0x09), recognised but not implemented; the receiver drops it. */
export interface DiscoUnsupported {
  kind: 'unsupported';
  type: number;
  version: number;
  body: Uint8Array;
}

export type DiscoMessage = DiscoPing | DiscoPong | DiscoCallMeMaybe | DiscoUnsupported;

export interface Malformed {
  kind: 'malformed';
  reason: string;
}

const malformed = (reason: string): Malformed => ({ kind: 'malformed', reason });

// ---------------------------------------------------------------------------------------------------------
// Recognisers

/** Reports whether `b` starts with the disco magic at offset `off`. */
function hasMagicAt(b: Uint8Array, off: number): boolean {
  for (let i = 0; i < MAGIC_LEN; i++) if (b[off + i] !== MAGIC[i]) return false;
  return true;
}

/** Reports whether `b` looks like a disco packet the way magicsock checks: ≥ 38 bytes and the magic. */
export function looksLikeDisco(b: Uint8Array, offset = 0): boolean {
  return b.length - offset >= HEADER_LEN && hasMagicAt(b, offset);
}

/** Reports whether `b` looks like a disco packet the stricter way (DERP server): ≥ 62 bytes and the magic. */
export function looksLikeDiscoWrapper(b: Uint8Array): boolean {
  return b.length >= WRAPPER_LEN && hasMagicAt(b, 0);
}

/** Returns the sender's disco public key (a view into `b`), or null when `b` is not disco-shaped (Go disco.Source). */
export function discoSenderPub(b: Uint8Array): Uint8Array | null {
  return looksLikeDisco(b) ? b.subarray(MAGIC_LEN, HEADER_LEN) : null;
}

function isZero(b: Uint8Array): boolean {
  for (const v of b) if (v !== 0) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------------------
// Addresses

function writeAddrPort(out: Uint8Array, off: number, a: UdpAddr): void {
  const ip = ipToBytes(a.ip);
  if (!ip) throw new Error(`disco: not an IP address: ${a.ip}`);
  if (!Number.isInteger(a.port) || a.port < 0 || a.port > 0xffff) throw new Error(`disco: bad port ${a.port}`);
  if (ip.length === 4) {
    out[off + 10] = 0xff;
    out[off + 11] = 0xff;
    out.set(ip, off + 12);
  } else {
    out.set(ip, off);
  }
  out[off + 16] = a.port >> 8;
  out[off + 17] = a.port & 0xff;
}

/** Reads 16-byte IP + u16 port at `off` (caller checked the length). v4-mapped comes back as IPv4 (Go's Unmap). */
function readAddrPort(b: Uint8Array, off: number): UdpAddr {
  const ip16 = b.subarray(off, off + 16);
  const ip = isV4Mapped(ip16) ? bytesToIp(ip16.subarray(12)) : bytesToIp(ip16);
  return { ip, port: (b[off + 16]! << 8) | b[off + 17]! };
}

// ---------------------------------------------------------------------------------------------------------
// Inner payload

/** Encodes a message's inner payload: type ‖ version ‖ body. Throws on programmer error. */
export function encodeDiscoMessage(msg: DiscoMessage): Uint8Array {
  switch (msg.kind) {
    case 'ping': {
      if (msg.txid.length !== TXID_LEN) throw new Error(`disco: ping TxID must be ${TXID_LEN} bytes`);
      if (msg.nodeKey && msg.nodeKey.length !== NODE_KEY_LEN) throw new Error(`disco: node key must be ${NODE_KEY_LEN} bytes`);
      if (!Number.isInteger(msg.padding) || msg.padding < 0) throw new Error(`disco: bad padding ${msg.padding}`);
      // As in Go, an all-zero node key means "no key" and is omitted.
      const key = msg.nodeKey && !isZero(msg.nodeKey) ? msg.nodeKey : null;
      const out = new Uint8Array(MSG_HEADER_LEN + TXID_LEN + (key ? NODE_KEY_LEN : 0) + msg.padding);
      out[0] = DiscoType.Ping;
      out.set(msg.txid, MSG_HEADER_LEN);
      if (key) out.set(key, MSG_HEADER_LEN + TXID_LEN);
      return out;
    }
    case 'pong': {
      if (msg.txid.length !== TXID_LEN) throw new Error(`disco: pong TxID must be ${TXID_LEN} bytes`);
      const out = new Uint8Array(MSG_HEADER_LEN + PONG_BODY_LEN);
      out[0] = DiscoType.Pong;
      out.set(msg.txid, MSG_HEADER_LEN);
      writeAddrPort(out, MSG_HEADER_LEN + TXID_LEN, msg.src);
      return out;
    }
    case 'call-me-maybe': {
      const out = new Uint8Array(MSG_HEADER_LEN + ADDR_PORT_LEN * msg.endpoints.length);
      out[0] = DiscoType.CallMeMaybe;
      msg.endpoints.forEach((ep, i) => writeAddrPort(out, MSG_HEADER_LEN + i * ADDR_PORT_LEN, ep));
      return out;
    }
    case 'unsupported': {
      if (!Number.isInteger(msg.type) || msg.type < FIRST_RELAY_TYPE || msg.type > LAST_RELAY_TYPE)
        throw new Error(`disco: unsupported-message type must be 0x04..0x09, got ${msg.type}`);
      const out = new Uint8Array(MSG_HEADER_LEN + msg.body.length);
      out[0] = msg.type;
      out[1] = msg.version & 0xff;
      out.set(msg.body, MSG_HEADER_LEN);
      return out;
    }
  }
}

/**
 * Parses an inner payload. Trailing bytes are accepted (Tailscale parsePing), fields are copied out of `b`.
 * Types 0x04–0x09 give {kind:'unsupported'}; any other unknown type is malformed. Never throws.
 */
export function parseDiscoMessage(b: Uint8Array): DiscoMessage | Malformed {
  if (b.length < MSG_HEADER_LEN) return malformed('shorter than the 2-byte message header');
  const type = b[0]!;
  const version = b[1]!;
  const body = b.subarray(MSG_HEADER_LEN);
  switch (type) {
    case DiscoType.Ping: {
      if (body.length < PING_BODY_MIN) return malformed(`ping body ${body.length} bytes, need ${PING_BODY_MIN}`);
      const hasKey = body.length >= PING_BODY_WITH_KEY;
      const key = hasKey ? body.subarray(TXID_LEN, PING_BODY_WITH_KEY) : null;
      return {
        kind: 'ping',
        txid: body.slice(0, TXID_LEN),
        // An all-zero key slot reads as "no key" (Go's NodeKey.IsZero), but still counts as consumed.
        nodeKey: key && !isZero(key) ? key.slice() : null,
        padding: body.length - (hasKey ? PING_BODY_WITH_KEY : TXID_LEN),
      };
    }
    case DiscoType.Pong: {
      if (body.length < PONG_BODY_LEN) return malformed(`pong body ${body.length} bytes, need ${PONG_BODY_LEN}`);
      return { kind: 'pong', txid: body.slice(0, TXID_LEN), src: readAddrPort(body, TXID_LEN) };
    }
    case DiscoType.CallMeMaybe: {
      const endpoints: UdpAddr[] = [];
      if (version === VERSION_0 && body.length > 0 && body.length % ADDR_PORT_LEN === 0) {
        for (let off = 0; off < body.length; off += ADDR_PORT_LEN) endpoints.push(readAddrPort(body, off));
      }
      return { kind: 'call-me-maybe', endpoints };
    }
    default:
      if (type >= FIRST_RELAY_TYPE && type <= LAST_RELAY_TYPE) return { kind: 'unsupported', type, version, body: body.slice() };
      return malformed(`unknown message type 0x${type.toString(16).padStart(2, '0')}`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Outer packet

export interface SealDiscoInput {
  /** Our disco public key, written in clear after the magic. */
  senderPub: Uint8Array;
  /** beforenm(our disco private key, recipient disco public key). */
  shared: Uint8Array;
  msg: DiscoMessage;
  /** Fixed nonce for tests and vectors; random when omitted. */
  nonce?: Uint8Array;
}

/** Builds a complete disco packet: magic ‖ sender pub ‖ nonce ‖ box(payload). Throws on programmer error. */
export function sealDiscoPacket({ senderPub, shared, msg, nonce }: SealDiscoInput): Uint8Array {
  if (senderPub.length !== KEY_LEN) throw new Error(`disco: sender public key must be ${KEY_LEN} bytes`);
  const sealed = sealWithShared(shared, encodeDiscoMessage(msg), nonce);
  const out = new Uint8Array(HEADER_LEN + sealed.length);
  out.set(MAGIC, 0);
  out.set(senderPub, MAGIC_LEN);
  out.set(sealed, HEADER_LEN);
  return out;
}

export interface OpenedDisco {
  kind: 'disco';
  /** Sender's disco public key (copied). */
  senderPub: Uint8Array;
  msg: DiscoMessage;
}

/** The sender's key is not one we share a box key with (not in the netmap): drop silently (§3.7 rule 1). */
export interface UnknownSender {
  kind: 'unknown-sender';
  /** View into the packet. */
  senderPub: Uint8Array;
}

/** The box did not open: wrong recipient, stale disco key after a peer restart, or tampering (§3.7 rule 2). */
export interface BadBox {
  kind: 'bad-box';
  /** View into the packet. */
  senderPub: Uint8Array;
}

export type OpenDiscoResult = OpenedDisco | UnknownSender | BadBox | Malformed;

/**
 * Opens a disco packet the way magicsock does: check the shape, look the sender up, open the box, parse the
 * payload. `lookupShared` returns the cached beforenm key for a sender disco key, or null when unknown.
 * Never throws (unless `lookupShared` does).
 */
export function openDiscoPacket(packet: Uint8Array, lookupShared: (senderPub: Uint8Array) => Uint8Array | null): OpenDiscoResult {
  if (!looksLikeDisco(packet)) return malformed('not a disco packet (short or no magic)');
  if (packet.length < MIN_PACKET_LEN) return malformed(`disco packet ${packet.length} bytes, need ${MIN_PACKET_LEN}`);
  const senderPub = packet.subarray(MAGIC_LEN, HEADER_LEN);
  const shared = lookupShared(senderPub);
  if (!shared) return { kind: 'unknown-sender', senderPub };
  const payload = openWithShared(shared, packet.subarray(HEADER_LEN));
  if (!payload) return { kind: 'bad-box', senderPub };
  const msg = parseDiscoMessage(payload);
  if (msg.kind === 'malformed') return msg;
  return { kind: 'disco', senderPub: senderPub.slice(), msg };
}
