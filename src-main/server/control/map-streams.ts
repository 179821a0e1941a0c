/**
 * The open map streams (control-protocol §8.2–§8.3, §9.1) and node presence.
 *
 *   open(node) ─▶ full map ─▶ [refresh(): delta when this client's view changed] ─▶ … ─▶ close
 *                    └──── keep-alive {"KeepAlive":true} after 50–59 s without a message ────┘
 *
 * Each session remembers what its client was last told (mapper.ts SessionView), so `refresh()` — called after
 * any change, local or noticed through the store's change counter — sends each client exactly the difference.
 * The difference is found once per refresh (which nodes' fingerprints moved) and each changed node is built once
 * per capability version, so a change costs O(sessions × changed nodes), not O(sessions × all nodes).
 * A session whose node was deleted, or whose node key was rotated or taken over, is ended; so is one whose node
 * expired or logged out, right after it was sent that news.
 *
 * Subnet routes: each prefix that online nodes serve has one primary (routes.ts electPrimaries), elected again at
 * every snapshot: the current one stays while it is online, otherwise the lowest node id takes over. A router that
 * disconnects stays online through the grace below, so a standby takes over OFFLINE_GRACE_MS after the primary's
 * stream ends, as in headscale 0.29.2 (its poll.go waits 10 s for a reconnect before marking a node offline). The
 * elected primaries are written to the node records too, for `weft server nodes list-routes`.
 *
 * The HA prober (headscale 0.29.2 state/ha_health.go): a router whose stream stays open but that stopped working
 * (frozen, or its network gone without a TCP reset) would otherwise keep its routes for as long as the kernel
 * keeps its connection. Every `haProbeIntervalMs`, each node that shares a subnet prefix with another online
 * candidate gets a PingRequest whose URL (`HEAD /machine/ping-response?id=…`, plain HTTP, not Noise) it must
 * fetch within `haProbeTimeoutMs`. One that does not is unhealthy: the election passes it over (routes.ts
 * electPrimaries) until it answers a later probe or connects again. A timeout proves nothing, and is dropped,
 * when the node reconnected since the probe went out, or when its session was younger than one cycle (a client
 * that just connected may take seconds to answer). Unlike headscale, a node that stops sharing its prefixes with
 * anyone is cleared too: there is nobody to fail over to, and a sole router marked unhealthy would otherwise
 * leave its prefix unserved.
 *
 * Presence: a node is online while it has a stream, and for a short grace after its last one ends (a quick
 * reconnect is not an offline/online flap). The node record's `online` follows it (for `weft server nodes list`,
 * which reads the database in another process). When the grace runs out LastSeen is stored; an ephemeral node is
 * deleted after a further timeout unless it comes back.
 *
 * Frames are `u32 LE length | body` (protocol/control/stream-framing.ts); the body is JSON, wrapped in a stored
 * zstd frame when the client asked for zstd.
 */
import type { Clock, TimerHandle } from '../../engine/sys/clock.ts';
import type { Logf } from '../../engine/sys/log.ts';
import { encodeMapFrame, encodeZstdStored } from '../../protocol/control/stream-framing.ts';
import type { NodeRecord, ServerStore } from '../store/types.ts';
import { compilePolicy, worldOf, type CompiledPolicy } from '../policy/compile.ts';
import type { ParsedPolicy } from '../policy/parse.ts';
import { electPrimaries, exitRoutes, haNodes, primariesByNode, subnetRoutes } from '../routes/routes.ts';
import { diffChanged, expiredMap, fullMap, isExpired, nodeFingerprint, routerIds, wireNode, type MapperConfig, type NodeView, type SessionView, type Snapshot, type WireMapResponse, type WireNode } from './mapper.ts';

/** What a node gets when the policy cannot be compiled and there is no earlier one: nothing in, no peers. */
const DENY_ALL: CompiledPolicy = { rules: [], filterFor: () => [], canSee: () => false, routeVisible: () => false };

/** Where a session's frames go (an HTTP/2 response stream). */
export interface MapSink {
  /** Queues a frame; false when the client stopped reading and too much is queued (the session ends). */
  write(frame: Uint8Array): boolean;
  end(): void;
}

