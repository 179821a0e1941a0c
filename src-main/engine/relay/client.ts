/**
 * DerpConn: one connection to a DERP server (dataplane-protocol.md §5), with reconnects.
 *
 *   GET /derp (Upgrade: DERP) → 101 → ServerKey ← · → ClientInfo (sealed to the server key) · ServerInfo ←
 *   then SendPacket → / RecvPacket ←, KeepAlive, Ping/Pong, PeerGone, Health.
 *
 * Plain HTTP or TLS by URL scheme (the lab's headscale serves its embedded DERP over plain HTTP). Packets
 * are addressed by node key. A lost connection is redialled with backoff (1 s doubling to 5 s, as
 * magicsock does); sends while down are dropped, as DERP is best effort.
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { publicKeyOf } from '../../protocol/crypto/noise.ts';
import { DerpFrameReader, PROTOCOL_VERSION, encodeFrame, parseFrame, sealClientInfo } from '../../protocol/wire/derp.ts';
import { DERP_BACKOFF_MAX_MS, DERP_BACKOFF_MIN_MS, DERP_DIAL_TIMEOUT_MS, DERP_READ_TIMEOUT_MS } from '../constants.ts';
import type { Clock, TimerHandle } from '../sys/clock.ts';
import type { Logf } from '../sys/log.ts';
import type { DerpTarget } from './targets.ts';

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
  private up = false;
  private closed = false;
  private failures = 0;
  private retry: TimerHandle | null = null;
  private readTimer: TimerHandle | null = null;
  readonly nodePub: Uint8Array;

  constructor(private readonly init: DerpConnInit) {
    super();
    this.nodePub = publicKeyOf(init.nodePriv);
  }

  get connected(): boolean {
    return this.up;
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
    req.on('upgrade', (_res, sock, head) => this.onUpgrade(sock, new Uint8Array(head)));
    req.on('response', (res) => {
      res.resume();
      this.fail(`DERP ${this.origin} answered HTTP ${res.statusCode} instead of upgrading`);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (e) => this.fail(`DERP ${this.origin}: ${e.message}`));
    req.end();
  }

  private onUpgrade(sock: Socket, head: Uint8Array): void {
    if (this.closed) {
      sock.destroy();
      return;
    }
    this.sock = sock;
    const reader = new DerpFrameReader();
    let serverPub: Uint8Array | null = null;
    const onBytes = (d: Uint8Array): void => {
      this.armReadTimer();
      for (const raw of reader.push(d)) {
        if (raw.kind === 'malformed') {
          this.fail(`DERP stream malformed: ${raw.reason}`);
          return;
        }
        const f = parseFrame(raw.type, raw.body);
        if (f.kind === 'malformed') continue; // an unusable frame is skipped, as the Go client does
        switch (f.kind) {
          case 'server-key':
            if (serverPub) break;
            serverPub = f.serverPub;
            this.write(encodeFrame(sealClientInfo({ clientPriv: this.init.nodePriv, serverPub, info: { version: PROTOCOL_VERSION, canAckPings: true } })));
            if (this.init.preferred) this.write(encodeFrame({ kind: 'note-preferred', preferred: true }));
            break;
          case 'server-info':
            if (!this.up) {
              this.up = true;
              this.failures = 0;
              this.init.logf(`derp: connected to region ${this.regionId} (${this.origin})`);
              this.emit('connected');
            }
            break;
          case 'recv-packet':
            this.emit('packet', f.src, f.packet);
            break;
          case 'ping':
            this.write(encodeFrame({ kind: 'pong', data: f.data }));
            break;
          case 'peer-gone':
            this.emit('peer-gone', f.peer, f.reason);
            break;
          case 'health':
            if (f.problem) this.init.logf(`derp: region ${this.regionId} health: ${f.problem}`);
            break;
          default:
            break; // keep-alive, restarting and the rest need no action here
        }
      }
    };
    sock.on('data', (d: Buffer) => onBytes(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)));
    sock.on('close', () => this.fail('DERP connection closed'));
    sock.on('error', (e) => this.fail(`DERP connection error: ${e.message}`));
    if (head.length > 0) onBytes(head);
  }

  private armReadTimer(): void {
    if (this.readTimer) this.init.clock.clearTimeout(this.readTimer);
    this.readTimer = this.init.clock.setTimeout(() => this.fail('no DERP frame for 120 s'), DERP_READ_TIMEOUT_MS);
  }

  private write(frame: Uint8Array): void {
    this.sock?.write(frame);
  }

  /** Sends a packet to a node key through the server; dropped while not connected. */
  send(dst: Uint8Array, packet: Uint8Array): boolean {
    if (!this.up || !this.sock) return false;
    this.write(encodeFrame({ kind: 'send-packet', dst, packet }));
    return true;
  }

  private fail(why: string): void {
    const wasUp = this.up;
    this.up = false;
    if (this.readTimer) this.init.clock.clearTimeout(this.readTimer);
    this.readTimer = null;
    const s = this.sock;
    this.sock = null;
    s?.destroy();
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
    this.up = false;
    this.sock?.destroy();
    this.sock = null;
  }

}
