import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromHex, toHex } from '../../../../src-main/protocol/wire/hex.ts';
import {
  FrameReader,
  MAX_PLAINTEXT_LEN,
  NoiseCipher,
  encodeErrorFrame,
  initiate,
  publicKeyOf,
  respond,
  type Session,
} from '../../../../src-main/protocol/crypto/noise.ts';
import { vectorsDir } from '../../../support/vectors.ts';

/** The noise vector files carry `name=hex` lines plus `c2s[i] plaintext=… wire=…` lines. */
function load(file: string) {
  const kv = new Map<string, string>();
  const frames: { dir: 'c2s' | 's2c'; i: number; plaintext: string; wire: string }[] = [];
  for (const line of readFileSync(resolve(vectorsDir, file), 'utf8').split('\n')) {
    const t = line.trim();
    if (!t || t.startsWith('#')) continue;
    const f = /^(c2s|s2c)\[(\d+)\] plaintext=([0-9a-f]*) wire=([0-9a-f]+)$/.exec(t);
    if (f) frames.push({ dir: f[1] as 'c2s' | 's2c', i: Number(f[2]), plaintext: f[3]!, wire: f[4]! });
    else {
      const eq = t.indexOf('=');
      kv.set(t.slice(0, eq), t.slice(eq + 1));
    }
  }
  const get = (k: string): string => {
    const v = kv.get(k);
    if (v === undefined) throw new Error(`vector ${k} missing in ${file}`);
    return v;
  };
  return { get, frames };
}

describe.each(['ts2021-noise-v130.txt', 'ts2021-noise-v1.txt'])('TS2021 Noise known answers: %s', (file) => {
  const V = load(file);
  const version = Number(V.get('version'));
  const clientPriv = fromHex(V.get('client_static_priv'));
  const serverPriv = fromHex(V.get('server_static_priv'));

  it('derives the static and ephemeral public keys', () => {
    expect(toHex(publicKeyOf(clientPriv))).toBe(V.get('client_static_pub'));
    expect(toHex(publicKeyOf(serverPriv))).toBe(V.get('server_static_pub'));
    expect(toHex(publicKeyOf(fromHex(V.get('client_eph_priv'))))).toBe(V.get('client_eph_pub'));
    expect(toHex(publicKeyOf(fromHex(V.get('server_eph_priv'))))).toBe(V.get('server_eph_pub'));
  });

  function handshake(): { client: Session; server: Session } {
    const pending = initiate({ version, machinePriv: clientPriv, serverPub: fromHex(V.get('server_static_pub')), ephemeralPriv: fromHex(V.get('client_eph_priv')) });
    expect(toHex(pending.message)).toBe(V.get('initiation'));
    const srv = respond({ serverPriv, initiation: pending.message, ephemeralPriv: fromHex(V.get('server_eph_priv')) });
    if (srv.kind === 'malformed') throw new Error(srv.reason);
    expect(srv.version).toBe(version);
    expect(toHex(srv.peerStatic)).toBe(V.get('client_static_pub'));
    expect(toHex(srv.message)).toBe(V.get('response'));
    const client = pending.finish(fromHex(V.get('response')));
    if (client.kind === 'malformed') throw new Error(client.reason);
    return { client, server: srv };
  }

  it('reproduces the initiation, the response and the handshake hash', () => {
    const { client, server } = handshake();
    expect(toHex(client.handshakeHash)).toBe(V.get('handshake_hash'));
    expect(toHex(server.handshakeHash)).toBe(V.get('handshake_hash'));
  });

  it('reproduces every transport frame in both directions (big-endian nonces)', () => {
    const { client, server } = handshake();
    const c2s = V.frames.filter((f) => f.dir === 'c2s').sort((a, b) => a.i - b.i);
    const s2c = V.frames.filter((f) => f.dir === 's2c').sort((a, b) => a.i - b.i);
    expect(c2s.length).toBeGreaterThanOrEqual(3);
    expect(s2c.length).toBeGreaterThanOrEqual(3);
    for (const f of c2s) {
      expect(toHex(client.tx.sealFrame(fromHex(f.plaintext)))).toBe(f.wire);
      const body = fromHex(f.wire).subarray(3);
      const p = server.rx.open(body);
      expect(p instanceof Uint8Array && toHex(p)).toBe(f.plaintext);
    }
    for (const f of s2c) {
      expect(toHex(server.tx.sealFrame(fromHex(f.plaintext)))).toBe(f.wire);
      const p = client.rx.open(fromHex(f.wire).subarray(3));
      expect(p instanceof Uint8Array && toHex(p)).toBe(f.plaintext);
    }
  });
});

