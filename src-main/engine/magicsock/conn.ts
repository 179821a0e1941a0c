/**
 * MagicConn: one UDP socket that carries WireGuard, disco and STUN (dataplane-protocol.md §2), so the NAT
 * mapping STUN discovers is the one WireGuard uses.
 *
 *            wireguard-go (127.0.0.1:wgPort)
 *              │  ▲          a loopback "proxy" socket per active peer: WireGuard's endpoint for that peer
 *              ▼  │
 *        proxy[peer] 127.0.0.1:p ──(send-data-via bestAddr)──┐
 *                                                            ▼
 *   network ◀──────────────────── shared socket 0.0.0.0:port ──── classifyDatagram:
 *                                     stun → StunClient · disco → path reducer · wireguard → proxy[peer] → wg
 *
 * Sockets only where traffic is: a peer gets its proxy socket when a packet for it first appears, and loses it
 * after PROXY_IDLE_MS without any (longer than WireGuard keeps a session, so WireGuard's next packet for it is
 * a handshake). Until then WireGuard's endpoint for the peer is one shared idle socket; a handshake message
 * arriving there names its recipient in mac1 (protocol/wire/wg-mac1.ts), which opens that peer's proxy.
 *
 * Inbound WireGuard is routed to the peer whose disco traffic last came from that source address (a ping or
 * pong binds source → peer, §4.6); packets from unknown sources are dropped and counted. Each peer's path
 * is the pure reducer in paths/endpoint.ts; this class executes its effects and owns the timers.
 *
 * Parts: peer-map.ts (peers by node key, the nodes of each disco key, bounded source bindings), derp-links.ts
 * (one DERP connection per region in use), paths/demux.ts (what a datagram is). Disco has one handler, onDisco,
 * whose source is a UDP address or a DERP region with the sending node; what it may do differs only where the
 * protocol says so (a ping over DERP is answered over DERP and binds no address).
 */
import { EventEmitter } from 'node:events';
import { formatAddr, type UdpAddr } from '../../protocol/wire/addr.ts';
import { boxBeforenm } from '../../protocol/crypto/nacl-box.ts';
import { openDiscoPacket, sealDiscoPacket, type DiscoMessage } from '../../protocol/wire/disco.ts';
import { fromHex, toHex } from '../../protocol/wire/hex.ts';
import { bindUdp, type UdpSocket } from '../io/udp.ts';
import { StunClient } from '../netcheck/stun-client.ts';
import type { DerpTarget } from '../relay/targets.ts';
import { classifyDatagram } from '../paths/demux.ts';
import { addrKey, initialPathState, pathKind, step, type PathEffect, type PathEvent, type PathState, type PathView } from '../paths/endpoint.ts';
import { DISCO_MAX_PING_CANDIDATES, MAGIC_MAX_USER_PINGS, MAGIC_PENDING_MAX_AGE_MS, MAGIC_PENDING_MAX_PACKETS, MAGIC_PROXY_IDLE_MS, MAGIC_PROXY_SWEEP_MS } from '../constants.ts';
import { DerpLinks } from './derp-links.ts';
import { handshakeRecipient, mac1Key } from '../../protocol/wire/wg-mac1.ts';
import { PeerMap } from './peer-map.ts';
import type { Clock, TimerHandle } from '../sys/clock.ts';
import type { Logf } from '../sys/log.ts';

/** Bounds of the no-path queue: a WireGuard handshake plus a few packets, and only while still relevant. */
const PENDING_MAX_PACKETS = MAGIC_PENDING_MAX_PACKETS;
const PENDING_MAX_AGE_MS = MAGIC_PENDING_MAX_AGE_MS;
/** Receive buffer asked for on each proxy socket (the kernel caps it at net.core.rmem_max). */
const PROXY_RECV_BUFFER = 4 << 20;
/** Logs every path event and its effects (WEFT_DEBUG_DISCO=1), for diagnosing hole punching. */
const DEBUG_DISCO = !!process.env['WEFT_DEBUG_DISCO'];

export interface MagicPeerSpec {
  /** Node public key (WireGuard key), 32 bytes. */
  nodeKey: Uint8Array;
  discoKey: Uint8Array;
  endpoints: UdpAddr[];
  name: string;
  /** The peer's home DERP region (Node.HomeDERP); null when it has none. */
  homeRegion: number | null;
}

