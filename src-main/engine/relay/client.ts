/**
 * DerpConn: one connection to a DERP server (dataplane-protocol.md §5), with reconnects.
 *
 *   GET /derp (Upgrade: DERP) → 101 → ServerKey ← · → ClientInfo (sealed to the server key) · ServerInfo ←
 *   then SendPacket → / RecvPacket ←, KeepAlive, Ping/Pong, PeerGone, Health.
 *
 * Plain HTTP or TLS by URL scheme (the lab's headscale serves its embedded DERP over plain HTTP). Packets
 * are addressed by node key. A lost connection is redialled with backoff (1 s doubling to 5 s, as
 * magicsock does); sends while down are dropped, as DERP is best effort.
 *
 * The connection counts as up only once the ServerInfo frame has opened: it is sealed by the key the server
 * announced in ServerKey to our node key (Go's parseServerInfo). A ServerInfo that does not open or parse,
 * one before ServerKey, or none within DERP_HANDSHAKE_TIMEOUT_MS of the dial fails the attempt (and so
 * redials with backoff). Relayed packets and PeerGone before that are ignored.
 *
 * Sends are bounded: when the socket already holds DERP_SEND_QUEUE_MAX_BYTES of unsent bytes (a server that
 * stopped reading), a packet is dropped and counted in `droppedSends` rather than buffered; drops are logged
 * at most once per DERP_DROP_LOG_INTERVAL_MS. send never throws.
 *
 * The data path is per packet on both sides, so neither side touches a packet more than once: each SendPacket
 * frame is laid out (header ‖ key ‖ packet, one copy) in a shared send buffer, and the frames of one event-loop
 * turn (WireGuard's datagrams arrive in bursts) go to the socket as one write at the end of that turn, so one
 * TLS record and one syscall carry many packets instead of one each. Received frames are parsed in place:
 * a relayed packet is a view into the socket's read buffer, not a copy.
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { publicKeyOf } from '../../protocol/crypto/noise.ts';
import {
  DerpFrameReader,
  FrameType,
  KEY_LEN,
  MAX_PACKET_SIZE,
  PROTOCOL_VERSION,
  SEND_PACKET_OVERHEAD,
  encodeFrame,
  openServerInfo,
  parseFrame,
  sealClientInfo,
  writeSendPacketFrame,
} from '../../protocol/wire/derp.ts';
import {
  DERP_BACKOFF_MAX_MS,
  DERP_BACKOFF_MIN_MS,
  DERP_DIAL_TIMEOUT_MS,
  DERP_DROP_LOG_INTERVAL_MS,
  DERP_HANDSHAKE_TIMEOUT_MS,
  DERP_READ_TIMEOUT_MS,
  DERP_SEND_QUEUE_MAX_BYTES,
  DERP_WRITE_STALL_MS,
} from '../constants.ts';
import type { Clock, TimerHandle } from '../sys/clock.ts';
import type { Logf } from '../sys/log.ts';
import type { DerpTarget } from './targets.ts';

/**
 * Size of a send buffer: frames are laid out in it back to back and each turn's run of them is written as one
 * slice. A full one is written out at once and replaced (the written slices stay the socket's until sent).
 */
const SEND_BUFFER_BYTES = 64 << 10;

export interface DerpConnEvents {
  packet: [Uint8Array, Uint8Array]; // src node key, payload
  /** A peer we sent to left this server (PeerGone); the reason byte as sent (0: disconnected, 1: not here). */
  'peer-gone': [Uint8Array, number];
  connected: [];
  disconnected: [string];
}

export interface DerpConnInit {
  target: DerpTarget;
  nodePriv: Uint8Array;
  clock: Clock;
  logf: Logf;
  /** Sent as NotePreferred after connecting (true for the home region). */
  preferred: boolean;
}

