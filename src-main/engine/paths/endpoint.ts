/**
 * The per-peer path state machine as a pure reducer: `step(state, event, now) → { state, effects }`
 * (dataplane-protocol §4.1–§4.7, §4.9, §9.1; TS: wgengine/magicsock/endpoint.go; style.md §2 item 8).
 *
 * One PathState per peer decides where that peer's packets go (a direct UDP address, the relay, or both),
 * which disco pings to send, and what `weft status` shows. Inputs are events (netmap endpoints, CallMeMaybe,
 * inbound Ping/Pong, "we have a packet", timer ticks, send errors); outputs are effects that the I/O layer
 * executes (send a Ping/Pong/CallMeMaybe, set the WireGuard endpoint, report a path change, re-arm the one
 * wake-up timer). Nothing here touches a socket or a clock; txids come from the injected `deps.newTxId`.
 *
 * Lifecycle of the peer's path (what pathKind reports):
 *
 *   ┌──────────────┐  send-data with no trusted path: data to best (if any) + relay; ping every candidate
 *   │  connecting  │      not pinged in the last 5 s; if any ping went out, CallMeMaybe to the peer
 *   │ (relay; best │  call-me-maybe: its list replaces the last one's; forget lastPing; ping all at once
 *   │  unconfirmed │  ping-received: the source becomes a candidate; Pong{src} straight back to it
 *   │  or none)    │◀──────────────────────────────────────────────────────────────────────┐
 *   └──────┬───────┘                                                                       │
 *          │ pong-received: known txid, from exactly the pinged address ⇒ best := it if    │
 *          │ betterAddr(it, best) or best untrusted; a pong from best ⇒ trust for 6.5 s    │
 *          ▼                                                                               │
 *   ┌──────────────┐  send-data: to best only                                              │
 *   │    direct    │  heartbeat every 3 s while data flowed in the last 45 s: ping best;   │
 *   │ (best alone, │      full ping when untrusted, or latency > 5 ms and 60 s since last  │
 *   │   trusted)   │  a better pong (score.ts: ~1 % hysteresis, LAN/IPv6 bonus) ⇒ new best │
 *   └──────┬───────┘                                                                       │
 *          │ no pong for 6.5 s (trust expires) ────────────────────────────────────────────┤
 *          │ liveness: nothing back from best for 1.5 s while sending, or the peer's data   │
 *          │ arriving via the relay ⇒ ping best and relay too until it answers; no pong     │
 *          │ within max(1 s, 4 × latency) ⇒ trust ends (data to best + relay) ──────────────┤
 *          │ ping to an untrusted best times out, send-error on best, best's candidate     │
 *          │ deleted, link-change ⇒ best := none, set-wireguard-endpoint(null) ────────────┘
 *
 * When our own endpoints change while traffic flows without a trusted path, every candidate is pinged at once
 * with a CallMeMaybe carrying the new list (rebinding recovery).
 *
 * Candidates come from the netmap (kept while listed), CallMeMaybe (kept until the next CallMeMaybe
 * replaces the list) and inbound pings (kept 45 s after the last ping). A stale candidate is dropped at
 * the next full ping; dropping bestAddr's candidate clears bestAddr.
 *
 * Bounded against hostile peers (constants.ts DISCO_MAX_*): at most 32 endpoints from each list, the 8 most
 * recent ping-only sources, 128 outstanding pings. Every event then costs the same whether 10 or 5,000 source
 * ports have pinged (test/unit/engine/paths/bounds.test.ts).
 *
 * Liveness without seeing packets (the kernel data path, where WireGuard sends straight to the peer): the
 * `wg-counters` event carries WireGuard's own per-peer counters. Growing tx bytes count as traffic sent (they
 * start heartbeats and discovery as send-data does); growing rx bytes count as traffic heard from the peer.
 *
 * Deliberate differences from magicsock, none visible on the wire: a pong whose source differs from the
 * pinged address is ignored (we never call a path direct without a pong from that exact address); a
 * send error clears bestAddr only if it concerns bestAddr; a candidate is kept while any of its three
 * sources still vouches for it; trust ends at `trustUntil` exclusive.
 *
 * Pure: never mutates its input state; maps are copied only when changed.
 */
