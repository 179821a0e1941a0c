/**
 * The control plane of `weft server`: what headscale's hscontrol does for a single flat tailnet.
 *
 *   http server (server.ts) ── GET /key ───────────────▶ keyReply()
 *                           ── GET /register/:id ──────▶ registerPage()
 *                           ── POST /ts2021 (upgrade) ─▶ NoiseServer ─▶ HTTP/2 routes:
 *                                                          POST /machine/register ─▶ register.ts
 *                                                          POST /machine/map      ─▶ mapRoute() ─▶ MapStreams
 *   tick every ~500 ms: store.changeCounter() moved (the admin CLI wrote)? key expiry passed? ─▶ refresh streams;
 *                       wake Followup requests whose registration was approved
 *
 * Local writes (a registration, a lite map update) call `changed()`, which coalesces into one refresh on the
 * next turn of the event loop, so a burst of updates becomes one delta per client.
 *
 * Every refresh also works out which node keys stopped being admitted (node deleted, expired, or its key rotated)
 * and tells the `onNodeKeysRevoked` listeners, so the embedded DERP server can drop their connections.
 *
 * Lifecycle: construct, then start() before serving; stop() ends streams, connections and timers (the store is
 * the caller's to close).
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { DerpMap } from '../../../src-shared/model/derp-map.ts';
import { realClock, type Clock, type TimerHandle } from '../../engine/sys/clock.ts';
import { discardLogf, withPrefix, type Logf } from '../../engine/sys/log.ts';
import { keyText } from '../../protocol/crypto/keys.ts';
import { publicKeyOf } from '../../protocol/crypto/noise.ts';
import { z } from 'zod';
import { MapRequest, RegisterRequest, formatGoTime } from '../../protocol/control/tailcfg.ts';
import type { ServerStore } from '../store/types.ts';
import * as C from './constants.ts';
import { MapStreams } from './map-streams.ts';
import type { MapperConfig } from './mapper.ts';
import { NoiseServer, sendJson, sendText, type NoiseRequest } from './noise-server.ts';
import { handleRegister, type RegisterDeps } from './register.ts';
import { isExpired } from './mapper.ts';
import { cleanEndpoints, cleanHostinfo } from './node-input.ts';
import { ZERO_DISCO_KEY } from '../../../src-shared/model/ids.ts';
import type { PolicySource } from '../policy/file.ts';
import { worldOf } from '../policy/compile.ts';
import { autoApprove } from '../policy/approve.ts';
import { announcedRoutes } from '../routes/routes.ts';
import { dnsConfigOf, NO_DNS, type DnsSettings } from './dns-config.ts';
import { registerPageHtml } from './pages.ts';

export interface ControlPlaneInit {
  store: ServerStore;
  /** The URL clients use (AuthURLs, the Domain in maps). */
  serverUrl: URL;
  noisePrivateKey: Uint8Array;
  /** @default an empty map (no relays) */
  derpMap?: DerpMap;
  /**
   * MagicDNS, nameservers, split DNS and extra records (dns-config.ts; checked by the caller); node names become
   * `<given>.<baseDomain>.` with a base domain. @default NO_DNS (bare names, an empty DNSConfig)
   */
  dns?: DnsSettings;
  logf?: Logf;
  /** Wall-clock milliseconds (store times, ControlTime, expiry); @default Date.now */
  now?: () => number;
  /** Timers and the monotonic clock for rate limits; @default realClock */
  clock?: Clock;
  /** @default Math.random */
  random?: () => number;
  /** @default MIN_CAPVER */
  minCapver?: number;
  /** @default KEEPALIVE_MS */
  keepAliveMs?: number;
  /** @default KEEPALIVE_JITTER_MS */
  keepAliveJitterMs?: number;
  /** @default POLL_MS */
  pollMs?: number;
  /** @default FOLLOWUP_WAIT_MS */
  followupWaitMs?: number;
  /** @default PENDING_TTL_MS */
  pendingTtlMs?: number;
  /** @default OFFLINE_GRACE_MS */
  offlineGraceMs?: number;
  /** @default EPHEMERAL_TIMEOUT_MS */
  ephemeralTimeoutMs?: number;
  /** @default MAX_BODY_BYTES */
  maxBodyBytes?: number;
  /** @default RATE_BURST */
  rateBurst?: number;
  /** @default RATE_PER_SECOND */
  ratePerSecond?: number;
  /** @default HANDSHAKE_IDLE_MS */
  handshakeIdleMs?: number;
  /** @default MAX_CONNECTIONS */
  maxConnections?: number;
  /** @default MAX_CONNECTIONS_PER_IP */
  maxConnectionsPerIp?: number;
  /** @default HANDSHAKE_BURST_PER_IP */
  handshakeBurstPerIp?: number;
  /** @default HANDSHAKE_RATE_PER_IP */
  handshakeRatePerIp?: number;
  /** @default MAX_TRACKED_IPS */
  maxTrackedIps?: number;
  /** @default MAX_PENDING */
  maxPending?: number;
  /** @default MAX_PENDING_PER_IP */
  maxPendingPerIp?: number;
  /** @default PENDING_SWEEP_MS */
  pendingSweepMs?: number;
  /** The HA prober's cycle; 0 turns it off. @default HA_PROBE_INTERVAL_MS */
  haProbeIntervalMs?: number;
  /** @default HA_PROBE_TIMEOUT_MS */
  haProbeTimeoutMs?: number;
  /** The ACL policy in force (policy/file.ts); none: allow all, everyone sees everyone. Call changed() when it moves. */
  policy?: PolicySource;
}

