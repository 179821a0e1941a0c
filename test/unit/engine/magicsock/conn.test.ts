/**
 * MagicConn on loopback, with real sockets and the real disco codec: two nodes find a direct path, a node that
 * claims another's disco key cannot take that path, and pings from hundreds of source ports stay bounded.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DISCO_MAX_PING_CANDIDATES } from '../../../../src-main/engine/constants.ts';
import { bindUdp, type UdpSocket } from '../../../../src-main/engine/io/udp.ts';
import { MagicConn, type MagicPeerSpec } from '../../../../src-main/engine/magicsock/conn.ts';
import { realClock } from '../../../../src-main/engine/sys/clock.ts';
import { generateKeyPair, type KeyPair } from '../../../../src-main/protocol/crypto/keys.ts';
import { boxBeforenm } from '../../../../src-main/protocol/crypto/nacl-box.ts';
import { sealDiscoPacket } from '../../../../src-main/protocol/wire/disco.ts';
import { toHex } from '../../../../src-main/protocol/wire/hex.ts';
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

/** Hands `conn` one WireGuard-shaped packet for `peer`, as wireguard-go would through the peer's proxy. */
async function sendFromWireGuard(conn: MagicConn, peer: Uint8Array): Promise<void> {
  const ep = conn.proxyEndpoint(toHex(peer));
  if (!ep) throw new Error('no proxy');
  const s = await bindUdp({ address: '127.0.0.1' });
  const pkt = new Uint8Array(148);
  pkt[0] = 1; // a handshake initiation's shape
  await s.send(pkt, ep);
  await s.close();
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
    expect(sizes.sentPings).toBeLessThanOrEqual(64);
    // The four sockets still open each got a pong (and a ping-back): nothing was dropped for them.
    await until(() => expect(pongs).toBeGreaterThanOrEqual(4), 3000);
  });
});
