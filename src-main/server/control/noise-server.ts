/**
 * The server end of the TS2021 transport (control-protocol §4–§6): takes the `POST /ts2021` upgrade, runs the
 * responder side of Noise IK, and serves HTTP/2 with prior knowledge over the encrypted stream.
 *
 *   client                                        server
 *   POST /ts2021  Upgrade: tailscale-control-protocol
 *                 X-Tailscale-Handshake: base64(101-byte initiation) ─▶ respond() checks it
 *             ◀─ HTTP/1.1 101 Switching Protocols
 *             ◀─ 51-byte Noise response
 *             ◀─ record: early payload FF FF FF 'T' 'S' | u32 BE len | {"nodeKeyChallenge":"chalpub:…"}
 *   HTTP/2 preface, SETTINGS, requests ◀──────▶ records (BE nonces) carrying HTTP/2
 *
 * Refusals: a missing or unknown Upgrade, a missing handshake header or bad base64 get a plain HTTP 400 before
 * any switch. An initiation of the wrong size, type or length field gets 101 and a Noise error frame (type 3);
 * one that fails authentication, or a capability version below the minimum, gets 101 and then EOF, which is
 * what Tailscale's server puts on the wire (errata to §4.2). Nothing of a refused connection reaches HTTP/2.
 *
 * Every connection gets its own http2 server object, so each request knows the machine key the handshake
 * authenticated (`NoiseRequest.machineKey`); routes never trust a key from the request body alone. Each
 * connection has a token-bucket request rate limit and a body size limit; a bad frame or a decryption failure
 * destroys that one connection only.
 *
 * Before any Noise work, an upgrade is counted against limits by source IP: connections open in all and per
 * address, and a per-address handshake budget (token bucket). Over a limit it gets a plain 503. Behind a reverse
 * proxy every client shares the proxy's address, so the per-address limits then apply to all of them together.
 */
import http2 from 'node:http2';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { encodeEarlyPayload, NoiseConn } from '../../engine/io/noise-conn.ts';
import type { Clock, TimerHandle } from '../../engine/sys/clock.ts';
import type { Logf } from '../../engine/sys/log.ts';
import { generateKeyPair, keyText } from '../../protocol/crypto/keys.ts';
import { encodeErrorFrame, respond } from '../../protocol/crypto/noise.ts';
import { bytesToIp, ipv6ToBytes } from '../../protocol/wire/addr.ts';
import { UPGRADE_PROTOCOL } from './constants.ts';

/** One HTTP/2 request over an authenticated Noise connection, its body already read (≤ the limit). */
export interface NoiseRequest {
  method: string;
  path: string;
  /** The machine key the Noise handshake authenticated, as `mkey:<hex>`. */
  machineKey: string;
  /** The capability version in the Noise initiation. */
  noiseVersion: number;
  /** The TCP peer's IP address (IPv4-mapped IPv6 shown as IPv4): what per-source limits count by. */
  remoteIp: string;
  body: Uint8Array;
  stream: http2.ServerHttp2Stream;
  /** Aborted when the client resets the stream or the connection goes away. */
  signal: AbortSignal;
}

export type NoiseRoute = (r: NoiseRequest) => Promise<void>;

export interface NoiseServerInit {
  serverPriv: Uint8Array;
  minCapver: number;
  maxBodyBytes: number;
  rateBurst: number;
  ratePerSecond: number;
  handshakeIdleMs: number;
  /** Connections in all and per source IP, and new handshakes per source IP (burst, per second). */
  maxConnections: number;
  maxConnectionsPerIp: number;
  handshakeBurstPerIp: number;
  handshakeRatePerIp: number;
  /** Source IPs tracked for the limits at once (least recently seen idle ones are forgotten). */
  maxTrackedIps: number;
  clock: Clock;
  logf: Logf;
  /** Routes by "METHOD /path"; anything else under /machine/ is 501, the rest 404. */
  routes: Record<string, NoiseRoute>;
}

