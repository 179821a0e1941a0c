/**
 * MagicDnsServer: the resolver at 100.100.100.100 and fd7a:115c:a1e0::53, port 53, over UDP and TCP (RFC 1035
 * §4.2, RFC 7766). Each query goes through ./resolver.ts `respond`; the ones it hands back for forwarding are
 * sent on to the route's upstreams here.
 *
 * tailscaled answers quad-100 in user space behind its TUN; with kernel WireGuard Weft makes both addresses local
 * addresses of its interface and serves them from ordinary sockets (binding them is the caller's part). The
 * addresses and ports are injectable, so tests serve on 127.0.0.1 and a free port. One address failing to bind
 * (no IPv6, the interface not up yet) does not stop the others; `start()` reports which are served and may be
 * called again to retry the rest.
 *
 * Forwarding, after Tailscale net/dns/resolver/forwarder.go:
 *   - every upstream of the route is asked at once; the first answer that is not SERVFAIL/REFUSED wins, else the
 *     first answer, else SERVFAIL;
 *   - per upstream: UDP from a fresh socket (random source port; the answer must come from the upstream's address
 *     and carry the query's ID), and TCP when the UDP answer is truncated or has not come within 2 s
 *     (`udpRaceTimeout`), each TCP attempt bounded to 5 s;
 *   - 10 s per query (`dnsQueryTimeout`), then SERVFAIL;
 *   - the answer is passed through `fitResponse` (TC above the asker's size, 4095-byte cap).
 * Upstream sockets are plain sockets: they follow the routing table (so split DNS to a resolver behind a subnet
 * router goes through the tunnel) and must never carry an exit-node bypass mark.
 *
 * Bounds: at most `maxInFlight` (256) forwarded queries at once (more get SERVFAIL straight away), at most
 * `maxTcpConnections` (64) client TCP connections (more are closed), 16 pipelined queries per TCP connection
 * (reading pauses above that), and an idle timeout on TCP connections. Time comes from the injected Clock.
 */
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { ipToBytes, parseHostPort } from '../../protocol/wire/addr.ts';
import { realClock, type Clock, type TimerHandle } from '../sys/clock.ts';
import { discardLogf, type Logf } from '../sys/log.ts';
import { QUAD100_V4, QUAD100_V6, type DnsPlan } from './plan.ts';
import { RCODE, errorResponse, fitResponse, idOf, isTruncated, rcodeOf, respond, type Transport } from './resolver.ts';

export interface ListenAddr {
  readonly host: string;
  readonly port: number;
}

/** quad-100 on port 53, both families. */
export const DEFAULT_LISTEN: readonly ListenAddr[] = [
  { host: QUAD100_V4, port: 53 },
  { host: QUAD100_V6, port: 53 },
];

export interface MagicDnsServerOptions {
  /** Addresses to serve, UDP and TCP each. Port 0 picks a free port (the same for UDP and TCP). */
  listen?: readonly ListenAddr[];
  clock?: Clock;
  logf?: Logf;
  /** @default 256 */
  maxInFlight?: number;
  /** @default 64 */
  maxTcpConnections?: number;
  /** @default 10000 */
  queryTimeoutMs?: number;
  /** Start TCP when UDP has not answered after this long. @default 2000 */
  udpRaceMs?: number;
  /** @default 5000 */
  tcpAttemptTimeoutMs?: number;
  /** Close a client TCP connection idle this long. @default 10000 */
  tcpIdleTimeoutMs?: number;
}

export interface ServeReport {
  /** Addresses now served (with the actual port). */
  served: ListenAddr[];
  failed: { addr: ListenAddr; error: string }[];
}

export interface MagicDnsStats {
  queries: number;
  /** Answered from the plan (records, NXDOMAIN, FORMERR, ...). */
  local: number;
  forwarded: number;
  /** Forwarded queries that got no usable upstream answer in time (SERVFAIL). */
  upstreamFailures: number;
  /** Forwarded queries refused because `maxInFlight` were pending (SERVFAIL). */
  overloaded: number;
  dropped: number;
  inFlight: number;
  tcpConnections: number;
}

interface Listener {
  requested: ListenAddr;
  addr: ListenAddr;
  udp: UdpSocket;
  tcp: Server;
}