export interface MapStreamsInit {
  store: ServerStore;
  cfg: () => MapperConfig;
  now: () => number;
  clock: Clock;
  random: () => number;
  logf: Logf;
  keepAliveMs: number;
  keepAliveJitterMs: number;
  offlineGraceMs: number;
  ephemeralTimeoutMs: number;
  /** Called when this module changed the store itself (LastSeen, an ephemeral node removed). */
  onStoreChanged: () => void;
  /** The policy in force (a checked document and a number that changes with it), or null for none (allow all). */
  policy?: () => { doc: Extract<ParsedPolicy, { kind: 'ok' }>; version: number } | null;
  /** How often the HA prober pings subnet routers that have a standby; 0: never. @default 0 */
  haProbeIntervalMs?: number;
  /** How long a probed router has to answer (less than the interval). @default 5000 */
  haProbeTimeoutMs?: number;
  /** The URL a probed node fetches to answer ping `id` (the server's /machine/ping-response?id=…). */
  pingUrl?: (id: string) => string;
  /** A fresh ping id (unguessable: anyone who can reach the server may fetch the URL). */
  pingId?: () => string;
}

/** Probes outstanding at once: one per HA router per cycle, and each ends within the timeout. */
const MAX_PINGS = 4096;

interface Session {
  nodeId: number;
  nodeKey: string;
  capver: number;
  compress: boolean;
  sink: MapSink;
  view: SessionView;
  keepAlive: TimerHandle | null;
  closed: boolean;
}

const enc = new TextEncoder();

export class MapStreams {
  // Owned by this instance: sessions, per-node stream counts, and the grace and ephemeral timers.
  readonly #sessions = new Set<Session>();
  readonly #count = new Map<number, number>();
  readonly #grace = new Map<number, TimerHandle>();
  readonly #ephemeral = new Map<number, TimerHandle>();
  /** Every node's fingerprint (mapper.ts nodeFingerprint) as of the last snapshot the sessions were brought to. */
  #prints = new Map<number, string>();
  /** Nodes built for the wire by the last refresh (for the cost tests: changed nodes × capability versions). */
  #lastBuilt = 0;
  /** The policy compiled for the current tailnet, the document version it came from and each node's identity then. */
  #policy: CompiledPolicy | null = null;
  #policyVersion = -1;
  #identities = new Map<number, string>();
  #usersKey = '';
  #warnedKey = '';
  /** Subnet prefix → the node serving it, as last elected. */
  #primaries = new Map<string, number>();
  /** The online, unexpired nodes with subnet routes, as of the last snapshot (the election's candidates). */
  #candidates: { id: number; routes: string[] }[] = [];
  // The HA prober's state: each connected node's session epoch (a new one at every stream opened), the epoch each
  // probed node had at the previous cycle, the nodes that did not answer, and the pings awaiting an answer.
  readonly #epochs = new Map<number, number>();
  #nextEpoch = 1;
  readonly #stableEpochs = new Map<number, number>();
  readonly #unhealthy = new Set<number>();
  readonly #pings = new Map<string, { nodeId: number; timer: TimerHandle }>();
  #haTimer: TimerHandle | null = null;
  readonly #haCounts = { sent: 0, answered: 0, timedOut: 0 };
  readonly #i: MapStreamsInit;

