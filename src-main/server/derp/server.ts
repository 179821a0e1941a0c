/**
 * The embedded DERP relay of `weft server` (dataplane-protocol.md §5), compatible with Tailscale's derper and
 * headscale's embedded DERP for both Weft's DerpConn and tailscaled. The caller owns the HTTP(S) listener and
 * hands over `GET /derp` upgrades and the probe paths:
 *
 *   const derp = createDerpServer({ privateKey, verifyClient });
 *   httpServer.on('upgrade', (req, sock, head) => { if (pathOf(req.url) === '/derp') derp.handleUpgrade(req, sock, head); else sock.destroy(); });
 *   httpServer.on('request', (req, res) => { if (!derp.handleRequest(req, res)) control(req, res); });
 *
 * This module is the hub: it owns the registry of admitted connections by node key and routes between them;
 * each connection (client-conn.ts) owns its socket, queues and timers. Routing follows derpserver.go:
 *
 *   - SendPacket(dst) from A → RecvPacket(src = A) on dst's active connection.
 *   - dst not connected → dropped; if the packet is disco, A hears PeerGone(dst, NotHere) (1/s, burst 3 per
 *     connection). Mesh forwarding to other region nodes is not implemented (one node per region).
 *   - When the last connection of key X closes, every client that was sent packets from X hears
 *     PeerGone(X, Disconnected), so it drops its reverse route to X.
 *   - Duplicate connections of one key (a client reconnecting before its old TCP connection died): the newest
 *     becomes active, and after that whichever last sent a frame (derper's lastWriterIsActive). Older ones stay
 *     open but receive nothing until they speak; beyond DERP_MAX_CONNS_PER_KEY the least recently active is
 *     closed. Closing one duplicate never sends PeerGone.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { realClock, type Clock } from '../../engine/sys/clock.ts';
import { discardLogf, withPrefix, type Logf } from '../../engine/sys/log.ts';
import { publicKeyOf } from '../../protocol/crypto/noise.ts';
import { KEY_LEN, PeerGoneReason, encodeFrame, type DerpClientInfo } from '../../protocol/wire/derp.ts';
import { looksLikeDiscoWrapper } from '../../protocol/wire/disco.ts';
import { concatBytes, toHex } from '../../protocol/wire/hex.ts';
import { DerpClientConn, type DerpCloseKind, type DerpConnCounters, type DerpConnLimits, type DerpConnState, type DerpHub } from './client-conn.ts';
import {
  DERP_HANDSHAKE_TIMEOUT_MS,
  DERP_KEEPALIVE_JITTER_MS,
  DERP_KEEPALIVE_MS,
  DERP_MAX_CLIENT_FRAME_LEN,
  DERP_MAX_CONNS_PER_KEY,
  DERP_SEND_QUEUE_DEPTH,
  DERP_WRITE_TIMEOUT_MS,
} from './constants.ts';
import { FAST_START_HEADER, handleDerpHttpRequest, headerValue, switchingProtocolsResponse, upgradeRequiredResponse } from './http.ts';

/** What verifyClient learns about a connecting client besides its (box-proven) node key. */
export interface DerpVerifyContext {
  /** "ip:port" as seen by the listener. */
  remoteAddress: string;
  /** The opened ClientInfo JSON. */
  info: Required<DerpClientInfo>;
}

export interface DerpServerInit {
  /** The server's Curve25519 private key (32 bytes), persisted by the caller (key-file.ts). */
  privateKey: Uint8Array;
  /**
   * Admission control, asked once per connection after its ClientInfo opened: true admits the node key.
   * `weft server` admits only registered, non-expired node keys (headscale's verify_clients). A throw or
   * rejection counts as false. Bounded by the handshake timeout.
   */
  verifyClient: (nodePub: Uint8Array, ctx: DerpVerifyContext) => boolean | Promise<boolean>;
  /** @default realClock */
  clock?: Clock;
  /** @default discardLogf (lines are prefixed "derp: ") */
  logf?: Logf;
  /** Source of keepalive jitter in [0, 1). @default Math.random */
  random?: () => number;
  /** @default DERP_HANDSHAKE_TIMEOUT_MS (10 s) */
  handshakeTimeoutMs?: number;
  /** @default DERP_KEEPALIVE_MS (60 s) */
  keepAliveMs?: number;
  /** @default DERP_KEEPALIVE_JITTER_MS (5 s) */
  keepAliveJitterMs?: number;
  /** @default DERP_WRITE_TIMEOUT_MS (2 s) */
  writeTimeoutMs?: number;
  /** Per queue (data and disco). @default DERP_SEND_QUEUE_DEPTH (32) */
  sendQueueDepth?: number;
  /** @default DERP_MAX_CONNS_PER_KEY (4) */
  maxConnsPerKey?: number;
  /** Largest frame body accepted from a client. @default DERP_MAX_CLIENT_FRAME_LEN (256 KiB) */
  maxFrameLen?: number;
}

