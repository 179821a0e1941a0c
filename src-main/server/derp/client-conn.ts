/**
 * One client connection of the embedded DERP server, from the hijacked upgrade socket to close. It owns the
 * socket, the frame reader, the send queues and the connection's timers; the hub (server.ts) owns the registry
 * and does the routing between connections.
 *
 *   start ──ServerKey──▶ handshake ──ClientInfo opens──▶ verifying ──verifyClient true──▶ active ──▶ closed
 *                          │ (10 s timer, first frame        │ (socket paused,             │ ServerInfo, then
 *                          │  must be ClientInfo)            │  later frames kept)         │ SendPacket / Ping /
 *                          └────────── timeout, garbage, refusal, socket end or error ─────┴─ NotePreferred…
 *
 * Reading (derpserver.go run): SendPacket goes to the hub; NotePreferred is recorded; Ping (8…1000 bytes) is
 * answered with a Pong of its first 8 bytes, at most one waiting (derper's sendPongCh); mesh-only frames
 * (ForwardPacket, WatchConns, ClosePeer) close the connection, as derper does for clients without the mesh key;
 * anything else is skipped. A frame that breaks its type's rules, or a header announcing more than the frame cap,
 * closes this connection only.
 *
 * Writing (derpserver.go sendLoop): three bounded queues drained in order control (PeerGone, KeepAlive), pong,
 * disco, data. Disco and data packets each have 32 slots; when full the oldest is dropped (derper drops at the
 * head to keep fresh packets). Frames go straight to the socket while it accepts them; once write() reports
 * back-pressure they wait for 'drain', and a connection that stays blocked with frames waiting for longer than
 * the write timeout (2 s) is closed, as derper's write deadline does. KeepAlive every 60 s + 0–5 s jitter.
 */
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Clock, TimerHandle } from '../../engine/sys/clock.ts';
import {
  DerpFrameReader,
  FrameType,
  PING_LEN,
  PROTOCOL_VERSION,
  PeerGoneReason,
  encodeFrame,
  frameTypeName,
  openClientInfo,
  parseFrame,
  sealServerInfo,
  type DerpClientInfo,
  type RawFrame,
} from '../../protocol/wire/derp.ts';
import { looksLikeDiscoWrapper } from '../../protocol/wire/disco.ts';
import { toHex } from '../../protocol/wire/hex.ts';
import { DERP_CONTROL_QUEUE_DEPTH, DERP_MAX_BACKLOG_BYTES, DERP_MAX_PING_LEN, DERP_NOT_HERE_BURST, DERP_NOT_HERE_PER_SEC } from './constants.ts';
import { TokenBucket } from './token-bucket.ts';

export type DerpConnState = 'handshake' | 'verifying' | 'active' | 'closed';

/** Why a connection ended, for the hub's counters. */
export type DerpCloseKind = 'handshake' | 'refused' | 'protocol' | 'write-timeout' | 'peer' | 'replaced' | 'kicked' | 'server';

export interface DerpConnLimits {
  handshakeTimeoutMs: number;
  keepAliveMs: number;
  keepAliveJitterMs: number;
  writeTimeoutMs: number;
  sendQueueDepth: number;
  maxFrameLen: number;
}

/** Counters a connection bumps; owned by the hub, which reports them in stats(). */
export interface DerpConnCounters {
  packetsReceived: number;
  bytesReceived: number;
  packetsSent: number;
  bytesSent: number;
  dropQueueFull: number;
  dropGone: number;
  dropControl: number;
  pongs: number;
  keepAlives: number;
  peerGoneDisconnected: number;
  peerGoneNotHere: number;
  unknownFrames: number;
}

/** What a connection needs from the server that owns it. */
export interface DerpHub {
  readonly serverPriv: Uint8Array;
  readonly clock: Clock;
  readonly random: () => number;
  readonly limits: DerpConnLimits;
  readonly counters: DerpConnCounters;
  /** Admission: resolves true when this (opened, authenticated) node key may use the relay. Never rejects. */
  verify(conn: DerpClientConn): Promise<boolean>;
  /** The connection is admitted and has been sent ServerInfo. */
  register(conn: DerpClientConn): void;
  /** An admitted connection closed. */
  unregister(conn: DerpClientConn): void;
  /** A frame arrived on an admitted connection (duplicate-key bookkeeping). */
  noteActivity(conn: DerpClientConn): void;
  route(from: DerpClientConn, dst: Uint8Array, packet: Uint8Array): void;
  notePreferred(conn: DerpClientConn, preferred: boolean): void;
  /** The connection reached 'closed' (any state before). */
  closed(conn: DerpClientConn, kind: DerpCloseKind, why: string, was: DerpConnState): void;
}