export class DerpConn extends EventEmitter<DerpConnEvents> {
  // Owned by this instance.
  private sock: Socket | null = null;
  private req: http.ClientRequest | null = null;
  private up = false;
  private closed = false;
  private failures = 0;
  private retry: TimerHandle | null = null;
  private readTimer: TimerHandle | null = null;
  private handshakeTimer: TimerHandle | null = null;
  private stallTimer: TimerHandle | null = null;
  /** Frames written since the stall timer was armed (write callbacks): progress means the server still reads. */
  private writesDone = 0;
  private lastReadAt = 0;
  /** Send buffer: [sendStart, sendEnd) holds frames not yet written to the socket; below sendStart is the socket's. */
  private sendBuf: Uint8Array = new Uint8Array(0);
  private sendStart = 0;
  private sendEnd = 0;
  /** The end-of-turn write of the send buffer, when one is due. */
  private flushQueued: ReturnType<typeof setImmediate> | null = null;
  /** The send rate the server announced in ServerInfo (bytes/s and burst), as a token bucket; null: no limit. */
  private bucket: { rate: number; burst: number; tokens: number; at: number } | null = null;
  private drops = 0;
  private dropsSinceLog = 0;
  private lastDropLog = -Infinity;
  readonly nodePub: Uint8Array;

  constructor(private readonly init: DerpConnInit) {
    super();
    this.nodePub = publicKeyOf(init.nodePriv);
  }

  get connected(): boolean {
    return this.up;
  }

  /** Packets (and Pongs) dropped because the socket already held DERP_SEND_QUEUE_MAX_BYTES unsent, or unencodable. */
  get droppedSends(): number {
    return this.drops;
  }

  /** Bytes sent on the current socket and not yet handed to the kernel, including this turn's unwritten frames (0 when down). */
  get bufferedBytes(): number {
    return this.sock ? this.sock.writableLength + this.sendEnd - this.sendStart : 0;
  }

  get regionId(): number {
    return this.init.target.regionId;
  }

  get target(): DerpTarget {
    return this.init.target;
  }

  private get origin(): string {
    const t = this.init.target;
    return `${t.secure ? 'https' : 'http'}://${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`;
  }

  start(): void {
    this.dial();
  }