/** Where a disco message came from: a UDP address, or a DERP region with the node the server says sent it. */
type DiscoSource = { readonly via: 'udp'; readonly addr: UdpAddr } | { readonly via: 'derp'; readonly region: number; readonly node: Peer };

/** The address a pong over DERP reports as the ping's source (Tailscale's magic DERP IP, the region as port). */
const DERP_MAGIC_IP = '127.3.3.40';

/** What status shows: the reducer's direct/connecting, or relay through a DERP region. */
export type LinkView = PathView | { kind: 'relay'; region: number };

interface Peer {
  /** Node key and disco key, hex (fixed for the peer's life: a new disco key makes a new Peer). */
  readonly key: string;
  readonly discoHex: string;
  spec: MagicPeerSpec;
  /** The disco box key with this peer, computed on first use (an X25519 per peer: 2,000 peers cost seconds); false if unusable. */
  shared: Uint8Array | null | false;
  /** Its loopback proxy socket while it is active (null: WireGuard's endpoint is the shared idle socket). */
  proxy: UdpSocket | null;
  opening: Promise<UdpSocket | null> | null;
  /** When a packet for it last passed through Node, or its WireGuard counters last moved. */
  lastActiveAt: number;
  counters: { tx: number; rx: number } | null;
  /** HASH("mac1----" ‖ node key), to recognise WireGuard handshakes for it on the idle socket. */
  readonly mac1Key: Uint8Array;
  path: PathState;
  timer: TimerHandle | null;
  timerAt: number | null;
  /** WireGuard packets that arrived while no path existed, sent once one appears (bounded, short-lived). */
  pending: { data: Uint8Array; at: number }[];
  /** addrKey of the reducer's bestAddr (null: none), and when WireGuard data last arrived from it. */
  bestKey: string | null;
  lastRecvAt: number | null;
  /** Whether the last reported path was direct (to notice a direct path being lost). */
  wasDirect: boolean;
  /** Disco evidence for the UI's "why relayed": pings we sent, direct pongs and pings we got. */
  disco: { pingsSent: number; pongsReceived: number; pingsReceived: number; lastPongAt: number | null };
}

export interface PingReply {
  from: UdpAddr;
  latencyMs: number;
}

export interface MagicConnEvents {
  path: [string, LinkView];
  /** A direct path stopped working (its trust ended): our NAT mapping may have changed. */
  'path-lost': [string];
  /** With `wireGuardDirect`: where WireGuard should send to this peer changed (see wireGuardEndpoint). */
  'wg-endpoint': [string];
}

export interface MagicConnInit {
  nodePriv: Uint8Array;
  port: number;
  discoPriv: Uint8Array;
  discoPub: Uint8Array;
  nodePub: Uint8Array;
  clock: Clock;
  logf: Logf;
  /**
   * The kernel data path: WireGuard owns the public port and sends straight to a peer's trusted direct address;
   * only peers without one go through their loopback proxy (and so through Node, to the relay). @default false
   */
  wireGuardDirect?: boolean;
}

export interface MagicCounters {
  wgIn: number;
  wgOut: number;
  discoIn: number;
  dropped: number;
  proxiesOpened: number;
  proxiesClosed: number;
}

export class MagicConn extends EventEmitter<MagicConnEvents> {
  // All owned by this instance; changed only from its socket handlers and public methods.
  private sock: UdpSocket | null = null;
  /** WireGuard's endpoint for every peer without a proxy socket of its own. */
  private idle: UdpSocket | null = null;
  private sweepTimer: TimerHandle | null = null;
  /** Source bindings per peer: as many as the reducer keeps ping-learned candidates, plus the netmap's few. */
  private readonly peers = new PeerMap<Peer>(2 * DISCO_MAX_PING_CANDIDATES);
  private readonly userPings = new Map<string, (r: PingReply) => void>();
  private wgPort: number | null = null;
  private readonly derp: DerpLinks;
  private localEps: UdpAddr[] = [];
  readonly stun: StunClient;
  readonly counters: MagicCounters = { wgIn: 0, wgOut: 0, discoIn: 0, dropped: 0, proxiesOpened: 0, proxiesClosed: 0 };