const KEEP_ALIVE_FRAME = encodeFrame({ kind: 'keep-alive' });

export class DerpClientConn {
  // Set once, when ClientInfo opens.
  /** The client's node public key (proven by the ClientInfo box); null until then. */
  key: Uint8Array | null = null;
  keyHex = '';
  info: Required<DerpClientInfo> | null = null;
  // Owned by the hub (read and written only from server.ts).
  /** Keys (hex) of sources whose packets this client was sent: it hears PeerGone(Disconnected) when they leave. */
  readonly sawSrc = new Set<string>();
  // Owned by this connection.
  preferred = false;
  private st: DerpConnState = 'handshake';
  private readonly reader: DerpFrameReader;
  private backlog: RawFrame[] = [];
  private backlogBytes = 0;
  private readonly controlQ: Uint8Array[] = [];
  private readonly discoQ: Uint8Array[] = [];
  private readonly dataQ: Uint8Array[] = [];
  private pong: Uint8Array | null = null;
  private blocked = false;
  private handshakeTimer: TimerHandle | null = null;
  private keepAliveTimer: TimerHandle | null = null;
  private stallTimer: TimerHandle | null = null;
  private readonly notHere: TokenBucket;
  /** Resolves when the socket has emitted 'close'. */
  readonly done: Promise<void>;

  constructor(
    private readonly sock: Duplex,
    private readonly hub: DerpHub,
    /** "ip:port" of the client, for logs and the verify callback. */
    readonly remote: string,
  ) {
    this.reader = new DerpFrameReader({ maxFrameLen: hub.limits.maxFrameLen });
    this.notHere = new TokenBucket(DERP_NOT_HERE_PER_SEC, DERP_NOT_HERE_BURST, hub.clock.now());
    this.done = new Promise((resolve) => sock.once('close', () => resolve()));
  }

  get state(): DerpConnState {
    return this.st;
  }

  /** Short form of the key for logs: "nodekey:0123abcd…". */
  get label(): string {
    return this.key ? `nodekey:${this.keyHex.slice(0, 12)}… ${this.remote}` : this.remote;
  }

