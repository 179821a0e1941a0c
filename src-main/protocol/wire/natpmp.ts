/**
 * NAT-PMP (RFC 6886) codec. Pure; no Node APIs. All integers are big-endian (network order).
 *
 * Requests (client -> gateway:5351):
 *
 *   External address request (2 bytes)
 *    0               1
 *   +---------------+---------------+
 *   | Vers = 0      | OP = 0        |
 *   +---------------+---------------+
 *
 *   Map request (12 bytes), OP = 1 (UDP) or 2 (TCP)
 *    0               1               2               3
 *   +---------------+---------------+-------------------------------+
 *   | Vers = 0      | OP = 1|2      | Reserved (0)                  |
 *   +---------------+---------------+-------------------------------+
 *   | Internal Port                 | Suggested External Port       |
 *   +-------------------------------+-------------------------------+
 *   | Requested Port Mapping Lifetime in Seconds                    |
 *   +---------------------------------------------------------------+
 *
 * Responses (gateway -> client), OP = 128 + request OP:
 *
 *   External address response (12 bytes)
 *   +---------------+---------------+-------------------------------+
 *   | Vers = 0      | OP = 128      | Result Code                   |
 *   +---------------+---------------+-------------------------------+
 *   | Seconds Since Start of Epoch                                  |
 *   +---------------------------------------------------------------+
 *   | External IPv4 Address (a.b.c.d)                               |
 *   +---------------------------------------------------------------+
 *
 *   Map response (16 bytes), OP = 129 (UDP) or 130 (TCP)
 *   +---------------+---------------+-------------------------------+
 *   | Vers = 0      | OP = 129|130  | Result Code                   |
 *   +---------------+---------------+-------------------------------+
 *   | Seconds Since Start of Epoch                                  |
 *   +-------------------------------+-------------------------------+
 *   | Internal Port                 | Mapped External Port          |
 *   +-------------------------------+-------------------------------+
 *   | Port Mapping Lifetime in Seconds                              |
 *   +---------------------------------------------------------------+
 *
 * Error responses may be only the first 8 bytes (version, opcode, result code, epoch): RFC 6886 §3.5 has
 * the "unsupported version" reply carry just that, and a NAT-PMP server answering a PCP packet (version 2)
 * does the same. The parser therefore accepts an 8-byte response when the result code is non-zero and
 * reports the missing fields as zero / null. Trailing bytes are ignored.
 */
import { bytesToIp, ipv4ToBytes } from './addr.ts';

export const NATPMP_PORT = 5351;
export const NATPMP_VERSION = 0;

/** Request opcodes; a response's opcode is this + 128. */
export const NATPMP_OP_EXTERNAL_ADDRESS = 0;
export const NATPMP_OP_MAP_UDP = 1;
export const NATPMP_OP_MAP_TCP = 2;
export const NATPMP_RESPONSE_BIT = 0x80;

/** Result codes (RFC 6886 §3.5). */
export const NatPmpResult = {
  SUCCESS: 0,
  UNSUPPORTED_VERSION: 1,
  NOT_AUTHORIZED: 2,
  NETWORK_FAILURE: 3,
  OUT_OF_RESOURCES: 4,
  UNSUPPORTED_OPCODE: 5,
} as const;

const RESULT_TEXT: Record<number, string> = {
  0: 'success',
  1: 'unsupported version',
  2: 'not authorized/refused',
  3: 'network failure (gateway has no usable external address, e.g. behind carrier-grade NAT)',
  4: 'out of resources',
  5: 'unsupported opcode',
};

/** Human-readable text for a NAT-PMP result code. */
export function natpmpResultText(code: number): string {
  return RESULT_TEXT[code] ?? `unknown result code ${code}`;
}

// Named offsets.
const OFF_VERSION = 0;
const OFF_OPCODE = 1;
const OFF_RESERVED = 2; // requests: reserved u16
const OFF_RESULT = 2; // responses: result code u16
const OFF_REQ_INTERNAL_PORT = 4;
const OFF_REQ_SUGGESTED_PORT = 6;
const OFF_REQ_LIFETIME = 8;
const OFF_RESP_EPOCH = 4;
const OFF_RESP_EXTERNAL_IP = 8;
const OFF_RESP_INTERNAL_PORT = 8;
const OFF_RESP_MAPPED_PORT = 10;
const OFF_RESP_LIFETIME = 12;

const LEN_EXTERNAL_ADDRESS_REQUEST = 2;
const LEN_MAP_REQUEST = 12;
const LEN_ERROR_RESPONSE = 8;
const LEN_EXTERNAL_ADDRESS_RESPONSE = 12;
const LEN_MAP_RESPONSE = 16;

