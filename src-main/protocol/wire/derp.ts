/**
 * DERP frame codec: the relay protocol that carries disco and WireGuard packets between nodes addressed by their
 * node public keys (dataplane-protocol §5; Tailscale `derp/derp.go`, `derp/derp_client.go` and the frame handlers
 * in `derp/derpserver/derpserver.go`). Pure: bytes in, bytes out. The DERP client (and later the embedded DERP
 * server) reads the byte stream with DerpFrameReader, parses each frame with parseFrame and writes with encodeFrame.
 * The handshake boxes use protocol/crypto/nacl-box.ts.
 *
 * Every frame, both directions (protocol version 2):
 *
 *    0      1                       5
 *   +------+-----------------------+--------------------------------------+
 *   | type | length u32 BE         | body (length bytes)                  |
 *   +------+-----------------------+--------------------------------------+
 *   length excludes the 5-byte header
 *
 * Bodies (K = 32-byte node public key, N = 24-byte nonce, box = 16-byte tag ‖ ciphertext):
 *
 *   type name           dir      body                                  accepted by Tailscale's receiver
 *   0x01 ServerKey      S→C      "DERP🔑"(8) ‖ server K ‖ future…      40 ≤ len ≤ 1 KiB, magic; extra ignored
 *   0x02 ClientInfo     C→S      client K ‖ N ‖ box(JSON)              56 ≤ len ≤ 256 KiB
 *   0x03 ServerInfo     S→C      N ‖ box(JSON)                         24 ≤ len ≤ 24 + 1 MiB
 *   0x04 SendPacket     C→S      dst K ‖ packet                        len ≥ 32, packet ≤ 64 KiB
 *   0x05 RecvPacket     S→C      src K ‖ packet                        len ≥ 32 (short: dropped)
 *   0x06 KeepAlive      S→C      empty                                 any body, ignored
 *   0x07 NotePreferred  C→S      0x01 home / 0x00 not                  len = 1; any non-zero byte = true
 *   0x08 PeerGone       S→C      K ‖ reason(1)                         len ≥ 32 (short: dropped); no reason byte
 *                                                                        = 0x00 Disconnected; extra ignored
 *   0x09 PeerPresent    S→C      K [‖ IP(16) ‖ port u16 [‖ flags(1)]]  len ≥ 32 (short: dropped); extra ignored
 *   0x0a ForwardPacket  mesh     src K ‖ dst K ‖ packet                len ≥ 64, packet ≤ 64 KiB
 *   0x10 WatchConns     mesh     empty                                 len = 0
 *   0x11 ClosePeer      mesh     K                                     len = 32
 *   0x12 Ping           both     8 opaque bytes                        len ≥ 8 (short: dropped); first 8 used.
 *                                                                        A Tailscale server also refuses > 1000
 *   0x13 Pong           both     the 8 ping bytes                      len ≥ 8 (short: dropped)
 *   0x14 Health         S→C      UTF-8 problem text, empty = healthy   anything
 *   0x15 Restarting     S→C      reconnect-in ms u32 ‖ try-for ms u32  len ≥ 8 (short: dropped); extra ignored
 *   other               —        —                                     skipped by both sides
 *
 *   "dropped" = the Go client logs and skips that frame; every other refusal closes the connection. parseFrame
 *   reports both as {kind:'malformed'}; the caller decides by frame type (see the table).
 *
 * Handshake JSON, sealed with NaCl box (nonce ‖ tag ‖ ciphertext), no whitespace, Go's key order and omissions:
 *
 *   ClientInfo (client node priv → server pub):  {"meshKey":"<64 hex>","version":2,"CanAckPings":true,
 *                                                 "IsProber":true,"AppName":"…"}
 *     meshKey omitted when zero (omitzero), version omitted when 0, CanAckPings always present, IsProber and
 *     AppName omitted when false / empty. Strings are escaped the way Go's encoding/json does (<, >, &, U+2028
 *     and U+2029 as \uXXXX).
 *   ServerInfo (server priv → client node pub):  {"version":2,"TokenBucketBytesPerSecond":n,"TokenBucketBytesBurst":n}
 *     every field omitted when 0.
 *   Decoding follows Go's json.Unmarshal into those structs: keys match case-insensitively, unknown keys are
 *   ignored, null leaves a field at its zero value, a wrong type is an error. Two small leniencies: an integral
 *   number written as 2.0 or 2e0 is accepted (Go refuses it), and integers beyond 2^53 are refused (Go takes int64).
 *
 * Limits (§5.6): a Go client refuses any received frame over 1 MiB (DerpFrameReader's default cap), a server
 * refuses packets over 64 KiB. encodeFrame refuses to build what the receiving side would refuse, and anything
 * over 1 MiB.
 *
 * Parsers, openers and DerpFrameReader.push never throw: they return `{ kind: 'malformed', reason }`. Parsed
 * fields (keys, packets, ping data) are views into the body passed to parseFrame; DerpFrameReader hands out
 * freshly allocated bodies, so frames parsed from them own their bytes (unless it was made with `lend`: then
 * bodies are views into the pushed chunks where they can be). Encoders and sealers throw only on programmer error
 * (wrong key lengths, oversized packets, out-of-range numbers).
 */
