/**
 * The DERP server byte for byte, with a raw client: derper's 101 response, ServerKey and ServerInfo layouts,
 * fast start, KeepAlive timing (fake clock), handshake bounds, protocol violations, back-pressure.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { open } from '../../../../src-main/protocol/crypto/nacl-box.ts';
import { generateKeyPair } from '../../../../src-main/protocol/crypto/keys.ts';
import { MAGIC, encodeFrame, openServerInfo, sealClientInfo } from '../../../../src-main/protocol/wire/derp.ts';
import { concatBytes, toHex } from '../../../../src-main/protocol/wire/hex.ts';
import { FakeClock } from '../../../sim/fake-clock.ts';
import { RawClient, discoLike, startHarness, until, type Harness } from './harness.ts';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function harness(init: Parameters<typeof startHarness>[0] = {}): Promise<Harness> {
  const h = await startHarness(init);
  cleanups.push(() => h.close());
  return h;
}

function raw(h: Harness, opts: ConstructorParameters<typeof RawClient>[1] = {}): RawClient {
  const r = new RawClient(h.port, opts);
  cleanups.push(() => r.destroy());
  return r;
}

/** A raw client that completed the handshake (ServerInfo received). */
async function admitted(h: Harness, priv = generateKeyPair().priv): Promise<RawClient> {
  const r = raw(h);
  await r.handshake(priv, h.serverPub);
  expect(await r.next(0x03)).not.toBeNull();
  return r;
}

const frame = (type: number, body: Uint8Array = new Uint8Array(0)): Uint8Array => {
  const f = new Uint8Array(5 + body.length);
  f[0] = type;
  new DataView(f.buffer).setUint32(1, body.length);
  f.set(body, 5);
  return f;
};

