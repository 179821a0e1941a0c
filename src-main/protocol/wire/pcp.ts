/**
 * PCP (Port Control Protocol, RFC 6887) codec for the ANNOUNCE and MAP opcodes. Pure; no Node APIs.
 * Integers are big-endian. Addresses are always 16 bytes; IPv4 travels as IPv4-mapped IPv6 (::ffff:a.b.c.d).
 *
 * Request header (24 bytes):
 *    0               1               2               3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +---------------+-+-------------+-------------------------------+
 *   |  Version = 2  |R|   Opcode    |         Reserved (0)          |  R = 0 in requests
 *   +---------------+-+-------------+-------------------------------+
 *   |                 Requested Lifetime (32 bits)                  |  0 for ANNOUNCE
 *   +---------------------------------------------------------------+
 *   |            PCP Client's IP Address (128 bits)                 |  bytes 8..23
 *   +---------------------------------------------------------------+
 *
 * Response header (24 bytes):
 *   +---------------+-+-------------+---------------+---------------+
 *   |  Version = 2  |R|   Opcode    |   Reserved    |  Result Code  |  R = 1 in responses
 *   +---------------+-+-------------+---------------+---------------+
 *   |                      Lifetime (32 bits)                       |  bytes 4..7
 *   +---------------------------------------------------------------+
 *   |                     Epoch Time (32 bits)                      |  bytes 8..11
 *   +---------------------------------------------------------------+
 *   |                      Reserved (96 bits)                       |  bytes 12..23
 *   +---------------------------------------------------------------+
 *
 * MAP opcode body (36 bytes, follows either header; total 60 bytes):
 *   +---------------------------------------------------------------+
 *   |                 Mapping Nonce (96 bits)                       |  +0..+11
 *   +---------------+-----------------------------------------------+
 *   |   Protocol    |          Reserved (24 bits)                   |  +12, +13..+15
 *   +---------------+---------------+-------------------------------+
 *   |        Internal Port          |  (Suggested|Assigned) Ext Port|  +16, +18
 *   +-------------------------------+-------------------------------+
 *   |   (Suggested|Assigned) External IP Address (128 bits)         |  +20..+35
 *   +---------------------------------------------------------------+
 *
 * ANNOUNCE has no opcode body. PCP options after the body are ignored (trailing bytes are accepted).
 * An error response to MAP is supposed to echo the MAP body; a response that carries only the 24-byte
 * header with a non-zero result is reported as `errorResponse`.
 */
import { bytesToIp, ipToBytes, isV4Mapped } from './addr.ts';

export const PCP_PORT = 5351;
export const PCP_VERSION = 2;
export const PCP_OP_ANNOUNCE = 0;
export const PCP_OP_MAP = 1;
export const PCP_RESPONSE_BIT = 0x80;
export const PCP_PROTO_UDP = 17;
export const PCP_PROTO_TCP = 6;
export const PCP_NONCE_LEN = 12;
/** Maximum PCP message size (RFC 6887 §7). */
export const PCP_MAX_MESSAGE = 1100;

/** Result codes (RFC 6887 §7.4). */
export const PcpResult = {
  SUCCESS: 0,
  UNSUPP_VERSION: 1,
  NOT_AUTHORIZED: 2,
  MALFORMED_REQUEST: 3,
  UNSUPP_OPCODE: 4,
  UNSUPP_OPTION: 5,
  MALFORMED_OPTION: 6,
  NETWORK_FAILURE: 7,
  NO_RESOURCES: 8,
  UNSUPP_PROTOCOL: 9,
  USER_EX_QUOTA: 10,
  CANNOT_PROVIDE_EXTERNAL: 11,
  ADDRESS_MISMATCH: 12,
  EXCESSIVE_REMOTE_PEERS: 13,
} as const;