  private dial(): void {
    if (this.closed) return;
    const t = this.init.target;
    const common = {
      host: t.host,
      port: t.port,
      path: '/derp',
      method: 'GET',
      headers: { Upgrade: 'DERP', Connection: 'Upgrade', Host: t.serverName ?? t.host },
      timeout: DERP_DIAL_TIMEOUT_MS,
    };
    // TLS: verify against the node's name (CertName or HostName); an IP-named node is checked against the IP.
    // InsecureForTests nodes (self-signed lab derpers) skip verification, as Tailscale clients do for them.
    const req = t.secure
      ? https.request({ ...common, agent: false, servername: t.serverName ?? undefined, rejectUnauthorized: !t.insecure })
      : http.request({ ...common, agent: false });
    this.req = req;
    // The whole attempt, up to an opened ServerInfo, has one deadline (the request's own timeout is per idle gap).
    this.handshakeTimer = this.init.clock.setTimeout(() => {
      this.handshakeTimer = null;
      this.fail(`DERP ${this.origin}: no valid ServerInfo within ${DERP_HANDSHAKE_TIMEOUT_MS / 1000} s`);
    }, DERP_HANDSHAKE_TIMEOUT_MS);
    req.on('upgrade', (_res, sock, head) => {
      if (this.req !== req) {
        sock.destroy();
        return;
      }
      this.req = null;
      this.onUpgrade(sock, new Uint8Array(head));
    });
    req.on('response', (res) => {
      res.resume();
      if (this.req === req) this.fail(`DERP ${this.origin} answered HTTP ${res.statusCode} instead of upgrading`);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (e) => {
      if (this.req === req) this.fail(`DERP ${this.origin}: ${e.message}`);
    });
    req.end();
  }

  private onUpgrade(sock: Socket, head: Uint8Array): void {
    if (this.closed) {
      sock.destroy();
      return;
    }
    this.sock = sock;
    // The dial's idle timeout must not outlive the upgrade: the read timer watches the connection from here on.
    sock.setTimeout(0);
    // Relayed packets are latency-sensitive and go out in per-turn batches already: no Nagle delay on top.
    sock.setNoDelay(true);
    // Node allocates each read's buffer anew and never reuses it, so frames may be views into it.
    const reader = new DerpFrameReader({ lend: true });
    let serverPub: Uint8Array | null = null;
    const onBytes = (d: Uint8Array): void => {
      if (this.sock !== sock) return;
      this.noteRead();
      for (const raw of reader.push(d)) {
        if (this.sock !== sock) return; // failed while handling an earlier frame of this chunk
        if (raw.kind === 'malformed') {
          this.fail(`DERP stream malformed: ${raw.reason}`);
          return;
        }
        const f = parseFrame(raw.type, raw.body);
        if (f.kind === 'malformed') {
          // Go ends the connection on a bad ServerKey greeting or a short ServerInfo; other unusable frames are skipped.
          if (raw.type === FrameType.ServerInfo || (raw.type === FrameType.ServerKey && !serverPub)) {
            this.fail(`DERP ${this.origin}: bad ${raw.type === FrameType.ServerInfo ? 'ServerInfo' : 'ServerKey'} frame: ${f.reason}`);
            return;
          }
          continue;
        }
        switch (f.kind) {
          case 'server-key':
            if (serverPub) break;
            serverPub = f.serverPub.slice();
            this.write(encodeFrame(sealClientInfo({ clientPriv: this.init.nodePriv, serverPub, info: { version: PROTOCOL_VERSION, canAckPings: true } })));
            if (this.init.preferred) this.write(encodeFrame({ kind: 'note-preferred', preferred: true }));
            break;
          case 'server-info': {
            if (!serverPub) {
              this.fail(`DERP ${this.origin}: ServerInfo before ServerKey`);
              return;
            }
            const opened = openServerInfo({ clientPriv: this.init.nodePriv, serverPub, frame: f });
            if (opened.kind === 'malformed') {
              this.fail(`DERP ${this.origin}: ServerInfo did not verify (${opened.reason})`);
              return;
            }
            const { tokenBucketBytesPerSecond: rate, tokenBucketBytesBurst: burst } = opened.info;
            // The server drops what exceeds its rate for us; sending it anyway only fills buffers (Go's client
            // keeps a rate.Limiter from the same two numbers and drops before writing).
            this.bucket = rate > 0 ? { rate, burst: Math.max(burst, 0), tokens: Math.max(burst, 0), at: this.init.clock.now() } : null;
            if (!this.up) {
              this.up = true;
              this.failures = 0;
              this.clearHandshakeTimer();
              this.init.logf(`derp: connected to region ${this.regionId} (${this.origin}), server version ${opened.info.version}`);
              this.emit('connected');
            }
            break;
          }
          case 'recv-packet':
            if (this.up) this.emit('packet', f.src, f.packet);
            break;
          case 'ping':
            this.writeBounded(encodeFrame({ kind: 'pong', data: f.data }));
            break;
          case 'peer-gone':
            if (this.up) this.emit('peer-gone', f.peer, f.reason);
            break;
          case 'health':
            if (f.problem) this.init.logf(`derp: region ${this.regionId} health: ${f.problem}`);
            break;
          default:
            break; // keep-alive, restarting and the rest need no action here
        }
      }
    };
    // A plain Uint8Array view of the read (no copy): the packets cut from it are then Uint8Arrays, not Buffers.
    sock.on('data', (d: Buffer) => onBytes(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)));
    sock.on('close', () => {
      if (this.sock === sock) this.fail('DERP connection closed');
    });
    sock.on('drain', () => this.clearStallTimer());
    sock.on('error', (e) => {
      if (this.sock === sock) this.fail(`DERP connection error: ${e.message}`);
    });
    if (head.length > 0) onBytes(head);
  }

  private clearStallTimer(): void {
    if (this.stallTimer) this.init.clock.clearTimeout(this.stallTimer);
    this.stallTimer = null;
  }