  /**
   * Takes over the upgraded socket: writes `greeting` (the 101 response, unless fast start, and the ServerKey
   * frame, in one write as derper flushes them together), then reads `head` and what follows.
   */
  start(greeting: Uint8Array, head: Uint8Array): void {
    const s = this.sock;
    if (s instanceof Socket) {
      s.setNoDelay(true); // Go's TCP default
      s.setTimeout(0); // the HTTP server's idle timeout no longer applies
    }
    s.on('data', (d: Buffer) => this.onData(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)));
    s.on('drain', () => this.onDrain());
    s.on('end', () => this.close('client closed the connection', 'peer'));
    s.on('error', (e: Error) => this.close(`socket error: ${e.message}`, 'peer'));
    s.on('close', () => this.close('socket closed', 'peer'));
    this.handshakeTimer = this.hub.clock.setTimeout(() => {
      this.handshakeTimer = null;
      this.close(`no admitted ClientInfo within ${this.hub.limits.handshakeTimeoutMs} ms`, 'handshake');
    }, this.hub.limits.handshakeTimeoutMs);
    this.writeNow(greeting);
    if (head.length > 0) this.onData(head);
  }

  // --- reading ------------------------------------------------------------------------------------------

  private onData(chunk: Uint8Array): void {
    if (this.st === 'closed') return;
    for (const raw of this.reader.push(chunk)) {
      const st = this.state; // re-read each frame: handling the previous one may have changed it
      if (raw.kind === 'malformed') {
        this.close(`malformed stream: ${raw.reason}`, st === 'active' ? 'protocol' : 'handshake');
        return;
      }
      switch (st) {
        case 'handshake':
          this.onClientInfo(raw);
          break;
        case 'verifying':
          // Only the rest of the read that carried ClientInfo: the socket is paused until the verdict.
          this.backlog.push(raw);
          this.backlogBytes += raw.body.length;
          if (this.backlogBytes > DERP_MAX_BACKLOG_BYTES) this.close('too much data before admission', 'handshake');
          break;
        case 'active':
          this.onFrame(raw);
          break;
        case 'closed':
          return;
      }
    }
  }

  private onClientInfo(raw: RawFrame): void {
    if (raw.type !== FrameType.ClientInfo) {
      this.close(`first frame is ${frameTypeName(raw.type)}, not ClientInfo`, 'handshake');
      return;
    }
    const f = parseFrame(raw.type, raw.body);
    if (f.kind !== 'client-info') {
      this.close(`bad ClientInfo: ${f.kind === 'malformed' ? f.reason : f.kind}`, 'handshake');
      return;
    }
    const opened = openClientInfo({ serverPriv: this.hub.serverPriv, frame: f });
    if (opened.kind === 'malformed') {
      this.close(opened.reason, 'handshake');
      return;
    }
    this.key = opened.clientPub.slice();
    this.keyHex = toHex(this.key);
    this.info = opened.info;
    this.st = 'verifying';
    this.sock.pause();
    void this.hub.verify(this).then((ok) => this.onVerdict(ok));
  }

  private onVerdict(admitted: boolean): void {
    if (this.st !== 'verifying') return; // closed meanwhile (timeout, socket gone, server closing)
    if (!admitted) {
      this.close('node key not admitted', 'refused');
      return;
    }
    if (this.handshakeTimer) this.hub.clock.clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    this.writeNow(encodeFrame(sealServerInfo({ serverPriv: this.hub.serverPriv, clientPub: this.key!, info: { version: PROTOCOL_VERSION, tokenBucketBytesPerSecond: 0, tokenBucketBytesBurst: 0 } })));
    this.st = 'active';
    this.hub.register(this);
    this.scheduleKeepAlive(this.hub.limits.keepAliveMs + Math.floor(this.hub.random() * this.hub.limits.keepAliveJitterMs));
    const backlog = this.backlog;
    this.backlog = [];
    this.backlogBytes = 0;
    for (const raw of backlog) {
      if (this.state !== 'active') return;
      this.onFrame(raw);
    }
    if (this.state === 'active') this.sock.resume();
  }

  private onFrame(raw: RawFrame): void {
    this.hub.noteActivity(this);
    switch (raw.type) {
      case FrameType.SendPacket: {
        const f = parseFrame(raw.type, raw.body);
        if (f.kind !== 'send-packet') {
          this.close(`bad SendPacket: ${f.kind === 'malformed' ? f.reason : f.kind}`, 'protocol');
          return;
        }
        this.hub.counters.packetsReceived++;
        this.hub.counters.bytesReceived += f.packet.length;
        this.hub.route(this, f.dst, f.packet);
        return;
      }
      case FrameType.NotePreferred: {
        const f = parseFrame(raw.type, raw.body);
        if (f.kind !== 'note-preferred') {
          this.close(`bad NotePreferred: ${f.kind === 'malformed' ? f.reason : f.kind}`, 'protocol');
          return;
        }
        if (f.preferred !== this.preferred) this.hub.notePreferred(this, f.preferred);
        this.preferred = f.preferred;
        return;
      }
      case FrameType.Ping:
        if (raw.body.length < PING_LEN || raw.body.length > DERP_MAX_PING_LEN) {
          this.close(`Ping body of ${raw.body.length} bytes`, 'protocol');
          return;
        }
        if (this.pong) return; // pinging faster than we write: ignored, as derper does
        this.pong = encodeFrame({ kind: 'pong', data: raw.body.subarray(0, PING_LEN) });
        this.flush();
        return;
      case FrameType.ForwardPacket:
      case FrameType.WatchConns:
      case FrameType.ClosePeer:
        this.close(`${frameTypeName(raw.type)} needs the mesh key`, 'protocol');
        return;
      default:
        this.hub.counters.unknownFrames++; // skipped, whatever its body (derper handleUnknownFrame)
    }
  }

  // --- writing ------------------------------------------------------------------------------------------

  /** Queues a RecvPacket from `src`. Disco and data packets have separate bounded queues; full → drop oldest. */
  enqueuePacket(src: Uint8Array, packet: Uint8Array): void {
    if (this.st !== 'active') {
      this.hub.counters.dropGone++;
      return;
    }
    const q = looksLikeDiscoWrapper(packet) ? this.discoQ : this.dataQ;
    if (q.length >= this.hub.limits.sendQueueDepth) {
      q.shift();
      this.hub.counters.dropQueueFull++;
    }
    q.push(encodeFrame({ kind: 'recv-packet', src, packet }));
    this.flush();
  }

  /** Queues a PeerGone frame for `peer` (a PeerGoneReason value). */
  sendPeerGone(peer: Uint8Array, reason: number): void {
    if (this.st !== 'active') return;
    if (!this.pushControl(encodeFrame({ kind: 'peer-gone', peer, reason }))) return;
    if (reason === PeerGoneReason.Disconnected) this.hub.counters.peerGoneDisconnected++;
    else this.hub.counters.peerGoneNotHere++;
    this.flush();
  }

  /** Reports whether a PeerGone(NotHere) reply is allowed now (1/s, burst 3, per connection, as derper). */
  allowNotHere(): boolean {
    return this.notHere.allow(this.hub.clock.now());
  }

  private pushControl(frame: Uint8Array): boolean {
    if (this.controlQ.length >= DERP_CONTROL_QUEUE_DEPTH) {
      this.hub.counters.dropControl++;
      return false;
    }
    this.controlQ.push(frame);
    return true;
  }

  private scheduleKeepAlive(periodMs: number): void {
    this.keepAliveTimer = this.hub.clock.setTimeout(() => {
      this.keepAliveTimer = null;
      if (this.st !== 'active') return;
      if (this.pushControl(KEEP_ALIVE_FRAME)) this.hub.counters.keepAlives++;
      this.flush();
      this.scheduleKeepAlive(periodMs);
    }, periodMs);
  }

  private next(): Uint8Array | undefined {
    if (this.controlQ.length > 0) return this.controlQ.shift();
    if (this.pong) {
      const p = this.pong;
      this.pong = null;
      this.hub.counters.pongs++;
      return p;
    }
    const disco = this.discoQ.shift() ?? this.dataQ.shift();
    if (disco) {
      this.hub.counters.packetsSent++;
      this.hub.counters.bytesSent += disco.length - 37; // header(5) + src key(32)
    }
    return disco;
  }

  private hasQueued(): boolean {
    return this.controlQ.length + this.discoQ.length + this.dataQ.length > 0 || this.pong !== null;
  }

  /** Writes what is queued while the socket takes it; arms the write timeout while frames wait behind it. */
  private flush(): void {
    if (this.st === 'closed') return;
    if (!this.blocked && this.hasQueued()) {
      this.sock.cork();
      for (let f = this.next(); f; f = this.blocked ? undefined : this.next()) this.writeNow(f);
      this.sock.uncork();
    }
    if (this.blocked && this.hasQueued() && !this.stallTimer) {
      this.stallTimer = this.hub.clock.setTimeout(() => {
        this.stallTimer = null;
        this.close(`could not write for ${this.hub.limits.writeTimeoutMs} ms`, 'write-timeout');
      }, this.hub.limits.writeTimeoutMs);
    }
  }

  private writeNow(frame: Uint8Array): void {
    if (!this.sock.write(frame)) this.blocked = true;
  }

  private onDrain(): void {
    this.blocked = false;
    if (this.stallTimer) this.hub.clock.clearTimeout(this.stallTimer);
    this.stallTimer = null;
    this.flush();
  }

  // --- closing ------------------------------------------------------------------------------------------

  /** Closes the connection (idempotent); queued packets are counted as dropped. */
  close(why: string, kind: DerpCloseKind): void {
    if (this.st === 'closed') return;
    const was = this.st;
    this.st = 'closed';
    for (const t of [this.handshakeTimer, this.keepAliveTimer, this.stallTimer]) if (t) this.hub.clock.clearTimeout(t);
    this.handshakeTimer = this.keepAliveTimer = this.stallTimer = null;
    this.hub.counters.dropGone += this.discoQ.length + this.dataQ.length;
    this.controlQ.length = this.discoQ.length = this.dataQ.length = 0;
    this.pong = null;
    this.backlog = [];
    this.sock.destroy();
    if (was === 'active') this.hub.unregister(this);
    this.hub.closed(this, kind, why, was);
  }
}