const RESULT_TEXT: Record<number, string> = {
  0: 'SUCCESS',
  1: 'UNSUPP_VERSION',
  2: 'NOT_AUTHORIZED',
  3: 'MALFORMED_REQUEST',
  4: 'UNSUPP_OPCODE',
  5: 'UNSUPP_OPTION',
  6: 'MALFORMED_OPTION',
  7: 'NETWORK_FAILURE',
  8: 'NO_RESOURCES',
  9: 'UNSUPP_PROTOCOL',
  10: 'USER_EX_QUOTA',
  11: 'CANNOT_PROVIDE_EXTERNAL',
  12: 'ADDRESS_MISMATCH (PCP server is behind another NAT or saw a different client address)',
  13: 'EXCESSIVE_REMOTE_PEERS',
};

/** Human-readable name for a PCP result code. */
export function pcpResultText(code: number): string {
  return RESULT_TEXT[code] ?? `unknown result code ${code}`;
}

// Named offsets: common header.
const OFF_VERSION = 0;
const OFF_OPCODE = 1;
const OFF_RESULT = 3; // response only
const OFF_LIFETIME = 4;
const OFF_REQ_CLIENT_IP = 8;
const OFF_RESP_EPOCH = 8;
const HEADER_LEN = 24;
// MAP body, relative to the start of the message.
const OFF_MAP_NONCE = 24;
const OFF_MAP_PROTOCOL = 36;
const OFF_MAP_INTERNAL_PORT = 40;
const OFF_MAP_EXTERNAL_PORT = 42;
const OFF_MAP_EXTERNAL_IP = 44;
const MAP_LEN = 60;

export interface PcpMalformed {
  kind: 'malformed';
  reason: string;
}

export interface PcpAnnounceRequest {
  kind: 'announceRequest';
  /** Our IP address as seen on the link to the PCP server (IPv4 dotted quad or IPv6). */
  clientIp: string;
}

export interface PcpMapRequest {
  kind: 'mapRequest';
  clientIp: string;
  /** 0 = delete the mapping. */
  lifetimeS: number;
  /** 12 random bytes identifying the mapping; reuse it to renew or delete. */
  nonce: Uint8Array;
  /** IANA protocol number: 17 UDP, 6 TCP. */
  protocol: number;
  internalPort: number;
  /** 0 = no preference. */
  suggestedExternalPort: number;
  /** '0.0.0.0' (sent as ::ffff:0.0.0.0) = no preference. */
  suggestedExternalIp: string;
}

export type PcpRequest = PcpAnnounceRequest | PcpMapRequest;

interface PcpResponseHeader {
  resultCode: number;
  lifetimeS: number;
  /** Seconds since the server's state was (re)initialised. */
  epoch: number;
}

export interface PcpAnnounceResponse extends PcpResponseHeader {
  kind: 'announceResponse';
}

export interface PcpMapResponse extends PcpResponseHeader {
  kind: 'mapResponse';
  nonce: Uint8Array;
  protocol: number;
  internalPort: number;
  externalPort: number;
  /** Dotted quad when the address is IPv4-mapped, else IPv6 text. */
  externalIp: string;
}

/**
 * A non-success response whose opcode body is absent or unknown, e.g. a MAP error that carried only the
 * 24-byte header, or UNSUPP_OPCODE for an opcode this codec does not know.
 */
export interface PcpErrorResponse extends PcpResponseHeader {
  kind: 'errorResponse';
  opcode: number;
}

export type PcpResponse = PcpAnnounceResponse | PcpMapResponse | PcpErrorResponse;

/** Returns 16 address bytes for an IPv4 (mapped) or IPv6 address, or null. */
export function pcpAddrBytes(ip: string): Uint8Array | null {
  const b = ipToBytes(ip);
  if (!b) return null;
  if (b.length === 16) return b;
  const out = new Uint8Array(16);
  out[10] = 0xff;
  out[11] = 0xff;
  out.set(b, 12);
  return out;
}

/** Formats 16 PCP address bytes: dotted quad if IPv4-mapped, else IPv6 text. */
export function pcpAddrText(b: Uint8Array): string {
  return isV4Mapped(b) ? bytesToIp(b.subarray(12, 16)) : bytesToIp(b);
}