export interface HttpReply {
  status: number;
  contentType: string;
  body: string;
}

interface Waiter {
  resolve: (r: 'approved' | 'timeout' | 'gone') => void;
}

export class ControlPlane {
  readonly publicKey: Uint8Array;
  readonly #store: ServerStore;
  readonly #serverUrl: URL;
  readonly #clock: Clock;
  readonly #now: () => number;
  readonly #logf: Logf;
  readonly #minCapver: number;
  readonly #pollMs: number;
  readonly #followupWaitMs: number;
  readonly #noise: NoiseServer;
  readonly #streams: MapStreams;
  readonly #registerDeps: RegisterDeps;
  readonly #policy: PolicySource | null;
  // Owned by this instance.
  #derpMap: DerpMap;
  readonly #dns: DnsSettings;
  readonly #dnsConfig: Record<string, unknown>;
  readonly #waiters = new Map<string, Set<Waiter>>();
  readonly #revokedListeners = new Map<(nodeKeys: string[]) => void, (() => Iterable<string>) | null>();
  /** Node keys of the nodes that exist and have not expired, as of the last refresh. */
  #admitted = new Set<string>();
  /** Source IP → its pending registrations (id → created at), for the per-address bound; pruned by the sweep. */
  readonly #pendingByIp = new Map<string, Map<string, number>>();
  readonly #maxPending: number;
  readonly #maxPendingPerIp: number;
  readonly #pendingTtlMs: number;
  readonly #pendingSweepMs: number;
  #lastPendingSweep = 0;
  #tick: TimerHandle | null = null;
  #refreshQueued = false;
  #lastCounter = -1;
  #lastTickAt = 0;
  #stopped = false;