/** Sends a complete plain-text reply on an HTTP/2 stream (ignoring a stream the client already closed). */
export function sendText(stream: http2.ServerHttp2Stream, status: number, text: string, headers: Record<string, string> = {}): void {
  if (stream.destroyed || stream.closed) return;
  try {
    if (!stream.headersSent) stream.respond({ ':status': status, 'content-type': 'text/plain; charset=utf-8', ...headers });
    stream.end(text ? `${text}\n` : '');
  } catch {
    stream.destroy();
  }
}

/** Sends a JSON reply with a trailing newline, as Go's json.Encoder writes it. */
export function sendJson(stream: http2.ServerHttp2Stream, status: number, value: unknown): void {
  if (stream.destroyed || stream.closed) return;
  try {
    stream.respond({ ':status': status, 'content-type': 'application/json; charset=utf-8' });
    stream.end(`${JSON.stringify(value)}\n`);
  } catch {
    stream.destroy();
  }
}

/** Writes a complete HTTP/1.1 reply on a raw socket and closes it. */
function rawReply(socket: Duplex, status: number, reason: string, text: string): void {
  const body = Buffer.from(`${text}\n`);
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body.toString()}`);
}

const STD_BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const STRUCTURAL = new Set(['wrong handshake initiation size', 'unexpected handshake message type', 'wrong handshake initiation length']);

interface Connection {
  ip: string;
  /** Requests (HTTP/2 streams) it has made so far. */
  requests: number;
  conn: NoiseConn;
  h2: http2.Http2Server;
  /** Token bucket: tokens left and when they were last refilled (clock ms). */
  tokens: number;
  refilledAt: number;
}

/** Per source IP: its live connections and its handshake token bucket. */
interface IpState {
  conns: number;
  tokens: number;
  refilledAt: number;
}

/**
 * The source a socket's peer is counted under for the per-address limits: an IPv4 address (IPv4-mapped IPv6 as
 * plain IPv4), or an IPv6 address's /64, since one subscriber usually holds a whole /64 and could otherwise
 * take a new address for every connection.
 */
export function sourceIp(addr: string | undefined): string {
  if (!addr) return '?';
  if (addr.startsWith('::ffff:') && addr.includes('.')) return addr.slice(7);
  const b = addr.includes(':') ? ipv6ToBytes(addr.split('%')[0]!) : null;
  if (!b) return addr;
  const net = new Uint8Array(16);
  net.set(b.subarray(0, 8));
  return `${bytesToIp(net)}/64`;
}

export class NoiseServer {
  // Owned by this instance: the live connections, and per source IP their count and handshake budget (a Map in
  // least-recently-seen order, bounded by maxTrackedIps).
  readonly #conns = new Set<Connection>();
  readonly #ips = new Map<string, IpState>();
  readonly #init: NoiseServerInit;
  #refusedSinceLog = 0;
  #lastRefusalLog = -Infinity;

  constructor(init: NoiseServerInit) {
    this.#init = init;
  }

  get connectionCount(): number {
    return this.#conns.size;
  }

  /** Source IPs tracked for the limits now (bounded by maxTrackedIps). */
  get trackedIpCount(): number {
    return this.#ips.size;
  }

  /** The state of `ip`, created or moved to the most recently seen end; idle ones beyond the bound are forgotten. */
  #ipState(ip: string): IpState {
    const now = this.#init.clock.now();
    let st = this.#ips.get(ip);
    if (st) this.#ips.delete(ip);
    else st = { conns: 0, tokens: this.#init.handshakeBurstPerIp, refilledAt: now };
    this.#ips.set(ip, st);
    if (this.#ips.size > this.#init.maxTrackedIps) {
      for (const [k, v] of this.#ips) {
        if (this.#ips.size <= this.#init.maxTrackedIps) break;
        if (v.conns === 0 && k !== ip) this.#ips.delete(k);
      }
    }
    return st;
  }

  /** Why a new connection from `ip` is refused now, or null (and one handshake token is taken). */
  #admit(ip: string): string | null {
    const i = this.#init;
    if (this.#conns.size >= i.maxConnections) return `${this.#conns.size} connections open (the limit)`;
    const st = this.#ipState(ip);
    if (st.conns >= i.maxConnectionsPerIp) return `${st.conns} connections open from ${ip} (the per-address limit)`;
    const now = i.clock.now();
    st.tokens = Math.min(i.handshakeBurstPerIp, st.tokens + ((now - st.refilledAt) / 1000) * i.handshakeRatePerIp);
    st.refilledAt = now;
    if (st.tokens < 1) return `too many handshakes from ${ip}`;
    st.tokens -= 1;
    return null;
  }

  /** Logs refusals at most once per 10 s (a flood must not flood the log too). */
  #logRefusal(why: string): void {
    this.#refusedSinceLog++;
    const now = this.#init.clock.now();
    if (now - this.#lastRefusalLog < 10_000) return;
    this.#init.logf(`noise: refused ${this.#refusedSinceLog} connection(s); last: ${why}`);
    this.#refusedSinceLog = 0;
    this.#lastRefusalLog = now;
  }

  /** Handles `POST /ts2021` with an Upgrade header (the http server's 'upgrade' event for this path). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const logf = this.#init.logf;
    socket.on('error', () => socket.destroy());
    const upgrade = String(req.headers['upgrade'] ?? '').toLowerCase();
    if (upgrade !== UPGRADE_PROTOCOL) return rawReply(socket, 400, 'Bad Request', 'unknown next protocol');
    if (req.method !== 'POST' && req.method !== 'GET') return rawReply(socket, 405, 'Method Not Allowed', 'method not allowed');
    const hdr = req.headers['x-tailscale-handshake'];
    if (typeof hdr !== 'string' || hdr === '') return rawReply(socket, 400, 'Bad Request', 'missing Tailscale handshake header');
    if (!STD_BASE64.test(hdr) || hdr.length % 4 !== 0) return rawReply(socket, 400, 'Bad Request', 'invalid tailscale handshake header');
    // Limits before any Noise work: the handshake is the expensive part for the server.
    const ip = sourceIp(req.socket.remoteAddress);
    const refused = this.#admit(ip);
    if (refused) {
      this.#logRefusal(refused);
      return rawReply(socket, 503, 'Service Unavailable', 'too many connections, try again later');
    }
    const initiation = new Uint8Array(Buffer.from(hdr, 'base64'));
    const res = respond({ serverPriv: this.#init.serverPriv, initiation });
    const switching = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${UPGRADE_PROTOCOL}\r\nConnection: upgrade\r\n\r\n`;
    if (res.kind === 'malformed') {
      logf(`noise: refused handshake from ${req.socket.remoteAddress ?? '?'}: ${res.reason}`);
      if (STRUCTURAL.has(res.reason)) socket.end(Buffer.concat([Buffer.from(switching), encodeErrorFrame(res.reason)]));
      else socket.end(switching);
      return;
    }
    if (res.version < this.#init.minCapver) {
      logf(`noise: refused capability version ${res.version} (minimum ${this.#init.minCapver})`);
      socket.end(switching);
      return;
    }
    const machineKey = keyText('mkey', res.peerStatic);
    // The switch, the handshake response and the early payload go out together, as Tailscale's corked writer does.
    socket.write(Buffer.concat([Buffer.from(switching), res.message]));
    const conn = new NoiseConn(socket, res.tx, res.rx, new Uint8Array(head), { expectEarly: false });
    conn.write(encodeEarlyPayload({ nodeKeyChallenge: keyText('chalpub', generateKeyPair().pub) }));
    this.#serve(conn, machineKey, res.version, ip);
  }

  #serve(conn: NoiseConn, machineKey: string, noiseVersion: number, ip: string): void {
    const { clock, logf } = this.#init;
    const h2 = http2.createServer({ settings: { maxConcurrentStreams: 64 }, maxSessionMemory: 16 });
    const c: Connection = { ip, conn, h2, tokens: this.#init.rateBurst, refilledAt: clock.now(), requests: 0 };
    this.#conns.add(c);
    this.#ipState(ip).conns++;
    // A connection with no request in flight for handshakeIdleMs is closed: before its first request, and between
    // requests too (a node keeps its map stream open, so only idle or abandoned connections are affected; holding
    // idle connections open must not be a way to fill the connection limits).
    let idle: TimerHandle | null = null;
    let active = 0;
    const armIdle = (): void => {
      idle = clock.setTimeout(() => {
        idle = null;
        logf(`noise: ${machineKey.slice(0, 16)}… ${c.requests === 0 ? 'opened no HTTP/2 stream' : 'was idle'} for ${this.#init.handshakeIdleMs / 1000} s; closing`);
        conn.destroy();
      }, this.#init.handshakeIdleMs);
    };
    armIdle();
    const ac = new AbortController();
    const done = (): void => {
      if (idle) clock.clearTimeout(idle);
      idle = null;
      if (!this.#conns.delete(c)) return;
      const st = this.#ips.get(ip);
      if (st) st.conns = Math.max(0, st.conns - 1);
      ac.abort();
    };
    conn.on('close', done);
    conn.on('error', (e) => logf(`noise: connection of ${machineKey.slice(0, 16)}… failed: ${e.message}`));
    h2.on('sessionError', () => conn.destroy());
    h2.on('session', (s) => {
      s.on('error', () => {});
      s.on('close', () => conn.destroy());
    });
    h2.on('stream', (stream, headers) => {
      if (idle) clock.clearTimeout(idle);
      idle = null;
      active++;
      c.requests++;
      stream.on('error', () => {});
      stream.on('close', () => {
        active--;
        if (active === 0 && !idle && this.#conns.has(c)) armIdle();
      });
      this.#onStream(c, stream, headers, machineKey, noiseVersion, ac.signal);
    });
    h2.emit('connection', conn);
  }

  /** Takes one token from the connection's bucket; false when it is empty. */
  #allow(c: Connection): boolean {
    const now = this.#init.clock.now();
    c.tokens = Math.min(this.#init.rateBurst, c.tokens + ((now - c.refilledAt) / 1000) * this.#init.ratePerSecond);
    c.refilledAt = now;
    if (c.tokens < 1) return false;
    c.tokens -= 1;
    return true;
  }

  #onStream(c: Connection, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, machineKey: string, noiseVersion: number, connSignal: AbortSignal): void {
    const method = String(headers[':method'] ?? '');
    const path = String(headers[':path'] ?? '').split('?')[0]!;
    if (!this.#allow(c)) {
      sendText(stream, 429, 'too many requests', { 'retry-after': '1' });
      return;
    }
    const route = this.#init.routes[`${method} ${path}`];
    if (!route) {
      if (path.startsWith('/machine/')) sendText(stream, 501, 'Not implemented yet');
      else sendText(stream, 404, 'not found');
      return;
    }
    const limit = this.#init.maxBodyBytes;
    const declared = Number(headers['content-length'] ?? 0);
    if (declared > limit) {
      sendText(stream, 413, `request body over ${limit} bytes`);
      return;
    }
    const ac = new AbortController();
    const abort = (): void => ac.abort();
    connSignal.addEventListener('abort', abort, { once: true });
    stream.on('close', () => {
      connSignal.removeEventListener('abort', abort);
      ac.abort();
    });
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    stream.on('data', (d: Buffer) => {
      if (over) return;
      size += d.length;
      if (size > limit) {
        over = true;
        chunks.length = 0;
        sendText(stream, 413, `request body over ${limit} bytes`);
        return;
      }
      chunks.push(d);
    });
    stream.on('end', () => {
      if (over || ac.signal.aborted) return;
      const body = new Uint8Array(Buffer.concat(chunks));
      route({ method, path, machineKey, noiseVersion, remoteIp: c.ip, body, stream, signal: ac.signal }).catch((e: unknown) => {
        this.#init.logf(`control: ${method} ${path} failed: ${(e as Error).stack ?? String(e)}`);
        sendText(stream, 500, 'internal error');
      });
    });
  }

  /** Closes every Noise connection. */
  closeAll(): void {
    for (const c of [...this.#conns]) c.conn.destroy();
  }
}