function checkUint(name: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`pcp: ${name} out of range: ${v}`);
}

function putAddr(out: Uint8Array, off: number, name: string, ip: string): void {
  const b = pcpAddrBytes(ip);
  if (!b) throw new RangeError(`pcp: bad ${name} ${ip}`);
  out.set(b, off);
}

function putMapBody(out: Uint8Array, dv: DataView, m: Omit<PcpMapRequest, 'kind' | 'clientIp' | 'lifetimeS'>, extIpName: string): void {
  if (m.nonce.length !== PCP_NONCE_LEN) throw new RangeError(`pcp: nonce must be ${PCP_NONCE_LEN} bytes`);
  checkUint('protocol', m.protocol, 0xff);
  checkUint('internalPort', m.internalPort, 0xffff);
  checkUint('externalPort', m.suggestedExternalPort, 0xffff);
  out.set(m.nonce, OFF_MAP_NONCE);
  dv.setUint8(OFF_MAP_PROTOCOL, m.protocol);
  dv.setUint16(OFF_MAP_INTERNAL_PORT, m.internalPort);
  dv.setUint16(OFF_MAP_EXTERNAL_PORT, m.suggestedExternalPort);
  putAddr(out, OFF_MAP_EXTERNAL_IP, extIpName, m.suggestedExternalIp);
}

/** Encodes a request. Throws RangeError on out-of-range fields or bad addresses (a programming error). */
export function encodePcpRequest(msg: PcpRequest): Uint8Array {
  const out = new Uint8Array(msg.kind === 'mapRequest' ? MAP_LEN : HEADER_LEN);
  const dv = new DataView(out.buffer);
  dv.setUint8(OFF_VERSION, PCP_VERSION);
  dv.setUint8(OFF_OPCODE, msg.kind === 'mapRequest' ? PCP_OP_MAP : PCP_OP_ANNOUNCE);
  putAddr(out, OFF_REQ_CLIENT_IP, 'client IP', msg.clientIp);
  if (msg.kind === 'mapRequest') {
    checkUint('lifetimeS', msg.lifetimeS, 0xffffffff);
    dv.setUint32(OFF_LIFETIME, msg.lifetimeS);
    putMapBody(out, dv, msg, 'suggested external IP');
  }
  return out;
}

/** Parses a request (used by test servers). Never throws; accepts trailing bytes. */
export function parsePcpRequest(bytes: Uint8Array): PcpRequest | PcpMalformed {
  if (bytes.length < HEADER_LEN) return { kind: 'malformed', reason: 'too short' };
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint8(OFF_VERSION);
  if (version !== PCP_VERSION) return { kind: 'malformed', reason: `unsupported version ${version}` };
  const op = dv.getUint8(OFF_OPCODE);
  if (op & PCP_RESPONSE_BIT) return { kind: 'malformed', reason: 'is a response' };
  const clientIp = pcpAddrText(bytes.subarray(OFF_REQ_CLIENT_IP, OFF_REQ_CLIENT_IP + 16));
  if (op === PCP_OP_ANNOUNCE) return { kind: 'announceRequest', clientIp };
  if (op !== PCP_OP_MAP) return { kind: 'malformed', reason: `unsupported opcode ${op}` };
  if (bytes.length < MAP_LEN) return { kind: 'malformed', reason: 'MAP request too short' };
  return {
    kind: 'mapRequest',
    clientIp,
    lifetimeS: dv.getUint32(OFF_LIFETIME),
    nonce: bytes.slice(OFF_MAP_NONCE, OFF_MAP_NONCE + PCP_NONCE_LEN),
    protocol: dv.getUint8(OFF_MAP_PROTOCOL),
    internalPort: dv.getUint16(OFF_MAP_INTERNAL_PORT),
    suggestedExternalPort: dv.getUint16(OFF_MAP_EXTERNAL_PORT),
    suggestedExternalIp: pcpAddrText(bytes.subarray(OFF_MAP_EXTERNAL_IP, OFF_MAP_EXTERNAL_IP + 16)),
  };
}