  constructor(init: ControlPlaneInit) {
    this.#store = init.store;
    this.#serverUrl = init.serverUrl;
    this.#clock = init.clock ?? realClock;
    this.#now = init.now ?? Date.now;
    this.#logf = init.logf ?? discardLogf;
    this.#minCapver = init.minCapver ?? C.MIN_CAPVER;
    this.#pollMs = init.pollMs ?? C.POLL_MS;
    this.#followupWaitMs = init.followupWaitMs ?? C.FOLLOWUP_WAIT_MS;
    this.#derpMap = init.derpMap ?? { Regions: {} };
    this.#dns = init.dns ?? NO_DNS;
    this.#dnsConfig = dnsConfigOf(this.#dns);
    this.#maxPending = init.maxPending ?? C.MAX_PENDING;
    this.#maxPendingPerIp = init.maxPendingPerIp ?? C.MAX_PENDING_PER_IP;
    this.#pendingTtlMs = init.pendingTtlMs ?? C.PENDING_TTL_MS;
    this.#pendingSweepMs = init.pendingSweepMs ?? C.PENDING_SWEEP_MS;
    this.publicKey = publicKeyOf(init.noisePrivateKey);
    this.#policy = init.policy ?? null;
    this.#streams = new MapStreams({
      store: this.#store,
      cfg: () => this.#mapperConfig(),
      now: this.#now,
      clock: this.#clock,
      random: init.random ?? Math.random,
      logf: withPrefix(this.#logf, 'control: '),
      keepAliveMs: init.keepAliveMs ?? C.KEEPALIVE_MS,
      keepAliveJitterMs: init.keepAliveJitterMs ?? C.KEEPALIVE_JITTER_MS,
      offlineGraceMs: init.offlineGraceMs ?? C.OFFLINE_GRACE_MS,
      ephemeralTimeoutMs: init.ephemeralTimeoutMs ?? C.EPHEMERAL_TIMEOUT_MS,
      onStoreChanged: () => this.changed(),
      ...(init.policy ? { policy: () => init.policy!.current() } : {}),
      haProbeIntervalMs: init.haProbeIntervalMs ?? C.HA_PROBE_INTERVAL_MS,
      haProbeTimeoutMs: init.haProbeTimeoutMs ?? C.HA_PROBE_TIMEOUT_MS,
      pingUrl: (id) => {
        const u = new URL('/machine/ping-response', this.#serverUrl);
        u.searchParams.set('id', id);
        return u.toString();
      },
      // 16 lowercase hex characters (64 random bits), the shape of headscale's ping ids.
      pingId: () => randomBytes(8).toString('hex'),
    });
    this.#registerDeps = {
      store: this.#store,
      serverUrl: this.#serverUrl,
      now: this.#now,
      minCapver: this.#minCapver,
      pendingTtlMs: this.#pendingTtlMs,
      waitApproval: (id, signal) => this.#waitApproval(id, signal),
      changed: () => this.changed(),
      registered: (id) => this.#autoApprove([id], 'it registered'),
      pendingRefused: (ip) => this.#pendingRefused(ip),
      pendingExisting: (ip, machineKey, nodeKey) => {
        const now = this.#now();
        for (const [id, at] of this.#pendingByIp.get(ip) ?? []) {
          if (at + this.#pendingTtlMs <= now) continue;
          const p = this.#store.pendingById(id);
          if (p && p.machineKey === machineKey && p.nodeKey === nodeKey && p.approvedUserId === null) return id;
        }
        return null;
      },
      pendingAdded: (ip, id) => {
        let m = this.#pendingByIp.get(ip);
        if (!m) this.#pendingByIp.set(ip, (m = new Map()));
        m.set(id, this.#now());
      },
    };
    this.#noise = new NoiseServer({
      serverPriv: init.noisePrivateKey,
      minCapver: this.#minCapver,
      maxBodyBytes: init.maxBodyBytes ?? C.MAX_BODY_BYTES,
      rateBurst: init.rateBurst ?? C.RATE_BURST,
      ratePerSecond: init.ratePerSecond ?? C.RATE_PER_SECOND,
      handshakeIdleMs: init.handshakeIdleMs ?? C.HANDSHAKE_IDLE_MS,
      maxConnections: init.maxConnections ?? C.MAX_CONNECTIONS,
      maxConnectionsPerIp: init.maxConnectionsPerIp ?? C.MAX_CONNECTIONS_PER_IP,
      handshakeBurstPerIp: init.handshakeBurstPerIp ?? C.HANDSHAKE_BURST_PER_IP,
      handshakeRatePerIp: init.handshakeRatePerIp ?? C.HANDSHAKE_RATE_PER_IP,
      maxTrackedIps: init.maxTrackedIps ?? C.MAX_TRACKED_IPS,
      clock: this.#clock,
      logf: withPrefix(this.#logf, 'control: '),
      routes: {
        'POST /machine/register': (r) => this.#registerRoute(r),
        'POST /machine/map': (r) => this.#mapRoute(r),
      },
    });
  }

  /**
   * Applies the policy's autoApprovers to these nodes' announced routes (policy/approve.ts): adds what they allow
   * to each node's approved routes and says so. Without a policy nothing is auto-approved.
   */
  #autoApprove(ids: readonly number[], why: string): void {
    const doc = this.#policy?.current()?.doc;
    if (!doc || ids.length === 0) return;
    const nodes = this.#store.listNodes();
    const world = worldOf(this.#store.listUsers(), nodes);
    const wanted = new Set(ids);
    for (const [i, n] of nodes.entries()) {
      if (!wanted.has(n.id)) continue;
      const announced = announcedRoutes(n.hostinfo);
      if (announced.length === 0) continue;
      const next = autoApprove(doc.doc, world.nodes[i]!, announced, n.approvedRoutes);
      if (!next) continue;
      const added = next.filter((r) => !n.approvedRoutes.includes(r));
      this.#store.updateNode(n.id, { approvedRoutes: next });
      this.#logf(`control: node ${n.id} (${n.givenName}): autoApprovers approved ${added.join(', ')} (${why})`);
    }
  }