describe('Noise failure handling', () => {
  const V = load('ts2021-noise-v130.txt');
  const serverPriv = fromHex(V.get('server_static_priv'));
  const init = fromHex(V.get('initiation'));

  it.each([
    ['short', init.subarray(0, 100), /size/],
    ['wrong type', Uint8Array.from(init, (b, i) => (i === 2 ? 9 : b)), /message type/],
    ['wrong length field', Uint8Array.from(init, (b, i) => (i === 4 ? 0x61 : b)), /length/],
    ['tampered static', Uint8Array.from(init, (b, i) => (i === 40 ? b ^ 1 : b)), /authentication/],
    ['version mismatch with the prologue', Uint8Array.from(init, (b, i) => (i === 1 ? 0x83 : b)), /authentication/],
  ])('the responder rejects a %s initiation', (_n, msg, why) => {
    const r = respond({ serverPriv, initiation: msg });
    expect(r.kind === 'malformed' ? r.reason : 'accepted').toMatch(why);
  });

  it('the initiator reports a server error frame and a tampered response', () => {
    const mk = () => initiate({ version: 130, machinePriv: fromHex(V.get('client_static_priv')), serverPub: fromHex(V.get('server_static_pub')) });
    expect(mk().finish(encodeErrorFrame('unsupported version'))).toEqual({ kind: 'malformed', reason: 'noise: server error: unsupported version' });
    const bad = fromHex(V.get('response'));
    bad[40]! ^= 1;
    expect(mk().finish(bad)).toMatchObject({ kind: 'malformed' });
  });

  it('a record that fails to decrypt kills the cipher', () => {
    const key = new Uint8Array(32).fill(7);
    const tx = new NoiseCipher(key);
    const rx = new NoiseCipher(key);
    const f = tx.sealFrame(new Uint8Array([1, 2, 3])).subarray(3);
    f[0]! ^= 1;
    expect(rx.open(f)).toMatchObject({ kind: 'malformed' });
    expect(() => rx.open(f)).toThrow(/dead/);
  });

  it('splits large writes into ≤ 4077-byte frames and reassembles any chunking', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 20000 }), fc.array(fc.integer({ min: 1, max: 5000 }), { maxLength: 20 }), (data, cuts) => {
        const key = new Uint8Array(32).fill(3);
        const tx = new NoiseCipher(key);
        const rx = new NoiseCipher(key);
        const frames = tx.sealAll(data);
        for (const f of frames) expect(f.length).toBeLessThanOrEqual(4096);
        const wire = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
        let o = 0;
        for (const f of frames) {
          wire.set(f, o);
          o += f.length;
        }
        const reader = new FrameReader();
        const out: number[] = [];
        let pos = 0;
        for (const c of [...cuts, wire.length]) {
          const got = reader.push(wire.subarray(pos, Math.min(wire.length, pos + c)));
          pos = Math.min(wire.length, pos + c);
          if ('kind' in got) throw new Error(got.reason);
          for (const fr of got) {
            const p = rx.open(fr.body);
            if (!(p instanceof Uint8Array)) throw new Error('decrypt');
            out.push(...p);
          }
          if (pos >= wire.length) break;
        }
        expect(Uint8Array.from(out)).toEqual(data);
      }),
      { numRuns: 60 },
    );
    expect(MAX_PLAINTEXT_LEN).toBe(4077);
  });

  it('the frame reader refuses an oversize frame and accepts a zero-length record', () => {
    const r = new FrameReader();
    expect(r.push(new Uint8Array([4, 0x10, 0x00]))).toMatchObject({ kind: 'malformed' });
    const key = new Uint8Array(32).fill(1);
    const empty = new NoiseCipher(key).sealFrame(new Uint8Array(0));
    expect(empty.length).toBe(19);
    const frames = new FrameReader().push(empty);
    expect(Array.isArray(frames) && frames.length).toBe(1);
  });
});