import { KEY_LEN, NONCE_LEN, open, seal } from '../crypto/nacl-box.ts';
import { keyPairFromPrivate } from '../crypto/keys.ts';
import { bytesToIp, ipToBytes, isV4Mapped, type UdpAddr } from './addr.ts';
import { bytesEqual, fromHex, toHex } from './hex.ts';

export { KEY_LEN, NONCE_LEN };

/** "DERP" + U+1F511 (🔑): the first 8 bytes of the ServerKey frame. */
export const MAGIC = new Uint8Array([0x44, 0x45, 0x52, 0x50, 0xf0, 0x9f, 0x94, 0x91]);
export const MAGIC_LEN = 8;
export const FRAME_HEADER_LEN = 5;
export const PROTOCOL_VERSION = 2;
/** Largest packet (excluding the 32-byte key) a server accepts in SendPacket / ForwardPacket. */
export const MAX_PACKET_SIZE = 64 << 10;
/** Go's MaxInfoLen: the ServerInfo box may be up to this long (plus the nonce). */
export const MAX_INFO_LEN = 1 << 20;
/** A Go client refuses (and disconnects on) any received frame whose body is longer than this. */
export const MAX_RECV_FRAME_LEN = 1 << 20;
/** The ServerKey greeting is read with a 1 KiB limit. */
export const MAX_SERVER_KEY_LEN = 1 << 10;
/** ServerKey body: magic + server key. */
export const SERVER_KEY_LEN = MAGIC_LEN + KEY_LEN; // 40
/** ClientInfo body bounds at the server: key + nonce … 256 KiB. */
export const MIN_CLIENT_INFO_LEN = KEY_LEN + NONCE_LEN; // 56
export const MAX_CLIENT_INFO_LEN = 256 << 10;
/** Ping / Pong payload. */
export const PING_LEN = 8;
/** A Tailscale server closes the connection on a Ping body longer than this (parseFrame does not enforce it). */
export const MAX_PING_LEN_AT_SERVER = 1000;
/** PeerPresent as current servers send it: key + IP(16) + port(2) + flags(1). */
export const PEER_PRESENT_LEN = KEY_LEN + 16 + 2 + 1; // 51

export const FrameType = {
  ServerKey: 0x01,
  ClientInfo: 0x02,
  ServerInfo: 0x03,
  SendPacket: 0x04,
  RecvPacket: 0x05,
  KeepAlive: 0x06,
  NotePreferred: 0x07,
  PeerGone: 0x08,
  PeerPresent: 0x09,
  ForwardPacket: 0x0a,
  WatchConns: 0x10,
  ClosePeer: 0x11,
  Ping: 0x12,
  Pong: 0x13,
  Health: 0x14,
  Restarting: 0x15,
} as const;

const KNOWN_TYPES: ReadonlySet<number> = new Set(Object.values(FrameType));

export const PeerGoneReason = {
  /** The peer, which had sent to us, left this server. Also what a reason-less (old server) frame means. */
  Disconnected: 0x00,
  /** We sent a (disco) packet to a key this server does not have. */
  NotHere: 0x01,
  /** Invented by Go's mesh watcher on disconnect; never on the wire. */
  MeshConnBroke: 0xf0,
} as const;

export const PeerPresentFlag = {
  IsRegular: 1 << 0,
  IsMeshPeer: 1 << 1,
  IsProber: 1 << 2,
  NotIdeal: 1 << 3,
} as const;

// ---------------------------------------------------------------------------------------------------------
// Frame model

export interface ServerKeyFrame {
  kind: 'server-key';
  serverPub: Uint8Array;
}
export interface ClientInfoFrame {
  kind: 'client-info';
  clientPub: Uint8Array;
  /** nonce(24) ‖ box(JSON); see sealClientInfo / openClientInfo. */
  sealed: Uint8Array;
}
export interface ServerInfoFrame {
  kind: 'server-info';
  /** nonce(24) ‖ box(JSON); see sealServerInfo / openServerInfo. */
  sealed: Uint8Array;
}
export interface SendPacketFrame {
  kind: 'send-packet';
  dst: Uint8Array;
  packet: Uint8Array;
}
export interface RecvPacketFrame {
  kind: 'recv-packet';
  src: Uint8Array;
  packet: Uint8Array;
}
export interface ForwardPacketFrame {
  kind: 'forward-packet';
  src: Uint8Array;
  dst: Uint8Array;
  packet: Uint8Array;
}
export interface KeepAliveFrame {
  kind: 'keep-alive';
}
export interface NotePreferredFrame {
  kind: 'note-preferred';
  preferred: boolean;
}
export interface PeerGoneFrame {
  kind: 'peer-gone';
  peer: Uint8Array;
  /** A PeerGoneReason value (any byte is carried through). */
  reason: number;
}
export interface PeerPresentFrame {
  kind: 'peer-present';
  peer: Uint8Array;
  /** The peer's remote address; null from old servers. A v4-mapped address is reported as IPv4. */
  addr: UdpAddr | null;
  /** PeerPresentFlag bits; null from old servers (only allowed with an address when encoding). */
  flags: number | null;
}
export interface WatchConnsFrame {
  kind: 'watch-conns';
}
export interface ClosePeerFrame {
  kind: 'close-peer';
  peer: Uint8Array;
}
export interface PingFrame {
  kind: 'ping';
  data: Uint8Array;
}
export interface PongFrame {
  kind: 'pong';
  data: Uint8Array;
}
export interface HealthFrame {
  kind: 'health';
  /** Empty = healthy again. */
  problem: string;
}
export interface RestartingFrame {
  kind: 'restarting';
  reconnectInMs: number;
  tryForMs: number;
}
/** A frame type this codec does not know; both sides skip these. */
export interface UnknownFrame {
  kind: 'unknown';
  type: number;
  body: Uint8Array;
}