import {
  DISCO_GOOD_ENOUGH_LATENCY_MS,
  DISCO_HEARTBEAT_INTERVAL_MS,
  DISCO_MAX_LISTED_ENDPOINTS,
  DISCO_MAX_PING_CANDIDATES,
  DISCO_MAX_SENT_PINGS,
  DISCO_PING_INTERVAL_MS,
  DISCO_PING_TIMEOUT_MS,
  DISCO_PONG_HISTORY,
  DISCO_SESSION_ACTIVE_TIMEOUT_MS,
  DISCO_TRUST_UDP_ADDR_MS,
  DISCO_UPGRADE_DIRECT_INTERVAL_MS, DISCO_PING_BACK_MIN_INTERVAL_MS,
  DISCO_LIVENESS_SILENCE_MS,
  DISCO_LIVENESS_TIMEOUT_MS } from '../constants.ts';
import { bytesToIp, formatAddr, ipToBytes, isV4Mapped, sameAddr, type UdpAddr } from '../../protocol/wire/addr.ts';
import { betterAddr, type PathQuality } from './score.ts';

/** A disco transaction ID; the I/O layer maps it to the 12 wire bytes (24 lowercase hex chars suggested). */
export type TxId = string;

/** The timers of §4.4, as options so tests can shrink them. */
export interface PathTimers {
  readonly heartbeatIntervalMs: number;
  readonly trustUdpAddrMs: number;
  readonly sessionActiveTimeoutMs: number;
  readonly discoPingIntervalMs: number;
  readonly pingTimeoutMs: number;
  readonly upgradeDirectIntervalMs: number;
  readonly goodEnoughLatencyMs: number;
  readonly livenessSilenceMs: number;
  readonly livenessTimeoutMs: number;
}

export const DEFAULT_PATH_TIMERS: PathTimers = {
  heartbeatIntervalMs: DISCO_HEARTBEAT_INTERVAL_MS,
  trustUdpAddrMs: DISCO_TRUST_UDP_ADDR_MS,
  sessionActiveTimeoutMs: DISCO_SESSION_ACTIVE_TIMEOUT_MS,
  discoPingIntervalMs: DISCO_PING_INTERVAL_MS,
  pingTimeoutMs: DISCO_PING_TIMEOUT_MS,
  upgradeDirectIntervalMs: DISCO_UPGRADE_DIRECT_INTERVAL_MS,
  goodEnoughLatencyMs: DISCO_GOOD_ENOUGH_LATENCY_MS,
  livenessSilenceMs: DISCO_LIVENESS_SILENCE_MS,
  livenessTimeoutMs: DISCO_LIVENESS_TIMEOUT_MS,
};

export interface PathDeps {
  /** Returns a fresh, unguessable transaction ID (12 random bytes in production). */
  newTxId(): TxId;
}

export interface PongRecord {
  readonly latencyMs: number;
  readonly at: number;
  /** Where the pong came from (always the pinged address: other pongs are ignored). */
  readonly from: UdpAddr;
  /** How the peer saw us: the Pong's Src field. */
  readonly pongSrc: UdpAddr;
}

/** One candidate UDP address of the peer. */
export interface Candidate {
  readonly addr: UdpAddr;
  /** Listed in the peer's latest netmap Endpoints. */
  readonly inNetmap: boolean;
  /** When the peer's latest CallMeMaybe listed it (null: not in the latest one). */
  readonly callMeMaybeAt: number | null;
  /** When a valid disco Ping last arrived from it, and that ping's txid (duplicate detection). */
  readonly lastGotPingAt: number | null;
  readonly lastGotPingTxId: TxId | null;
  /** When we last pinged it (discovery or heartbeat). */
  readonly lastPingAt: number | null;
  /** Newest last; at most DISCO_PONG_HISTORY entries. */
  readonly pongs: readonly PongRecord[];
}

/** discovery: finding paths; heartbeat: keeping bestAddr trusted; liveness: bestAddr went quiet mid-flow. */
export type PingPurpose = 'discovery' | 'heartbeat' | 'liveness';

export interface SentPing {
  readonly txid: TxId;
  readonly to: UdpAddr;
  readonly at: number;
  readonly purpose: PingPurpose;
  /** Sent in reply to a ping from `to` (so the peer's NAT was open for it). */
  readonly back?: boolean;
}

/** What the UI shows for the peer. `relay` is added by the engine, which knows about DERP. */
export type PathView = { readonly kind: 'direct'; readonly addr: UdpAddr; readonly latencyMs: number } | { readonly kind: 'connecting' };

