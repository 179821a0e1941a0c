/**
 * NaCl `crypto_box` (Curve25519-XSalsa20-Poly1305), the box Tailscale uses for disco messages and for the DERP
 * handshake (dataplane-protocol §1; Go's golang.org/x/crypto/nacl/box as called by types/key SealTo/OpenFrom and
 * DiscoShared.Seal/Open). Pure: bytes in, bytes out. Used by protocol/wire/disco.ts and the DERP client.
 *
 * Key agreement ("beforenm", NaCl `crypto_box_beforenm`, Go `box.Precompute`, tweetnacl `box.before`):
 *
 *   raw    = X25519(myPriv, peerPub)                      32 bytes; all-zero (low-order peer point) is refused
 *   shared = HSalsa20(key = raw, input = 0^16, "expand 32-byte k")   32 bytes, symmetric: A→B == B→A
 *
 * Sealed form, as written on the wire (nonce first, then NaCl's box output):
 *
 *   +-----------------+-------------------+-----------------------------+
 *   | nonce (24)      | Poly1305 tag (16) | XSalsa20 ciphertext (n)     |
 *   +-----------------+-------------------+-----------------------------+
 *   sealed length = 24 + 16 + n
 *
 * Divergence from Go, on purpose: Go's box.Precompute uses curve25519.ScalarMult, which does not refuse a
 * low-order peer key; we refuse it (an all-zero shared secret makes the box forgeable by anyone). No honest peer
 * ever has such a key, so interoperability is unaffected.
 *
 * Error handling: key agreement and sealing throw on programmer error (bad lengths, low-order keys). Opening is on
 * the receive path and never throws: it returns null for anything that does not authenticate.
 */
import { hsalsa, xsalsa20poly1305 } from '@noble/ciphers/salsa.js';
import { x25519 } from '@noble/curves/ed25519.js';

export const KEY_LEN = 32;
export const NONCE_LEN = 24;
export const TAG_LEN = 16;
/** Bytes a sealed box adds to its plaintext: nonce + tag. */
export const OVERHEAD = NONCE_LEN + TAG_LEN;

/** "expand 32-byte k" as little-endian words (the Salsa20 sigma constant). */
const SIGMA = u32(new TextEncoder().encode('expand 32-byte k'));
const ZERO16 = u32(new Uint8Array(16));
/** noble's xsalsa20poly1305 encrypt wants an output buffer 32 bytes longer than the plaintext (scratch space). */
const NOBLE_SCRATCH = 32;

/** Copies bytes into a fresh, aligned buffer and views them as 32-bit words (noble normalises byte order). */
function u32(b: Uint8Array): Uint32Array {
  const copy = new Uint8Array(b.length);
  copy.set(b);
  return new Uint32Array(copy.buffer, 0, b.length / 4);
}

function checkLen(name: string, b: Uint8Array, n: number): void {
  if (!(b instanceof Uint8Array) || b.length !== n) throw new Error(`nacl-box: ${name} must be ${n} bytes`);
}

/**
 * Computes the precomputed box key shared by `myPriv` and `peerPub` (NaCl beforenm). The result is the same
 * from both sides. Throws for wrong lengths or a low-order peer key.
 */
export function boxBeforenm(peerPub: Uint8Array, myPriv: Uint8Array): Uint8Array {
  checkLen('peer public key', peerPub, KEY_LEN);
  checkLen('private key', myPriv, KEY_LEN);
  let raw: Uint8Array;
  try {
    raw = x25519.getSharedSecret(myPriv, peerPub);
  } catch {
    // noble refuses an all-zero result itself; keep one error for every low-order case.
    raw = new Uint8Array(KEY_LEN);
  }
  if (raw.every((b) => b === 0)) throw new Error('nacl-box: low-order peer public key (all-zero shared secret)');
  const out = new Uint32Array(KEY_LEN / 4);
  hsalsa(SIGMA, u32(raw), ZERO16, out);
  raw.fill(0);
  return new Uint8Array(out.buffer);
}

/** Like boxBeforenm, but returns null instead of throwing (for keys that arrive from the network map). */
export function tryBoxBeforenm(peerPub: Uint8Array, myPriv: Uint8Array): Uint8Array | null {
  try {
    return boxBeforenm(peerPub, myPriv);
  } catch {
    return null;
  }
}

/** Returns a fresh random 24-byte nonce (XSalsa20's nonce is long enough to pick at random). */
export function randomNonce(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(NONCE_LEN));
}

/**
 * Seals `plaintext` under a precomputed key and returns nonce ‖ tag ‖ ciphertext. The nonce is random unless
 * given (tests and known-answer vectors). Throws on bad key or nonce lengths.
 */
export function sealWithShared(shared: Uint8Array, plaintext: Uint8Array, nonce: Uint8Array = randomNonce()): Uint8Array {
  checkLen('shared key', shared, KEY_LEN);
  checkLen('nonce', nonce, NONCE_LEN);
  // One allocation: noble writes [scratch 16][tag 16][ciphertext n] into the window starting 8 bytes in, so the
  // tag lands at 24 and the ciphertext at 40. The scratch overlaps the nonce slot, so the nonce is written last.
  const out = new Uint8Array(NONCE_LEN - (NOBLE_SCRATCH - TAG_LEN) + plaintext.length + NOBLE_SCRATCH);
  const window = out.subarray(NONCE_LEN - (NOBLE_SCRATCH - TAG_LEN));
  xsalsa20poly1305(shared, nonce.slice()).encrypt(plaintext, window);
  out.set(nonce, 0);
  return out;
}

/** Opens nonce ‖ tag ‖ ciphertext under a precomputed key. Returns the plaintext, or null. Never throws. */
export function openWithShared(shared: Uint8Array, sealed: Uint8Array): Uint8Array | null {
  if (shared.length !== KEY_LEN || sealed.length < OVERHEAD) return null;
  try {
    return xsalsa20poly1305(shared, sealed.subarray(0, NONCE_LEN)).decrypt(sealed.subarray(NONCE_LEN));
  } catch {
    return null;
  }
}

/** One-shot crypto_box: beforenm + sealWithShared. Throws on bad keys (see boxBeforenm). */
export function seal(peerPub: Uint8Array, myPriv: Uint8Array, plaintext: Uint8Array, nonce?: Uint8Array): Uint8Array {
  return sealWithShared(boxBeforenm(peerPub, myPriv), plaintext, nonce);
}

/** One-shot crypto_box_open. Returns null for bad keys (including low-order) or a box that does not verify. */
export function open(peerPub: Uint8Array, myPriv: Uint8Array, sealed: Uint8Array): Uint8Array | null {
  const shared = tryBoxBeforenm(peerPub, myPriv);
  return shared ? openWithShared(shared, sealed) : null;
}
