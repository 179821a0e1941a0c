/**
 * Tailscale's TS2021 Noise layer ("controlbase"): Noise_IK_25519_ChaChaPoly_BLAKE2s with Tailscale framing and
 * BIG-endian transport nonces (control-protocol.md §5). Pure: bytes in, bytes out; shared by the control client
 * (initiator) and `weft server` (responder).
 *
 * Initiation, client → server, 101 bytes (sent base64 in the X-Tailscale-Handshake header):
 *   [version u16 BE][type=1][len u16 BE = 96][ephemeral pub 32][enc(machine static pub) 48][enc(empty) tag 16]
 * Response, server → client, 51 bytes:
 *   [type=2][len u16 BE = 48][ephemeral pub 32][enc(empty) tag 16]
 * Error (unauthenticated text): [type=3][len u16 BE][text]
 * Record (transport), either way: [type=4][len u16 BE = C ≤ 4093][ChaCha20-Poly1305(plaintext ≤ 4077) ‖ tag]
 *
 * Handshake tokens: <- s ... -> e, es, s, ss  <- e, ee, se. Prologue "Tailscale Control Protocol v<version>".
 * Split: the initiator sends with k1, receives with k2. Transport nonce = 4 zero bytes ‖ counter u64 BE.
 */
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { blake2s } from '@noble/hashes/blake2.js';
import { hmac } from '@noble/hashes/hmac.js';
import { concatBytes } from '../wire/hex.ts';

export const PROTOCOL_NAME = 'Noise_IK_25519_ChaChaPoly_BLAKE2s';
export const MSG_INITIATION = 1;
export const MSG_RESPONSE = 2;
export const MSG_ERROR = 3;
export const MSG_RECORD = 4;
export const INITIATION_LEN = 101;
export const RESPONSE_LEN = 51;
export const HEADER_LEN = 3;
export const MAX_FRAME_LEN = 4096;
export const MAX_CIPHERTEXT_LEN = MAX_FRAME_LEN - HEADER_LEN; // 4093
export const TAG_LEN = 16;
export const MAX_PLAINTEXT_LEN = MAX_CIPHERTEXT_LEN - TAG_LEN; // 4077
const INIT_HEADER_LEN = 5;
const INIT_PAYLOAD_LEN = INITIATION_LEN - INIT_HEADER_LEN; // 96
const RESP_PAYLOAD_LEN = RESPONSE_LEN - HEADER_LEN; // 48
const ZERO_NONCE = new Uint8Array(12);
const EMPTY = new Uint8Array(0);

export interface Malformed {
  kind: 'malformed';
  reason: string;
}
const malformed = (reason: string): Malformed => ({ kind: 'malformed', reason });

const enc = new TextEncoder();


/** X25519 that refuses an all-zero shared secret (a low-order peer point), as Go's curve25519.X25519 does. */
export function dh(priv: Uint8Array, pub: Uint8Array): Uint8Array {
  const s = x25519.getSharedSecret(priv, pub);
  if (s.every((b) => b === 0)) throw new Error('noise: low-order public key (all-zero shared secret)');
  return s;
}

export function publicKeyOf(priv: Uint8Array): Uint8Array {
  return x25519.getPublicKey(priv);
}

/** Noise HKDF with BLAKE2s: two 32-byte outputs. */
function hkdf2(ck: Uint8Array, ikm: Uint8Array): [Uint8Array, Uint8Array] {
  const prk = hmac(blake2s, ck, ikm);
  const o1 = hmac(blake2s, prk, new Uint8Array([1]));
  const o2 = hmac(blake2s, prk, concatBytes(o1, new Uint8Array([2])));
  return [o1, o2];
}

/** Symmetric handshake state (h, ck, k) with the Noise operations. Every handshake key is used once, nonce 0. */
class Symmetric {
  h: Uint8Array;
  ck: Uint8Array;
  private k: Uint8Array | null = null;

  constructor(version: number) {
    this.h = blake2s(enc.encode(PROTOCOL_NAME));
    this.ck = this.h;
    this.mixHash(prologue(version));
  }

  mixHash(data: Uint8Array): void {
    this.h = blake2s(concatBytes(this.h, data));
  }

  mixKey(dhOut: Uint8Array): void {
    [this.ck, this.k] = hkdf2(this.ck, dhOut);
  }

  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const c = chacha20poly1305(this.k!, ZERO_NONCE, this.h).encrypt(plaintext);
    this.mixHash(c);
    return c;
  }

  /** Returns the plaintext, or null when the tag does not verify. */
  decryptAndHash(ciphertext: Uint8Array): Uint8Array | null {
    let p: Uint8Array;
    try {
      p = chacha20poly1305(this.k!, ZERO_NONCE, this.h).decrypt(ciphertext);
    } catch {
      return null;
    }
    this.mixHash(ciphertext);
    return p;
  }

  split(): [Uint8Array, Uint8Array] {
    return hkdf2(this.ck, EMPTY);
  }
}

