/**
 * MagicConn on loopback, with real sockets and the real disco codec: two nodes find a direct path, a node that
 * claims another's disco key cannot take that path, and pings from hundreds of source ports stay bounded.
 */
import { readdirSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { DISCO_MAX_PING_CANDIDATES, DISCO_MAX_SENT_PINGS, MAGIC_PROXY_IDLE_MS } from '../../../../src-main/engine/constants.ts';
import { FakeClock } from '../../../sim/fake-clock.ts';
import { bindUdp, type UdpSocket } from '../../../../src-main/engine/io/udp.ts';
import { MagicConn, type MagicPeerSpec } from '../../../../src-main/engine/magicsock/conn.ts';
import { realClock } from '../../../../src-main/engine/sys/clock.ts';
import { generateKeyPair, type KeyPair } from '../../../../src-main/protocol/crypto/keys.ts';
import { boxBeforenm } from '../../../../src-main/protocol/crypto/nacl-box.ts';
import { sealDiscoPacket } from '../../../../src-main/protocol/wire/disco.ts';
import { toHex } from '../../../../src-main/protocol/wire/hex.ts';
import { computeMac1, mac1Key } from '../../../../src-main/protocol/wire/wg-mac1.ts';
import { eventually } from '../../../support/eventually.ts';

interface Node {
  node: KeyPair;
  disco: KeyPair;
  conn: MagicConn;
  port: number;
}

const open: { close(): Promise<void> }[] = [];

/** Retries an assertion every 20 ms until it holds, for at most `ms`. */
const until = (check: () => void, ms: number): Promise<true> =>
  eventually('the assertion', ms, () => {
    check();
    return Promise.resolve(true as const);
  }, 20);
afterEach(async () => {
  for (const c of open.splice(0)) await c.close();
});

async function node(): Promise<Node> {
  const nodeKp = generateKeyPair();
  const disco = generateKeyPair();
  const conn = new MagicConn({ nodePriv: nodeKp.priv, nodePub: nodeKp.pub, discoPriv: disco.priv, discoPub: disco.pub, port: 0, clock: realClock, logf: () => {} });
  const port = await conn.start();
  open.push(conn);
  conn.setLocalEndpoints([{ ip: '127.0.0.1', port }]);
  return { node: nodeKp, disco, conn, port };
}

function spec(n: Node, name: string, over: Partial<MagicPeerSpec> = {}): MagicPeerSpec {
  return { nodeKey: n.node.pub, discoKey: n.disco.pub, endpoints: [{ ip: '127.0.0.1', port: n.port }], name, homeRegion: null, ...over };
}

/** A handshake initiation's shape for `peer`: type 1, 148 bytes, random body, mac1 keyed to the peer's key. */
function initiationFor(peer: Uint8Array): Uint8Array {
  const pkt = crypto.getRandomValues(new Uint8Array(148));
  pkt.set([1, 0, 0, 0]);
  pkt.set(computeMac1(mac1Key(peer), pkt)!, 116);
  return pkt;
}

/** The socket that plays the local WireGuard for each conn (only it may send into the proxies and the idle socket). */
const fakeWg = new Map<MagicConn, UdpSocket>();

/** Hands `conn` one handshake for `peer`, as wireguard-go would: to its endpoint (the shared idle socket at first). */
async function sendFromWireGuard(conn: MagicConn, peer: Uint8Array, pkt: Uint8Array = initiationFor(peer)): Promise<void> {
  const ep = conn.wireGuardEndpoint(toHex(peer));
  if (!ep) throw new Error('no endpoint');
  let s = fakeWg.get(conn);
  if (!s) {
    s = await bindUdp({ address: '127.0.0.1' });
    fakeWg.set(conn, s);
    open.push(s);
    conn.setWireGuardPort(s.localPort());
  }
  await s.send(pkt, ep);
}

describe('MagicConn on loopback', () => {
  it('two nodes go direct after one side has a packet to send', async () => {
    const a = await node();
    const b = await node();
    await a.conn.setPeers([spec(b, 'b')]);
    await b.conn.setPeers([spec(a, 'a')]);
    await sendFromWireGuard(a.conn, b.node.pub);
    await until(() => expect(a.conn.pathOf(toHex(b.node.pub)).kind).toBe('direct'), 5000);
  });

  it('a node listed with another node’s disco key does not take its path', async () => {
    const a = await node();
    const b = await node();
    const thief = generateKeyPair();
    // The thief's netmap entry carries b's disco key; it is added after b, as the last writer used to win.
    await a.conn.setPeers([spec(b, 'b'), spec(b, 'thief', { nodeKey: thief.pub, endpoints: [] })]);
    await b.conn.setPeers([spec(a, 'a')]);
    // b has traffic for a: b's pings carry b's node key, so a's answers and ping-back belong to b alone.
    await sendFromWireGuard(b.conn, a.node.pub);
    await until(() => expect(a.conn.pathOf(toHex(b.node.pub)).kind).toBe('direct'), 5000);
    expect(a.conn.pathOf(toHex(thief.pub)).kind).toBe('connecting');
    expect(a.conn.discoStatsOf(toHex(thief.pub))).toMatchObject({ pingsReceived: 0, pongsReceived: 0 });
    expect(a.conn.stateSizes(toHex(thief.pub))).toMatchObject({ boundAddrs: 0, candidates: 0 });
  });

  it('disco pings from 400 source ports leave the peer’s state bounded, and every ping is answered', async () => {
    const a = await node();
    const b = generateKeyPair(); // node key
    const bDisco = generateKeyPair();
    await a.conn.setPeers([{ nodeKey: b.pub, discoKey: bDisco.pub, endpoints: [], name: 'b', homeRegion: null }]);
    const shared = boxBeforenm(a.disco.pub, bDisco.priv);
    let pongs = 0;
    const N = 400;
    for (let i = 0; i < N; i++) {
      const s: UdpSocket = await bindUdp({ address: '127.0.0.1' });
      s.onPacket(() => pongs++);
      const ping = sealDiscoPacket({ senderPub: bDisco.pub, shared, msg: { kind: 'ping', txid: crypto.getRandomValues(new Uint8Array(12)), nodeKey: b.pub, padding: 0 } });
      await s.send(ping, { ip: '127.0.0.1', port: a.port });
      // Keep the last few open to hear their pong; the rest close at once (bounded descriptors).
      if (i >= N - 4) open.push(s);
      else {
        await new Promise((r) => setTimeout(r, 1));
        await s.close();
      }
    }
    await until(() => expect(a.conn.discoStatsOf(toHex(b.pub))?.pingsReceived).toBe(N), 5000);
    const sizes = a.conn.stateSizes(toHex(b.pub))!;
    expect(sizes.candidates).toBeLessThanOrEqual(DISCO_MAX_PING_CANDIDATES);
    expect(sizes.boundAddrs).toBeLessThanOrEqual(2 * DISCO_MAX_PING_CANDIDATES);
    expect(sizes.sentPings).toBeLessThanOrEqual(DISCO_MAX_SENT_PINGS);
    // The four sockets still open each got a pong (and a ping-back): nothing was dropped for them.
    await until(() => expect(pongs).toBeGreaterThanOrEqual(4), 3000);
  });

  it('2,000 peers configured open no proxy socket; a handshake on the idle socket opens exactly its peer’s', async () => {
    const a = await node();
    const fds = (): number => readdirSync('/proc/self/fd').length;
    const before = fds();
    // Random bytes stand in for keys (no X25519 is done until a peer's first disco message).
    const rnd = (): Uint8Array => crypto.getRandomValues(new Uint8Array(32));
    const specs: MagicPeerSpec[] = Array.from({ length: 2000 }, (_, i) => ({ nodeKey: rnd(), discoKey: rnd(), endpoints: [], name: `p${i}`, homeRegion: null }));
    const t0 = performance.now();
    await a.conn.setPeers(specs);
    expect(performance.now() - t0).toBeLessThan(2000); // per peer: a few hashes, no socket, no X25519
    expect(a.conn.openProxies).toBe(0);
    expect(fds() - before).toBeLessThanOrEqual(2);
    const idle = a.conn.wireGuardEndpoint(toHex(specs[0]!.nodeKey));
    expect(a.conn.wireGuardEndpoint(toHex(specs[1999]!.nodeKey))).toEqual(idle);
    // WireGuard has a packet for peer 1234: its initiation reaches the idle socket, and only that peer gets a proxy.
    const changed: string[] = [];
    a.conn.on('wg-endpoint', (k) => changed.push(k));
    const target = specs[1234]!;
    await sendFromWireGuard(a.conn, target.nodeKey);
    await until(() => expect(a.conn.openProxies).toBe(1), 3000);
    expect(a.conn.stateSizes(toHex(target.nodeKey))?.proxy).toBe(true);
    expect(changed).toEqual([toHex(target.nodeKey)]);
    expect(a.conn.wireGuardEndpoint(toHex(target.nodeKey))).not.toEqual(idle);
    // Dropped on the idle socket: a handshake that names no peer, a packet that is no handshake, and a valid
    // handshake from a local process other than WireGuard (the keys are public; only WireGuard may send there).
    const dropped = a.conn.counters.dropped;
    await sendFromWireGuard(a.conn, specs[0]!.nodeKey, initiationFor(generateKeyPair().pub));
    await sendFromWireGuard(a.conn, specs[0]!.nodeKey, new Uint8Array(148).fill(4));
    const s = await bindUdp({ address: '127.0.0.1' });
    await s.send(initiationFor(specs[7]!.nodeKey), idle!);
    await s.close();
    await until(() => expect(a.conn.counters.dropped).toBe(dropped + 3), 3000);
    expect(a.conn.openProxies).toBe(1);
  }, 20_000);

  it('a proxy socket idle for 200 s (past WireGuard’s session lifetime) closes, and WireGuard is pointed back at the idle socket', async () => {
    const clock = new FakeClock();
    const kp = generateKeyPair();
    const disco = generateKeyPair();
    const conn = new MagicConn({ nodePriv: kp.priv, nodePub: kp.pub, discoPriv: disco.priv, discoPub: disco.pub, port: 0, clock, logf: () => {} });
    await conn.start();
    open.push(conn);
    const peer = generateKeyPair();
    await conn.setPeers([{ nodeKey: peer.pub, discoKey: generateKeyPair().pub, endpoints: [], name: 'p', homeRegion: null }]);
    const idle = conn.wireGuardEndpoint(toHex(peer.pub));
    await sendFromWireGuard(conn, peer.pub);
    await until(() => expect(conn.openProxies).toBe(1), 3000);
    const changed: string[] = [];
    conn.on('wg-endpoint', (k) => changed.push(k));
    clock.advance(MAGIC_PROXY_IDLE_MS - 40_000);
    expect(conn.openProxies).toBe(1);
    // WireGuard's counters moving count as activity too (the kernel data path sends without Node).
    conn.wireGuardCounters(toHex(peer.pub), { txBytes: 100, rxBytes: 100, lastHandshakeAt: null });
    conn.wireGuardCounters(toHex(peer.pub), { txBytes: 200, rxBytes: 100, lastHandshakeAt: null });
    clock.advance(MAGIC_PROXY_IDLE_MS - 40_000);
    expect(conn.openProxies).toBe(1);
    clock.advance(MAGIC_PROXY_IDLE_MS);
    expect(conn.openProxies).toBe(0);
    expect(changed).toEqual([toHex(peer.pub)]);
    expect(conn.wireGuardEndpoint(toHex(peer.pub))).toEqual(idle);
    expect(conn.counters).toMatchObject({ proxiesOpened: 1, proxiesClosed: 1 });
  });
});
