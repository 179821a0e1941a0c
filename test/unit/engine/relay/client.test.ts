/**
 * DerpConn against a scripted loopback DERP server (HTTP 101, ServerKey, ClientInfo in, ServerInfo out as the
 * test chooses): it is connected only once a ServerInfo sealed by the announced server key opens; a bad or
 * missing one fails the attempt and the redial backoff applies; and a server that stops reading cannot make
 * the client buffer more than DERP_SEND_QUEUE_MAX_BYTES: the excess is dropped and counted.
 * Time (handshake deadline, backoff, drop-log interval) runs on a FakeClock; the sockets are real.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { DerpConn } from '../../../../src-main/engine/relay/client.ts';
import { DERP_DROP_LOG_INTERVAL_MS, DERP_HANDSHAKE_TIMEOUT_MS, DERP_SEND_QUEUE_MAX_BYTES, DERP_WRITE_STALL_MS } from '../../../../src-main/engine/constants.ts';
import type { DerpTarget } from '../../../../src-main/engine/relay/targets.ts';
import { generateKeyPair } from '../../../../src-main/protocol/crypto/keys.ts';
import {
  DerpFrameReader,
  FrameType,
  encodeFrame,
  encodeFrameHeader,
  openClientInfo,
  parseFrame,
  sealServerInfo,
} from '../../../../src-main/protocol/wire/derp.ts';
import { FakeClock } from '../../../sim/fake-clock.ts';

/** What the scripted server answers a valid ClientInfo with. */
type Mode = 'good' | 'wrong-key' | 'garbage' | 'short' | 'none' | 'hold' | 'rate';

/** What 'rate' announces: 10 kB/s with a 20 kB burst. */
const RATE = { version: 2, tokenBucketBytesPerSecond: 10_000, tokenBucketBytesBurst: 20_000 };

interface ServerConn {
  sock: Socket;
  clientPub: Uint8Array | null;
  /** Sends the valid ServerInfo (for 'hold'). */
  sendServerInfo(): void;
  bytesReceived: number;
  /** 'data' events (socket reads). */
  reads: number;
  /** SendPacket frames received, in order (copies). */
  packets: { dst: Uint8Array; packet: Uint8Array }[];
  closed: boolean;
}

interface ScriptedServer {
  port: number;
  /** Modes for successive connections; the last one repeats. */
  modes: Mode[];
  conns: ServerConn[];
  close(): Promise<void>;
}