export type DerpFrame =
  | ServerKeyFrame
  | ClientInfoFrame
  | ServerInfoFrame
  | SendPacketFrame
  | RecvPacketFrame
  | ForwardPacketFrame
  | KeepAliveFrame
  | NotePreferredFrame
  | PeerGoneFrame
  | PeerPresentFrame
  | WatchConnsFrame
  | ClosePeerFrame
  | PingFrame
  | PongFrame
  | HealthFrame
  | RestartingFrame
  | UnknownFrame;

export interface Malformed {
  kind: 'malformed';
  reason: string;
}

const malformed = (reason: string): Malformed => ({ kind: 'malformed', reason });

const hex2 = (n: number): string => `0x${n.toString(16).padStart(2, '0')}`;

const TYPE_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(FrameType).map(([name, t]) => [t, name]));

/** Returns a frame type's Go name ("SendPacket"), or "0x??" for unknown types (logs). */
export function frameTypeName(type: number): string {
  return TYPE_NAMES.get(type) ?? hex2(type);
}

// ---------------------------------------------------------------------------------------------------------
// Encoding

function checkKey(name: string, k: Uint8Array): void {
  if (!(k instanceof Uint8Array) || k.length !== KEY_LEN) throw new Error(`derp: ${name} must be ${KEY_LEN} bytes`);
}

function checkPacket(p: Uint8Array): void {
  if (p.length > MAX_PACKET_SIZE) throw new Error(`derp: packet of ${p.length} bytes exceeds ${MAX_PACKET_SIZE}`);
}

function checkU32(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`derp: ${name} must be a u32, got ${v}`);
}

function checkByte(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new Error(`derp: ${name} must be a byte, got ${v}`);
}

/** Writes a 5-byte frame header (for writers that send header and body separately). Throws on bad input. */
export function encodeFrameHeader(type: number, length: number): Uint8Array {
  checkByte('frame type', type);
  checkU32('frame length', length);
  const out = new Uint8Array(FRAME_HEADER_LEN);
  out[0] = type;
  new DataView(out.buffer).setUint32(1, length);
  return out;
}