/** Per TCP connection: queries answered concurrently before reading pauses. */
const MAX_PIPELINED = 16;
/** Replies a TCP client has not read yet, at most; a client past it is disconnected. */
const MAX_TCP_UNREAD_BYTES = 256 * 1024;

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function sameIp(a: string, b: string): boolean {
  const x = ipToBytes(a);
  const y = ipToBytes(b);
  return x !== null && y !== null && x.length === y.length && x.every((v, i) => v === y[i]);
}

/** RFC 1035 §4.2.2 TCP framing: a two-byte length, then the message. */
function frame(msg: Uint8Array): Buffer {
  const out = Buffer.alloc(2 + msg.byteLength);
  out.writeUInt16BE(msg.byteLength, 0);
  out.set(msg, 2);
  return out;
}

/** Splits complete frames off `buf`; returns them and the rest. */
function unframe(buf: Buffer): { msgs: Uint8Array[]; rest: Buffer } {
  const msgs: Uint8Array[] = [];
  let off = 0;
  while (buf.length - off >= 2) {
    const len = buf.readUInt16BE(off);
    if (buf.length - off - 2 < len) break;
    msgs.push(new Uint8Array(buf.subarray(off + 2, off + 2 + len)));
    off += 2 + len;
  }
  return { msgs, rest: buf.subarray(off) };
}

export class MagicDnsServer {
  private plan: DnsPlan | null = null;
  private readonly listeners: Listener[] = [];
  private readonly tcpConns = new Set<Socket>();
  private readonly aborts = new Set<AbortController>();
  private closed = false;
  private readonly clock: Clock;
  private readonly logf: Logf;
  private readonly listen: readonly ListenAddr[];
  private readonly maxInFlight: number;
  private readonly maxTcpConnections: number;
  private readonly queryTimeoutMs: number;
  private readonly udpRaceMs: number;
  private readonly tcpAttemptTimeoutMs: number;
  private readonly tcpIdleTimeoutMs: number;
  private readonly counters = { queries: 0, local: 0, forwarded: 0, upstreamFailures: 0, overloaded: 0, dropped: 0 };
  private inFlight = 0;

  constructor(opts: MagicDnsServerOptions = {}) {
    this.listen = opts.listen ?? DEFAULT_LISTEN;
    this.clock = opts.clock ?? realClock;
    this.logf = opts.logf ?? discardLogf;
    this.maxInFlight = opts.maxInFlight ?? 256;
    this.maxTcpConnections = opts.maxTcpConnections ?? 64;
    this.queryTimeoutMs = opts.queryTimeoutMs ?? 10_000;
    this.udpRaceMs = opts.udpRaceMs ?? 2_000;
    this.tcpAttemptTimeoutMs = opts.tcpAttemptTimeoutMs ?? 5_000;
    this.tcpIdleTimeoutMs = opts.tcpIdleTimeoutMs ?? 10_000;
  }

  /** Binds every listen address not served yet (UDP, then TCP on the same port). Never rejects. */
  async start(): Promise<ServeReport> {
    const failed: ServeReport['failed'] = [];
    for (const want of this.listen) {
      if (this.closed) {
        failed.push({ addr: want, error: 'server closed' });
        continue;
      }
      if (this.listeners.some((l) => l.requested === want)) continue;
      try {
        this.listeners.push(await this.bindOne(want));
      } catch (e) {
        // Reported to the caller, which logs it (once per distinct failure: start() is retried at every netmap).
        failed.push({ addr: want, error: errorText(e) });
      }
    }
    return { served: this.served(), failed };
  }

  /** The addresses now served, with their actual ports. */
  served(): ListenAddr[] {
    return this.listeners.map((l) => l.addr);
  }

  /** Replaces the plan that answers queries from now on; null answers SERVFAIL. */
  setPlan(plan: DnsPlan | null): void {
    this.plan = plan;
  }

  stats(): MagicDnsStats {
    return { ...this.counters, inFlight: this.inFlight, tcpConnections: this.tcpConns.size };
  }

  /** Stops serving: closes the sockets and client connections and abandons pending forwards. */
  async close(): Promise<void> {
    this.closed = true;
    for (const ac of this.aborts) ac.abort();
    for (const c of this.tcpConns) c.destroy();
    const ls = this.listeners.splice(0);
    await Promise.all(
      ls.map(
        (l) =>
          new Promise<void>((resolve) => {
            let left = 2;
            const one = (): void => {
              if (--left === 0) resolve();
            };
            try {
              l.udp.close(one);
            } catch {
              one();
            }
            l.tcp.close(() => one());
          }),
      ),
    );
  }