  constructor(private readonly init: MagicConnInit) {
    super();
    this.stun = new StunClient({ clock: init.clock, send: (d, to) => this.sendRaw(d, to) });
    this.derp = new DerpLinks({
      nodePriv: init.nodePriv,
      clock: init.clock,
      logf: init.logf,
      on: {
        packet: (region, src, payload) => this.onDerpPacket(region, src, payload),
        peerGone: (region, key, reason) => {
          // The server no longer has the peer (it disconnected, or was never there): our relayed packets to it
          // through this region are dropped until it comes back or control names another home region, which the
          // next netmap brings. Nothing to redial; say so, since it explains a stalled relayed link.
          const p = this.peers.get(toHex(key));
          this.init.logf(`derp: ${p?.spec.name ?? toHex(key).slice(0, 8)} is ${reason === 1 ? 'not connected to' : 'gone from'} region ${region}`);
          if (p) this.emit('path', p.key, this.pathOf(p.key));
        },
        connected: (region) => this.onDerpConnected(region),
      },
    });
  }

  async start(): Promise<number> {
    this.sock = await bindUdp({ port: this.init.port });
    this.sock.onPacket((d, from) => this.onNetwork(d, from));
    this.idle = await bindUdp({ address: '127.0.0.1', port: 0 });
    this.idle.onPacket((d, from) => {
      if (this.fromWireGuard(from)) this.onIdlePacket(d);
      else this.counters.dropped++;
    });
    this.scheduleSweep();
    return this.sock.localPort();
  }

  /** Proxy sockets open now (one per active peer). */
  get openProxies(): number {
    let n = 0;
    for (const p of this.peers.values()) if (p.proxy) n++;
    return n;
  }

  get localPort(): number {
    return this.sock?.localPort() ?? 0;
  }

  /** The loopback port wireguard-go listens on; inbound WireGuard is delivered there. */
  setWireGuardPort(port: number): void {
    this.wgPort = port;
  }

  private sendRaw(d: Uint8Array, to: UdpAddr): Promise<void> {
    if (!this.sock) return Promise.reject(new Error('magicsock not started'));
    return this.sock.send(d, to);
  }

  /** The loopback address WireGuard must use as this peer's endpoint. */

  /**
   * Where WireGuard should send to this peer: its trusted direct address on the kernel data path, else its
   * loopback proxy, or the shared idle socket while it has none. Null for an unknown peer.
   */
  wireGuardEndpoint(nodeKeyHex: string): UdpAddr | null {
    const p = this.peers.get(nodeKeyHex);
    if (!p) return null;
    if (this.init.wireGuardDirect) {
      const view = pathKind(p.path, this.init.clock.now());
      if (view.kind === 'direct') return view.addr;
    }
    const sock = p.proxy ?? this.idle;
    return sock ? { ip: '127.0.0.1', port: sock.localPort() } : null;
  }

  /**
   * WireGuard's own counters for a peer (kernel data path: its packets no longer pass through Node), in this
   * clock's time base. They drive heartbeats and the liveness check (paths/endpoint.ts wg-counters).
   */
  wireGuardCounters(nodeKeyHex: string, c: { txBytes: number; rxBytes: number; lastHandshakeAt: number | null }): void {
    const p = this.peers.get(nodeKeyHex);
    if (!p) return;
    if (p.counters && (c.txBytes !== p.counters.tx || c.rxBytes !== p.counters.rx)) p.lastActiveAt = this.init.clock.now();
    p.counters = { tx: c.txBytes, rx: c.rxBytes };
    this.apply(p, { type: 'wg-counters', ...c });
  }