export type NatPmpProtocol = 'udp' | 'tcp';

export interface NatPmpMalformed {
  kind: 'malformed';
  reason: string;
}

export interface NatPmpExternalAddressRequest {
  kind: 'externalAddressRequest';
}

export interface NatPmpMapRequest {
  kind: 'mapRequest';
  protocol: NatPmpProtocol;
  internalPort: number;
  /** 0 = no preference. */
  suggestedExternalPort: number;
  /** 0 = delete the mapping. */
  lifetimeS: number;
}

export type NatPmpRequest = NatPmpExternalAddressRequest | NatPmpMapRequest;

export interface NatPmpExternalAddressResponse {
  kind: 'externalAddressResponse';
  resultCode: number;
  /** Seconds since the gateway's mapping table was (re)initialised. */
  epoch: number;
  /** Dotted quad; null when the response was a short (8-byte) error response. */
  externalIp: string | null;
}

export interface NatPmpMapResponse {
  kind: 'mapResponse';
  protocol: NatPmpProtocol;
  resultCode: number;
  epoch: number;
  /** The following are 0 when the response was a short (8-byte) error response. */
  internalPort: number;
  externalPort: number;
  lifetimeS: number;
}

export type NatPmpResponse = NatPmpExternalAddressResponse | NatPmpMapResponse;

function checkU16(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError(`natpmp: ${name} out of range: ${v}`);
}

function checkU32(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`natpmp: ${name} out of range: ${v}`);
}

function protocolOpcode(p: NatPmpProtocol): number {
  return p === 'udp' ? NATPMP_OP_MAP_UDP : NATPMP_OP_MAP_TCP;
}

/** Encodes a request. Throws RangeError on out-of-range fields (a programming error). */
export function encodeNatPmpRequest(msg: NatPmpRequest): Uint8Array {
  if (msg.kind === 'externalAddressRequest') {
    const out = new Uint8Array(LEN_EXTERNAL_ADDRESS_REQUEST);
    out[OFF_VERSION] = NATPMP_VERSION;
    out[OFF_OPCODE] = NATPMP_OP_EXTERNAL_ADDRESS;
    return out;
  }
  checkU16('internalPort', msg.internalPort);
  checkU16('suggestedExternalPort', msg.suggestedExternalPort);
  checkU32('lifetimeS', msg.lifetimeS);
  const out = new Uint8Array(LEN_MAP_REQUEST);
  const dv = new DataView(out.buffer);
  dv.setUint8(OFF_VERSION, NATPMP_VERSION);
  dv.setUint8(OFF_OPCODE, protocolOpcode(msg.protocol));
  dv.setUint16(OFF_RESERVED, 0);
  dv.setUint16(OFF_REQ_INTERNAL_PORT, msg.internalPort);
  dv.setUint16(OFF_REQ_SUGGESTED_PORT, msg.suggestedExternalPort);
  dv.setUint32(OFF_REQ_LIFETIME, msg.lifetimeS);
  return out;
}

/** Parses a request (used by test servers). Never throws. */
export function parseNatPmpRequest(bytes: Uint8Array): NatPmpRequest | NatPmpMalformed {
  if (bytes.length < LEN_EXTERNAL_ADDRESS_REQUEST) return { kind: 'malformed', reason: 'too short' };
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint8(OFF_VERSION);
  if (version !== NATPMP_VERSION) return { kind: 'malformed', reason: `unsupported version ${version}` };
  const op = dv.getUint8(OFF_OPCODE);
  if (op & NATPMP_RESPONSE_BIT) return { kind: 'malformed', reason: 'is a response' };
  if (op === NATPMP_OP_EXTERNAL_ADDRESS) return { kind: 'externalAddressRequest' };
  if (op !== NATPMP_OP_MAP_UDP && op !== NATPMP_OP_MAP_TCP) return { kind: 'malformed', reason: `unsupported opcode ${op}` };
  if (bytes.length < LEN_MAP_REQUEST) return { kind: 'malformed', reason: 'map request too short' };
  return {
    kind: 'mapRequest',
    protocol: op === NATPMP_OP_MAP_UDP ? 'udp' : 'tcp',
    internalPort: dv.getUint16(OFF_REQ_INTERNAL_PORT),
    suggestedExternalPort: dv.getUint16(OFF_REQ_SUGGESTED_PORT),
    lifetimeS: dv.getUint32(OFF_REQ_LIFETIME),
  };
}

/**
 * Encodes a response (used by test servers). A non-success external-address response with a null
 * address, or a map response with `short: true`, is encoded as the 8-byte error form.
 */