export function prologue(version: number): Uint8Array {
  return enc.encode(`Tailscale Control Protocol v${version}`);
}

/**
 * One direction of the transport: a ChaCha20-Poly1305 key and a 64-bit counter, used with a big-endian nonce.
 * The counter advances on every frame, including one that fails to decrypt (which kills the connection).
 */
export class NoiseCipher {
  private counter = 0n;
  private dead = false;

  constructor(private readonly key: Uint8Array) {}

  private nextNonce(): Uint8Array {
    if (this.dead || this.counter >= 0xffffffffffffffffn) throw new Error('noise: cipher exhausted or dead');
    const n = new Uint8Array(12);
    new DataView(n.buffer).setBigUint64(4, this.counter, false);
    this.counter++;
    return n;
  }

  /** Encrypts up to MAX_PLAINTEXT_LEN bytes into one record frame (header included). */
  sealFrame(plaintext: Uint8Array): Uint8Array {
    if (plaintext.length > MAX_PLAINTEXT_LEN) throw new Error(`noise: plaintext ${plaintext.length} exceeds ${MAX_PLAINTEXT_LEN}`);
    const c = chacha20poly1305(this.key, this.nextNonce()).encrypt(plaintext);
    const out = new Uint8Array(HEADER_LEN + c.length);
    out[0] = MSG_RECORD;
    out[1] = c.length >> 8;
    out[2] = c.length & 0xff;
    out.set(c, HEADER_LEN);
    return out;
  }

  /** Splits `data` into ≤ 4077-byte chunks and seals each (an empty input gives no frames). */
  sealAll(data: Uint8Array): Uint8Array[] {
    const frames: Uint8Array[] = [];
    for (let o = 0; o < data.length; o += MAX_PLAINTEXT_LEN) frames.push(this.sealFrame(data.subarray(o, o + MAX_PLAINTEXT_LEN)));
    return frames;
  }

  /** Decrypts one record's ciphertext (without header). A failure marks the cipher dead. */
  open(ciphertext: Uint8Array): Uint8Array | Malformed {
    const nonce = this.nextNonce();
    try {
      return chacha20poly1305(this.key, nonce).decrypt(ciphertext);
    } catch {
      this.dead = true;
      return malformed('noise: record failed to decrypt');
    }
  }
}

export interface Session {
  kind: 'session';
  tx: NoiseCipher;
  rx: NoiseCipher;
  handshakeHash: Uint8Array;
}

export interface InitiatorPending {
  message: Uint8Array;
  finish(response: Uint8Array): Session | Malformed;
}

/** Builds the 101-byte initiation. `ephemeralPriv` is for known-answer tests; it is random otherwise. */
export function initiate(o: { version: number; machinePriv: Uint8Array; serverPub: Uint8Array; ephemeralPriv?: Uint8Array }): InitiatorPending {
  if (o.version < 0 || o.version > 0xffff) throw new Error('noise: version must fit in 16 bits');
  const s = new Symmetric(o.version);
  s.mixHash(o.serverPub);
  const ePriv = o.ephemeralPriv ?? x25519.utils.randomSecretKey();
  const ePub = publicKeyOf(ePriv);
  s.mixHash(ePub);
  s.mixKey(dh(ePriv, o.serverPub));
  const encStatic = s.encryptAndHash(publicKeyOf(o.machinePriv));
  s.mixKey(dh(o.machinePriv, o.serverPub));
  const tag = s.encryptAndHash(EMPTY);
  const message = new Uint8Array(INITIATION_LEN);
  const dv = new DataView(message.buffer);
  dv.setUint16(0, o.version);
  message[2] = MSG_INITIATION;
  dv.setUint16(3, INIT_PAYLOAD_LEN);
  message.set(ePub, 5);
  message.set(encStatic, 37);
  message.set(tag, 85);
  return {
    message,
    finish(response) {
      if (response.length < HEADER_LEN) return malformed('noise: short handshake response');
      if (response[0] === MSG_ERROR) return malformed(`noise: server error: ${new TextDecoder().decode(response.subarray(HEADER_LEN))}`);
      if (response[0] !== MSG_RESPONSE) return malformed(`noise: unexpected handshake message type ${response[0]}`);
      if (((response[1]! << 8) | response[2]!) !== RESP_PAYLOAD_LEN || response.length !== RESPONSE_LEN) return malformed('noise: wrong handshake response length');
      const sEph = response.subarray(3, 35);
      s.mixHash(sEph);
      try {
        s.mixKey(dh(ePriv, sEph));
        s.mixKey(dh(o.machinePriv, sEph));
      } catch (e) {
        return malformed((e as Error).message);
      }
      if (s.decryptAndHash(response.subarray(35, 51)) === null) return malformed('noise: handshake response failed authentication');
      const [k1, k2] = s.split();
      return { kind: 'session', tx: new NoiseCipher(k1), rx: new NoiseCipher(k2), handshakeHash: s.h };
    },
  };
}