/** Encodes a response (used by test servers). Throws RangeError on bad fields. */
export function encodePcpResponse(msg: PcpResponse): Uint8Array {
  checkUint('resultCode', msg.resultCode, 0xff);
  checkUint('lifetimeS', msg.lifetimeS, 0xffffffff);
  checkUint('epoch', msg.epoch, 0xffffffff);
  const out = new Uint8Array(msg.kind === 'mapResponse' ? MAP_LEN : HEADER_LEN);
  const dv = new DataView(out.buffer);
  let op: number;
  if (msg.kind === 'mapResponse') op = PCP_OP_MAP;
  else if (msg.kind === 'announceResponse') op = PCP_OP_ANNOUNCE;
  else {
    if (msg.resultCode === PcpResult.SUCCESS) throw new RangeError('pcp: an errorResponse must carry an error');
    checkUint('opcode', msg.opcode, 0x7f);
    // A header-only ANNOUNCE reply is an announceResponse; encode it as one.
    if (msg.opcode === PCP_OP_ANNOUNCE) throw new RangeError('pcp: use announceResponse for ANNOUNCE');
    op = msg.opcode;
  }
  dv.setUint8(OFF_VERSION, PCP_VERSION);
  dv.setUint8(OFF_OPCODE, PCP_RESPONSE_BIT | op);
  dv.setUint8(OFF_RESULT, msg.resultCode);
  dv.setUint32(OFF_LIFETIME, msg.lifetimeS);
  dv.setUint32(OFF_RESP_EPOCH, msg.epoch);
  if (msg.kind === 'mapResponse') {
    putMapBody(
      out,
      dv,
      {
        nonce: msg.nonce,
        protocol: msg.protocol,
        internalPort: msg.internalPort,
        suggestedExternalPort: msg.externalPort,
        suggestedExternalIp: msg.externalIp,
      },
      'external IP',
    );
  }
  return out;
}

/** Parses a response from the PCP server. Never throws; accepts trailing bytes (options). */
export function parsePcpResponse(bytes: Uint8Array): PcpResponse | PcpMalformed {
  if (bytes.length < HEADER_LEN) return { kind: 'malformed', reason: 'too short' };
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint8(OFF_VERSION);
  if (version !== PCP_VERSION) return { kind: 'malformed', reason: `unsupported version ${version}` };
  const rop = dv.getUint8(OFF_OPCODE);
  if (!(rop & PCP_RESPONSE_BIT)) return { kind: 'malformed', reason: 'is a request' };
  const opcode = rop & ~PCP_RESPONSE_BIT;
  const header: PcpResponseHeader = {
    resultCode: dv.getUint8(OFF_RESULT),
    lifetimeS: dv.getUint32(OFF_LIFETIME),
    epoch: dv.getUint32(OFF_RESP_EPOCH),
  };
  if (opcode === PCP_OP_ANNOUNCE) return { kind: 'announceResponse', ...header };
  if (opcode === PCP_OP_MAP && bytes.length >= MAP_LEN) {
    return {
      kind: 'mapResponse',
      ...header,
      nonce: bytes.slice(OFF_MAP_NONCE, OFF_MAP_NONCE + PCP_NONCE_LEN),
      protocol: dv.getUint8(OFF_MAP_PROTOCOL),
      internalPort: dv.getUint16(OFF_MAP_INTERNAL_PORT),
      externalPort: dv.getUint16(OFF_MAP_EXTERNAL_PORT),
      externalIp: pcpAddrText(bytes.subarray(OFF_MAP_EXTERNAL_IP, OFF_MAP_EXTERNAL_IP + 16)),
    };
  }
  if (header.resultCode !== PcpResult.SUCCESS) return { kind: 'errorResponse', opcode, ...header };
  if (opcode === PCP_OP_MAP) return { kind: 'malformed', reason: 'MAP response too short' };
  return { kind: 'malformed', reason: `unsupported opcode ${opcode}` };
}