export interface PathState {
  readonly deps: PathDeps;
  readonly timers: PathTimers;
  /** Our own advertised endpoints, sent in CallMeMaybe. */
  readonly localEndpoints: readonly UdpAddr[];
  /** Keyed by addrKey(addr). */
  readonly candidates: ReadonlyMap<string, Candidate>;
  /** The best pong-confirmed address; null = none (relay only). */
  readonly best: PathQuality | null;
  readonly bestAt: number | null;
  /** best is trusted (used exclusively) while now < trustUntil. */
  readonly trustUntil: number;
  readonly sentPings: ReadonlyMap<TxId, SentPing>;
  readonly lastFullPingAt: number | null;
  /** Last time real traffic was sent to the peer (null: never). */
  readonly lastSendAt: number | null;
  /** When the last liveness ping went out (null: never). */
  readonly lastLivenessAt: number | null;
  /**
   * Set while a liveness ping to a still-trusted best is unanswered: data then goes to the relay as well, so a
   * dying direct path loses nothing the relay can carry while the check runs. Cleared by best's pong.
   */
  readonly suspectSince: number | null;
  /** When the next heartbeat is due; null while heartbeats are stopped (no traffic for 45 s). */
  readonly heartbeatAt: number | null;
  /** The last path-changed reported. */
  readonly shown: PathView;
  /** The last schedule emitted. */
  readonly wakeAt: number | null;
  /** Keys of candidates learned from pings alone, oldest first (at most DISCO_MAX_PING_CANDIDATES). */
  readonly pingOnly: readonly string[];
  /** The last WireGuard counters seen (wg-counters), and when rx bytes last grew; null before the first. */
  readonly wg: WgSample | null;
}

export interface WgSample {
  readonly txBytes: number;
  readonly rxBytes: number;
  /** When rx bytes last grew, or the latest handshake if later (null: not since the first sample). */
  readonly rxAt: number | null;
}

/**
 * Inputs. Feed only disco messages that arrived over UDP and passed §3.7 acceptance for this peer.
 *  - netmap-endpoints: the peer's Endpoints from the latest netmap (replaces the previous netmap list).
 *  - local-endpoints: our own advertised endpoints (every type), carried by later CallMeMaybes.
 *  - call-me-maybe: the peer's CallMeMaybe contents (arrived via DERP/control).
 *  - ping-received / pong-received: `from` is the UDP source; `src` is the Pong's Src field.
 *  - send-data: we have a packet for the peer (answered by send-data-via). `lastRecvAt`, when the I/O layer
 *    tracks it, is when data last arrived from bestAddr (null: never); it drives the liveness check.
 *  - relay-received: data from the peer arrived through the relay (`lastRecvAt` as for send-data). While we
 *    trust a direct path, that means the peer no longer does: check ours at once, relaying meanwhile.
 *  - tick: the timer armed by the last `schedule` fired (early or spurious ticks are harmless).
 *  - send-error: a send to `addr` failed in a way that makes it unusable (e.g. host unreachable).
 *  - link-change: our network changed (major link change / rebind): forget every path.
 *  - wg-counters: WireGuard's counters for this peer (UAPI tx_bytes, rx_bytes, last handshake in this clock's
 *    time base, null if none). A sample whose counters went down (the peer was re-added) is a new baseline.
 */
export type PathEvent =
  | { readonly type: 'netmap-endpoints'; readonly endpoints: readonly UdpAddr[] }
  | { readonly type: 'local-endpoints'; readonly endpoints: readonly UdpAddr[] }
  | { readonly type: 'call-me-maybe'; readonly endpoints: readonly UdpAddr[] }
  | { readonly type: 'ping-received'; readonly from: UdpAddr; readonly txid: TxId }
  | { readonly type: 'pong-received'; readonly from: UdpAddr; readonly txid: TxId; readonly src: UdpAddr }
  | { readonly type: 'send-data'; readonly lastRecvAt?: number | null }
  | { readonly type: 'relay-received'; readonly lastRecvAt: number | null }
  | { readonly type: 'tick' }
  | { readonly type: 'send-error'; readonly addr: UdpAddr }
  | { readonly type: 'link-change' }
  | { readonly type: 'wg-counters'; readonly txBytes: number; readonly rxBytes: number; readonly lastHandshakeAt: number | null };