  /**
   * The policy in force changed (a reload of the watched file): every node's announced routes go through the
   * autoApprovers again (as headscale's ReloadPolicy does), then the streams get the new filters and peers.
   */
  policyChanged(): void {
    this.#autoApprove(
      this.#store.listNodes().map((n) => n.id),
      'the policy changed',
    );
    this.changed();
  }

  #mapperConfig(): MapperConfig {
    return { domain: this.#serverUrl.hostname, baseDomain: this.#dns.baseDomain, derpMap: this.#derpMap, dnsConfig: this.#dnsConfig };
  }

  /** Replaces the DERP map sent to clients (e.g. once the embedded DERP/STUN ports are known) and pushes it. */
  setDerpMap(m: DerpMap): void {
    this.#derpMap = m;
    this.#streams.broadcast({ ControlTime: formatGoTime(this.#now()), DERPMap: m });
  }

  /**
   * Calls `listener` with the node keys ("nodekey:…") that stopped being admitted since the last refresh: the node
   * was deleted or expired (here or with the admin CLI), or rotated its key. With `inUse` (the keys the listener
   * holds something for, e.g. the DERP relay's connections), any of those not admitted at a refresh are reported
   * too, so a key that was admitted and revoked between two refreshes is not missed. Returns an unsubscribe function.
   */
  onNodeKeysRevoked(listener: (nodeKeys: string[]) => void, inUse?: () => Iterable<string>): () => void {
    this.#revokedListeners.set(listener, inUse ?? null);
    return () => void this.#revokedListeners.delete(listener);
  }

  /** The node keys admitted now: registered nodes whose key has not expired. */
  #admittedKeys(now: number): Set<string> {
    return new Set(
      this.#store
        .listNodes()
        .filter((n) => n.expiresAt === null || n.expiresAt > now)
        .map((n) => n.nodeKey),
    );
  }

  #checkRevoked(): void {
    const now = this.#admittedKeys(this.#now());
    const gone = [...this.#admitted].filter((k) => !now.has(k));
    this.#admitted = now;
    if (gone.length > 0) this.#logf(`control: ${gone.length} node key(s) no longer admitted (deleted, expired or rotated)`);
    for (const [l, inUse] of [...this.#revokedListeners]) {
      try {
        const keys = new Set(gone);
        if (inUse) for (const k of inUse()) if (!now.has(k)) keys.add(k);
        if (keys.size > 0) l([...keys]);
      } catch (e) {
        this.#logf(`control: a node-key revocation listener failed: ${(e as Error).message}`);
      }
    }
  }

  start(): void {
    // Presence left behind by a previous process that did not stop cleanly (a crash, SIGKILL): nobody is connected yet.
    for (const n of this.#store.listNodes()) if (n.online || n.primaryRoutes.length > 0) this.#store.updateNode(n.id, { online: false, primaryRoutes: [] });
    this.#admitted = this.#admittedKeys(this.#now());
    this.#lastCounter = this.#store.changeCounter();
    this.#lastTickAt = this.#now();
    this.#sweepPending(this.#now());
    this.#streams.sweepEphemeral();
    this.#streams.startHaProber();
    this.#scheduleTick();
  }

  #scheduleTick(): void {
    if (this.#stopped) return;
    this.#tick = this.#clock.setTimeout(() => {
      this.#tick = null;
      this.#onTick();
      this.#scheduleTick();
    }, this.#pollMs);
  }

  /** Why another pending registration from `ip` is refused now, or null. */
  #pendingRefused(ip: string): string | null {
    const now = this.#now();
    const mine = this.#pendingByIp.get(ip);
    if (mine) {
      for (const [id, at] of mine) if (at + this.#pendingTtlMs <= now || !this.#store.pendingById(id)) mine.delete(id);
      if (mine.size === 0) this.#pendingByIp.delete(ip);
      else if (mine.size >= this.#maxPendingPerIp) return `${mine.size} registrations from ${ip} are already waiting for approval`;
    }
    if (this.#store.countPending() >= this.#maxPending) {
      this.#sweepPending(now);
      const n = this.#store.countPending();
      if (n >= this.#maxPending) return `${n} registrations are already waiting for approval`;
    }
    return null;
  }

  /** Deletes expired pending registrations and forgets them in the per-address counts. */
  #sweepPending(now: number): void {
    this.#lastPendingSweep = now;
    const n = this.#store.sweepPending(now - this.#pendingTtlMs);
    for (const [ip, m] of this.#pendingByIp) {
      for (const [id, at] of m) if (at + this.#pendingTtlMs <= now || !this.#store.pendingById(id)) m.delete(id);
      if (m.size === 0) this.#pendingByIp.delete(ip);
    }
    if (n > 0) this.#logf(`control: swept ${n} expired pending registration(s)`);
  }

  /** The periodic check: another process's writes, expiries that just passed, and approvals. */
  #onTick(): void {
    const now = this.#now();
    if (now - this.#lastPendingSweep >= this.#pendingSweepMs) this.#sweepPending(now);
    let dirty = false;
    const counter = this.#store.changeCounter();
    if (counter !== this.#lastCounter) {
      this.#lastCounter = counter;
      dirty = true;
    }
    if (!dirty && (this.#streams.sessionCount > 0 || this.#revokedListeners.size > 0)) {
      dirty = this.#store.listNodes().some((n) => n.expiresAt !== null && n.expiresAt > this.#lastTickAt && n.expiresAt <= now);
    }
    this.#lastTickAt = now;
    if (dirty) this.#refresh();
    this.#checkWaiters();
  }

  /** Notes that the store changed here; open streams get the difference on the next turn of the event loop. */
  changed(): void {
    if (this.#refreshQueued || this.#stopped) return;
    this.#refreshQueued = true;
    this.#clock.setTimeout(() => {
      this.#refreshQueued = false;
      if (!this.#stopped) this.#refresh();
    }, 0);
  }

  #refresh(): void {
    this.#lastCounter = this.#store.changeCounter();
    this.#streams.refresh();
    this.#checkRevoked();
    this.#checkWaiters();
  }

  #checkWaiters(): void {
    for (const [id, set] of this.#waiters) {
      const p = this.#store.pendingById(id);
      const r = !p ? 'gone' : p.approvedUserId !== null ? 'approved' : null;
      if (!r) continue;
      this.#waiters.delete(id);
      for (const w of set) w.resolve(r);
    }
  }

  #waitApproval(id: string, signal: AbortSignal): Promise<'approved' | 'timeout' | 'gone'> {
    return new Promise((resolve) => {
      let set = this.#waiters.get(id);
      if (!set) this.#waiters.set(id, (set = new Set()));
      const w: Waiter = {
        resolve: (r) => {
          this.#clock.clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
          set.delete(w);
          if (set.size === 0 && this.#waiters.get(id) === set) this.#waiters.delete(id);
          resolve(r);
        },
      };
      const onAbort = (): void => w.resolve('timeout');
      const timer = this.#clock.setTimeout(() => w.resolve('timeout'), this.#followupWaitMs);
      signal.addEventListener('abort', onAbort, { once: true });
      set.add(w);
    });
  }

  // --- HTTP/2 routes over Noise ------------------------------------------------------------------------

  async #registerRoute(r: NoiseRequest): Promise<void> {
    const parsed = parseJsonBody(r.body, RegisterRequest);
    if (!parsed.ok) return sendText(r.stream, 400, parsed.error);
    const out = await handleRegister(this.#registerDeps, parsed.value, r.machineKey, r.remoteIp, r.signal);
    if (out.kind === 'text') return sendText(r.stream, out.status, out.text);
    if (out.body.Error) this.#logf(`control: register of ${parsed.value.NodeKey.slice(0, 16)}… refused: ${out.body.Error}`);
    sendJson(r.stream, 200, out.body);
  }

  async #mapRoute(r: NoiseRequest): Promise<void> {
    const parsed = parseJsonBody(r.body, LenientMapRequest);
    if (!parsed.ok) return sendText(r.stream, 400, parsed.error);
    const req = parsed.value;
    const node = this.#store.nodeByNodeKey(req.NodeKey);
    if (!node) return sendText(r.stream, 404, 'node not found');
    if (node.machineKey !== r.machineKey) {
      this.#logf(`control: refused a map request for node ${node.id} from another machine key`);
      return sendText(r.stream, 404, 'node key in request does not match the one associated with this machine key');
    }
    if (req.Version < this.#minCapver) return sendText(r.stream, 400, `unsupported client version: ${req.Version}`);
    // An expired or logged-out node stores nothing and gets no peers: a stream request gets one message with its
    // own node marked expired (how a Tailscale client learns it must log in again), then the stream ends; a
    // non-streaming update is refused.
    if (isExpired(node, this.#now())) {
      if (!req.Stream) return sendText(r.stream, 403, 'node key expired; register again');
      const frame = this.#streams.expiredFrame(node.id, req.Version, req.Compress === 'zstd');
      if (!frame) return sendText(r.stream, 404, 'node not found');
      r.stream.respond({ ':status': 200, 'content-type': 'application/json; charset=utf-8' });
      r.stream.end(frame);
      return;
    }
    // A disco key belongs to one node: a node announcing another's would take over its disco traffic.
    const disco = req.DiscoKey && req.DiscoKey !== ZERO_DISCO_KEY ? req.DiscoKey : null;
    if (disco && disco !== node.discoKey) {
      const holder = this.#store.otherNodeWithDiscoKey(disco, node.id);
      if (holder !== null) {
        this.#logf(`control: refused node ${node.id}'s map request: its disco key is node ${holder}'s`);
        return sendText(r.stream, 409, 'disco key is in use by another node');
      }
    }
    // Store what the node reports (every request, streams included, as headscale does), within node-input.ts's caps.
    const ni = req.Hostinfo?.NetInfo;
    let hostinfo: string | undefined;
    if (req.Hostinfo) {
      const previousHostinfo = parseHostinfo(node.hostinfo);
      const merged = { ...req.Hostinfo, ...(ni === undefined && previousHostinfo?.['NetInfo'] ? { NetInfo: previousHostinfo['NetInfo'] } : {}) };
      const c = cleanHostinfo(merged);
      if (c.kind === 'ok') hostinfo = c.json;
      else this.#logf(`control: node ${node.id}'s Hostinfo not stored: ${c.reason}`);
      if (c.kind === 'ok' && c.trimmed) this.#logf(`control: node ${node.id}'s Hostinfo stored without its Services list (over ${C.MAX_HOSTINFO_BYTES} bytes)`);
    }
    const eps = req.Endpoints ? cleanEndpoints(req.Endpoints) : null;
    if (eps && eps.dropped > 0) this.#logf(`control: node ${node.id}: ${eps.dropped} of ${req.Endpoints?.length ?? 0} endpoint(s) not stored (invalid, repeated or over ${C.MAX_ENDPOINTS})`);
    this.#store.updateNode(node.id, {
      ...(disco ? { discoKey: disco } : {}),
      ...(eps ? { endpoints: eps.endpoints } : {}),
      ...(hostinfo !== undefined ? { hostinfo } : {}),
      ...(ni && typeof ni.PreferredDERP === 'number' ? { homeDerp: ni.PreferredDERP } : {}),
    });
    // What it announces changed (or it announces routes and has none approved yet): the autoApprovers look again,
    // as headscale does on a map request.
    if (hostinfo !== undefined && hostinfo !== node.hostinfo) {
      const before = announcedRoutes(node.hostinfo);
      const after = announcedRoutes(hostinfo);
      const moved = before.length !== after.length || after.some((r) => !before.includes(r));
      if (moved || (after.length > 0 && node.approvedRoutes.length === 0)) this.#autoApprove([node.id], 'it announces new routes');
    }
    if (!req.Stream) {
      this.changed();
      r.stream.respond({ ':status': 200 });
      r.stream.end();
      return;
    }
    const stream = r.stream;
    stream.respond({ ':status': 200, 'content-type': 'application/json; charset=utf-8' });
    const close = this.#streams.open({
      nodeId: node.id,
      nodeKey: req.NodeKey,
      capver: req.Version,
      compress: req.Compress === 'zstd',
      sink: {
        write: (frame) => {
          if (stream.destroyed || stream.closed) return true;
          stream.write(frame);
          return stream.writableLength <= C.MAX_STREAM_BACKLOG_BYTES;
        },
        end: () => {
          if (!stream.destroyed && !stream.closed) stream.end();
        },
      },
    });
    if (!close) {
      stream.end();
      return;
    }
    // Others learn that this node is online (and its new endpoints) with the next refresh.
    this.changed();
    if (r.signal.aborted) close();
    else r.signal.addEventListener('abort', close, { once: true });
  }

  // --- plain HTTP pieces (served by server.ts) -----------------------------------------------------------

  /**
   * `HEAD /machine/ping-response?id=…` (plain HTTP, as headscale 0.29 serves it): a node answering a PingRequest.
   * 200 for a ping awaiting its answer, 404 for an unknown or expired one, 400 without an id, 405 for other methods.
   */
  pingResponse(method: string, id: string | null): HttpReply {
    const text = (status: number, body: string): HttpReply => ({ status, contentType: 'text/plain; charset=utf-8', body });
    if (method !== 'HEAD') return text(405, 'method not allowed\n');
    if (!id) return text(400, 'missing ping id\n');
    return this.#streams.pingAnswered(id) ? text(200, 'ok\n') : text(404, 'unknown or expired ping\n');
  }

  /** The nodes the HA prober holds unhealthy now (passed over for their subnet routes). */
  get unhealthyNodes(): number[] {
    return this.#streams.unhealthyNodes;
  }

  /** The HA prober's pings so far: sent, answered in time, and not answered. */
  get haProbeCounts(): { sent: number; answered: number; timedOut: number } {
    return this.#streams.haProbeCounts;
  }

  /** `GET /key?v=N` as headscale answers it (control-protocol §3.2). */
  keyReply(v: string | null): HttpReply {
    if (v === null || v === '') return { status: 400, contentType: 'text/plain; charset=utf-8', body: 'capability version must be set\n' };
    if (!/^-?\d+$/.test(v)) return { status: 400, contentType: 'text/plain; charset=utf-8', body: 'invalid capability version\n' };
    if (Number(v) < C.NOISE_CAPVER) return { status: 200, contentType: 'text/plain; charset=utf-8', body: '' };
    const body = { legacyPublicKey: keyText('mkey', new Uint8Array(32)), publicKey: keyText('mkey', this.publicKey) };
    return { status: 200, contentType: 'application/json', body: `${JSON.stringify(body)}\n` };
  }

  /** `GET /register/:id`: how to approve this registration. */
  registerPage(id: string): HttpReply {
    const p = /^[A-Za-z0-9_-]{1,64}$/.test(id) ? this.#store.pendingById(id) : null;
    return { status: p ? 200 : 404, contentType: 'text/html; charset=utf-8', body: registerPageHtml(id, p) };
  }

  /** The /ts2021 upgrade (server.ts routes the 'upgrade' event for that path here). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.#noise.handleUpgrade(req, socket, head);
  }

  stats(): { connections: number; streams: number } {
    return { connections: this.#noise.connectionCount, streams: this.#streams.sessionCount };
  }

  /** Ends streams, Noise connections, waiting Followups and timers. */
  stop(): void {
    this.#stopped = true;
    if (this.#tick) this.#clock.clearTimeout(this.#tick);
    this.#tick = null;
    for (const set of this.#waiters.values()) for (const w of [...set]) w.resolve('timeout');
    this.#waiters.clear();
    this.#streams.stop();
    this.#noise.closeAll();
  }
}

/** MapRequest, except that an unknown `Compress` value means "uncompressed", as headscale treats it. */
const LenientMapRequest = z.preprocess((v) => {
  if (v && typeof v === 'object' && 'Compress' in v && v.Compress !== 'zstd') return { ...v, Compress: undefined };
  return v;
}, MapRequest);

function parseHostinfo(text: string | null): Record<string, unknown> | null {
  if (!text) return null;
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

interface Schema<T> {
  safeParse(v: unknown): { success: true; data: T } | { success: false; error: { issues: { path: PropertyKey[]; message: string }[] } };
}

/** Parses a request body as JSON and then with a schema: the value, or a one-line reason for a 400. */
export function parseJsonBody<T>(body: Uint8Array, schema: Schema<T>): { ok: true; value: T } | { ok: false; error: string } {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
  } catch (e) {
    return { ok: false, error: `invalid JSON: ${(e as Error).message}` };
  }
  const r = schema.safeParse(json);
  if (!r.success) {
    const i = r.error.issues[0];
    return { ok: false, error: `invalid request: ${i ? `${i.path.map(String).join('.') || '(root)'}: ${i.message}` : 'does not match'}` };
  }
  return { ok: true, value: r.data };
}