  /**
   * Bytes are waiting in user space (the kernel's buffer is full): if the socket has not drained, nor finished
   * a single write, within DERP_WRITE_STALL_MS, the server has stopped reading, so the connection is given up
   * and redialled.
   */
  private watchStall(sock: Socket): void {
    if (this.stallTimer || this.bufferedBytes === 0) return;
    const done = this.writesDone;
    this.stallTimer = this.init.clock.setTimeout(() => {
      this.stallTimer = null;
      if (this.sock !== sock) return;
      // Only what the socket itself still holds counts: frames queued this turn are written at its end, and a
      // quiet connection whose timer fires just after something was queued has not stalled.
      const unsent = sock.writableLength;
      if (unsent === 0) return;
      if (this.writesDone !== done) this.watchStall(sock); // slow, but moving
      else this.fail(`DERP writes stalled for ${DERP_WRITE_STALL_MS / 1000} s (${unsent} bytes unsent)`);
    }, DERP_WRITE_STALL_MS);
  }

  /** Takes `n` bytes from the server's token bucket; false (nothing taken) when it does not hold them. */
  private takeTokens(n: number): boolean {
    const b = this.bucket;
    if (!b) return true;
    const now = this.init.clock.now();
    b.tokens = Math.min(b.burst, b.tokens + ((now - b.at) / 1000) * b.rate);
    b.at = now;
    if (b.tokens < n) return false;
    b.tokens -= n;
    return true;
  }

  private clearHandshakeTimer(): void {
    if (this.handshakeTimer) this.init.clock.clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
  }

  /**
   * The read deadline: no bytes for DERP_READ_TIMEOUT_MS fail the connection. Reads only note their time; the
   * one timer, when it fires, looks at that time and waits again for the rest of the interval.
   */
  private noteRead(): void {
    this.lastReadAt = this.init.clock.now();
    if (!this.readTimer) this.armReadTimer(DERP_READ_TIMEOUT_MS);
  }

  private armReadTimer(ms: number): void {
    this.readTimer = this.init.clock.setTimeout(() => {
      this.readTimer = null;
      const idle = this.init.clock.now() - this.lastReadAt;
      if (idle >= DERP_READ_TIMEOUT_MS) this.fail(`no DERP frame for ${DERP_READ_TIMEOUT_MS / 1000} s`);
      else this.armReadTimer(DERP_READ_TIMEOUT_MS - idle);
    }, ms);
  }

  /** Handshake frames: small, once per connection, written regardless of the send cap (after anything queued). */
  private write(frame: Uint8Array): void {
    this.flush();
    this.sock?.write(frame);
  }

  /**
   * Room for an `n`-byte frame unless the socket already holds DERP_SEND_QUEUE_MAX_BYTES unsent (counting this
   * turn's unwritten frames); returns the offset in sendBuf to lay it out at, or -1 (dropped and counted).
   */
  private reserve(n: number): number {
    const sock = this.sock;
    if (!sock) return -1;
    const unsent = sock.writableLength + this.sendEnd - this.sendStart;
    if (unsent + n > DERP_SEND_QUEUE_MAX_BYTES) {
      this.dropped(`send queue full (${unsent} bytes unsent)`);
      return -1;
    }
    if (this.sendBuf.length - this.sendEnd < n) {
      this.flush();
      this.sendBuf = Buffer.allocUnsafe(Math.max(SEND_BUFFER_BYTES, n));
      this.sendStart = this.sendEnd = 0;
    }
    if (!this.flushQueued) {
      // After the rest of this turn's datagrams (libuv reads a socket's queue in one go): setImmediate, not a
      // Clock timer, as it marks a turn of the event loop rather than a time.
      this.flushQueued = setImmediate(() => {
        this.flushQueued = null;
        this.flush();
      });
    }
    return this.sendEnd;
  }

