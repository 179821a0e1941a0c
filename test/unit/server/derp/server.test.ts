/**
 * The embedded DERP server against Weft's own client (engine/relay/client.ts DerpConn) over loopback HTTP:
 * relaying both ways, admission, PeerGone, duplicates, and one bad client not disturbing the others.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DerpConn } from '../../../../src-main/engine/relay/client.ts';
import type { DerpTarget } from '../../../../src-main/engine/relay/targets.ts';
import { realClock } from '../../../../src-main/engine/sys/clock.ts';
import { generateKeyPair } from '../../../../src-main/protocol/crypto/keys.ts';
import { PeerGoneReason } from '../../../../src-main/protocol/wire/derp.ts';
import { bytesEqual, toHex } from '../../../../src-main/protocol/wire/hex.ts';
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

interface Peer {
  conn: DerpConn;
  pub: Uint8Array;
  priv: Uint8Array;
  packets: { src: Uint8Array; data: Uint8Array }[];
  gone: { peer: Uint8Array; reason: number }[];
  connectedEvents: number;
}

function peer(port: number, opts: { preferred?: boolean; priv?: Uint8Array; start?: boolean } = {}): Peer {
  const kp = opts.priv ? { priv: opts.priv } : generateKeyPair();
  const target: DerpTarget = { regionId: 900, host: '127.0.0.1', port, secure: false, serverName: null, insecure: false };
  const conn = new DerpConn({ target, nodePriv: kp.priv, clock: realClock, logf: () => {}, preferred: opts.preferred ?? false });
  const p: Peer = { conn, pub: conn.nodePub, priv: kp.priv, packets: [], gone: [], connectedEvents: 0 };
  conn.on('packet', (src, data) => p.packets.push({ src: src.slice(), data: data.slice() }));
  conn.on('peer-gone', (k, reason) => p.gone.push({ peer: k.slice(), reason }));
  conn.on('connected', () => p.connectedEvents++);
  if (opts.start !== false) conn.start();
  cleanups.push(() => conn.close());
  return p;
}

const connected = (p: Peer): Promise<void> => until(() => p.conn.connected, 3000, 'DerpConn connected');

describe('DERP server with Weft DerpConn clients', () => {
  it('relays packets both ways with the sender key as source', async () => {
    const h = await harness();
    const a = peer(h.port, { preferred: true });
    const b = peer(h.port);
    await Promise.all([connected(a), connected(b)]);
    expect(a.conn.send(b.pub, new Uint8Array([1, 2, 3]))).toBe(true);
    expect(b.conn.send(a.pub, new Uint8Array(1200).fill(7))).toBe(true);
    await until(() => a.packets.length === 1 && b.packets.length === 1);
    expect(b.packets[0]!.src).toEqual(a.pub);
    expect(b.packets[0]!.data).toEqual(new Uint8Array([1, 2, 3]));
    expect(a.packets[0]!.src).toEqual(b.pub);
    expect(a.packets[0]!.data).toEqual(new Uint8Array(1200).fill(7));
    await until(() => h.derp.stats().homeClients === 1, 3000, 'NotePreferred recorded');
    const s = h.derp.stats();
    expect(s).toMatchObject({ clients: 2, keys: 2, accepted: 2, packetsReceived: 2, packetsSent: 2, bytesReceived: 1203, bytesSent: 1203 });
  });

  it('relays a maximum-size (64 KiB) packet and many packets in order', async () => {
    const h = await harness();
    const a = peer(h.port);
    const b = peer(h.port);
    await Promise.all([connected(a), connected(b)]);
    const big = new Uint8Array(64 << 10).map((_, i) => i & 0xff);
    a.conn.send(b.pub, big);
    for (let i = 0; i < 20; i++) a.conn.send(b.pub, new Uint8Array([i]));
    await until(() => b.packets.length === 21);
    expect(bytesEqual(b.packets[0]!.data, big)).toBe(true);
    expect(b.packets.slice(1).map((p) => p.data[0])).toEqual([...Array(20).keys()]);
  });

  it('refuses a key verifyClient rejects: the connection closes and the client never connects', async () => {
    const allowed = generateKeyPair();
    const asked: string[] = [];
    const h = await harness({
      verifyClient: async (k, ctx) => {
        asked.push(toHex(k));
        expect(ctx.info.version).toBe(2);
        expect(ctx.remoteAddress).toMatch(/^127\.0\.0\.1:\d+$/);
        return bytesEqual(k, allowed.pub);
      },
    });
    const good = peer(h.port, { priv: allowed.priv });
    const bad = peer(h.port);
    await connected(good);
    await until(() => h.derp.stats().refused >= 1, 3000, 'refusal');
    expect(bad.conn.connected).toBe(false);
    expect(bad.connectedEvents).toBe(0);
    expect(asked).toContain(toHex(bad.pub));
    expect(h.derp.isConnected(bad.pub)).toBe(false);
    expect(h.derp.isConnected(good.pub)).toBe(true);
    // The refused key is not reachable: a disco packet to it is answered with NotHere.
    good.conn.send(bad.pub, discoLike());
    await until(() => good.gone.length === 1);
    expect(good.gone[0]).toEqual({ peer: bad.pub, reason: PeerGoneReason.NotHere });
  });

  it('treats a throwing verifyClient as a refusal', async () => {
    const h = await harness({
      verifyClient: () => {
        throw new Error('store down');
      },
    });
    const a = peer(h.port);
    await until(() => h.derp.stats().refused >= 1, 3000, 'refusal');
    expect(a.connectedEvents).toBe(0);
    expect(h.logs.some((l) => l.includes('store down'))).toBe(true);
  });

  it('answers a disco packet to an absent key with PeerGone(NotHere), rate-limited; non-disco gets nothing', async () => {
    const h = await harness();
    const a = peer(h.port);
    await connected(a);
    const absent = generateKeyPair().pub;
    a.conn.send(absent, new Uint8Array(100)); // not disco: silently dropped
    for (let i = 0; i < 10; i++) a.conn.send(absent, discoLike());
    await until(() => h.derp.stats().drops.unknownDest === 11);
    await until(() => a.gone.length === 3);
    await new Promise((r) => setTimeout(r, 50));
    expect(a.gone).toHaveLength(3); // burst of 3, then 1/s
    expect(a.gone.every((g) => g.reason === PeerGoneReason.NotHere && bytesEqual(g.peer, absent))).toBe(true);
    expect(h.derp.stats().peerGone.notHere).toBe(3);
  });

  it('sends PeerGone(Disconnected) to the clients that received from a peer when it leaves', async () => {
    const h = await harness();
    const a = peer(h.port);
    const b = peer(h.port);
    const c = peer(h.port);
    await Promise.all([connected(a), connected(b), connected(c)]);
    a.conn.send(b.pub, new Uint8Array([1])); // b received from a; c did not
    await until(() => b.packets.length === 1);
    a.conn.close();
    await until(() => b.gone.length === 1, 3000, 'PeerGone at b');
    expect(b.gone[0]).toEqual({ peer: a.pub, reason: PeerGoneReason.Disconnected });
    await until(() => h.derp.stats().clients === 2);
    expect(c.gone).toEqual([]);
    expect(h.derp.stats().peerGone.disconnected).toBe(1);
  });

  it('answers a client Ping with a Pong of the same 8 bytes', async () => {
    const h = await harness();
    const kp = generateKeyPair();
    const raw = new RawClient(h.port);
    cleanups.push(() => raw.destroy());
    await raw.handshake(kp.priv, h.serverPub);
    await raw.next(0x03);
    raw.write(new Uint8Array([0x12, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]));
    const pong = await raw.next(0x13);
    expect(pong!.body).toEqual(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
    // Extra bytes (up to 1000) are allowed; only the first 8 are echoed.
    raw.write(new Uint8Array([0x12, 0, 0, 0, 12, 9, 9, 9, 9, 9, 9, 9, 9, 0xee, 0xee, 0xee, 0xee]));
    expect((await raw.next(0x13))!.body).toEqual(new Uint8Array(8).fill(9));
    expect(h.derp.stats().pongs).toBe(2);
  });

  it('routes to the newest connection of a key; the older one takes over again when the newer leaves', async () => {
    const h = await harness();
    const a = peer(h.port);
    const shared = generateKeyPair();
    const b1 = peer(h.port, { priv: shared.priv });
    await Promise.all([connected(a), connected(b1)]);
    const b2 = peer(h.port, { priv: shared.priv });
    await connected(b2);
    await until(() => h.derp.stats().clients === 3);
    a.conn.send(b1.pub, new Uint8Array([1]));
    await until(() => b2.packets.length === 1);
    expect(b1.packets).toEqual([]);
    b2.conn.close();
    await until(() => h.derp.stats().clients === 2);
    a.conn.send(b1.pub, new Uint8Array([2]));
    await until(() => b1.packets.length === 1);
    expect(b1.packets[0]!.data).toEqual(new Uint8Array([2]));
    expect(a.gone).toEqual([]); // a duplicate leaving is not the key leaving
    expect(h.derp.stats().keys).toBe(2);
  });

  it('closes the least recently active duplicate beyond maxConnsPerKey', async () => {
    const h = await harness({ maxConnsPerKey: 2 });
    const shared = generateKeyPair();
    const first = new RawClient(h.port);
    cleanups.push(() => first.destroy());
    await first.handshake(shared.priv, h.serverPub);
    await first.next(0x03);
    for (let i = 0; i < 2; i++) {
      const r = new RawClient(h.port);
      cleanups.push(() => r.destroy());
      await r.handshake(shared.priv, h.serverPub);
      await r.next(0x03);
    }
    await first.closed;
    expect(h.derp.stats()).toMatchObject({ clients: 2, keys: 1, replacedDuplicates: 1 });
  });

  it('disconnect(key) closes that key and PeerGone follows', async () => {
    const h = await harness();
    const a = peer(h.port);
    const b = peer(h.port);
    await Promise.all([connected(a), connected(b)]);
    b.conn.send(a.pub, new Uint8Array([1]));
    await until(() => a.packets.length === 1);
    b.conn.close(); // stop it redialling, then kick what is left server-side
    await until(() => !h.derp.isConnected(b.pub));
    expect(h.derp.disconnect(a.pub)).toBe(1);
    expect(h.derp.disconnect(a.pub)).toBe(0);
    await until(() => h.derp.stats().clients === 0);
  });

  it('a client sending garbage or an oversize frame is closed; the others keep relaying', async () => {
    const h = await harness();
    const a = peer(h.port);
    const b = peer(h.port);
    await Promise.all([connected(a), connected(b)]);

    // Garbage instead of a ClientInfo.
    const garbage = new RawClient(h.port);
    await garbage.next(0x01);
    garbage.write('this is not a DERP frame at all, just text\r\n');
    await garbage.closed;

    // An admitted client announcing a 16 MiB frame.
    const kp = generateKeyPair();
    const big = new RawClient(h.port);
    await big.handshake(kp.priv, h.serverPub);
    await big.next(0x03);
    big.write(new Uint8Array([0x04, 0x01, 0x00, 0x00, 0x00]));
    await big.closed;

    // An admitted client sending a SendPacket with a 65 KiB + 1 packet (over derper's MaxPacketSize).
    const kp2 = generateKeyPair();
    const over = new RawClient(h.port);
    await over.handshake(kp2.priv, h.serverPub);
    await over.next(0x03);
    const len = 32 + (64 << 10) + 1;
    const frame = new Uint8Array(5 + len);
    frame[0] = 0x04;
    new DataView(frame.buffer).setUint32(1, len);
    over.write(frame);
    await over.closed;

    a.conn.send(b.pub, new Uint8Array([42]));
    await until(() => b.packets.length === 1);
    expect(a.conn.connected && b.conn.connected).toBe(true);
    const s = h.derp.stats();
    expect(s.handshakeFailures).toBe(1);
    expect(s.protocolErrors).toBe(2);
    expect(s.clients).toBe(2);
  });

  it('close() ends every connection and refuses new ones', async () => {
    const h = await startHarness();
    const a = peer(h.port);
    await connected(a);
    a.conn.on('disconnected', () => a.conn.close());
    await h.derp.close();
    expect(h.derp.stats().clients).toBe(0);
    await until(() => !a.conn.connected);
    const r = new RawClient(h.port);
    await r.closed;
    expect(r.head).toBe('');
    await h.close();
  });
});