export interface ResponderResult extends Session {
  message: Uint8Array;
  /** The initiator's static (machine) public key, which the handshake authenticated. */
  peerStatic: Uint8Array;
  version: number;
}

/** The server side: checks a 101-byte initiation and builds the 51-byte response. */
export function respond(o: { serverPriv: Uint8Array; initiation: Uint8Array; ephemeralPriv?: Uint8Array }): ResponderResult | Malformed {
  const m = o.initiation;
  if (m.length !== INITIATION_LEN) return malformed('wrong handshake initiation size');
  if (m[2] !== MSG_INITIATION) return malformed('unexpected handshake message type');
  const dv = new DataView(m.buffer, m.byteOffset, m.byteLength);
  if (dv.getUint16(3) !== INIT_PAYLOAD_LEN) return malformed('wrong handshake initiation length');
  const version = dv.getUint16(0);
  const s = new Symmetric(version);
  const serverPub = publicKeyOf(o.serverPriv);
  s.mixHash(serverPub);
  const cEph = m.subarray(5, 37);
  s.mixHash(cEph);
  let peerStatic: Uint8Array | null;
  try {
    s.mixKey(dh(o.serverPriv, cEph));
    peerStatic = s.decryptAndHash(m.subarray(37, 85));
    if (!peerStatic) return malformed('noise: initiation failed authentication');
    s.mixKey(dh(o.serverPriv, peerStatic));
    if (s.decryptAndHash(m.subarray(85, 101)) === null) return malformed('noise: initiation failed authentication');
    const ePriv = o.ephemeralPriv ?? x25519.utils.randomSecretKey();
    const ePub = publicKeyOf(ePriv);
    s.mixHash(ePub);
    s.mixKey(dh(ePriv, cEph));
    s.mixKey(dh(ePriv, peerStatic));
    const tag = s.encryptAndHash(EMPTY);
    const message = new Uint8Array(RESPONSE_LEN);
    message[0] = MSG_RESPONSE;
    message[1] = 0;
    message[2] = RESP_PAYLOAD_LEN;
    message.set(ePub, 3);
    message.set(tag, 35);
    const [k1, k2] = s.split();
    return { kind: 'session', message, peerStatic, version, tx: new NoiseCipher(k2), rx: new NoiseCipher(k1), handshakeHash: s.h };
  } catch (e) {
    return malformed((e as Error).message);
  }
}

/** An unauthenticated error frame (type 3), text cut to fit the 16-bit length. */
export function encodeErrorFrame(text: string): Uint8Array {
  const t = enc.encode(text).subarray(0, 0xffff);
  const out = new Uint8Array(HEADER_LEN + t.length);
  out[0] = MSG_ERROR;
  out[1] = t.length >> 8;
  out[2] = t.length & 0xff;
  out.set(t, HEADER_LEN);
  return out;
}

export type Frame = { type: number; body: Uint8Array };

/**
 * Incremental frame splitter for the transport byte stream: returns complete frames and keeps the rest.
 * A frame longer than MAX_FRAME_LEN is malformed (the Go reader refuses it too).
 */
export class FrameReader {
  private buf: Uint8Array = new Uint8Array(0);

  push(chunk: Uint8Array): Frame[] | Malformed {
    this.buf = this.buf.length === 0 ? chunk.slice() : concatBytes(this.buf, chunk);
    const frames: Frame[] = [];
    let o = 0;
    while (this.buf.length - o >= HEADER_LEN) {
      const len = (this.buf[o + 1]! << 8) | this.buf[o + 2]!;
      if (HEADER_LEN + len > MAX_FRAME_LEN) return malformed(`noise: frame of ${HEADER_LEN + len} bytes exceeds max allowed Noise frame size`);
      if (this.buf.length - o < HEADER_LEN + len) break;
      frames.push({ type: this.buf[o]!, body: this.buf.slice(o + HEADER_LEN, o + HEADER_LEN + len) });
      o += HEADER_LEN + len;
    }
    this.buf = this.buf.slice(o);
    return frames;
  }

  get buffered(): number {
    return this.buf.length;
  }
}