/** Lays out header + parts in one buffer. */
function frameOf(type: number, ...parts: Uint8Array[]): Uint8Array {
  const len = parts.reduce((n, p) => n + p.length, 0);
  if (len > MAX_RECV_FRAME_LEN) throw new Error(`derp: ${frameTypeName(type)} body of ${len} bytes exceeds ${MAX_RECV_FRAME_LEN}`);
  const out = new Uint8Array(FRAME_HEADER_LEN + len);
  out[0] = type;
  new DataView(out.buffer).setUint32(1, len);
  let o = FRAME_HEADER_LEN;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** What a SendPacket frame adds to its packet: the 5-byte header and the 32-byte destination key. */
export const SEND_PACKET_OVERHEAD = FRAME_HEADER_LEN + KEY_LEN;

/**
 * Writes the SendPacket frame for (dst, packet) into `out` at `offset`, byte-identical to encodeFrame's, and returns
 * its length (SEND_PACKET_OVERHEAD + packet length): one copy of the packet and no allocation, for a writer that
 * gathers frames in one buffer. Throws on programmer error (key length, packet over 64 KiB, too little room).
 */
export function writeSendPacketFrame(out: Uint8Array, offset: number, dst: Uint8Array, packet: Uint8Array): number {
  if (dst.length !== KEY_LEN) throw new Error(`derp: destination key must be ${KEY_LEN} bytes`);
  checkPacket(packet);
  const len = KEY_LEN + packet.length;
  if (!Number.isInteger(offset) || offset < 0 || offset + FRAME_HEADER_LEN + len > out.length)
    throw new Error(`derp: no room for a ${FRAME_HEADER_LEN + len}-byte frame at ${offset} in ${out.length} bytes`);
  out[offset] = FrameType.SendPacket;
  out[offset + 1] = len >>> 24;
  out[offset + 2] = (len >>> 16) & 0xff;
  out[offset + 3] = (len >>> 8) & 0xff;
  out[offset + 4] = len & 0xff;
  out.set(dst, offset + FRAME_HEADER_LEN);
  out.set(packet, offset + SEND_PACKET_OVERHEAD);
  return FRAME_HEADER_LEN + len;
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { ignoreBOM: true });

/**
 * Encodes one complete frame (header ‖ body), byte-identical to what Tailscale writes. Throws on programmer
 * error: wrong key or ping lengths, packets over 64 KiB, bodies the receiver would refuse, bodies over 1 MiB,
 * an 'unknown' frame whose type is a known one.
 */
export function encodeFrame(frame: DerpFrame): Uint8Array {
  switch (frame.kind) {
    case 'server-key':
      checkKey('server key', frame.serverPub);
      return frameOf(FrameType.ServerKey, MAGIC, frame.serverPub);
    case 'client-info': {
      checkKey('client key', frame.clientPub);
      const len = KEY_LEN + frame.sealed.length;
      if (len < MIN_CLIENT_INFO_LEN || len > MAX_CLIENT_INFO_LEN)
        throw new Error(`derp: ClientInfo body of ${len} bytes outside ${MIN_CLIENT_INFO_LEN}..${MAX_CLIENT_INFO_LEN}`);
      return frameOf(FrameType.ClientInfo, frame.clientPub, frame.sealed);
    }
    case 'server-info':
      if (frame.sealed.length < NONCE_LEN) throw new Error(`derp: ServerInfo body shorter than the ${NONCE_LEN}-byte nonce`);
      return frameOf(FrameType.ServerInfo, frame.sealed);
    case 'send-packet':
      checkKey('destination key', frame.dst);
      checkPacket(frame.packet);
      return frameOf(FrameType.SendPacket, frame.dst, frame.packet);
    case 'recv-packet':
      checkKey('source key', frame.src);
      checkPacket(frame.packet);
      return frameOf(FrameType.RecvPacket, frame.src, frame.packet);
    case 'forward-packet':
      checkKey('source key', frame.src);
      checkKey('destination key', frame.dst);
      checkPacket(frame.packet);
      return frameOf(FrameType.ForwardPacket, frame.src, frame.dst, frame.packet);
    case 'keep-alive':
      return frameOf(FrameType.KeepAlive);
    case 'note-preferred':
      return frameOf(FrameType.NotePreferred, new Uint8Array([frame.preferred ? 1 : 0]));
    case 'peer-gone':
      checkKey('peer key', frame.peer);
      checkByte('PeerGone reason', frame.reason);
      return frameOf(FrameType.PeerGone, frame.peer, new Uint8Array([frame.reason]));
    case 'peer-present': {
      checkKey('peer key', frame.peer);
      if (!frame.addr) {
        if (frame.flags !== null) throw new Error('derp: PeerPresent flags need an address');
        return frameOf(FrameType.PeerPresent, frame.peer);
      }
      const ip = ipToBytes(frame.addr.ip);
      if (!ip) throw new Error(`derp: not an IP address: ${frame.addr.ip}`);
      const port = frame.addr.port;
      if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw new Error(`derp: bad port ${port}`);
      const tail = new Uint8Array(18 + (frame.flags === null ? 0 : 1));
      if (ip.length === 4) {
        tail[10] = 0xff;
        tail[11] = 0xff;
        tail.set(ip, 12);
      } else {
        tail.set(ip, 0);
      }
      tail[16] = port >> 8;
      tail[17] = port & 0xff;
      if (frame.flags !== null) {
        checkByte('PeerPresent flags', frame.flags);
        tail[18] = frame.flags;
      }
      return frameOf(FrameType.PeerPresent, frame.peer, tail);
    }
    case 'watch-conns':
      return frameOf(FrameType.WatchConns);
    case 'close-peer':
      checkKey('peer key', frame.peer);
      return frameOf(FrameType.ClosePeer, frame.peer);
    case 'ping':
    case 'pong':
      if (frame.data.length !== PING_LEN) throw new Error(`derp: ${frame.kind} data must be ${PING_LEN} bytes`);
      return frameOf(frame.kind === 'ping' ? FrameType.Ping : FrameType.Pong, frame.data);
    case 'health':
      return frameOf(FrameType.Health, textEncoder.encode(frame.problem));
    case 'restarting': {
      checkU32('reconnectInMs', frame.reconnectInMs);
      checkU32('tryForMs', frame.tryForMs);
      const b = new Uint8Array(8);
      const dv = new DataView(b.buffer);
      dv.setUint32(0, frame.reconnectInMs);
      dv.setUint32(4, frame.tryForMs);
      return frameOf(FrameType.Restarting, b);
    }
    case 'unknown':
      checkByte('frame type', frame.type);
      if (KNOWN_TYPES.has(frame.type)) throw new Error(`derp: type ${hex2(frame.type)} is a known frame type`);
      return frameOf(frame.type, frame.body);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Parsing

function shortBody(type: number, n: number, need: number): Malformed {
  return malformed(`${frameTypeName(type)} body ${n} bytes, need ${need}`);
}

function exactBody(type: number, n: number, need: number): Malformed {
  return malformed(`${frameTypeName(type)} body ${n} bytes, must be exactly ${need}`);
}

function keyAt(body: Uint8Array, off: number): Uint8Array {
  return body.subarray(off, off + KEY_LEN);
}

/**
 * Parses one frame body (header already removed) with the rules of Tailscale's receiver for that type (see the
 * table above): trailing bytes are accepted where Tailscale ignores them, unknown types give {kind:'unknown'}.
 * Returned fields are views into `body`. Never throws.
 */
export function parseFrame(type: number, body: Uint8Array): DerpFrame | Malformed {
  // Relayed packets come through here one by one: no per-call closures, and a type's name only for an error.
  const n = body.length;
  switch (type) {
    case FrameType.ServerKey:
      if (n < SERVER_KEY_LEN) return shortBody(type, n, SERVER_KEY_LEN);
      if (n > MAX_SERVER_KEY_LEN) return malformed(`ServerKey body ${n} bytes exceeds ${MAX_SERVER_KEY_LEN}`);
      if (!bytesEqual(body.subarray(0, MAGIC_LEN), MAGIC)) return malformed('ServerKey without the DERP magic');
      return { kind: 'server-key', serverPub: keyAt(body, MAGIC_LEN) };
    case FrameType.ClientInfo:
      if (n < MIN_CLIENT_INFO_LEN) return shortBody(type, n, MIN_CLIENT_INFO_LEN);
      if (n > MAX_CLIENT_INFO_LEN) return malformed(`ClientInfo body ${n} bytes exceeds ${MAX_CLIENT_INFO_LEN}`);
      return { kind: 'client-info', clientPub: keyAt(body, 0), sealed: body.subarray(KEY_LEN) };
    case FrameType.ServerInfo:
      if (n < NONCE_LEN) return shortBody(type, n, NONCE_LEN);
      if (n > NONCE_LEN + MAX_INFO_LEN) return malformed(`ServerInfo body ${n} bytes exceeds ${NONCE_LEN + MAX_INFO_LEN}`);
      return { kind: 'server-info', sealed: body };
    case FrameType.SendPacket:
    case FrameType.RecvPacket: {
      if (n < KEY_LEN) return shortBody(type, n, KEY_LEN);
      const packet = body.subarray(KEY_LEN);
      if (type === FrameType.RecvPacket) return { kind: 'recv-packet', src: keyAt(body, 0), packet };
      if (packet.length > MAX_PACKET_SIZE) return malformed(`SendPacket packet ${packet.length} bytes exceeds ${MAX_PACKET_SIZE}`);
      return { kind: 'send-packet', dst: keyAt(body, 0), packet };
    }
    case FrameType.ForwardPacket: {
      if (n < 2 * KEY_LEN) return shortBody(type, n, 2 * KEY_LEN);
      const packet = body.subarray(2 * KEY_LEN);
      if (packet.length > MAX_PACKET_SIZE) return malformed(`ForwardPacket packet ${packet.length} bytes exceeds ${MAX_PACKET_SIZE}`);
      return { kind: 'forward-packet', src: keyAt(body, 0), dst: keyAt(body, KEY_LEN), packet };
    }
    case FrameType.KeepAlive:
      return { kind: 'keep-alive' };
    case FrameType.NotePreferred:
      if (n !== 1) return exactBody(type, n, 1);
      return { kind: 'note-preferred', preferred: body[0] !== 0 };
    case FrameType.PeerGone:
      if (n < KEY_LEN) return shortBody(type, n, KEY_LEN);
      return { kind: 'peer-gone', peer: keyAt(body, 0), reason: n > KEY_LEN ? body[KEY_LEN]! : PeerGoneReason.Disconnected };
    case FrameType.PeerPresent: {
      if (n < KEY_LEN) return shortBody(type, n, KEY_LEN);
      if (n < KEY_LEN + 18) return { kind: 'peer-present', peer: keyAt(body, 0), addr: null, flags: null };
      const ip16 = body.subarray(KEY_LEN, KEY_LEN + 16);
      const ip = isV4Mapped(ip16) ? bytesToIp(ip16.subarray(12)) : bytesToIp(ip16);
      const port = (body[KEY_LEN + 16]! << 8) | body[KEY_LEN + 17]!;
      const flags = n >= PEER_PRESENT_LEN ? body[KEY_LEN + 18]! : null;
      return { kind: 'peer-present', peer: keyAt(body, 0), addr: { ip, port }, flags };
    }
    case FrameType.WatchConns:
      if (n !== 0) return exactBody(type, n, 0);
      return { kind: 'watch-conns' };
    case FrameType.ClosePeer:
      if (n !== KEY_LEN) return exactBody(type, n, KEY_LEN);
      return { kind: 'close-peer', peer: keyAt(body, 0) };
    case FrameType.Ping:
    case FrameType.Pong:
      if (n < PING_LEN) return shortBody(type, n, PING_LEN);
      return { kind: type === FrameType.Ping ? 'ping' : 'pong', data: body.subarray(0, PING_LEN) };
    case FrameType.Health:
      return { kind: 'health', problem: textDecoder.decode(body) };
    case FrameType.Restarting: {
      if (n < 8) return shortBody(type, n, 8);
      const dv = new DataView(body.buffer, body.byteOffset, 8);
      return { kind: 'restarting', reconnectInMs: dv.getUint32(0), tryForMs: dv.getUint32(4) };
    }
    default:
      if (!Number.isInteger(type) || type < 0 || type > 0xff) return malformed(`frame type ${type} is not a byte`);
      return { kind: 'unknown', type, body };
  }
}

// ---------------------------------------------------------------------------------------------------------
// Stream reader

/** One complete frame cut from the stream; parse it with parseFrame(type, body). */
export interface RawFrame {
  kind: 'frame';
  type: number;
  /** Freshly allocated and owned by the caller, unless the reader lends (see DerpFrameReaderOptions.lend). */
  body: Uint8Array;
}

export interface DerpFrameReaderOptions {
  /** Largest accepted body; a longer frame is malformed and ends the stream. Default 1 MiB (the Go client's). */
  maxFrameLen?: number;
  /**
   * Lend instead of copy: the body of a frame that lies wholly inside one pushed chunk is a view into that chunk
   * (no allocation, no copy); only a frame split across chunks is assembled in a fresh buffer. For a caller that
   * never modifies or reuses a chunk after pushing it (a socket's read buffers). Default false: every body is a copy.
   */
  lend?: boolean;
}

/**
 * Cuts a DERP byte stream (TCP/TLS reads, WebSocket messages) into frames, however the bytes are chunked.
 * A header announcing more than `maxFrameLen` body bytes yields one {kind:'malformed'} and the reader is dead
 * from then on (the stream cannot be resynchronised; Go closes the connection): every later push returns that
 * same result again. push never throws.
 */
export class DerpFrameReader {
  readonly maxFrameLen: number;
  private readonly lend: boolean;
  private readonly header = new Uint8Array(FRAME_HEADER_LEN);
  private headerFill = 0;
  private type = 0;
  private body: Uint8Array | null = null;
  private bodyFill = 0;
  private failure: Malformed | null = null;

  constructor(opts: DerpFrameReaderOptions = {}) {
    const max = opts.maxFrameLen ?? MAX_RECV_FRAME_LEN;
    checkU32('maxFrameLen', max);
    this.maxFrameLen = max;
    this.lend = opts.lend ?? false;
  }

  /** The sticky failure, or null while the stream is healthy. */
  get error(): Malformed | null {
    return this.failure;
  }

  /** Bytes held for the frame in progress (header and body so far). */
  get buffered(): number {
    return this.headerFill + this.bodyFill;
  }

  /** Feeds bytes; returns every frame completed by them, in order, then a malformed result if one occurred. */
  push(chunk: Uint8Array): (RawFrame | Malformed)[] {
    if (this.failure) return [this.failure];
    const out: (RawFrame | Malformed)[] = [];
    let i = 0;
    while (i < chunk.length) {
      if (this.lend && !this.body && this.headerFill === 0 && chunk.length - i >= FRAME_HEADER_LEN) {
        // A whole header here: parse it in place, and lend the body if the chunk holds all of it.
        const type = chunk[i]!;
        const len = ((chunk[i + 1]! << 24) | (chunk[i + 2]! << 16) | (chunk[i + 3]! << 8) | chunk[i + 4]!) >>> 0;
        if (len > this.maxFrameLen) {
          this.failure = malformed(`${frameTypeName(type)} frame of ${len} bytes exceeds the ${this.maxFrameLen}-byte limit`);
          out.push(this.failure);
          return out;
        }
        const start = i + FRAME_HEADER_LEN;
        if (chunk.length - start >= len) {
          out.push({ kind: 'frame', type, body: chunk.subarray(start, start + len) });
          i = start + len;
          continue;
        }
        this.type = type;
        this.headerFill = FRAME_HEADER_LEN;
        this.body = new Uint8Array(len);
        this.bodyFill = 0;
        i = start;
      }
      if (!this.body) {
        const take = Math.min(FRAME_HEADER_LEN - this.headerFill, chunk.length - i);
        this.header.set(chunk.subarray(i, i + take), this.headerFill);
        this.headerFill += take;
        i += take;
        if (this.headerFill < FRAME_HEADER_LEN) break;
        this.type = this.header[0]!;
        const len = ((this.header[1]! << 24) | (this.header[2]! << 16) | (this.header[3]! << 8) | this.header[4]!) >>> 0;
        if (len > this.maxFrameLen) {
          this.failure = malformed(`${frameTypeName(this.type)} frame of ${len} bytes exceeds the ${this.maxFrameLen}-byte limit`);
          out.push(this.failure);
          return out;
        }
        this.body = new Uint8Array(len);
        this.bodyFill = 0;
      }
      const take = Math.min(this.body.length - this.bodyFill, chunk.length - i);
      this.body.set(chunk.subarray(i, i + take), this.bodyFill);
      this.bodyFill += take;
      i += take;
      if (this.bodyFill < this.body.length) break;
      out.push({ kind: 'frame', type: this.type, body: this.body });
      this.body = null;
      this.bodyFill = 0;
      this.headerFill = 0;
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Handshake JSON (Go encoding/json compatible)

/** What a client says about itself in ClientInfo. */
export interface DerpClientInfo {
  /** PROTOCOL_VERSION (2) for real clients; 0 is omitted from the JSON. */
  version: number;
  /** magicsock sends true: the client answers server Pings. */
  canAckPings: boolean;
  /** 32-byte mesh key of a trusted DERP mesh peer; null / absent / all-zero = none (omitted). */
  meshKey?: Uint8Array | null;
  isProber?: boolean;
  /** Opaque app name for server stats; omitted when empty. */
  appName?: string;
}

/** What the server says in ServerInfo. A non-zero rate asks the client to drop what exceeds it (§5.3). */
export interface DerpServerInfo {
  version: number;
  tokenBucketBytesPerSecond: number;
  tokenBucketBytesBurst: number;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Quotes a string exactly as Go's json.Marshal does (HTML-safe escapes, U+2028/9 escaped, bad UTF-16 → U+FFFD). */
export function goJsonString(s: string): string {
  return JSON.stringify(s.replace(LONE_SURROGATE, '\uFFFD')).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function goJsonInt(name: string, v: number): string {
  if (!Number.isSafeInteger(v)) throw new Error(`derp: ${name} must be an integer, got ${v}`);
  return String(v);
}

/** The ClientInfo JSON bytes, byte-identical to Go's json.Marshal(derp.ClientInfo{…}). Throws on bad input. */
export function encodeClientInfoJson(info: DerpClientInfo): Uint8Array {
  const parts: string[] = [];
  if (info.meshKey) {
    checkKey('mesh key', info.meshKey);
    if (info.meshKey.some((b) => b !== 0)) parts.push(`"meshKey":"${toHex(info.meshKey)}"`);
  }
  if (info.version !== 0) parts.push(`"version":${goJsonInt('version', info.version)}`);
  parts.push(`"CanAckPings":${info.canAckPings ? 'true' : 'false'}`);
  if (info.isProber) parts.push('"IsProber":true');
  if (info.appName) parts.push(`"AppName":${goJsonString(info.appName)}`);
  return textEncoder.encode(`{${parts.join(',')}}`);
}

/** The ServerInfo JSON bytes, byte-identical to Go's json.Marshal(derp.ServerInfo{…}). Throws on bad input. */
export function encodeServerInfoJson(info: DerpServerInfo): Uint8Array {
  const parts: string[] = [];
  if (info.version !== 0) parts.push(`"version":${goJsonInt('version', info.version)}`);
  if (info.tokenBucketBytesPerSecond !== 0)
    parts.push(`"TokenBucketBytesPerSecond":${goJsonInt('tokenBucketBytesPerSecond', info.tokenBucketBytesPerSecond)}`);
  if (info.tokenBucketBytesBurst !== 0) parts.push(`"TokenBucketBytesBurst":${goJsonInt('tokenBucketBytesBurst', info.tokenBucketBytesBurst)}`);
  return textEncoder.encode(`{${parts.join(',')}}`);
}

type GoField = 'int' | 'bool' | 'string' | 'meshKey';
type GoValue = number | boolean | string | Uint8Array;

/** Go's case-insensitive key match (bytes.EqualFold), enough for ASCII field names: ſ ≡ s, K (Kelvin) ≡ k. */
function foldKey(k: string): string {
  return k.replace(/\u017f/g, 's').replace(/\u212a/g, 'k').replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/** Decodes a JSON object the way Go's json.Unmarshal fills a struct with these fields. Never throws. */
function decodeGoStruct(b: Uint8Array, what: string, fields: Record<string, GoField>): Map<string, GoValue> | Malformed {
  let v: unknown;
  try {
    v = JSON.parse(textDecoder.decode(b));
  } catch {
    return malformed(`${what}: invalid JSON`);
  }
  const out = new Map<string, GoValue>();
  if (v === null) return out; // Go: unmarshalling null into a struct is a no-op
  if (typeof v !== 'object' || Array.isArray(v)) return malformed(`${what}: JSON is not an object`);
  const byFold = new Map(Object.keys(fields).map((f) => [foldKey(f), f]));
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    const field = byFold.get(foldKey(k));
    if (field === undefined) continue;
    const type = fields[field]!;
    if (type === 'meshKey') {
      // key.DERPMesh.UnmarshalJSON: anything but a 64-hex-digit string (null included) is an error.
      if (typeof val !== 'string' || !/^[0-9a-fA-F]{64}$/.test(val)) return malformed(`${what}: ${k} is not a 64-hex-digit mesh key`);
      out.set(field, fromHex(val));
      continue;
    }
    if (val === null) continue;
    if (type === 'int') {
      if (typeof val !== 'number' || !Number.isSafeInteger(val)) return malformed(`${what}: ${k} is not an integer`);
    } else if (type === 'bool') {
      if (typeof val !== 'boolean') return malformed(`${what}: ${k} is not a boolean`);
    } else if (typeof val !== 'string') {
      return malformed(`${what}: ${k} is not a string`);
    }
    out.set(field, typeof val === 'string' ? val.replace(LONE_SURROGATE, '\uFFFD') : val);
  }
  return out;
}

/** Parses ClientInfo JSON as a Go server does. All fields come back present (meshKey null when absent). */
export function parseClientInfoJson(b: Uint8Array): Required<DerpClientInfo> | Malformed {
  const m = decodeGoStruct(b, 'ClientInfo', { meshKey: 'meshKey', version: 'int', CanAckPings: 'bool', IsProber: 'bool', AppName: 'string' });
  if (m instanceof Map) {
    const meshKey = m.get('meshKey');
    return {
      version: (m.get('version') as number | undefined) ?? 0,
      canAckPings: (m.get('CanAckPings') as boolean | undefined) ?? false,
      meshKey: meshKey instanceof Uint8Array && meshKey.some((x) => x !== 0) ? meshKey : null,
      isProber: (m.get('IsProber') as boolean | undefined) ?? false,
      appName: (m.get('AppName') as string | undefined) ?? '',
    };
  }
  return m;
}

/** Parses ServerInfo JSON as a Go client does. */
export function parseServerInfoJson(b: Uint8Array): DerpServerInfo | Malformed {
  const m = decodeGoStruct(b, 'ServerInfo', { version: 'int', TokenBucketBytesPerSecond: 'int', TokenBucketBytesBurst: 'int' });
  if (m instanceof Map) {
    return {
      version: (m.get('version') as number | undefined) ?? 0,
      tokenBucketBytesPerSecond: (m.get('TokenBucketBytesPerSecond') as number | undefined) ?? 0,
      tokenBucketBytesBurst: (m.get('TokenBucketBytesBurst') as number | undefined) ?? 0,
    };
  }
  return m;
}

// ---------------------------------------------------------------------------------------------------------
// Handshake boxes

export interface SealClientInfoInput {
  /** Our node private key (the DERP identity); its public key goes in clear in the frame. */
  clientPriv: Uint8Array;
  /** From the ServerKey frame (or the TLS metacert in fast start). */
  serverPub: Uint8Array;
  info: DerpClientInfo;
  /** Fixed nonce for tests and vectors; random when omitted. */
  nonce?: Uint8Array;
}

/** Client side: builds the ClientInfo frame (client pub ‖ nonce ‖ box(JSON)). Throws on programmer error. */
export function sealClientInfo({ clientPriv, serverPub, info, nonce }: SealClientInfoInput): ClientInfoFrame {
  checkKey('client private key', clientPriv);
  checkKey('server public key', serverPub);
  const clientPub = keyPairFromPrivate(clientPriv).pub;
  return { kind: 'client-info', clientPub, sealed: seal(serverPub, clientPriv, encodeClientInfoJson(info), nonce) };
}

export interface OpenedClientInfo {
  kind: 'opened';
  /** The client's node public key: proven by the box, the address the server files this connection under. */
  clientPub: Uint8Array;
  info: Required<DerpClientInfo>;
}

/** Server side: opens a ClientInfo frame with the server's private key. Never throws. */
export function openClientInfo({ serverPriv, frame }: { serverPriv: Uint8Array; frame: ClientInfoFrame }): OpenedClientInfo | Malformed {
  if (serverPriv.length !== KEY_LEN || frame.clientPub.length !== KEY_LEN) return malformed('ClientInfo: bad key length');
  const json = open(frame.clientPub, serverPriv, frame.sealed);
  if (!json) return malformed('ClientInfo: box did not open with the client key');
  const info = parseClientInfoJson(json);
  if ('reason' in info) return info;
  return { kind: 'opened', clientPub: frame.clientPub, info };
}

export interface SealServerInfoInput {
  serverPriv: Uint8Array;
  /** The client's node public key from its (opened) ClientInfo. */
  clientPub: Uint8Array;
  info: DerpServerInfo;
  nonce?: Uint8Array;
}

/** Server side: builds the ServerInfo frame (nonce ‖ box(JSON)). Throws on programmer error. */
export function sealServerInfo({ serverPriv, clientPub, info, nonce }: SealServerInfoInput): ServerInfoFrame {
  checkKey('server private key', serverPriv);
  checkKey('client public key', clientPub);
  return { kind: 'server-info', sealed: seal(clientPub, serverPriv, encodeServerInfoJson(info), nonce) };
}

export interface OpenedServerInfo {
  kind: 'opened';
  info: DerpServerInfo;
}

/** Client side: opens the ServerInfo frame (Go parseServerInfo). Never throws. */
export function openServerInfo({
  clientPriv,
  serverPub,
  frame,
}: {
  clientPriv: Uint8Array;
  serverPub: Uint8Array;
  frame: ServerInfoFrame;
}): OpenedServerInfo | Malformed {
  if (clientPriv.length !== KEY_LEN || serverPub.length !== KEY_LEN) return malformed('ServerInfo: bad key length');
  const json = open(serverPub, clientPriv, frame.sealed);
  if (!json) return malformed('ServerInfo: box did not open with the server key');
  const info = parseServerInfoJson(json);
  if ('reason' in info) return info;
  return { kind: 'opened', info };
}