  /** Replaces the peer set (from the netmap): new peers get a proxy socket, removed ones are closed. */
  async setPeers(specs: MagicPeerSpec[]): Promise<void> {
    const want = new Map(specs.map((s) => [toHex(s.nodeKey), s]));
    for (const p of [...this.peers.values()]) {
      const s = want.get(p.key);
      if (s && toHex(s.discoKey) === p.discoHex) continue;
      this.dropPeer(p);
    }
    for (const [key, s] of want) {
      let p = this.peers.get(key);
      if (!p) {
        if (s.discoKey.length !== 32 || s.discoKey.every((b) => b === 0)) {
          this.init.logf(`magicsock: peer ${s.name} has an unusable disco key; skipped`);
          continue;
        }
        const peer: Peer = { key, discoHex: toHex(s.discoKey), spec: s, shared: null, proxy: null, opening: null, lastActiveAt: this.init.clock.now(), counters: null, mac1Key: mac1Key(s.nodeKey), path: initialPathState({ newTxId: () => toHex(crypto.getRandomValues(new Uint8Array(12))) }), timer: null, timerAt: null, pending: [], bestKey: null, lastRecvAt: null, wasDirect: false, disco: { pingsSent: 0, pongsReceived: 0, pingsReceived: 0, lastPongAt: null } };
        if (this.peers.knowsDisco(peer.discoHex)) this.init.logf(`magicsock: ${s.name} shares its disco key with another peer; disco messages go to the node they name`);
        this.peers.add(peer);
        p = peer;
        this.apply(p, { type: 'local-endpoints', endpoints: this.localEps });
      }
      p.spec = s;
      this.apply(p, { type: 'netmap-endpoints', endpoints: s.endpoints });
    }
  }

  private dropPeer(p: Peer): void {
    if (p.timer) this.init.clock.clearTimeout(p.timer);
    p.timer = null;
    this.peers.remove(p);
    if (p.proxy) this.closeProxy(p);
  }

  /** The disco box key with `p` (null when its disco key is unusable: a low-order point; said once). */
  private sharedOf(p: Peer): Uint8Array | null {
    if (p.shared === null) {
      try {
        p.shared = boxBeforenm(p.spec.discoKey, this.init.discoPriv);
      } catch {
        p.shared = false;
        this.init.logf(`magicsock: peer ${p.spec.name} has an unusable disco key; no disco with it`);
      }
    }
    return p.shared || null;
  }

  /** The peer's proxy socket, opened on first use (WireGuard is then told to send there: wg-endpoint). */
  private ensureProxy(p: Peer): Promise<UdpSocket | null> {
    if (p.proxy) return Promise.resolve(p.proxy);
    if (p.opening) return p.opening;
    // WireGuard writes bursts (GSO batches) to the proxy: with the default buffer about 2 % of a relayed TCP
    // flow's packets overflowed it in the lab, and each loss costs a retransmission.
    p.opening = bindUdp({ address: '127.0.0.1', port: 0, recvBufferSize: PROXY_RECV_BUFFER })
      .then(async (sock) => {
        p.opening = null;
        if (this.peers.get(p.key) !== p || !this.sock) {
          await sock.close();
          return null;
        }
        p.proxy = sock;
        this.counters.proxiesOpened++;
        sock.onPacket((d, from) => {
          if (this.fromWireGuard(from)) this.onFromWireGuard(p, d);
          else this.counters.dropped++;
        });
        this.emit('wg-endpoint', p.key);
        return sock;
      })
      .catch((e: unknown) => {
        p.opening = null;
        this.init.logf(`magicsock: no proxy socket for ${p.spec.name}: ${(e as Error).message}`);
        return null;
      });
    return p.opening;
  }

  private closeProxy(p: Peer): void {
    const sock = p.proxy;
    if (!sock) return;
    p.proxy = null;
    this.counters.proxiesClosed++;
    void sock.close();
  }

  /** Only the local WireGuard may send into the proxies and the idle socket (another local process may not). */
  private fromWireGuard(from: UdpAddr): boolean {
    return from.ip === '127.0.0.1' && from.port === this.wgPort;
  }

  /** Delivers a WireGuard packet from the peer to the local WireGuard, from the peer's proxy socket. */
  private toWireGuard(p: Peer, d: Uint8Array): void {
    if (this.wgPort === null) return;
    const to = { ip: '127.0.0.1', port: this.wgPort };
    p.lastActiveAt = this.init.clock.now();
    if (p.proxy) {
      p.proxy.post(d, to);
      return;
    }
    const copy = d.slice();
    void this.ensureProxy(p).then((sock) => sock?.send(copy, to).catch(() => {}));
  }

  /**
   * A packet from WireGuard on the shared idle socket: a handshake for a peer without a proxy socket. Its mac1
   * names the peer; it is sent on like any packet from that peer's proxy, and the proxy opens for what follows.
   */
  private onIdlePacket(d: Uint8Array): void {
    const p = handshakeRecipient(d, this.mac1Candidates());
    if (!p) {
      this.counters.dropped++;
      return;
    }
    void this.ensureProxy(p);
    this.onFromWireGuard(p, d);
  }