export interface DerpServerStats {
  /** Admitted connections now (duplicates counted). */
  clients: number;
  /** Distinct node keys connected now. */
  keys: number;
  /** Admitted connections whose last NotePreferred said "home". */
  homeClients: number;
  /** Connections still in the handshake (before admission). */
  handshaking: number;
  /** Since start. */
  accepted: number;
  refused: number;
  handshakeFailures: number;
  protocolErrors: number;
  writeTimeouts: number;
  replacedDuplicates: number;
  packetsReceived: number;
  bytesReceived: number;
  packetsSent: number;
  bytesSent: number;
  drops: { unknownDest: number; queueFull: number; gone: number; control: number };
  peerGone: { disconnected: number; notHere: number };
  pongs: number;
  keepAlives: number;
  unknownFrames: number;
}

export interface DerpServer {
  /** The server's public key (what ServerKey frames carry). */
  readonly publicKey: Uint8Array;
  /**
   * Takes over an HTTP upgrade request for /derp (the caller routes by path). `Upgrade: DERP` (any case) is
   * accepted with derper's 101 response (none with `Derp-Fast-Start: 1`); anything else (WebSocket included)
   * gets 426 and the socket is closed. Never throws.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Answers /derp/probe, /derp/latency-check, /generate_204 and a non-upgrade /derp; false for other paths. */
  handleRequest(req: IncomingMessage, res: ServerResponse): boolean;
  /** Closes every connection of a node key (e.g. the node was deleted or expired); returns how many. */
  disconnect(nodePub: Uint8Array): number;
  /** Reports whether a node key has an admitted connection. */
  isConnected(nodePub: Uint8Array): boolean;
  /** The node keys with an admitted connection now (lowercase hex). */
  connectedKeysHex(): string[];
  stats(): DerpServerStats;
  /** Closes every connection and refuses new ones; resolves when all sockets have closed. */
  close(): Promise<void>;
}

/** Connections of one node key, least to most recently active; the last one receives. */
interface KeyConns {
  conns: DerpClientConn[];
}

class DerpHubImpl implements DerpHub {
  readonly serverPriv: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly clock: Clock;
  readonly random: () => number;
  readonly limits: DerpConnLimits;
  readonly counters: DerpConnCounters = {
    packetsReceived: 0,
    bytesReceived: 0,
    packetsSent: 0,
    bytesSent: 0,
    dropQueueFull: 0,
    dropGone: 0,
    dropControl: 0,
    pongs: 0,
    keepAlives: 0,
    peerGoneDisconnected: 0,
    peerGoneNotHere: 0,
    unknownFrames: 0,
  };
  private readonly logf: Logf;
  private readonly maxConnsPerKey: number;
  private readonly verifyClient: DerpServerInit['verifyClient'];
  // Owned by the hub.
  /** Every connection not yet closed (handshaking or admitted), until its socket closes. */
  private readonly live = new Set<DerpClientConn>();
  private readonly byKey = new Map<string, KeyConns>();
  /** Source key (hex) → connections that were sent packets from it (the PeerGone(Disconnected) audience). */
  private readonly watchers = new Map<string, Set<DerpClientConn>>();
  private isClosed = false;
  private clients = 0;
  private homeClients = 0;
  private accepted = 0;
  private refused = 0;
  private handshakeFailures = 0;
  private protocolErrors = 0;
  private writeTimeouts = 0;
  private replaced = 0;
  private dropUnknownDest = 0;

