/**
 * Curve25519 keys and their text forms (control-protocol.md §2): public keys travel as `<prefix>:` + 64 hex
 * (`mkey:`, `nodekey:`, `discokey:`), private keys as `privkey:` + 64 hex. Pure.
 */
import { x25519 } from '@noble/curves/ed25519.js';
import { fromHex, toHex } from '../wire/hex.ts';

export type KeyPrefix = 'mkey' | 'nodekey' | 'discokey' | 'privkey' | 'chalpub';

export interface KeyPair {
  priv: Uint8Array;
  pub: Uint8Array;
}

/** A fresh clamped private key with its public key (clamping as Tailscale does; X25519 clamps anyway). */
export function generateKeyPair(random: (n: number) => Uint8Array = (n) => crypto.getRandomValues(new Uint8Array(n))): KeyPair {
  const priv = random(32);
  priv[0]! &= 248;
  priv[31] = (priv[31]! & 127) | 64;
  return { priv, pub: x25519.getPublicKey(priv) };
}

export function keyPairFromPrivate(priv: Uint8Array): KeyPair {
  return { priv, pub: x25519.getPublicKey(priv) };
}

export function keyText(prefix: KeyPrefix, key: Uint8Array): string {
  if (key.length !== 32) throw new Error('keys are 32 bytes');
  return `${prefix}:${toHex(key)}`;
}

/** Parses `<prefix>:<64 hex>` (either case); null when the prefix or length is wrong. */
export function parseKeyText(prefix: KeyPrefix, text: string): Uint8Array | null {
  const m = new RegExp(`^${prefix}:([0-9a-fA-F]{64})$`).exec(text);
  return m ? fromHex(m[1]!) : null;
}

export function isZeroKey(k: Uint8Array): boolean {
  return k.every((b) => b === 0);
}