  private *mac1Candidates(): Generator<readonly [Peer, Uint8Array]> {
    for (const p of this.peers.values()) yield [p, p.mac1Key] as const;
  }

  /** Every PROXY_SWEEP_MS: proxy sockets of peers idle for PROXY_IDLE_MS are closed. */
  private scheduleSweep(): void {
    this.sweepTimer = this.init.clock.setTimeout(() => {
      this.sweepTimer = null;
      const now = this.init.clock.now();
      for (const p of this.peers.values()) {
        if (!p.proxy || now - p.lastActiveAt < MAGIC_PROXY_IDLE_MS) continue;
        this.closeProxy(p);
        this.emit('wg-endpoint', p.key);
      }
      if (this.sock) this.scheduleSweep();
    }, MAGIC_PROXY_SWEEP_MS);
  }

  /** Our advertised endpoints (sent in CallMeMaybe). */
  setLocalEndpoints(eps: UdpAddr[]): void {
    this.localEps = eps;
    for (const p of this.peers.values()) this.apply(p, { type: 'local-endpoints', endpoints: eps });
  }

  /**
   * Sets the DERP regions (from the DERP map) and our home region, connecting to home. A region that left the
   * map, or whose server changed, loses its connection (redialled on next use).
   */
  setDerp(targets: Map<number, DerpTarget>, home: number | null): void {
    this.derp.set(targets, home);
  }

  get home(): number | null {
    return this.derp.home;
  }

  /** DERP connections open now (one per region in use). */
  get derpLinks(): number {
    return this.derp.size;
  }

  /** The region a peer is reached through: its home region, or failing that ours. */
  private regionOf(p: Peer): number | null {
    return p.spec.homeRegion ?? this.derp.home;
  }

  private onDerpConnected(region: number): void {
    for (const p of this.peers.values()) {
      if (this.regionOf(p) !== region) continue;
      // Packets that found neither a direct path nor this connection up (a WireGuard handshake, typically) go
      // now, instead of waiting for WireGuard's 5 s retry.
      const fresh = p.pending.filter((x) => this.init.clock.now() - x.at <= PENDING_MAX_AGE_MS);
      p.pending = [];
      for (const x of fresh) if (this.derp.reply(region, p.spec.nodeKey, x.data)) this.counters.wgOut++;
      this.emit('path', p.key, this.pathOf(p.key));
    }
  }

  /** Sends to a peer through its home region (or, failing that, our home region). */
  private sendViaDerp(p: Peer, data: Uint8Array): boolean {
    const ok = this.derp.send(this.regionOf(p), p.spec.nodeKey, data);
    if (DEBUG_DISCO) this.init.logf(`[v1] derp send ${data.length}B to ${p.spec.name}: ${ok ? 'sent' : 'no connection'}`);
    return ok;
  }

  private onDerpPacket(region: number, src: Uint8Array, payload: Uint8Array): void {
    const p = this.peers.get(toHex(src));
    const kind = classifyDatagram(payload);
    if (DEBUG_DISCO) this.init.logf(`[v1] derp ${region} recv ${payload.length}B from ${p?.spec.name ?? toHex(src).slice(0, 8)} (${kind})`);
    if (!p) {
      this.counters.dropped++;
      return;
    }
    switch (kind) {
      case 'disco':
        this.onDisco(payload, { via: 'derp', region, node: p });
        return;
      case 'wireguard':
        if (this.wgPort === null) return;
        this.counters.wgIn++;
        this.toWireGuard(p, payload);
        // Relayed data while we trust a direct path: the peer has lost it, so ours is suspect too.
        if (p.wasDirect) this.apply(p, { type: 'relay-received', lastRecvAt: p.lastRecvAt });
        return;
      default:
        this.counters.dropped++;
    }
  }

  /** Sizes of a peer's bounded disco state (null if unknown): for status, debugging and the bounds tests. */
  stateSizes(nodeKeyHex: string): { boundAddrs: number; candidates: number; sentPings: number; pending: number; proxy: boolean } | null {
    const p = this.peers.get(nodeKeyHex);
    return p ? { boundAddrs: this.peers.addrsOfPeer(p).length, candidates: p.path.candidates.size, sentPings: p.path.sentPings.size, pending: p.pending.length, proxy: p.proxy !== null } : null;
  }