/**
 * Outputs, to execute in order.
 *  - send-ping / send-pong: a disco Ping / Pong over UDP to `to` (Pong.Src = `src`).
 *  - send-call-me-maybe: a CallMeMaybe listing `endpoints` to the peer via DERP (or control).
 *  - send-data-via: where this packet goes: `udp` (if set) and, when `relay`, also the peer's DERP region.
 *  - set-wireguard-endpoint: bestAddr changed (null: none, relay only).
 *  - path-changed: what pathKind reports changed kind or address (latencyMs is as of the change; the
 *    current value is pathKind(state, now), which moves with every pong without a path-changed).
 *  - schedule: re-arm this peer's single timer to deliver `tick` at `at` (null: cancel; `at` may be past).
 */
export type PathEffect =
  | { readonly type: 'send-ping'; readonly to: UdpAddr; readonly txid: TxId; readonly purpose: PingPurpose }
  | { readonly type: 'send-pong'; readonly to: UdpAddr; readonly txid: TxId; readonly src: UdpAddr }
  | { readonly type: 'send-call-me-maybe'; readonly endpoints: readonly UdpAddr[] }
  | { readonly type: 'send-data-via'; readonly udp: UdpAddr | null; readonly relay: boolean }
  | { readonly type: 'set-wireguard-endpoint'; readonly addr: UdpAddr | null }
  | { readonly type: 'path-changed'; readonly path: PathView }
  | { readonly type: 'schedule'; readonly at: number | null };

export interface StepResult {
  readonly state: PathState;
  readonly effects: readonly PathEffect[];
}

/** A fresh peer with no candidates and no path. */
export function initialPathState(deps: PathDeps, timers: PathTimers = DEFAULT_PATH_TIMERS): PathState {
  return {
    deps,
    timers,
    localEndpoints: [],
    candidates: new Map(),
    best: null,
    bestAt: null,
    trustUntil: 0,
    sentPings: new Map(),
    lastFullPingAt: null,
    lastSendAt: null,
    lastLivenessAt: null,
    suspectSince: null,
    heartbeatAt: null,
    shown: { kind: 'connecting' },
    wakeAt: null,
    pingOnly: [],
    wg: null,
  };
}

/** Canonical form of an address (IPv4-mapped IPv6 unmapped, IPv6 in short form); unparseable IPs kept. */
export function canonicalAddr(a: UdpAddr): UdpAddr {
  const b = ipToBytes(a.ip);
  if (!b) return { ip: a.ip, port: a.port };
  return { ip: bytesToIp(isV4Mapped(b) ? b.subarray(12) : b), port: a.port };
}

/** Map key of an address. */
export function addrKey(a: UdpAddr): string {
  return formatAddr(canonicalAddr(a));
}

/** Reports whether best is set and still exclusively trusted at `now`. */
export function isTrusted(s: PathState, now: number): boolean {
  return s.best !== null && now < s.trustUntil;
}

/** What `weft status` shows: direct only while a pong-confirmed best address is trusted. */
export function pathKind(s: PathState, now: number): PathView {
  return s.best && isTrusted(s, now) ? { kind: 'direct', addr: s.best.addr, latencyMs: s.best.latencyMs } : { kind: 'connecting' };
}

/** Where a data packet goes now (§4.3): the trusted best alone, else (or while it is suspect) best plus the relay. */
export function addrForSend(s: PathState, now: number): { udp: UdpAddr | null; relay: boolean } {
  return { udp: s.best?.addr ?? null, relay: !isTrusted(s, now) || s.suspectSince !== null };
}

/** Reports whether the next heartbeat should re-ping every candidate (§4.5 wantFullPing). */
export function wantFullPing(s: PathState, now: number): boolean {
  if (!s.best || s.lastFullPingAt === null || !isTrusted(s, now)) return true;
  if (s.best.latencyMs <= s.timers.goodEnoughLatencyMs) return false;
  return now - s.lastFullPingAt >= s.timers.upgradeDirectIntervalMs;
}

/** How long a liveness ping to bestAddr may go unanswered before the path stops being trusted. */
export function livenessTimeout(s: PathState): number {
  return Math.min(s.timers.pingTimeoutMs, Math.max(s.timers.livenessTimeoutMs, 4 * (s.best?.latencyMs ?? 0)));
}