export function encodeNatPmpResponse(msg: NatPmpResponse, opts: { short?: boolean } = {}): Uint8Array {
  checkU16('resultCode', msg.resultCode);
  checkU32('epoch', msg.epoch);
  const short = opts.short === true || (msg.kind === 'externalAddressResponse' && msg.externalIp === null);
  if (short && msg.resultCode === NatPmpResult.SUCCESS) throw new RangeError('natpmp: a short response must carry an error');
  const full = msg.kind === 'externalAddressResponse' ? LEN_EXTERNAL_ADDRESS_RESPONSE : LEN_MAP_RESPONSE;
  const out = new Uint8Array(short ? LEN_ERROR_RESPONSE : full);
  const dv = new DataView(out.buffer);
  dv.setUint8(OFF_VERSION, NATPMP_VERSION);
  const reqOp = msg.kind === 'externalAddressResponse' ? NATPMP_OP_EXTERNAL_ADDRESS : protocolOpcode(msg.protocol);
  dv.setUint8(OFF_OPCODE, NATPMP_RESPONSE_BIT | reqOp);
  dv.setUint16(OFF_RESULT, msg.resultCode);
  dv.setUint32(OFF_RESP_EPOCH, msg.epoch);
  if (short) return out;
  if (msg.kind === 'externalAddressResponse') {
    const ip = ipv4ToBytes(msg.externalIp ?? '');
    if (!ip) throw new RangeError(`natpmp: bad external IPv4 ${String(msg.externalIp)}`);
    out.set(ip, OFF_RESP_EXTERNAL_IP);
  } else {
    checkU16('internalPort', msg.internalPort);
    checkU16('externalPort', msg.externalPort);
    checkU32('lifetimeS', msg.lifetimeS);
    dv.setUint16(OFF_RESP_INTERNAL_PORT, msg.internalPort);
    dv.setUint16(OFF_RESP_MAPPED_PORT, msg.externalPort);
    dv.setUint32(OFF_RESP_LIFETIME, msg.lifetimeS);
  }
  return out;
}

/** Parses a response from the gateway. Never throws; accepts trailing bytes. */
export function parseNatPmpResponse(bytes: Uint8Array): NatPmpResponse | NatPmpMalformed {
  if (bytes.length < LEN_ERROR_RESPONSE) return { kind: 'malformed', reason: 'too short' };
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint8(OFF_VERSION);
  if (version !== NATPMP_VERSION) return { kind: 'malformed', reason: `unsupported version ${version}` };
  const op = dv.getUint8(OFF_OPCODE);
  if (!(op & NATPMP_RESPONSE_BIT)) return { kind: 'malformed', reason: 'is a request' };
  const reqOp = op & ~NATPMP_RESPONSE_BIT;
  const resultCode = dv.getUint16(OFF_RESULT);
  const epoch = dv.getUint32(OFF_RESP_EPOCH);
  const isError = resultCode !== NatPmpResult.SUCCESS;
  if (reqOp === NATPMP_OP_EXTERNAL_ADDRESS) {
    if (bytes.length < LEN_EXTERNAL_ADDRESS_RESPONSE) {
      if (!isError) return { kind: 'malformed', reason: 'external address response too short' };
      return { kind: 'externalAddressResponse', resultCode, epoch, externalIp: null };
    }
    const externalIp = bytesToIp(bytes.subarray(OFF_RESP_EXTERNAL_IP, OFF_RESP_EXTERNAL_IP + 4));
    return { kind: 'externalAddressResponse', resultCode, epoch, externalIp };
  }
  if (reqOp === NATPMP_OP_MAP_UDP || reqOp === NATPMP_OP_MAP_TCP) {
    const protocol: NatPmpProtocol = reqOp === NATPMP_OP_MAP_UDP ? 'udp' : 'tcp';
    if (bytes.length < LEN_MAP_RESPONSE) {
      if (!isError) return { kind: 'malformed', reason: 'map response too short' };
      return { kind: 'mapResponse', protocol, resultCode, epoch, internalPort: 0, externalPort: 0, lifetimeS: 0 };
    }
    return {
      kind: 'mapResponse',
      protocol,
      resultCode,
      epoch,
      internalPort: dv.getUint16(OFF_RESP_INTERNAL_PORT),
      externalPort: dv.getUint16(OFF_RESP_MAPPED_PORT),
      lifetimeS: dv.getUint32(OFF_RESP_LIFETIME),
    };
  }
  return { kind: 'malformed', reason: `unknown response opcode ${op}` };
}