  /** Disco counters for a peer (null if unknown); lastPongAt is wall-clock ms. */
  discoStatsOf(nodeKeyHex: string): Peer['disco'] | null {
    const p = this.peers.get(nodeKeyHex);
    return p ? { ...p.disco } : null;
  }

  pathOf(nodeKeyHex: string): LinkView {
    const p = this.peers.get(nodeKeyHex);
    if (!p) return { kind: 'connecting' };
    const view = pathKind(p.path, this.init.clock.now());
    if (view.kind === 'direct') return view;
    const region = this.regionOf(p);
    return this.derp.existing(region)?.connected && region !== null ? { kind: 'relay', region } : view;
  }

  // ---- data path

  private onFromWireGuard(p: Peer, d: Uint8Array): void {
    p.lastActiveAt = this.init.clock.now();
    this.apply(p, { type: 'send-data', lastRecvAt: p.lastRecvAt }, d);
  }

  private onNetwork(d: Uint8Array, from: UdpAddr): void {
    switch (classifyDatagram(d)) {
      case 'stun':
        if (!this.stun.handlePacket(d, from)) this.counters.dropped++;
        return;
      case 'disco':
        this.onDisco(d, { via: 'udp', addr: from });
        return;
      case 'wireguard': {
        const key = addrKey(from);
        const p = this.peers.peerForAddr(key);
        if (!p || this.wgPort === null) {
          this.counters.dropped++;
          return;
        }
        if (key === p.bestKey) p.lastRecvAt = this.init.clock.now();
        this.counters.wgIn++;
        this.toWireGuard(p, d);
        return;
      }
      case 'geneve':
      case 'junk':
        this.counters.dropped++;
        return;
    }
  }

  /**
   * The one disco handler (dataplane-protocol §3.7, §4.6). The sender's disco key names a set of nodes; which of
   * them a message is for comes from the DERP sender, the ping's node key, or the pong's transaction ID (each
   * node's reducer knows its own). Only when nothing tells them apart does a ping go to all of them, and then
   * it binds no source address (TS: magicsock.go handlePingLocked, unambiguousNodeKeyOfPingLocked).
   */
  private onDisco(d: Uint8Array, src: DiscoSource): void {
    const r = openDiscoPacket(d, (sender) => {
      const first = this.peers.nodesOfDisco(toHex(sender)).values().next().value;
      return first ? this.sharedOf(first) : null;
    });
    if (r.kind !== 'disco') {
      this.counters.dropped++; // unknown senders and bad boxes are dropped silently
      return;
    }
    const sender = toHex(r.senderPub);
    if (src.via === 'derp' && src.node.discoHex !== sender) {
      this.counters.dropped++; // sealed with a disco key that is not the sending node's
      return;
    }
    const nodes = src.via === 'derp' ? [src.node] : [...this.peers.nodesOfDisco(sender)];
    if (nodes.length === 0) return;
    this.counters.discoIn++;
    const msg = r.msg;
    switch (msg.kind) {
      case 'ping': {
        const txid = toHex(msg.txid);
        if (src.via === 'derp') {
          // Over DERP: answered over DERP, from the region it came through; it binds no address.
          const p = src.node;
          p.disco.pingsReceived++;
          const shared = this.sharedOf(p);
          if (!shared) return;
          const pong = sealDiscoPacket({ senderPub: this.init.discoPub, shared, msg: { kind: 'pong', txid: msg.txid, src: { ip: DERP_MAGIC_IP, port: src.region } } });
          this.derp.reply(src.region, p.spec.nodeKey, pong);
          return;
        }
        const named = msg.nodeKey ? this.peers.get(toHex(msg.nodeKey)) : undefined;
        const targets = named && named.discoHex === sender ? [named] : nodes;
        for (const p of targets) {
          p.disco.pingsReceived++;
          if (targets.length === 1) this.peers.bindAddr(addrKey(src.addr), p, p.bestKey);
          this.apply(p, { type: 'ping-received', from: src.addr, txid });
        }
        return;
      }
      case 'pong': {
        const txid = toHex(msg.txid);
        const from = src.via === 'udp' ? src.addr : { ip: DERP_MAGIC_IP, port: src.region };
        const user = this.userPings.get(txid);
        if (user) {
          this.userPings.delete(txid);
          user({ from, latencyMs: 0 });
        }
        if (src.via === 'derp') return; // a pong over DERP says nothing about a UDP path
        const mine = nodes.find((n) => n.path.sentPings.has(txid));
        const p = mine ?? (user && nodes.length === 1 ? nodes[0] : undefined);
        if (!p) return;
        p.disco.pongsReceived++;
        p.disco.lastPongAt = Date.now();
        this.peers.bindAddr(addrKey(src.addr), p, p.bestKey);
        if (mine) this.apply(p, { type: 'pong-received', from: src.addr, txid, src: msg.src });
        return;
      }
      case 'call-me-maybe': {
        // Over UDP (sent where there is no DERP) it is honoured only when the disco key names one node.
        if (nodes.length !== 1) return;
        this.apply(nodes[0]!, { type: 'call-me-maybe', endpoints: msg.endpoints });
        return;
      }
      default:
        return; // peer-relay messages (0x04-0x09) are not supported: dropped silently (errata)
    }
  }