/** The next time `tick` has work to do: a heartbeat, a ping timeout, a liveness deadline, or trust running out. */
export function nextWake(s: PathState, now: number): number | null {
  let at = s.heartbeatAt ?? Infinity;
  const trusted = isTrusted(s, now);
  for (const p of s.sentPings.values()) {
    at = Math.min(at, p.at + s.timers.pingTimeoutMs);
    if (trusted && p.purpose === 'liveness') at = Math.min(at, p.at + livenessTimeout(s));
  }
  if (trusted) at = Math.min(at, s.trustUntil);
  return at === Infinity ? null : at;
}

/** Mutable working copy for one step; maps are copied on first write. */
class Work {
  s: { -readonly [K in keyof PathState]: PathState[K] };
  readonly fx: PathEffect[] = [];
  private candsCopied = false;
  private pingsCopied = false;

  constructor(
    prev: PathState,
    readonly now: number,
  ) {
    this.s = { ...prev };
  }

  cands(): Map<string, Candidate> {
    if (!this.candsCopied) {
      this.s.candidates = new Map(this.s.candidates);
      this.candsCopied = true;
    }
    return this.s.candidates as Map<string, Candidate>;
  }

  pings(): Map<TxId, SentPing> {
    if (!this.pingsCopied) {
      this.s.sentPings = new Map(this.s.sentPings);
      this.pingsCopied = true;
    }
    return this.s.sentPings as Map<TxId, SentPing>;
  }

  setCand(c: Candidate): void {
    this.cands().set(addrKey(c.addr), c);
  }

  setBest(q: PathQuality | null): void {
    const prev = this.s.best;
    this.s.best = q;
    if (!q) {
      this.s.bestAt = null;
      this.s.trustUntil = 0;
      this.s.suspectSince = null;
    }
    if (!(prev === null && q === null) && !(prev && q && sameAddr(prev.addr, q.addr))) {
      this.fx.push({ type: 'set-wireguard-endpoint', addr: q ? q.addr : null });
    }
  }

  /** Reports whether a candidate has outlived every source that vouched for it. */
  stale(c: Candidate): boolean {
    if (c.inNetmap || c.callMeMaybeAt !== null) return false;
    return c.lastGotPingAt === null || this.now - c.lastGotPingAt > this.s.timers.sessionActiveTimeoutMs;
  }

  deleteCand(key: string): void {
    this.cands().delete(key);
    if (this.s.best && addrKey(this.s.best.addr) === key) this.setBest(null);
  }

  pruneStale(): void {
    for (const [key, c] of this.s.candidates) if (this.stale(c)) this.deleteCand(key);
  }

  startPing(to: UdpAddr, purpose: PingPurpose, back = false): void {
    const c = this.s.candidates.get(addrKey(to));
    if (!c) return;
    this.setCand({ ...c, lastPingAt: this.now });
    const txid = this.s.deps.newTxId();
    const pings = this.pings();
    // Bounded: the oldest outstanding ping is forgotten (Map order is insertion order, so this is O(1)).
    while (pings.size >= DISCO_MAX_SENT_PINGS) pings.delete(pings.keys().next().value!);
    pings.set(txid, back ? { txid, to: c.addr, at: this.now, purpose, back } : { txid, to: c.addr, at: this.now, purpose });
    this.fx.push({ type: 'send-ping', to: c.addr, txid, purpose });
  }

  /**
   * Liveness check of a trusted best: ping it now (one at a time) and send data to the relay as well until it
   * answers. `force` skips the once-per-silence-window limit (the peer has started relaying to us).
   */
  probeBest(force: boolean): void {
    const best = this.s.best;
    if (!best || !isTrusted(this.s, this.now)) return;
    const inFlight = [...this.s.sentPings.values()].some((p) => p.purpose === 'liveness' && sameAddr(p.to, best.addr));
    if (inFlight) {
      if (force && this.s.suspectSince === null) this.s.suspectSince = this.now;
      return;
    }
    if (!force && this.s.lastLivenessAt !== null && this.now - this.s.lastLivenessAt < this.s.timers.livenessSilenceMs) return;
    this.s.lastLivenessAt = this.now;
    this.s.suspectSince = this.now;
    this.startPing(best.addr, 'liveness');
  }