async function scriptedServer(modes: Mode[]): Promise<ScriptedServer> {
  const kp = generateKeyPair();
  const other = generateKeyPair();
  const conns: ServerConn[] = [];
  const srv = http.createServer((_req, res) => {
    res.writeHead(404);
    res.end();
  });
  const s: ScriptedServer = {
    port: 0,
    modes,
    conns,
    close: async () => {
      srv.closeAllConnections();
      for (const c of conns) c.sock.destroy();
      await new Promise<void>((resolve) => srv.close(() => resolve()));
    },
  };
  srv.on('upgrade', (_req: http.IncomingMessage, sock: Socket) => {
    const mode = s.modes[Math.min(conns.length, s.modes.length - 1)]!;
    const reader = new DerpFrameReader({ maxFrameLen: 1 << 20 });
    const c: ServerConn = {
      sock,
      clientPub: null,
      bytesReceived: 0,
      reads: 0,
      packets: [],
      closed: false,
      sendServerInfo: () => {
        if (!c.clientPub) throw new Error('no ClientInfo yet');
        sock.write(encodeFrame(sealServerInfo({ serverPriv: kp.priv, clientPub: c.clientPub, info: { version: 2, tokenBucketBytesPerSecond: 0, tokenBucketBytesBurst: 0 } })));
      },
    };
    conns.push(c);
    sock.on('error', () => {});
    sock.on('close', () => (c.closed = true));
    // Upgraded sockets of an http.Server allow half-open: end our side when the client ends its side.
    sock.on('end', () => {
      c.closed = true;
      sock.end();
    });
    sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\nDerp-Version: 2\r\n\r\n');
    sock.write(encodeFrame({ kind: 'server-key', serverPub: kp.pub }));
    sock.on('data', (d: Buffer) => {
      c.bytesReceived += d.length;
      c.reads++;
      for (const raw of reader.push(new Uint8Array(d))) {
        if (raw.kind === 'frame' && raw.type === FrameType.SendPacket) {
          const f = parseFrame(raw.type, raw.body);
          if (f.kind === 'send-packet') c.packets.push({ dst: f.dst.slice(), packet: f.packet.slice() });
          continue;
        }
        if (raw.kind !== 'frame' || raw.type !== FrameType.ClientInfo) continue;
        const f = parseFrame(raw.type, raw.body);
        if (f.kind !== 'client-info') throw new Error('bad ClientInfo frame');
        const opened = openClientInfo({ serverPriv: kp.priv, frame: f });
        if (opened.kind !== 'opened') throw new Error(`ClientInfo did not open: ${opened.reason}`);
        c.clientPub = opened.clientPub.slice();
        const info = { version: 2, tokenBucketBytesPerSecond: 0, tokenBucketBytesBurst: 0 };
        switch (mode) {
          case 'good':
            c.sendServerInfo();
            break;
          case 'rate':
            sock.write(encodeFrame(sealServerInfo({ serverPriv: kp.priv, clientPub: c.clientPub, info: RATE })));
            break;
          case 'wrong-key': // sealed by a key other than the one in ServerKey
            sock.write(encodeFrame(sealServerInfo({ serverPriv: other.priv, clientPub: c.clientPub, info })));
            break;
          case 'garbage': // nonce + bytes that are no box
            sock.write(encodeFrame({ kind: 'server-info', sealed: new Uint8Array(24 + 40).fill(0x5a) }));
            break;
          case 'short': // shorter than the nonce: Go ends the connection
            sock.write(encodeFrameHeader(FrameType.ServerInfo, 10));
            sock.write(new Uint8Array(10));
            break;
          case 'none':
          case 'hold':
            break;
        }
      }
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  s.port = (srv.address() as AddressInfo).port;
  return s;
}

async function until(cond: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Client {
  conn: DerpConn;
  clock: FakeClock;
  logs: string[];
  connectedEvents: number;
}

async function setup(modes: Mode[]): Promise<{ srv: ScriptedServer; c: Client }> {
  const srv = await scriptedServer(modes);
  cleanups.push(() => srv.close());
  const clock = new FakeClock();
  const logs: string[] = [];
  const target: DerpTarget = { regionId: 900, host: '127.0.0.1', port: srv.port, secure: false, serverName: null, insecure: false };
  const conn = new DerpConn({ target, nodePriv: generateKeyPair().priv, clock, logf: (l) => logs.push(l), preferred: false });
  const c: Client = { conn, clock, logs, connectedEvents: 0 };
  conn.on('connected', () => c.connectedEvents++);
  cleanups.push(() => conn.close());
  conn.start();
  return { srv, c };
}

describe('DerpConn handshake: ServerInfo is verified', () => {
  it('is connected only after a ServerInfo sealed by the server key to our node key opens', async () => {
    const { srv, c } = await setup(['hold']);
    await until(() => srv.conns[0]?.clientPub !== null && srv.conns.length === 1, 5000, 'ClientInfo at the server');
    expect(srv.conns[0]!.clientPub).toEqual(c.conn.nodePub);
    await new Promise((r) => setTimeout(r, 50));
    expect(c.conn.connected).toBe(false);
    expect(c.connectedEvents).toBe(0);
    srv.conns[0]!.sendServerInfo();
    await until(() => c.conn.connected, 5000, 'connected');
    expect(c.connectedEvents).toBe(1);
    expect(c.logs.some((l) => l.includes('connected to region 900') && l.includes('server version 2'))).toBe(true);
  });

  it.each([
    ['wrong-key', 'ServerInfo did not verify (ServerInfo: box did not open with the server key)'],
    ['garbage', 'ServerInfo did not verify (ServerInfo: box did not open with the server key)'],
    ['short', 'bad ServerInfo frame'],
  ] as const)('a %s ServerInfo fails the attempt with a clear reason, and the redial connects once the server is right', async (mode, reason) => {
    const { srv, c } = await setup([mode, 'good']);
    await until(() => srv.conns[0]?.closed === true, 5000, 'first connection closed by the client');
    expect(c.conn.connected).toBe(false);
    expect(c.connectedEvents).toBe(0);
    expect(c.logs.some((l) => l.includes(reason) && l.includes('redialling'))).toBe(true);
    // Backoff: no redial before 1 s of (fake) time, then one.
    c.clock.advance(999);
    await new Promise((r) => setTimeout(r, 50));
    expect(srv.conns.length).toBe(1);
    c.clock.advance(1);
    await until(() => c.conn.connected, 5000, 'connected on the redial');
    expect(srv.conns.length).toBe(2);
    expect(c.connectedEvents).toBe(1);
  });

  it('a ServerInfo that never comes fails the attempt at the handshake deadline; the backoff then grows', async () => {
    const { srv, c } = await setup(['none']);
    await until(() => srv.conns[0]?.clientPub != null, 5000, 'ClientInfo at the server');
    c.clock.advance(DERP_HANDSHAKE_TIMEOUT_MS - 1);
    await new Promise((r) => setTimeout(r, 50));
    expect(srv.conns[0]!.closed).toBe(false);
    c.clock.advance(1);
    await until(() => srv.conns[0]!.closed, 5000, 'first connection closed');
    expect(c.logs.some((l) => l.includes(`no valid ServerInfo within ${DERP_HANDSHAKE_TIMEOUT_MS / 1000} s`))).toBe(true);
    c.clock.advance(1000); // first redial after 1 s
    await until(() => srv.conns[1]?.clientPub != null, 5000, 'second ClientInfo');
    c.clock.advance(DERP_HANDSHAKE_TIMEOUT_MS);
    await until(() => srv.conns[1]!.closed, 5000, 'second connection closed');
    c.clock.advance(1999); // second redial after 2 s
    await new Promise((r) => setTimeout(r, 50));
    expect(srv.conns.length).toBe(2);
    srv.modes = ['good'];
    c.clock.advance(1);
    await until(() => c.conn.connected, 5000, 'connected on the third attempt');
    expect(srv.conns.length).toBe(3);
    expect(c.connectedEvents).toBe(1);
  });

  it('send is refused (false) before ServerInfo has opened', async () => {
    const { srv, c } = await setup(['hold']);
    await until(() => srv.conns[0]?.clientPub != null, 5000, 'ClientInfo at the server');
    expect(c.conn.send(generateKeyPair().pub, new Uint8Array(10))).toBe(false);
  });
});

describe('DerpConn sends: bounded, dropped and counted', () => {
  it('a server that stops reading: 50 MB of sends leave at most DERP_SEND_QUEUE_MAX_BYTES unsent, the rest dropped', async () => {
    const { srv, c } = await setup(['good']);
    await until(() => c.conn.connected, 5000, 'connected');
    const sc = srv.conns[0]!;
    sc.sock.pause(); // accepts, never reads again
    const dst = generateKeyPair().pub;
    const pkt = new Uint8Array(60_000).fill(0xab);
    const total = Math.ceil(50e6 / pkt.length);
    let sent = 0;
    let refused = 0;
    let maxBuffered = 0;
    for (let i = 0; i < total; i++) {
      let ok = false;
      expect(() => (ok = c.conn.send(dst, pkt))).not.toThrow();
      if (ok) sent++;
      else refused++;
      maxBuffered = Math.max(maxBuffered, c.conn.bufferedBytes);
      if (i % 8 === 7) await tick(); // let the kernel buffers fill between batches
    }
    expect(maxBuffered).toBeLessThanOrEqual(DERP_SEND_QUEUE_MAX_BYTES);
    expect(maxBuffered).toBeGreaterThan(DERP_SEND_QUEUE_MAX_BYTES - 2 * (pkt.length + 37)); // the cap was reached
    expect(refused).toBeGreaterThan(0);
    expect(c.conn.droppedSends).toBe(refused);
    expect(sent + refused).toBe(total);
    expect(sent * pkt.length).toBeLessThan(40e6); // the stalled server took only what the kernel buffers hold
    expect(c.conn.connected).toBe(true); // dropping is not a failure
    // Logged once for the whole burst (fake time did not move), then again once the interval has passed.
    const dropLines = (): string[] => c.logs.filter((l) => l.includes('dropped') && l.includes('send queue full'));
    expect(dropLines()).toHaveLength(1);
    c.conn.send(dst, pkt);
    expect(dropLines()).toHaveLength(1);
    c.clock.advance(DERP_DROP_LOG_INTERVAL_MS);
    c.conn.send(dst, pkt);
    expect(dropLines()).toHaveLength(2);
    expect(dropLines()[1]).toContain(`${refused + 2} in total`);
  });

  it('a socket that has not drained for DERP_WRITE_STALL_MS is given up and redialled', async () => {
    const { srv, c } = await setup(['good']);
    await until(() => c.conn.connected, 5000, 'connected');
    srv.conns[0]!.sock.pause();
    const dst = generateKeyPair().pub;
    const pkt = new Uint8Array(60_000);
    // Enough to fill the kernel's buffers on both sides, so bytes stay in the socket itself after each flush.
    for (let i = 0; i < 200; i++) {
      c.conn.send(dst, pkt);
      if (i % 8 === 7) await tick();
    }
    await tick();
    expect(c.conn.bufferedBytes).toBeGreaterThan(0);
    // The watch began with the first send, while writes still completed: that window shows progress, so it
    // watches one more; in that one nothing moves, and the connection is given up.
    c.clock.advance(DERP_WRITE_STALL_MS);
    expect(c.conn.connected).toBe(true);
    c.clock.advance(DERP_WRITE_STALL_MS - 1);
    expect(c.conn.connected).toBe(true);
    c.clock.advance(1);
    expect(c.conn.connected).toBe(false);
    expect(c.logs.join('\n')).toMatch(/writes stalled for 15 s .*redialling/);
    // The redial connects again (a second server connection), and sends go through it.
    c.clock.advance(2000);
    await until(() => c.conn.connected, 5000, 'reconnected');
    expect(srv.conns).toHaveLength(2);
  });

  it('keeps to the send rate the server announces in ServerInfo: a burst, then its bytes per second', async () => {
    const { c } = await setup(['rate']);
    await until(() => c.conn.connected, 5000, 'connected');
    const dst = generateKeyPair().pub;
    const pkt = new Uint8Array(963); // 1,000 bytes as the server counts them (header + key + packet)
    let ok = 0;
    for (let i = 0; i < 100; i++) if (c.conn.send(dst, pkt)) ok++;
    expect(ok).toBe(20); // the 20 kB burst
    c.clock.advance(500); // 5 kB more
    ok = 0;
    for (let i = 0; i < 100; i++) if (c.conn.send(dst, pkt)) ok++;
    expect(ok).toBe(5);
    expect(c.conn.droppedSends).toBe(175);
    expect(c.logs.join('\n')).toMatch(/over the server's rate of 10000 bytes\/s/);
  });

  it("the packets of one event-loop turn are written together at the turn's end, and arrive whole and in order", async () => {
    const { srv, c } = await setup(['good']);
    await until(() => c.conn.connected, 5000, 'connected');
    const sc = srv.conns[0]!;
    const readsBefore = sc.reads;
    const dsts = [generateKeyPair().pub, generateKeyPair().pub];
    const sent: Uint8Array[] = [];
    for (let i = 0; i < 200; i++) {
      const pkt = new Uint8Array(100 + (i % 7)).fill(i & 0xff);
      sent.push(pkt.slice());
      expect(c.conn.send(dsts[i % 2]!, pkt)).toBe(true);
      pkt.fill(0); // the caller's buffer is free again as soon as send returns
    }
    // Nothing written yet: it all waits for the end of this turn, and counts as buffered.
    expect(c.conn.bufferedBytes).toBe(sent.reduce((n, p) => n + 37 + p.length, 0));
    await until(() => sc.packets.length === 200, 5000, 'all packets at the server');
    sc.packets.forEach((p, i) => {
      expect(p.dst).toEqual(dsts[i % 2]);
      expect(p.packet).toEqual(sent[i]);
    });
    expect(sc.reads - readsBefore).toBeLessThan(10); // one ~28 kB write, not 200
    expect(c.conn.bufferedBytes).toBe(0);
    expect(c.conn.droppedSends).toBe(0);
  });

  it('an unsendable packet (over 64 KiB, or a short key) is dropped and counted, never thrown', async () => {
    const { c } = await setup(['good']);
    await until(() => c.conn.connected, 5000, 'connected');
    expect(c.conn.send(generateKeyPair().pub, new Uint8Array((64 << 10) + 1))).toBe(false);
    expect(c.conn.send(new Uint8Array(31), new Uint8Array(10))).toBe(false);
    expect(c.conn.droppedSends).toBe(2);
    expect(c.conn.send(generateKeyPair().pub, new Uint8Array(10))).toBe(true);
  });
});