  private sendDisco(p: Peer, to: UdpAddr, msg: DiscoMessage): void {
    const shared = this.sharedOf(p);
    if (!shared) return;
    const pkt = sealDiscoPacket({ senderPub: this.init.discoPub, shared, msg });
    this.sendRaw(pkt, to).catch(() => this.apply(p, { type: 'send-error', addr: to }));
  }

  // ---- reducer plumbing

  private apply(p: Peer, ev: PathEvent, data?: Uint8Array): void {
    const now = this.init.clock.now();
    const r = step(p.path, ev, now);
    if (DEBUG_DISCO && ev.type !== 'send-data') {
      const fx = r.effects.filter((e) => e.type !== 'send-data-via').map((e) => (e.type === 'schedule' ? `schedule+${e.at === null ? 'none' : Math.round(e.at - now)}` : e.type === 'send-ping' || e.type === 'send-pong' ? `${e.type}>${formatAddr(e.to)}` : e.type));
      this.init.logf(`[v1] disco ${p.spec.name} ${ev.type}${'from' in ev ? `<${formatAddr(ev.from)}` : ''} -> ${fx.join(' ')}`);
    }
    p.path = r.state;
    for (const e of r.effects) this.execute(p, e, data);
  }

  private execute(p: Peer, e: PathEffect, data?: Uint8Array): void {
    switch (e.type) {
      case 'send-ping':
        p.disco.pingsSent++;
        this.sendDisco(p, e.to, { kind: 'ping', txid: fromHex(e.txid), nodeKey: this.init.nodePub, padding: 0 });
        return;
      case 'send-pong':
        this.sendDisco(p, e.to, { kind: 'pong', txid: fromHex(e.txid), src: e.src });
        return;
      case 'send-call-me-maybe': {
        // Over DERP, as Tailscale peers expect; without a DERP path, straight to the control-learned endpoints.
        const shared = this.sharedOf(p);
        if (!shared) return;
        const cmm = sealDiscoPacket({ senderPub: this.init.discoPub, shared, msg: { kind: 'call-me-maybe', endpoints: [...e.endpoints] } });
        if (!this.sendViaDerp(p, cmm)) for (const to of p.spec.endpoints) this.sendDisco(p, to, { kind: 'call-me-maybe', endpoints: [...e.endpoints] });
        return;
      }
      case 'send-data-via':
        if (data && e.udp) {
          this.counters.wgOut++;
          this.sendRaw(data, e.udp).catch(() => this.apply(p, { type: 'send-error', addr: e.udp! }));
        }
        if (data && (e.relay || !e.udp) && this.sendViaDerp(p, data)) {
          this.counters.wgOut++;
        } else if (data && !e.udp) {
          // No path yet (and no relay until DERP): hold the packet briefly instead of losing the handshake.
          p.pending.push({ data: data.slice(), at: this.init.clock.now() });
          if (p.pending.length > PENDING_MAX_PACKETS) p.pending.shift();
        }
        return;
      case 'set-wireguard-endpoint':
        // WireGuard always talks to the peer's proxy; the forwarding target is the reducer's bestAddr.
        p.bestKey = e.addr ? addrKey(e.addr) : null;
        p.lastRecvAt = null;
        return;
      case 'path-changed':
        if (e.path.kind === 'direct') this.flushPending(p, e.path.addr);
        this.init.logf(`magicsock: ${p.spec.name} path ${e.path.kind === 'direct' ? `direct ${formatAddr(e.path.addr)} ${e.path.latencyMs.toFixed(1)} ms` : e.path.kind}`);
        this.emit('path', p.key, e.path);
        if (p.wasDirect && e.path.kind !== 'direct') this.emit('path-lost', p.key);
        p.wasDirect = e.path.kind === 'direct';
        if (this.init.wireGuardDirect) {
          // Off the direct path, WireGuard's live session must move to the peer's proxy, never to the idle socket
          // (it only understands handshakes): open the proxy first; its opening repoints WireGuard.
          if (e.path.kind !== 'direct' && !p.proxy) void this.ensureProxy(p);
          else this.emit('wg-endpoint', p.key);
        }
        return;
      case 'schedule':
        this.schedule(p, e.at);
        return;
      default: {
        const never: never = e;
        return never;
      }
    }
  }