  /** Binds one address; with port 0, tries other ports while TCP finds the port UDP chose taken. */
  private async bindOne(want: ListenAddr): Promise<Listener> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.bindOnce(want);
      } catch (e) {
        const inUse = typeof e === 'object' && e !== null && 'code' in e && e.code === 'EADDRINUSE';
        if (want.port !== 0 || !inUse || attempt >= 10) throw e;
      }
    }
  }

  private async bindOnce(want: ListenAddr): Promise<Listener> {
    const v6 = want.host.includes(':');
    const udp = createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: v6 });
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind({ address: want.host, port: want.port, exclusive: true }, () => {
        udp.off('error', reject);
        resolve();
      });
    });
    const port = udp.address().port;
    const tcp = createServer((sock) => this.onTcpConnection(sock));
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen({ host: want.host, port, exclusive: true, ipv6Only: v6 }, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      udp.close();
      throw e;
    }
    udp.on('error', (e) => this.logf(`magicdns: udp ${want.host}:${port}: ${errorText(e)}`));
    tcp.on('error', (e) => this.logf(`magicdns: tcp ${want.host}:${port}: ${errorText(e)}`));
    udp.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
      void this.handle(msg, 'udp').then((resp) => {
        if (resp && !this.closed) udp.send(resp, rinfo.port, rinfo.address, () => undefined);
      });
    });
    return { requested: want, addr: { host: want.host, port }, udp, tcp };
  }

  private onTcpConnection(sock: Socket): void {
    if (this.closed || this.tcpConns.size >= this.maxTcpConnections) {
      sock.destroy();
      return;
    }
    this.tcpConns.add(sock);
    sock.setNoDelay(true);
    sock.setTimeout(this.tcpIdleTimeoutMs, () => sock.destroy());
    sock.on('close', () => this.tcpConns.delete(sock));
    sock.on('error', () => undefined);
    let buf: Buffer = Buffer.alloc(0);
    let pending = 0;
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const { msgs, rest } = unframe(buf);
      buf = rest;
      for (const msg of msgs) {
        pending++;
        if (pending >= MAX_PIPELINED) sock.pause();
        void this.handle(msg, 'tcp').then((resp) => {
          pending--;
          if (resp && !sock.destroyed) {
            sock.write(frame(resp));
            // A client that sends and never reads would make this process buffer without end: past the bound it
            // is cut off; short of it, reading pauses until its replies drain.
            if (sock.writableLength > MAX_TCP_UNREAD_BYTES) {
              sock.destroy();
              return;
            }
          }
          if (pending < MAX_PIPELINED && sock.isPaused() && !sock.writableNeedDrain) sock.resume();
        });
      }
      if (sock.writableNeedDrain) sock.pause();
    });
    sock.on('drain', () => {
      if (pending < MAX_PIPELINED && sock.isPaused()) sock.resume();
    });
  }

  /** The response to one client query, or null to send nothing. Never rejects. */
  private async handle(msg: Uint8Array, transport: Transport): Promise<Uint8Array | null> {
    this.counters.queries++;
    try {
      const r = respond(this.plan, msg, transport);
      if (r.kind === 'drop') {
        this.counters.dropped++;
        return null;
      }
      if (r.kind === 'answer') {
        this.counters.local++;
        return r.bytes;
      }
      if (this.inFlight >= this.maxInFlight) {
        this.counters.overloaded++;
        return errorResponse(msg, transport, RCODE.SERVFAIL);
      }
      this.counters.forwarded++;
      this.inFlight++;
      try {
        const resp = await this.forward(msg, r.upstreams);
        if (resp) return fitResponse(resp, msg, transport);
        this.counters.upstreamFailures++;
        return errorResponse(msg, transport, RCODE.SERVFAIL);
      } finally {
        this.inFlight--;
      }
    } catch (e) {
      this.logf(`magicdns: query failed: ${errorText(e)}`);
      return errorResponse(msg, transport, RCODE.SERVFAIL);
    }
  }

  /** Asks every upstream at once; the first good answer, else the first answer, else null (after the timeout). */
  private async forward(query: Uint8Array, upstreams: readonly string[]): Promise<Uint8Array | null> {
    const ac = new AbortController();
    this.aborts.add(ac);
    const timer = this.clock.setTimeout(() => ac.abort(), this.queryTimeoutMs);
    try {
      return await new Promise<Uint8Array | null>((resolve) => {
        let left = upstreams.length;
        let fallback: Uint8Array | null = null;
        const settle = (v: Uint8Array | null): void => resolve(v);
        if (left === 0) settle(null);
        ac.signal.addEventListener('abort', () => settle(fallback), { once: true });
        for (const up of upstreams) {
          void this.exchange(up, query, ac.signal).then((resp) => {
            const rc = resp ? rcodeOf(resp) : null;
            if (resp && rc !== RCODE.SERVFAIL && rc !== RCODE.REFUSED) settle(resp);
            else if (resp && !fallback) fallback = resp;
            if (--left === 0) settle(fallback);
          });
        }
      });
    } finally {
      this.clock.clearTimeout(timer);
      ac.abort();
      this.aborts.delete(ac);
    }
  }

  /**
   * One upstream: UDP, with TCP when the UDP answer is truncated or late. Resolves with an answer (a truncated UDP
   * one when TCP fails too), or null. Never rejects; closes its sockets when settled or aborted.
   */
  private exchange(upstream: string, query: Uint8Array, signal: AbortSignal): Promise<Uint8Array | null> {
    const hp = parseHostPort(upstream);
    const id = idOf(query);
    if (!hp || id === null || signal.aborted) return Promise.resolve(null);
    return new Promise((resolve) => {
      let done = false;
      let udpState: 'pending' | 'failed' = 'pending';
      let tcpState: 'idle' | 'pending' | 'failed' = 'idle';
      let truncated: Uint8Array | null = null;
      let raceTimer: TimerHandle | null = null;
      const udp = createSocket(hp.host.includes(':') ? 'udp6' : 'udp4');
      const tcpAbort = new AbortController();

      const finish = (v: Uint8Array | null): void => {
        if (done) return;
        done = true;
        if (raceTimer) this.clock.clearTimeout(raceTimer);
        signal.removeEventListener('abort', onAbort);
        tcpAbort.abort();
        try {
          udp.close();
        } catch {
          // already closed
        }
        resolve(v);
      };
      const onAbort = (): void => finish(truncated);
      const settleIfBothFailed = (): void => {
        if (udpState === 'failed' && tcpState === 'failed') finish(truncated);
      };
      const startTcp = (): void => {
        if (done || tcpState !== 'idle') return;
        tcpState = 'pending';
        void this.tcpExchange(hp, query, id, tcpAbort.signal).then((resp) => {
          if (resp) finish(resp);
          tcpState = 'failed';
          settleIfBothFailed();
        });
      };
      const udpFailed = (): void => {
        udpState = 'failed';
        if (tcpState === 'idle') startTcp();
        else settleIfBothFailed();
      };

      signal.addEventListener('abort', onAbort, { once: true });
      udp.on('error', () => {
        if (udpState === 'pending') udpFailed();
      });
      udp.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
        if (udpState !== 'pending' || rinfo.port !== hp.port || !sameIp(rinfo.address, hp.host) || idOf(msg) !== id) return;
        if (!isTruncated(msg)) {
          finish(msg);
          return;
        }
        truncated = msg;
        udpFailed();
      });
      udp.send(query, hp.port, hp.host, (err) => {
        if (err && udpState === 'pending') udpFailed();
      });
      raceTimer = this.clock.setTimeout(startTcp, this.udpRaceMs);
    });
  }

  /** One query over a fresh TCP connection; null on any failure or after `tcpAttemptTimeoutMs`. */
  private tcpExchange(hp: { host: string; port: number }, query: Uint8Array, id: number, signal: AbortSignal): Promise<Uint8Array | null> {
    return new Promise((resolve) => {
      let done = false;
      const sock = connect({ host: hp.host, port: hp.port });
      const finish = (v: Uint8Array | null): void => {
        if (done) return;
        done = true;
        this.clock.clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        sock.destroy();
        resolve(v);
      };
      const onAbort = (): void => finish(null);
      const timer = this.clock.setTimeout(() => finish(null), this.tcpAttemptTimeoutMs);
      signal.addEventListener('abort', onAbort, { once: true });
      let buf: Buffer = Buffer.alloc(0);
      sock.setNoDelay(true);
      sock.on('connect', () => sock.write(frame(query)));
      sock.on('data', (chunk: Buffer) => {
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
        const { msgs, rest } = unframe(buf);
        buf = rest;
        for (const m of msgs) if (idOf(m) === id) finish(m);
      });
      sock.on('error', () => finish(null));
      sock.on('close', () => finish(null));
    });
  }
}
