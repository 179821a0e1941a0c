/**
 * Which peer a WireGuard handshake message is for, from its mac1 field (WireGuard whitepaper §5.4.4; wireguard-go
 * device/cookie.go): mac1 = MAC(HASH("mac1----" ‖ recipient's static public key), the message up to mac1), where
 * HASH is BLAKE2s-256 and MAC is keyed BLAKE2s with a 16-byte output. Initiations (type 1, 148 bytes) and
 * responses (type 2, 92 bytes) carry it; cookie replies and transport data do not.
 *
 * Magicsock uses it for WireGuard packets that reach its one shared idle socket (peers without a proxy socket of
 * their own): the recipient's key names the peer. Pure; never throws.
 */
import { blake2s } from '@noble/hashes/blake2.js';

const LABEL_MAC1 = new TextEncoder().encode('mac1----');
const MAC_LEN = 16;

/** The mac1 key of a recipient: HASH(LABEL_MAC1 ‖ public key). Compute once per peer. */
export function mac1Key(recipientPub: Uint8Array): Uint8Array {
  const b = new Uint8Array(LABEL_MAC1.length + recipientPub.length);
  b.set(LABEL_MAC1);
  b.set(recipientPub, LABEL_MAC1.length);
  return blake2s(b);
}

/** Where mac1 sits in a handshake message, or null for anything that carries none. */
function mac1Offset(msg: Uint8Array): number | null {
  if (msg.length < 4 || msg[1] !== 0 || msg[2] !== 0 || msg[3] !== 0) return null;
  if (msg[0] === 1 && msg.length === 148) return 116;
  if (msg[0] === 2 && msg.length === 92) return 60;
  return null;
}

/** The mac1 that `msg` (a handshake message) would carry for the recipient with this mac1 key. */
export function computeMac1(key: Uint8Array, msg: Uint8Array): Uint8Array | null {
  const off = mac1Offset(msg);
  return off === null ? null : blake2s(msg.subarray(0, off), { key, dkLen: MAC_LEN });
}

/**
 * The first candidate whose key the message's mac1 verifies against; null when the message is not a handshake
 * message or none does. Cost: one keyed BLAKE2s per candidate tried.
 */
export function handshakeRecipient<T>(msg: Uint8Array, candidates: Iterable<readonly [T, Uint8Array]>): T | null {
  const off = mac1Offset(msg);
  if (off === null) return null;
  const body = msg.subarray(0, off);
  const mac = msg.subarray(off, off + MAC_LEN);
  for (const [who, key] of candidates) {
    const want = blake2s(body, { key, dkLen: MAC_LEN });
    let diff = 0;
    for (let i = 0; i < MAC_LEN; i++) diff |= want[i]! ^ mac[i]!;
    if (diff === 0) return who;
  }
  return null;
}