  private flushPending(p: Peer, to: UdpAddr): void {
    const fresh = p.pending.filter((x) => this.init.clock.now() - x.at <= PENDING_MAX_AGE_MS);
    if (p.pending.length > 0) this.init.logf(`magicsock: ${p.spec.name}: sending ${fresh.length} of ${p.pending.length} packets queued before the path existed`);
    p.pending = [];
    for (const x of fresh) {
      this.counters.wgOut++;
      this.sendRaw(x.data, to).catch(() => {});
    }
  }

  private schedule(p: Peer, at: number | null): void {
    if (p.timerAt === at && (p.timer !== null || at === null)) return;
    if (p.timer) this.init.clock.clearTimeout(p.timer);
    p.timer = null;
    p.timerAt = at;
    if (at === null) return;
    // Timers can fire a fraction of a millisecond early against the monotonic clock: round up and add 1 ms.
    p.timer = this.init.clock.setTimeout(() => {
      p.timer = null;
      if (this.peers.get(p.key) !== p) return;
      this.apply(p, { type: 'tick' });
      // The reducer emits `schedule` only when its wake time changes; if this tick came early (nothing was
      // due, so no new schedule), re-arm for the same wake time instead of stalling.
      if (p.timer === null && p.path.wakeAt !== null) this.schedule(p, p.path.wakeAt);
    }, Math.max(0, Math.ceil(at - this.init.clock.now())) + 1);
  }

  /**
   * A user-initiated disco ping (weft ping): one Ping to every candidate of the peer (or its trusted best
   * address), resolving with the first Pong, or null after `timeoutMs`. It also counts as wanting a path.
   */
  ping(nodeKeyHex: string, timeoutMs: number): Promise<PingReply | null> {
    const p = this.peers.get(nodeKeyHex);
    if (!p || this.userPings.size >= MAGIC_MAX_USER_PINGS) return Promise.resolve(null);
    this.apply(p, { type: 'send-data' });
    const view = pathKind(p.path, this.init.clock.now());
    const targets = view.kind === 'direct' ? [view.addr] : [...p.path.candidates.values()].map((c) => c.addr);
    const txid = crypto.getRandomValues(new Uint8Array(12));
    const t0 = this.init.clock.now();
    return new Promise((resolve) => {
      const timer = this.init.clock.setTimeout(() => {
        this.userPings.delete(toHex(txid));
        resolve(null);
      }, timeoutMs);
      this.userPings.set(toHex(txid), (r) => {
        this.init.clock.clearTimeout(timer);
        resolve({ from: r.from, latencyMs: this.init.clock.now() - t0 });
      });
      for (const to of targets) this.sendDisco(p, to, { kind: 'ping', txid, nodeKey: this.init.nodePub, padding: 0 });
    });
  }

  async close(): Promise<void> {
    if (this.sweepTimer) this.init.clock.clearTimeout(this.sweepTimer);
    this.sweepTimer = null;
    this.derp.close();
    for (const p of [...this.peers.values()]) this.dropPeer(p);
    this.stun.close();
    await this.sock?.close();
    this.sock = null;
    await this.idle?.close();
    this.idle = null;
  }
}