  constructor(init: MapStreamsInit) {
    this.#i = init;
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** How many nodes the last refresh built for the wire: changed nodes × distinct capability versions, at most. */
  get lastRefreshBuilt(): number {
    return this.#lastBuilt;
  }

  /** Reports whether a node has an open stream or is within its offline grace. */
  isOnline(nodeId: number): boolean {
    return (this.#count.get(nodeId) ?? 0) > 0 || this.#grace.has(nodeId);
  }

  /** The store's users and nodes, with presence and the primary routes elected now. */
  snapshot(): Snapshot {
    const users = new Map(this.#i.store.listUsers().map((u) => [u.id, u]));
    const records = this.#i.store.listNodes();
    const now = this.#i.now();
    const candidates = records.flatMap((r) => {
      if (!this.isOnline(r.id) || isExpired(r, now)) return [];
      const routes = subnetRoutes(r);
      return routes.length ? [{ id: r.id, routes }] : [];
    });
    this.#candidates = candidates;
    const elected = electPrimaries(this.#primaries, candidates, this.#unhealthy);
    this.#notePrimaries(elected, records);
    const byNode = primariesByNode(elected);
    const nodes = records.map((record) => ({ record, online: this.isOnline(record.id), primaries: byNode.get(record.id) ?? [] }));
    return { nodes, users };
  }

  /** Logs what moved between two elections, and writes each node's primaries to its record (and `records`). */
  #notePrimaries(elected: Map<string, number>, records: NodeRecord[]): void {
    const prev = this.#primaries;
    this.#primaries = elected;
    for (const [prefix, id] of elected) {
      const was = prev.get(prefix);
      if (was !== id) this.#i.logf(`routes: ${prefix} is served by node ${id}${was === undefined ? '' : ` (was node ${was}, now ${this.#unhealthy.has(was) ? 'not answering the HA probe' : 'offline or no longer serving it'})`}`);
    }
    for (const [prefix, was] of prev) if (!elected.has(prefix)) this.#i.logf(`routes: nobody online serves ${prefix} any more (was node ${was})`);
    const byNode = primariesByNode(elected);
    for (const r of records) {
      const mine = byNode.get(r.id) ?? [];
      if (mine.join() === r.primaryRoutes.join()) continue;
      r.primaryRoutes = mine;
      try {
        this.#i.store.updateNode(r.id, { primaryRoutes: mine });
      } catch (e) {
        this.#i.logf(`routes: could not store node ${r.id}'s primary routes: ${(e as Error).message}`);
      }
    }
  }

  /**
   * Starts a session for `nodeId`: marks it online and sends the full map at once. Returns a close function,
   * or null when the node does not exist (any more).
   */
  open(o: { nodeId: number; nodeKey: string; capver: number; compress: boolean; sink: MapSink }): (() => void) | null {
    this.#markOnline(o.nodeId);
    // A new session: a new epoch for the HA prober, and a clean slate (headscale's Connect clears Unhealthy).
    this.#epochs.set(o.nodeId, this.#nextEpoch++);
    this.#unhealthy.delete(o.nodeId);
    // Everyone else is brought up to date first, from the same snapshot this session starts from, so that every
    // session's view and the fingerprints the next refresh compares against describe one and the same state.
    const snap = this.#advance();
    const first = fullMap(snap, o.nodeId, this.#i.cfg(), o.capver, this.#i.now(), this.#policy);
    if (!first) {
      this.#markMaybeOffline(o.nodeId);
      return null;
    }
    const s: Session = { ...o, view: first.view, keepAlive: null, closed: false };
    this.#sessions.add(s);
    this.#send(s, first.msg);
    return () => this.#close(s);
  }

  /**
   * For an expired node's stream request: the single frame that tells it so (mapper.ts expiredMap), or null when
   * the node does not exist. No session is opened and the node is not marked online.
   */
  expiredFrame(nodeId: number, capver: number, compress: boolean): Uint8Array | null {
    const msg = expiredMap(this.snapshot(), nodeId, this.#i.cfg(), capver, this.#i.now());
    if (!msg) return null;
    let body: Uint8Array = enc.encode(JSON.stringify(msg));
    if (compress) body = encodeZstdStored(body);
    return encodeMapFrame(body);
  }

  /** Sends every session the difference between what it was told and the store's current state. */
  refresh(): void {
    this.#advance();
  }

  /**
   * Reads the store once, works out which nodes changed since the last call (by fingerprint), and sends each
   * session the delta over those nodes alone; each changed node is built once per capability version, not once
   * per session. A session whose node was deleted or re-keyed is ended; one whose node expired gets that news
   * (its Node, Expired) and is then ended. Returns the snapshot.
   */
  #advance(): Snapshot {
    const snap = this.snapshot();
    const now = this.#i.now();
    const byId = new Map<number, NodeView>();
    const prints = new Map<number, string>();
    const changed = new Set<number>();
    for (const v of snap.nodes) {
      const id = v.record.id;
      byId.set(id, v);
      const f = nodeFingerprint(v, now);
      prints.set(id, f);
      if (this.#prints.get(id) !== f) changed.add(id);
    }
    const removed = new Set<number>();
    for (const id of this.#prints.keys()) if (!prints.has(id)) removed.add(id);
    this.#prints = prints;
    this.#lastBuilt = 0;
    const { moved: policyMoved, recheckAll } = this.#updatePolicy(snap);
    if (this.#sessions.size === 0 || (changed.size === 0 && removed.size === 0 && !policyMoved)) return snap;
    const cfg = this.#i.cfg();
    const caches = new Map<number, Map<number, WireNode>>();
    const routers = policyMoved ? routerIds(snap.nodes) : new Set<number>();
    for (const s of [...this.#sessions]) {
      const self = byId.get(s.nodeId);
      if (!self || self.record.nodeKey !== s.nodeKey) {
        this.#i.logf(`map: ending the stream of node ${s.nodeId}: ${self ? 'its node key changed' : 'it was deleted'}`);
        this.#close(s);
        continue;
      }
      let cache = caches.get(s.capver);
      if (!cache) caches.set(s.capver, (cache = new Map()));
      const c = cache;
      const wire = (v: NodeView): WireNode => {
        let w = c.get(v.record.id);
        if (!w) {
          c.set(v.record.id, (w = wireNode(v, cfg, s.capver, now)));
          this.#lastBuilt++;
        }
        return w;
      };
      const d = diffChanged(s.view, byId, snap.users, s.nodeId, { changed, removed }, wire, now, this.#policy, policyMoved, recheckAll, routers);
      if (d) this.#send(s, d.msg);
      if (isExpired(self.record, now)) {
        this.#i.logf(`map: ending the stream of node ${s.nodeId}: its key expired`);
        this.#close(s);
      }
    }
    return snap;
  }

  /**
   * Compiles the policy again when its document or the tailnet's identities (nodes' addresses, users and tags, the
   * user list) changed. `moved`: the compiled policy is a new one (filters may differ); `recheckAll`: visibility
   * between nodes that did not change may differ too (a new document, or a node's identity changed).
   */
  #updatePolicy(snap: Snapshot): { moved: boolean; recheckAll: boolean } {
    const src = this.#i.policy?.() ?? null;
    const version = src ? src.version : -1;
    // A node's identity for the policy: addresses, user, tags, and the routes it may serve (approved ∩ announced).
    const identities = new Map(
      snap.nodes.map((v) => {
        const r = v.record;
        return [r.id, `${r.ipv4} ${r.ipv6} ${r.userId} ${r.tags.join(',')} ${subnetRoutes(r).join(',')} ${exitRoutes(r).join(',')}`];
      }),
    );
    const usersKey = [...snap.users.values()].map((u) => `${u.id}:${u.name}`).join(',');
    let identityChanged = usersKey !== this.#usersKey;
    let membership = identities.size !== this.#identities.size;
    for (const [id, key] of identities) {
      const old = this.#identities.get(id);
      if (old === undefined) membership = true;
      else if (old !== key) identityChanged = true;
    }
    const docChanged = version !== this.#policyVersion;
    this.#identities = identities;
    this.#usersKey = usersKey;
    if (!docChanged && !identityChanged && !membership) return { moved: false, recheckAll: false };
    this.#policyVersion = version;
    if (!src) {
      this.#policy = null;
      return { moved: docChanged, recheckAll: docChanged };
    }
    const world = worldOf([...snap.users.values()], snap.nodes.map((v) => v.record));
    const warned = new Set<string>();
    const r = compilePolicy(src.doc, world, { unknownUsers: 'empty', warn: (e) => void warned.add(`line ${e.line}: ${e.message}`) });
    // Said once per document and set of unknown users, not at every recompile.
    const warnKey = `${version}|${[...warned].join('|')}`;
    if (warnKey !== this.#warnedKey) for (const w of warned) this.#i.logf(`policy: ${w}; it matches no node`);
    this.#warnedKey = warnKey;
    if (r.kind === 'error') {
      // Cannot happen for a document that was checked when loaded (only users can go missing since, and they
      // resolve to nothing); keep the last good compiled policy, or deny everything if there is none yet, rather
      // than opening everything up.
      this.#i.logf(`policy: cannot be applied to the tailnet now (${r.errors.map((e) => `line ${e.line}: ${e.message}`).join('; ')}); keeping the last good one`);
      if (this.#policy) return { moved: false, recheckAll: false };
      this.#policy = DENY_ALL;
      return { moved: true, recheckAll: true };
    }
    this.#policy = r.compiled;
    return { moved: true, recheckAll: docChanged || identityChanged };
  }

  /** Starts the HA prober's cycle (a no-op when its interval is 0). */
  startHaProber(): void {
    const every = this.#i.haProbeIntervalMs ?? 0;
    if (every <= 0 || this.#haTimer || !this.#i.pingUrl || !this.#i.pingId) return;
    const loop = (): void => {
      this.#haTimer = this.#i.clock.setTimeout(() => {
        this.#haTimer = null;
        this.probeHa();
        loop();
      }, every);
    };
    loop();
  }

  /** The HA prober's pings so far: sent, answered in time, and not answered. */
  get haProbeCounts(): { sent: number; answered: number; timedOut: number } {
    return { ...this.#haCounts };
  }

  /** The nodes the HA prober holds unhealthy now, in id order. */
  get unhealthyNodes(): number[] {
    return [...this.#unhealthy].sort((a, b) => a - b);
  }

  /** One HA probe cycle: a PingRequest to every connected router that has a standby (or is one). */
  probeHa(): void {
    const ids = haNodes(this.#candidates);
    const ha = new Set(ids);
    for (const id of this.#stableEpochs.keys()) if (!ha.has(id)) this.#stableEpochs.delete(id);
    let cleared = false;
    for (const id of [...this.#unhealthy]) {
      if (ha.has(id)) continue;
      this.#unhealthy.delete(id);
      cleared = true;
    }
    if (cleared) this.#advance();
    const { pingUrl, pingId } = this.#i;
    if (!pingUrl || !pingId) return;
    const timeoutMs = this.#i.haProbeTimeoutMs ?? 5000;
    for (const id of ids) {
      const epoch = this.#epochs.get(id);
      if (epoch === undefined || (this.#count.get(id) ?? 0) === 0) {
        this.#stableEpochs.delete(id); // in its offline grace: no stream to ask on
        continue;
      }
      if (this.#pings.size >= MAX_PINGS) break;
      const stable = this.#stableEpochs.get(id) === epoch;
      this.#stableEpochs.set(id, epoch);
      const ping = pingId();
      const timer = this.#i.clock.setTimeout(() => this.#pingTimedOut(ping, id, epoch, stable, timeoutMs), timeoutMs);
      this.#pings.set(ping, { nodeId: id, timer });
      this.#haCounts.sent++;
      for (const s of [...this.#sessions]) if (s.nodeId === id) this.#send(s, { PingRequest: { URL: pingUrl(ping) } });
    }
  }

  /** A node fetched a ping's URL: true when the ping was outstanding (the node is healthy), false when unknown. */
  pingAnswered(ping: string): boolean {
    const p = this.#pings.get(ping);
    if (!p) return false;
    this.#pings.delete(ping);
    this.#i.clock.clearTimeout(p.timer);
    this.#haCounts.answered++;
    if (this.#unhealthy.delete(p.nodeId)) {
      this.#i.logf(`routes: node ${p.nodeId} answers the HA probe again`);
      this.#advance();
    }
    return true;
  }

  #pingTimedOut(ping: string, id: number, epoch: number, stable: boolean, timeoutMs: number): void {
    if (!this.#pings.delete(ping)) return;
    this.#haCounts.timedOut++;
    // Gone, or reconnected since (the request went to a session that no longer exists): nothing learned.
    if ((this.#count.get(id) ?? 0) === 0 || this.#epochs.get(id) !== epoch) return;
    if (!stable) {
      this.#i.logf(`routes: node ${id} did not answer its first HA probe since it connected; asking again next cycle`);
      return;
    }
    if (this.#unhealthy.has(id)) return;
    this.#unhealthy.add(id);
    this.#i.logf(`routes: node ${id} did not answer the HA probe within ${timeoutMs / 1000} s; it is passed over for its routes until it answers`);
    this.#advance();
  }

  /** Sends one message to every session as is (e.g. a new DERPMap, which the per-node diff does not cover). */
  broadcast(msg: WireMapResponse): void {
    for (const s of [...this.#sessions]) this.#send(s, msg);
  }

  /**
   * Starts the removal clock of every ephemeral node without a stream, e.g. after a restart: the timers of the
   * previous process are gone, and such a node would otherwise stay forever.
   */
  sweepEphemeral(): void {
    for (const n of this.#i.store.listNodes()) {
      if (n.ephemeral && !this.isOnline(n.id) && !this.#ephemeral.has(n.id)) this.#scheduleEphemeralRemoval(n.id);
    }
  }

  #send(s: Session, msg: WireMapResponse): void {
    if (s.closed) return;
    let body: Uint8Array = enc.encode(JSON.stringify(msg));
    if (s.compress) body = encodeZstdStored(body);
    if (!s.sink.write(encodeMapFrame(body))) {
      this.#i.logf(`map: node ${s.nodeId} is not reading its stream; closing it`);
      this.#close(s);
      return;
    }
    this.#armKeepAlive(s);
  }

  #armKeepAlive(s: Session): void {
    const { clock } = this.#i;
    if (s.keepAlive) clock.clearTimeout(s.keepAlive);
    const ms = this.#i.keepAliveMs + Math.floor(this.#i.random() * this.#i.keepAliveJitterMs);
    s.keepAlive = clock.setTimeout(() => {
      s.keepAlive = null;
      this.#send(s, { KeepAlive: true });
    }, ms);
  }

  #close(s: Session): void {
    if (s.closed) return;
    s.closed = true;
    if (s.keepAlive) this.#i.clock.clearTimeout(s.keepAlive);
    s.keepAlive = null;
    this.#sessions.delete(s);
    s.sink.end();
    this.#markMaybeOffline(s.nodeId);
  }

  /** Writes the node's presence for the admin CLI; a failed write (e.g. the database busy) only costs accuracy. */
  #storePresence(nodeId: number, patch: { online: boolean; lastSeen?: number }): void {
    try {
      this.#i.store.updateNode(nodeId, patch);
    } catch (e) {
      this.#i.logf(`map: could not store the presence of node ${nodeId}: ${(e as Error).message}`);
    }
  }

  #markOnline(nodeId: number): void {
    const { clock } = this.#i;
    if (!this.isOnline(nodeId)) this.#storePresence(nodeId, { online: true });
    this.#count.set(nodeId, (this.#count.get(nodeId) ?? 0) + 1);
    const g = this.#grace.get(nodeId);
    if (g) clock.clearTimeout(g);
    this.#grace.delete(nodeId);
    const e = this.#ephemeral.get(nodeId);
    if (e) clock.clearTimeout(e);
    this.#ephemeral.delete(nodeId);
  }

  #markMaybeOffline(nodeId: number): void {
    const n = (this.#count.get(nodeId) ?? 1) - 1;
    if (n > 0) {
      this.#count.set(nodeId, n);
      return;
    }
    this.#count.delete(nodeId);
    this.#epochs.delete(nodeId);
    const { clock } = this.#i;
    this.#grace.set(
      nodeId,
      clock.setTimeout(() => {
        this.#grace.delete(nodeId);
        const rec = this.#i.store.updateNode(nodeId, { lastSeen: this.#i.now(), online: false });
        if (rec?.ephemeral) this.#scheduleEphemeralRemoval(nodeId);
        this.#i.onStoreChanged();
      }, this.#i.offlineGraceMs),
    );
  }

  #scheduleEphemeralRemoval(nodeId: number): void {
    this.#ephemeral.set(
      nodeId,
      this.#i.clock.setTimeout(() => {
        this.#ephemeral.delete(nodeId);
        if (this.isOnline(nodeId)) return;
        const rec = this.#i.store.nodeById(nodeId);
        if (rec?.ephemeral && this.#i.store.deleteNode(nodeId)) {
          this.#i.logf(`map: removed ephemeral node ${nodeId} (${rec.givenName}) after ${this.#i.ephemeralTimeoutMs / 1000} s offline`);
          this.#i.onStoreChanged();
        }
      }, this.#i.ephemeralTimeoutMs),
    );
  }

  /** Ends every stream and cancels every timer (server shutdown); the nodes that were online are stored offline. */
  stop(): void {
    const { clock } = this.#i;
    const now = this.#i.now();
    for (const id of new Set([...this.#count.keys(), ...this.#grace.keys()])) this.#storePresence(id, { online: false, lastSeen: now });
    for (const id of new Set(this.#primaries.values())) {
      try {
        this.#i.store.updateNode(id, { primaryRoutes: [] });
      } catch {
        // the next start clears it anyway
      }
    }
    this.#primaries.clear();
    if (this.#haTimer) clock.clearTimeout(this.#haTimer);
    this.#haTimer = null;
    for (const p of this.#pings.values()) clock.clearTimeout(p.timer);
    this.#pings.clear();
    for (const s of [...this.#sessions]) {
      s.closed = true;
      if (s.keepAlive) clock.clearTimeout(s.keepAlive);
      s.sink.end();
    }
    this.#sessions.clear();
    for (const t of [...this.#grace.values(), ...this.#ephemeral.values()]) clock.clearTimeout(t);
    this.#grace.clear();
    this.#ephemeral.clear();
    this.#count.clear();
  }
}