describe('DERP server wire format', () => {
  it("answers the upgrade with derper's exact 101 head, then ServerKey = magic ‖ server key", async () => {
    const h = await harness();
    const r = raw(h);
    const sk = await r.next(0x01);
    expect(r.head).toBe(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\nDerp-Version: 2\r\nDerp-Public-Key: ${toHex(h.serverPub)}\r\n\r\n`,
    );
    expect(toHex(r.rawFrames[0]!.subarray(0, 45))).toBe(`0100000028${toHex(MAGIC)}${toHex(h.serverPub)}`);
    expect(sk!.body).toEqual(concatBytes(MAGIC, h.serverPub));
  });

  it('accepts the upgrade token in any case (Go lower-cases it)', async () => {
    const h = await harness();
    const r = raw(h, { headers: { Upgrade: 'derp' } });
    expect(await r.next(0x01)).not.toBeNull();
  });

  it('sends ServerInfo {"version":2} sealed to the client key', async () => {
    const h = await harness();
    const kp = generateKeyPair();
    const r = raw(h);
    await r.handshake(kp.priv, h.serverPub);
    const si = await r.next(0x03);
    const json = open(h.serverPub, kp.priv, si!.body);
    expect(new TextDecoder().decode(json!)).toBe('{"version":2}');
    expect(openServerInfo({ clientPriv: kp.priv, serverPub: h.serverPub, frame: { kind: 'server-info', sealed: si!.body } })).toMatchObject({
      kind: 'opened',
      info: { version: 2, tokenBucketBytesPerSecond: 0, tokenBucketBytesBurst: 0 },
    });
  });

  it('fast start: no HTTP response, ServerKey first, ClientInfo may follow the request immediately', async () => {
    const h = await harness();
    const kp = generateKeyPair();
    const ci = encodeFrame(sealClientInfo({ clientPriv: kp.priv, serverPub: h.serverPub, info: { version: 2, canAckPings: true } }));
    const r = raw(h, { headers: { 'Derp-Fast-Start': '1' }, skipHttp: true });
    r.write(ci);
    expect((await r.next(0x01))!.body).toEqual(concatBytes(MAGIC, h.serverPub));
    expect(r.rawFrames[0]![0]).toBe(0x01);
    expect(await r.next(0x03)).not.toBeNull();
  });

  it('processes frames that arrive behind ClientInfo (before ServerInfo) once admitted', async () => {
    const pending: ((v: boolean) => void)[] = [];
    const h = await harness({ verifyClient: () => new Promise<boolean>((resolve) => pending.push(resolve)) });
    const recvKp = generateKeyPair();
    const receiver = raw(h);
    await receiver.handshake(recvKp.priv, h.serverPub);
    await until(() => pending.length === 1);
    pending[0]!(true);
    expect(await receiver.next(0x03)).not.toBeNull();

    const sender = raw(h);
    await sender.next(0x01);
    sender.write(
      concatBytes(
        encodeFrame(sealClientInfo({ clientPriv: generateKeyPair().priv, serverPub: h.serverPub, info: { version: 2, canAckPings: true } })),
        frame(0x07, new Uint8Array([1])),
        frame(0x04, concatBytes(recvKp.pub, new Uint8Array([0xab, 0xcd]))),
        frame(0x12, new Uint8Array([8, 7, 6, 5, 4, 3, 2, 1])),
      ),
    );
    await until(() => pending.length === 2);
    await new Promise((res) => setTimeout(res, 20));
    expect(h.derp.stats()).toMatchObject({ handshaking: 1, packetsReceived: 0 });
    pending[1]!(true);
    expect(await sender.next(0x03)).not.toBeNull();
    expect((await sender.next(0x13))!.body).toEqual(new Uint8Array([8, 7, 6, 5, 4, 3, 2, 1]));
    expect((await receiver.next(0x05))!.body.subarray(32)).toEqual(new Uint8Array([0xab, 0xcd]));
    expect(h.derp.stats().homeClients).toBe(1);
  });

  it('sends KeepAlive (type 6, empty) every 60 s plus the per-connection jitter, on the injected clock', async () => {
    const clock = new FakeClock();
    const h = await harness({ clock, random: () => 0.5 });
    const r = await admitted(h);
    const since = r.rawFrames.length;
    clock.advance(62_499);
    await new Promise((res) => setTimeout(res, 30));
    expect(r.rawFrames.length).toBe(since);
    clock.advance(1);
    const ka = await r.next(0x06);
    expect(ka!.body.length).toBe(0);
    expect(toHex(r.rawFrames[r.rawFrames.length - 1]!)).toBe('0600000000');
    clock.advance(62_500);
    expect(await r.next(0x06)).not.toBeNull();
    expect(h.derp.stats().keepAlives).toBe(2);
  });

  it('closes a client that sends no ClientInfo within the handshake timeout (10 s by default)', async () => {
    const clock = new FakeClock();
    const h = await harness({ clock });
    const r = raw(h);
    await r.next(0x01);
    clock.advance(9_999);
    await new Promise((res) => setTimeout(res, 30));
    expect(r.isClosed).toBe(false);
    clock.advance(1);
    await r.closed;
    expect(h.derp.stats()).toMatchObject({ handshakeFailures: 1, handshaking: 0, clients: 0 });
  });

  it('the handshake timeout also bounds a verifyClient that never answers', async () => {
    const clock = new FakeClock();
    const h = await harness({ clock, verifyClient: () => new Promise<boolean>(() => {}) });
    const r = raw(h);
    await r.handshake(generateKeyPair().priv, h.serverPub);
    await until(() => h.derp.stats().handshaking === 1);
    clock.advance(10_000);
    await r.closed;
    expect(h.derp.stats().handshakeFailures).toBe(1);
    expect(clock.pendingTimers).toBe(0);
  });

  it.each([
    ['a first frame that is not ClientInfo', frame(0x12, new Uint8Array(8))],
    ['a ClientInfo shorter than key + nonce', frame(0x02, new Uint8Array(55))],
    ['a ClientInfo box sealed to another server key', encodeFrame(sealClientInfo({ clientPriv: generateKeyPair().priv, serverPub: generateKeyPair().pub, info: { version: 2, canAckPings: true } }))],
    ['a ClientInfo over 256 KiB', frame(0x02, new Uint8Array((256 << 10) + 1))],
  ])('closes the connection on %s', async (_name, bytes) => {
    const h = await harness();
    const r = raw(h);
    await r.next(0x01);
    r.write(bytes);
    await r.closed;
    expect(h.derp.stats()).toMatchObject({ handshakeFailures: 1, accepted: 0 });
  });

  it.each([
    ['NotePreferred of 2 bytes', frame(0x07, new Uint8Array(2))],
    ['a Ping of 7 bytes', frame(0x12, new Uint8Array(7))],
    ['a Ping of 1001 bytes', frame(0x12, new Uint8Array(1001))],
    ['a SendPacket shorter than a key', frame(0x04, new Uint8Array(31))],
    ['WatchConns without the mesh key', frame(0x10)],
    ['ClosePeer without the mesh key', frame(0x11, new Uint8Array(32))],
    ['ForwardPacket without the mesh key', frame(0x0a, new Uint8Array(70))],
  ])('closes an admitted client on %s', async (_name, bytes) => {
    const h = await harness();
    const r = await admitted(h);
    r.write(bytes);
    await r.closed;
    expect(h.derp.stats()).toMatchObject({ protocolErrors: 1, clients: 0 });
  });

  it('skips unknown and client-irrelevant frames without closing', async () => {
    const h = await harness();
    const r = await admitted(h);
    r.write(concatBytes(frame(0x7f, new Uint8Array(100)), frame(0x06), frame(0x13, new Uint8Array(8)), frame(0x08, new Uint8Array(3)), frame(0x02, new Uint8Array(10))));
    r.write(frame(0x12, new Uint8Array([1, 1, 1, 1, 1, 1, 1, 1])));
    expect(await r.next(0x13)).not.toBeNull();
    expect(h.derp.stats().unknownFrames).toBe(5);
  });

  it('drops the oldest queued packets for a receiver that stops reading, then closes it after the write timeout', async () => {
    const h = await harness({ writeTimeoutMs: 300 });
    const recvKp = generateKeyPair();
    const receiver = await admitted(h, recvKp.priv);
    receiver.sock.pause();
    const sender = await admitted(h);
    const chunk = concatBytes(...Array.from({ length: 16 }, () => frame(0x04, concatBytes(recvKp.pub, new Uint8Array(60_000)))));
    for (let i = 0; i < 40 && !receiver.isClosed; i++) {
      sender.write(chunk);
      await new Promise((res) => setTimeout(res, 5));
    }
    await until(() => h.derp.stats().writeTimeouts === 1, 5000, 'write timeout');
    const s = h.derp.stats();
    expect(s.drops.queueFull).toBeGreaterThan(0);
    expect(s.clients).toBe(1);
    expect(sender.isClosed).toBe(false);
  });

  it('sends PeerGone frames as key ‖ reason byte', async () => {
    const h = await harness();
    const r = await admitted(h);
    const absent = generateKeyPair().pub;
    r.write(frame(0x04, concatBytes(absent, discoLike())));
    const pg = await r.next(0x08);
    expect(toHex(pg!.body)).toBe(`${toHex(absent)}01`);
  });
});

describe('DERP server HTTP paths', () => {
  async function get(h: Harness, path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`http://127.0.0.1:${h.port}${path}`, init);
  }

  it('answers /derp/probe and /derp/latency-check with 200 and CORS *, other methods 405', async () => {
    const h = await harness();
    for (const p of ['/derp/probe', '/derp/latency-check']) {
      const res = await get(h, p);
      expect(res.status).toBe(200);
      expect(res.headers.get('access-control-allow-origin')).toBe('*');
      expect(await res.text()).toBe('');
      expect((await get(h, p, { method: 'HEAD' })).status).toBe(200);
    }
    const post = await get(h, '/derp/probe', { method: 'POST' });
    expect(post.status).toBe(405);
    expect(await post.text()).toBe('bogus probe method\n');
  });

  it('answers /generate_204 with 204, echoing a well-formed challenge', async () => {
    const h = await harness();
    const ok = await get(h, '/generate_204', { headers: { 'X-Tailscale-Challenge': 'ts_abc-1.2:3' } });
    expect(ok.status).toBe(204);
    expect(ok.headers.get('x-tailscale-response')).toBe('response ts_abc-1.2:3');
    expect(ok.headers.get('cache-control')).toBe('no-cache, no-store, must-revalidate, no-transform, max-age=0');
    const bad = await get(h, '/generate_204', { headers: { 'X-Tailscale-Challenge': 'has space' } });
    expect(bad.status).toBe(204);
    expect(bad.headers.get('x-tailscale-response')).toBeNull();
    const long = await get(h, '/generate_204', { headers: { 'X-Tailscale-Challenge': 'a'.repeat(65) } });
    expect(long.headers.get('x-tailscale-response')).toBeNull();
    expect((await get(h, '/generate_204')).headers.get('x-tailscale-response')).toBeNull();
  });

  it('answers /derp without an upgrade, or with a WebSocket upgrade, with 426', async () => {
    const h = await harness();
    const plain = await get(h, '/derp');
    expect(plain.status).toBe(426);
    expect(await plain.text()).toBe('DERP requires connection upgrade\n');
    const ws = raw(h, { headers: { Upgrade: 'websocket' } });
    await ws.closed;
    expect(ws.head).toMatch(/^HTTP\/1\.1 426 Upgrade Required\r\n/);
    expect((await get(h, '/elsewhere')).status).toBe(404);
  });
});