  /** Writes this turn's frames to the socket as one buffer. */
  private flush(): void {
    const sock = this.sock;
    if (!sock || this.sendEnd === this.sendStart) return;
    const chunk = this.sendBuf.subarray(this.sendStart, this.sendEnd);
    this.sendStart = this.sendEnd;
    sock.write(chunk, this.onWritten);
    this.watchStall(sock);
  }

  private readonly onWritten = (): void => {
    this.writesDone++;
  };

  /** Drops frames not yet written (the socket they were for is gone). */
  private discardUnsent(): void {
    if (this.flushQueued) clearImmediate(this.flushQueued);
    this.flushQueued = null;
    this.sendStart = this.sendEnd;
  }

  /** Queues a whole frame unless the send queue is full; returns false (and counts) on a drop. */
  private writeBounded(frame: Uint8Array): boolean {
    const at = this.reserve(frame.length);
    if (at < 0) return false;
    this.sendBuf.set(frame, at);
    this.sendEnd = at + frame.length;
    this.watchStall(this.sock!);
    return true;
  }

  private dropped(why: string): void {
    this.drops++;
    this.dropsSinceLog++;
    const now = this.init.clock.now();
    if (now - this.lastDropLog < DERP_DROP_LOG_INTERVAL_MS) return;
    this.init.logf(`derp: region ${this.regionId}: dropped ${this.dropsSinceLog} send(s): ${why}; ${this.drops} in total`);
    this.lastDropLog = now;
    this.dropsSinceLog = 0;
  }

  /**
   * Sends a packet to a node key through the server. Returns false when it was dropped: not connected, the
   * socket's unsent bytes at the cap, or a packet DERP cannot carry (wrong key length, over 64 KiB). Never throws.
   */
  send(dst: Uint8Array, packet: Uint8Array): boolean {
    if (!this.up || !this.sock) return false;
    if (dst.length !== KEY_LEN || packet.length > MAX_PACKET_SIZE) {
      this.dropped(`unsendable packet (key ${dst.length} bytes, packet ${packet.length} bytes)`);
      return false;
    }
    // Frame header (5) + destination key + packet, as the server counts it.
    if (!this.takeTokens(SEND_PACKET_OVERHEAD + packet.length)) {
      this.dropped(`over the server's rate of ${this.bucket?.rate ?? 0} bytes/s`);
      return false;
    }
    try {
      const at = this.reserve(SEND_PACKET_OVERHEAD + packet.length);
      if (at < 0) return false;
      this.sendEnd = at + writeSendPacketFrame(this.sendBuf, at, dst, packet);
      this.watchStall(this.sock);
      return true;
    } catch (e) {
      this.dropped(`write failed: ${e instanceof Error ? e.message : String(e)}`);
      return false;
    }
  }

  private fail(why: string): void {
    const wasUp = this.up;
    this.up = false;
    if (this.readTimer) this.init.clock.clearTimeout(this.readTimer);
    this.readTimer = null;
    this.clearHandshakeTimer();
    this.clearStallTimer();
    this.discardUnsent();
    this.bucket = null;
    const s = this.sock;
    this.sock = null;
    s?.destroy();
    const r = this.req;
    this.req = null;
    r?.destroy();
    if (this.closed || this.retry) return;
    if (wasUp) this.emit('disconnected', why);
    this.init.logf(`derp: region ${this.regionId}: ${why}; redialling`);
    const delay = Math.min(DERP_BACKOFF_MAX_MS, DERP_BACKOFF_MIN_MS * 2 ** this.failures);
    this.failures++;
    this.retry = this.init.clock.setTimeout(() => {
      this.retry = null;
      this.dial();
    }, delay);
  }

  close(): void {
    this.closed = true;
    if (this.retry) this.init.clock.clearTimeout(this.retry);
    if (this.readTimer) this.init.clock.clearTimeout(this.readTimer);
    this.readTimer = null;
    this.clearHandshakeTimer();
    this.clearStallTimer();
    this.discardUnsent();
    this.up = false;
    this.sock?.destroy();
    this.sock = null;
    this.req?.destroy();
    this.req = null;
  }

}