  constructor(init: DerpServerInit) {
    if (!(init.privateKey instanceof Uint8Array) || init.privateKey.length !== KEY_LEN) throw new Error(`derp: the server private key must be ${KEY_LEN} bytes`);
    this.serverPriv = init.privateKey;
    this.publicKey = publicKeyOf(init.privateKey);
    this.clock = init.clock ?? realClock;
    this.random = init.random ?? Math.random;
    this.logf = withPrefix(init.logf ?? discardLogf, 'derp: ');
    this.verifyClient = init.verifyClient;
    this.maxConnsPerKey = Math.max(1, init.maxConnsPerKey ?? DERP_MAX_CONNS_PER_KEY);
    this.limits = {
      handshakeTimeoutMs: init.handshakeTimeoutMs ?? DERP_HANDSHAKE_TIMEOUT_MS,
      keepAliveMs: init.keepAliveMs ?? DERP_KEEPALIVE_MS,
      keepAliveJitterMs: init.keepAliveJitterMs ?? DERP_KEEPALIVE_JITTER_MS,
      writeTimeoutMs: init.writeTimeoutMs ?? DERP_WRITE_TIMEOUT_MS,
      sendQueueDepth: Math.max(1, init.sendQueueDepth ?? DERP_SEND_QUEUE_DEPTH),
      maxFrameLen: init.maxFrameLen ?? DERP_MAX_CLIENT_FRAME_LEN,
    };
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => {}); // until a connection takes the socket over; errors then close it
    if (this.isClosed) {
      socket.destroy();
      return;
    }
    const upgrade = (headerValue(req, 'upgrade') ?? '').toLowerCase();
    if (upgrade !== 'derp') {
      if (upgrade !== '') this.logf(`[v1] refusing upgrade ${JSON.stringify(upgrade.slice(0, 32))}`);
      socket.end(upgradeRequiredResponse());
      return;
    }
    const remote = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? 0}`;
    const conn = new DerpClientConn(socket, this, remote);
    this.live.add(conn);
    void conn.done.then(() => this.live.delete(conn));
    const serverKey = encodeFrame({ kind: 'server-key', serverPub: this.publicKey });
    const fastStart = headerValue(req, FAST_START_HEADER) === '1';
    const greeting = fastStart ? serverKey : concatBytes(new TextEncoder().encode(switchingProtocolsResponse(this.publicKey)), serverKey);
    conn.start(greeting, new Uint8Array(head.buffer, head.byteOffset, head.byteLength));
  }

  async verify(conn: DerpClientConn): Promise<boolean> {
    try {
      return (await this.verifyClient(conn.key!.slice(), { remoteAddress: conn.remote, info: conn.info! })) === true;
    } catch (e) {
      this.logf(`verifyClient failed for ${conn.label}: ${(e as Error).message}`);
      return false;
    }
  }

  register(conn: DerpClientConn): void {
    this.accepted++;
    this.clients++;
    let set = this.byKey.get(conn.keyHex);
    if (!set) {
      set = { conns: [] };
      this.byKey.set(conn.keyHex, set);
    }
    set.conns.push(conn);
    this.logf(`${conn.label} connected${set.conns.length > 1 ? ` (duplicate ${set.conns.length})` : ''}`);
    while (set.conns.length > this.maxConnsPerKey) set.conns[0]!.close('replaced by newer connections of the same key', 'replaced');
  }

  unregister(conn: DerpClientConn): void {
    this.clients--;
    if (conn.preferred) this.homeClients--;
    for (const src of conn.sawSrc) {
      const w = this.watchers.get(src);
      w?.delete(conn);
      if (w?.size === 0) this.watchers.delete(src);
    }
    conn.sawSrc.clear();
    const set = this.byKey.get(conn.keyHex);
    if (!set) return;
    set.conns = set.conns.filter((c) => c !== conn);
    if (set.conns.length > 0) return; // a duplicate left; the key is still here
    this.byKey.delete(conn.keyHex);
    const audience = this.watchers.get(conn.keyHex);
    this.watchers.delete(conn.keyHex);
    for (const w of audience ?? []) {
      w.sawSrc.delete(conn.keyHex);
      w.sendPeerGone(conn.key!, PeerGoneReason.Disconnected);
    }
  }

  noteActivity(conn: DerpClientConn): void {
    const set = this.byKey.get(conn.keyHex);
    if (!set || set.conns.length < 2 || set.conns[set.conns.length - 1] === conn) return;
    set.conns = [...set.conns.filter((c) => c !== conn), conn];
  }

  route(from: DerpClientConn, dst: Uint8Array, packet: Uint8Array): void {
    const dstHex = toHex(dst);
    const set = this.byKey.get(dstHex);
    const to = set?.conns[set.conns.length - 1];
    if (!to) {
      this.dropUnknownDest++;
      if (looksLikeDiscoWrapper(packet) && from.allowNotHere()) from.sendPeerGone(dst, PeerGoneReason.NotHere);
      return;
    }
    if (!to.sawSrc.has(from.keyHex)) {
      to.sawSrc.add(from.keyHex);
      let w = this.watchers.get(from.keyHex);
      if (!w) {
        w = new Set();
        this.watchers.set(from.keyHex, w);
      }
      w.add(to);
    }
    to.enqueuePacket(from.key!, packet);
  }

  notePreferred(_conn: DerpClientConn, preferred: boolean): void {
    this.homeClients += preferred ? 1 : -1;
  }

  closed(conn: DerpClientConn, kind: DerpCloseKind, why: string, was: DerpConnState): void {
    switch (kind) {
      case 'handshake':
        this.handshakeFailures++;
        break;
      case 'refused':
        this.refused++;
        break;
      case 'protocol':
        this.protocolErrors++;
        break;
      case 'write-timeout':
        this.writeTimeouts++;
        break;
      case 'replaced':
        this.replaced++;
        break;
      case 'peer':
      case 'kicked':
      case 'server':
        break;
    }
    if (was === 'active' || kind === 'refused') this.logf(`${conn.label} ${was === 'active' ? 'disconnected' : 'refused'}: ${why}`);
    else this.logf(`[v1] ${conn.label} closed during the handshake: ${why}`);
  }

  disconnect(nodePub: Uint8Array): number {
    const set = this.byKey.get(toHex(nodePub));
    if (!set) return 0;
    const conns = [...set.conns];
    for (const c of conns) c.close('disconnected by the control server', 'kicked');
    return conns.length;
  }

  isConnected(nodePub: Uint8Array): boolean {
    return this.byKey.has(toHex(nodePub));
  }

  connectedKeysHex(): string[] {
    return [...this.byKey.keys()];
  }

  stats(): DerpServerStats {
    const c = this.counters;
    return {
      clients: this.clients,
      keys: this.byKey.size,
      homeClients: this.homeClients,
      handshaking: [...this.live].filter((x) => x.state === 'handshake' || x.state === 'verifying').length,
      accepted: this.accepted,
      refused: this.refused,
      handshakeFailures: this.handshakeFailures,
      protocolErrors: this.protocolErrors,
      writeTimeouts: this.writeTimeouts,
      replacedDuplicates: this.replaced,
      packetsReceived: c.packetsReceived,
      bytesReceived: c.bytesReceived,
      packetsSent: c.packetsSent,
      bytesSent: c.bytesSent,
      drops: { unknownDest: this.dropUnknownDest, queueFull: c.dropQueueFull, gone: c.dropGone, control: c.dropControl },
      peerGone: { disconnected: c.peerGoneDisconnected, notHere: c.peerGoneNotHere },
      pongs: c.pongs,
      keepAlives: c.keepAlives,
      unknownFrames: c.unknownFrames,
    };
  }

  async close(): Promise<void> {
    this.isClosed = true;
    const conns = [...this.live];
    for (const c of conns) c.close('server closing', 'server');
    await Promise.all(conns.map((c) => c.done));
  }
}

/** Builds the DERP server; attach it to an HTTP(S) listener the caller owns (see the module header). */
export function createDerpServer(init: DerpServerInit): DerpServer {
  const hub = new DerpHubImpl(init);
  return {
    publicKey: hub.publicKey,
    handleUpgrade: (req, socket, head) => hub.handleUpgrade(req, socket, head),
    handleRequest: (req, res) => handleDerpHttpRequest(req, res),
    disconnect: (k) => hub.disconnect(k),
    isConnected: (k) => hub.isConnected(k),
    connectedKeysHex: () => hub.connectedKeysHex(),
    stats: () => hub.stats(),
    close: () => hub.close(),
  };
}