  /**
   * Records that `key` (a candidate) just pinged us. If nothing else vouches for it, it joins the ping-only
   * sources, and past DISCO_MAX_PING_CANDIDATES the oldest of them that is not bestAddr is forgotten.
   */
  notePingSource(key: string): void {
    const c = this.s.candidates.get(key);
    if (!c || c.inNetmap || c.callMeMaybeAt !== null) return;
    const list = this.s.pingOnly.filter((k) => k !== key);
    list.push(key);
    const bestKey = this.s.best ? addrKey(this.s.best.addr) : null;
    while (list.length > DISCO_MAX_PING_CANDIDATES) {
      const i = list.findIndex((k) => k !== bestKey);
      const [old] = list.splice(i, 1);
      const oc = this.s.candidates.get(old!);
      if (oc && !oc.inNetmap && oc.callMeMaybeAt === null) this.deleteCand(old!);
    }
    this.s.pingOnly = list;
  }

  /** Traffic to the peer is flowing (a packet to send, or WireGuard's tx bytes grew): start heartbeats. */
  noteSending(): void {
    this.s.lastSendAt = this.now;
    if (this.s.heartbeatAt === null) this.s.heartbeatAt = this.now + this.s.timers.heartbeatIntervalMs;
  }

  /** §4.5 "send disco pings": every fresh candidate not pinged within discoPingInterval. */
  sendDiscoPings(withCallMeMaybe: boolean): void {
    this.s.lastFullPingAt = this.now;
    let sent = 0;
    for (const [key, c] of this.s.candidates) {
      if (this.stale(c)) {
        this.deleteCand(key);
        continue;
      }
      if (c.lastPingAt !== null && this.now - c.lastPingAt < this.s.timers.discoPingIntervalMs) continue;
      this.startPing(c.addr, 'discovery');
      sent++;
    }
    if (sent > 0 && withCallMeMaybe) this.fx.push({ type: 'send-call-me-maybe', endpoints: this.s.localEndpoints });
  }

  finish(): StepResult {
    const view = pathKind(this.s, this.now);
    const shown = this.s.shown;
    const same =
      view.kind === shown.kind && (view.kind !== 'direct' || (shown.kind === 'direct' && sameAddr(view.addr, shown.addr)));
    if (!same) {
      this.s.shown = view;
      this.fx.push({ type: 'path-changed', path: view });
    }
    const wake = nextWake(this.s, this.now);
    if (wake !== this.s.wakeAt) {
      this.s.wakeAt = wake;
      this.fx.push({ type: 'schedule', at: wake });
    }
    return { state: this.s, effects: this.fx };
  }
}

function sameAddrSet(a: readonly UdpAddr[], b: readonly UdpAddr[]): boolean {
  const ka = new Set(a.map(addrKey));
  const kb = new Set(b.map(addrKey));
  return ka.size === kb.size && [...ka].every((k) => kb.has(k));
}

function newCandidate(addr: UdpAddr): Candidate {
  return { addr: canonicalAddr(addr), inNetmap: false, callMeMaybeAt: null, lastGotPingAt: null, lastGotPingTxId: null, lastPingAt: null, pongs: [] };
}

function isV6LinkLocal(ip: string): boolean {
  const b = ipToBytes(ip);
  return !!b && b.length === 16 && b[0] === 0xfe && (b[1]! & 0xc0) === 0x80;
}

function usable(a: UdpAddr): boolean {
  return Number.isInteger(a.port) && a.port > 0 && a.port < 65536 && ipToBytes(a.ip) !== null;
}

/** An ignored event: only the time-derived view and wake-up may move (the same state object if not). */
function untouched(state: PathState, now: number): StepResult {
  const r = new Work(state, now).finish();
  return r.effects.length > 0 ? r : { state, effects: [] };
}

