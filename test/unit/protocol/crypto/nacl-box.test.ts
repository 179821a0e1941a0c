import { x25519 } from '@noble/curves/ed25519.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  OVERHEAD,
  boxBeforenm,
  open,
  openWithShared,
  seal,
  sealWithShared,
  tryBoxBeforenm,
} from '../../../../src-main/protocol/crypto/nacl-box.ts';
import { concatBytes, fromHex, toHex } from '../../../../src-main/protocol/wire/hex.ts';
import { loadVectors, vec } from '../../../support/vectors.ts';

const V = loadVectors('disco.txt');
const aPriv = fromHex(vec(V, 'disco_a_priv'));
const aPub = fromHex(vec(V, 'disco_a_pub'));
const bPriv = fromHex(vec(V, 'disco_b_priv'));
const bPub = fromHex(vec(V, 'disco_b_pub'));
const BOXED = ['ping', 'ping_padded', 'ping_nokey', 'pong_ipv4', 'pong_ipv6', 'callmemaybe', 'callmemaybe_empty'];

/** X25519 points of small order (all give an all-zero shared secret). */
const LOW_ORDER = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
];

describe('beforenm (box.Precompute)', () => {
  it('matches the Go/tweetnacl vectors, symmetric in both directions', () => {
    expect(toHex(x25519.getSharedSecret(aPriv, bPub))).toBe(vec(V, 'disco_ab_x25519'));
    expect(toHex(x25519.getPublicKey(aPriv))).toBe(vec(V, 'disco_a_pub'));
    expect(toHex(x25519.getPublicKey(bPriv))).toBe(vec(V, 'disco_b_pub'));
    expect(toHex(boxBeforenm(bPub, aPriv))).toBe(vec(V, 'disco_ab_box_key'));
    expect(toHex(boxBeforenm(aPub, bPriv))).toBe(vec(V, 'disco_ab_box_key'));
  });

  it('matches the NaCl distribution test (alicesk, bobpk → firstkey)', () => {
    const alicesk = fromHex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
    const bobpk = fromHex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
    expect(toHex(x25519.getSharedSecret(alicesk, bobpk))).toBe('4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742');
    expect(toHex(boxBeforenm(bobpk, alicesk))).toBe('1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389');
  });

  it.each(LOW_ORDER)('refuses the low-order point %s', (hex) => {
    expect(() => boxBeforenm(fromHex(hex), aPriv)).toThrow(/low-order/);
    expect(tryBoxBeforenm(fromHex(hex), aPriv)).toBeNull();
    expect(open(fromHex(hex), aPriv, new Uint8Array(64))).toBeNull();
    expect(() => seal(fromHex(hex), aPriv, new Uint8Array(4))).toThrow(/low-order/);
  });

  it('throws on wrong key lengths', () => {
    expect(() => boxBeforenm(bPub.subarray(1), aPriv)).toThrow(/32 bytes/);
    expect(() => boxBeforenm(bPub, aPriv.subarray(1))).toThrow(/32 bytes/);
    expect(tryBoxBeforenm(bPub.subarray(1), aPriv)).toBeNull();
  });
});

describe('seal / open', () => {
  const shared = fromHex(vec(V, 'disco_ab_box_key'));

  it.each(BOXED)('reproduces %s.box byte for byte (nonce ‖ tag ‖ ciphertext)', (name) => {
    const plaintext = fromHex(vec(V, `${name}.plaintext`));
    const nonce = fromHex(vec(V, `${name}.nonce`));
    const want = vec(V, `${name}.nonce`) + vec(V, `${name}.box`);
    expect(toHex(sealWithShared(shared, plaintext, nonce))).toBe(want);
    expect(toHex(seal(bPub, aPriv, plaintext, nonce))).toBe(want);
    expect(fromHex(want).length).toBe(plaintext.length + OVERHEAD);
    // Opened by the receiver (B) with its own private key, and with the precomputed key.
    expect(toHex(open(aPub, bPriv, fromHex(want)) ?? new Uint8Array())).toBe(vec(V, `${name}.plaintext`));
    expect(toHex(openWithShared(shared, fromHex(want)) ?? new Uint8Array())).toBe(vec(V, `${name}.plaintext`));
  });

  it('rejects every 1-bit change of a sealed box', () => {
    const sealed = fromHex(vec(V, 'ping.nonce') + vec(V, 'ping.box'));
    for (let bit = 0; bit < sealed.length * 8; bit++) {
      const t = sealed.slice();
      t[bit >> 3]! ^= 1 << (bit & 7);
      expect(openWithShared(shared, t)).toBeNull();
    }
  });

  it('rejects the wrong key, truncation and short input without throwing', () => {
    const sealed = seal(bPub, aPriv, new Uint8Array([1, 2, 3]));
    expect(open(bPub, bPriv, sealed)).toBeNull();
    expect(openWithShared(shared, sealed.subarray(0, sealed.length - 1))).toBeNull();
    expect(openWithShared(shared, sealed.subarray(0, OVERHEAD - 1))).toBeNull();
    expect(openWithShared(shared.subarray(1), sealed)).toBeNull();
    expect(openWithShared(shared, new Uint8Array(0))).toBeNull();
    // An empty plaintext is legal: just nonce + tag.
    const empty = sealWithShared(shared, new Uint8Array(0));
    expect(empty.length).toBe(OVERHEAD);
    expect(openWithShared(shared, empty)).toEqual(new Uint8Array(0));
  });

  it('picks a fresh random nonce when none is given', () => {
    const p = new Uint8Array([9, 9, 9]);
    const x = sealWithShared(shared, p);
    const y = sealWithShared(shared, p);
    expect(toHex(x.subarray(0, 24))).not.toBe(toHex(y.subarray(0, 24)));
    expect(openWithShared(shared, x)).toEqual(p);
    expect(openWithShared(shared, y)).toEqual(p);
  });

  it('throws on a bad nonce or key length when sealing', () => {
    expect(() => sealWithShared(shared, new Uint8Array(1), new Uint8Array(12))).toThrow(/nonce/);
    expect(() => sealWithShared(shared.subarray(2), new Uint8Array(1))).toThrow(/shared key/);
  });

  it('does not let a caller-owned nonce be changed by sealing', () => {
    const nonce = fromHex(vec(V, 'ping.nonce'));
    sealWithShared(shared, new Uint8Array(100), nonce);
    expect(toHex(nonce)).toBe(vec(V, 'ping.nonce'));
  });

  it('round-trips random plaintexts and never throws on random input (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ minLength: 24, maxLength: 24 }), (p, nonce) => {
        const s = sealWithShared(shared, p, nonce);
        expect(toHex(s.subarray(0, 24))).toBe(toHex(nonce));
        expect(openWithShared(shared, s)).toEqual(p);
      }),
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ maxLength: 40 }), (junk, key) => {
        expect(openWithShared(shared, junk)).toBeNull();
        expect(openWithShared(key, concatBytes(junk, junk))).toBeNull();
      }),
    );
  });
});