/** Applies one event at time `now`; returns the next state and the effects to execute, in order. */
export function step(state: PathState, event: PathEvent, now: number): StepResult {
  const w = new Work(state, now);
  const t = w.s.timers;
  switch (event.type) {
    case 'netmap-endpoints': {
      const eps = event.endpoints.filter(usable).slice(0, DISCO_MAX_LISTED_ENDPOINTS);
      const listed = new Set(eps.map(addrKey));
      for (const [key, c] of state.candidates) if (c.inNetmap && !listed.has(key)) w.setCand({ ...c, inNetmap: false });
      for (const a of eps) {
        const c = w.s.candidates.get(addrKey(a)) ?? newCandidate(a);
        if (!c.inNetmap) w.setCand({ ...c, inNetmap: true });
      }
      w.pruneStale();
      break;
    }
    case 'local-endpoints': {
      const changed = !sameAddrSet(state.localEndpoints, event.endpoints);
      w.s.localEndpoints = [...event.endpoints];
      // Our endpoints changed (a NAT rebinding, a new port mapping, UDP unblocked) while traffic flows without a
      // trusted path: ping every candidate now and send the peer a CallMeMaybe with the new list, rather than
      // waiting for the next discovery round; the peer's pings to our new address then meet ours.
      // With a trusted path, the peer still learns the new list at once (CallMeMaybe alone): it may be relaying
      // to us while we are already direct (UDP just opened), and pings our new address on receipt.
      const active = w.s.lastSendAt !== null && now - w.s.lastSendAt <= t.sessionActiveTimeoutMs;
      if (changed && active && !isTrusted(w.s, now)) {
        for (const c of [...w.s.candidates.values()]) if (c.lastPingAt !== null) w.setCand({ ...c, lastPingAt: null });
        w.sendDiscoPings(true);
      } else if (changed && active && event.endpoints.length > 0) {
        w.fx.push({ type: 'send-call-me-maybe', endpoints: w.s.localEndpoints });
      }
      break;
    }
    case 'call-me-maybe': {
      const eps = event.endpoints.filter((a) => usable(a) && !isV6LinkLocal(a.ip)).slice(0, DISCO_MAX_LISTED_ENDPOINTS);
      const listed = new Set(eps.map(addrKey));
      for (const [key, c] of state.candidates) {
        if (c.callMeMaybeAt === null || listed.has(key)) continue;
        const dropped = { ...c, callMeMaybeAt: null };
        w.setCand(dropped);
        if (w.stale(dropped)) w.deleteCand(key);
      }
      for (const a of eps) w.setCand({ ...(w.s.candidates.get(addrKey(a)) ?? newCandidate(a)), callMeMaybeAt: now });
      for (const c of [...w.s.candidates.values()]) if (c.lastPingAt !== null) w.setCand({ ...c, lastPingAt: null });
      w.sendDiscoPings(false);
      break;
    }
    case 'ping-received': {
      if (!usable(event.from)) break;
      const key = addrKey(event.from);
      const c = w.s.candidates.get(key);
      const duplicate = c?.lastGotPingTxId === event.txid;
      w.setCand({ ...(c ?? newCandidate(event.from)), lastGotPingAt: now, lastGotPingTxId: event.txid });
      w.notePingSource(key);
      if (!duplicate) w.fx.push({ type: 'send-pong', to: event.from, txid: event.txid, src: event.from });
      // A ping that reached us proves the path from the peer is open; while we have no trusted path, ping
      // back at once rather than waiting out discoPingInterval. It plays the part CallMeMaybe plays over
      // DERP: without it, two APDF NATs need a second 5 s round. Rate-limited per candidate, except that an
      // unanswered ping we sent there "blind" (not in reply to a ping from there) does not count: it most likely
      // died at the peer's NAT before the peer opened it, which this ping shows it now has. A ping-back is never
      // blind, so two peers cannot keep pinging each other back.
      const cur = w.s.candidates.get(key);
      if (cur && !duplicate && !isTrusted(w.s, now)) {
        const blind = [...w.s.sentPings.values()].some((p) => sameAddr(p.to, cur.addr) && !p.back);
        if (cur.lastPingAt === null || blind || now - cur.lastPingAt >= DISCO_PING_BACK_MIN_INTERVAL_MS) w.startPing(cur.addr, 'discovery', true);
      }
      break;
    }
    case 'pong-received': {
      const sp = state.sentPings.get(event.txid);
      // Unknown txid, or an answer from somewhere we did not ping: proves nothing about sp.to.
      if (!sp || !sameAddr(canonicalAddr(event.from), sp.to)) return untouched(state, now);
      w.pings().delete(event.txid);
      const c = w.s.candidates.get(addrKey(sp.to));
      if (!c) break; // no longer a candidate
      const latencyMs = now - sp.at;
      const rec: PongRecord = { latencyMs, at: now, from: sp.to, pongSrc: event.src };
      w.setCand({ ...c, pongs: [...c.pongs, rec].slice(-DISCO_PONG_HISTORY) });
      const cand: PathQuality = { addr: sp.to, latencyMs };
      if (betterAddr(cand, w.s.best) || !isTrusted(w.s, now)) w.setBest(cand);
      if (w.s.best && sameAddr(w.s.best.addr, sp.to)) {
        w.s.best = { ...w.s.best, latencyMs };
        w.s.bestAt = now;
        w.s.trustUntil = now + t.trustUdpAddrMs;
        w.s.suspectSince = null;
      }
      break;
    }
    case 'send-data': {
      w.noteSending();
      if (isTrusted(w.s, now) && event.lastRecvAt !== undefined && w.s.best) {
        // Liveness: bestAddr has gone quiet although we keep sending. Ping it now and relay too while the check
        // runs (this packet included); `tick` stops trusting it if the answer does not come in time.
        const heard = Math.max(event.lastRecvAt ?? -Infinity, w.s.bestAt ?? -Infinity);
        if (now - heard > t.livenessSilenceMs) w.probeBest(false);
      }
      w.fx.push({ type: 'send-data-via', ...addrForSend(w.s, now) });
      if (!isTrusted(w.s, now)) w.sendDiscoPings(true);
      break;
    }
    case 'relay-received': {
      // The peer relays only when it lacks a trusted direct path; if ours has also been quiet a moment (not
      // just the peer's last relayed packets before it upgraded), probe it and relay our side too meanwhile.
      const heard = Math.max(event.lastRecvAt ?? -Infinity, w.s.bestAt ?? -Infinity);
      if (isTrusted(w.s, now) && now - heard > t.livenessSilenceMs / 3) w.probeBest(true);
      break;
    }
    case 'tick': {
      for (const sp of state.sentPings.values()) {
        // An unanswered liveness ping ends the trust (data then goes to the relay too); a late pong restores it.
        if (sp.purpose === 'liveness' && isTrusted(w.s, now) && sameAddr(w.s.best!.addr, sp.to) && now >= sp.at + livenessTimeout(w.s)) {
          w.s.trustUntil = now;
          w.s.suspectSince = null;
        }
        if (now < sp.at + t.pingTimeoutMs) continue;
        w.pings().delete(sp.txid);
        if (w.s.best && sameAddr(w.s.best.addr, sp.to) && !isTrusted(w.s, now)) w.setBest(null);
      }
      if (w.s.heartbeatAt !== null && now >= w.s.heartbeatAt) {
        if (w.s.lastSendAt === null || now - w.s.lastSendAt > t.sessionActiveTimeoutMs) {
          w.s.heartbeatAt = null; // idle session: stop until the next send-data
        } else {
          if (w.s.best) w.startPing(w.s.best.addr, 'heartbeat');
          if (wantFullPing(w.s, now)) w.sendDiscoPings(true);
          w.s.heartbeatAt = now + t.heartbeatIntervalMs;
        }
      }
      break;
    }
    case 'send-error': {
      const c = w.s.candidates.get(addrKey(event.addr));
      if (c) w.setCand({ ...c, lastPingAt: null, pongs: [] });
      if (w.s.best && sameAddr(w.s.best.addr, canonicalAddr(event.addr))) w.setBest(null);
      break;
    }
    case 'wg-counters': {
      const prev = state.wg;
      const fresh = !prev || event.txBytes < prev.txBytes || event.rxBytes < prev.rxBytes;
      const sent = !fresh && event.txBytes > prev.txBytes;
      let rxAt = fresh ? null : prev.rxAt;
      if (!fresh && event.rxBytes > prev.rxBytes) rxAt = now;
      // A completed handshake is something heard from the peer too.
      const hs = event.lastHandshakeAt;
      if (hs !== null && hs <= now && (rxAt === null || hs > rxAt)) rxAt = hs;
      w.s.wg = { txBytes: event.txBytes, rxBytes: event.rxBytes, rxAt };
      if (!sent) break;
      w.noteSending();
      if (isTrusted(w.s, now) && w.s.best) {
        // The same liveness check as for send-data, with "heard" taken from WireGuard's rx counter.
        const heard = Math.max(rxAt ?? -Infinity, w.s.bestAt ?? -Infinity);
        if (now - heard > t.livenessSilenceMs) w.probeBest(false);
      } else {
        w.sendDiscoPings(true);
      }
      break;
    }
    case 'link-change': {
      w.setBest(null);
      w.s.suspectSince = null;
      for (const c of [...w.s.candidates.values()]) w.setCand({ ...c, lastPingAt: null, pongs: [] });
      break;
    }
    default: {
      const unhandled: never = event;
      void unhandled; // an event type from a newer caller: ignore it rather than throw on the packet path
      return untouched(state, now);
    }
  }
  return w.finish();
}
