/**
 * The map session as a pure delta reducer: `applyMapResponse(prev, json) → next netmap` (control-protocol
 * §9.5; TS: control/controlclient/map.go `mapSession`, direct.go `sendMapRequest`; style.md §2 item 8).
 *
 * A map stream (stream-framing.ts) yields one JSON MapResponse per message. The first non-keep-alive message
 * is a full map and must carry `Node`; every later one is a delta whose absent fields mean "unchanged". The
 * reducer folds each message into an immutable NetMap:
 *
 *   emptyNetMap ─(full map with Node)─▶ netmap₁ ─(delta)─▶ netmap₂ ─(keep-alive)─▶ netmap₂' ─ …
 *        │                                  └─(malformed)─▶ error: the caller keeps netmap₁
 *        └─(keep-alive)─▶ still waiting for the first map
 *
 * Order of application within one non-keep-alive message (§9.5):
 *   1. a non-empty `Peers` replaces the peer table and skips steps 2–6;
 *   2. `PeersRemoved`  3. `PeersChanged` (upsert whole nodes)  4. `PeerSeenChange`  5. `OnlineChange`
 *   6. `PeersChangedPatch` field by field (unknown IDs are ignored, as Tailscale does);
 *   7. `Node` (self)  8. `UserProfiles` (upsert)  9. `DERPMap` (merged: null Regions/HomeParams keep the old)
 *   10. `PacketFilter`/`PacketFilters` (named chunks, concatenated in sorted-name order)
 *   11. `DNSConfig`, `SSHPolicy`, `CollectServices`, `Domain` (if non-empty), `Health`, when present.
 * A keep-alive applies only `ControlTime`, `PingRequest` and `PopBrowserURL`. Ping and browser URLs are
 * reported once each (a repeat of the last URL is suppressed, as direct.go does).
 *
 * Nodes arrive normalised by types.ts (legacy DERP string → HomeDERP, null AllowedIPs → Addresses). Here a
 * node is also marked `Expired` when its KeyExpiry is before the reference time: the caller's
 * control-corrected `nowMs` if given, else this message's ControlTime, else the last ControlTime seen. A patch
 * that changes KeyExpiry recomputes `Expired` from the new expiry alone (a rotated key is live again).
 *
 * Each stream is its own session: start every new map stream from `emptyNetMap` (Go makes a new mapSession
 * per stream); otherwise peers that left while disconnected would linger, since a full map with no peers
 * omits `Peers` entirely.
 *
 * Pure: no I/O, no clock, never throws on any input, never mutates `prev` (a changed table is a new Map;
 * unchanged parts are shared).
 */
import type { z } from 'zod';
import type { DerpMap } from '../../../src-shared/model/derp-map.ts';
import type { NodeId } from '../../../src-shared/model/ids.ts';
import {
  MapResponse,
  formatGoTime,
  isZeroTime,
  parseGoTime,
  type Debug,
  type DerpMapWire,
  type DnsConfig,
  type FilterRule,
  type Node,
  type PingRequest,
  type SshPolicy,
  type UserProfile,
} from '../../protocol/control/tailcfg.ts';

export interface NetMap {
  /** This node as the server sees it; null until the first full map. */
  readonly self: Node | null;
  /** Peers by node ID. */
  readonly peers: ReadonlyMap<NodeId, Node>;
  readonly derpMap: DerpMap | null;
  /** The tailnet name (headscale sends its server_url host name). */
  readonly domain: string | null;
  readonly userProfiles: ReadonlyMap<number, UserProfile>;
  readonly dnsConfig: DnsConfig | null;
  /** Named packet-filter chunks as received ("base" from headscale). */
  readonly packetFilters: ReadonlyMap<string, readonly FilterRule[]>;
  /** The effective inbound filter: all chunks in sorted-name order. Empty = allow nothing. */
  readonly packetFilter: readonly FilterRule[];
  readonly sshPolicy: SshPolicy | null;
  readonly collectServices: boolean;
  /** Health warnings from the control plane; null = never sent, [] = healthy. */
  readonly health: readonly string[] | null;
  /** The server's clock at its last message (RFC 3339); use it to correct expiry checks. */
  readonly controlTime: string | null;
  /** Last PingRequest URL reported, to suppress repeats. */
  readonly lastPingURL: string | null;
  /** Last PopBrowserURL reported, to suppress repeats. */
  readonly lastPopBrowserURL: string | null;
  /** Messages applied so far, keep-alives included. */
  readonly lastSeq: number;
}

export const emptyNetMap: NetMap = Object.freeze({
  self: null,
  peers: new Map<NodeId, Node>(),
  derpMap: null,
  domain: null,
  userProfiles: new Map<number, UserProfile>(),
  dnsConfig: null,
  packetFilters: new Map<string, readonly FilterRule[]>(),
  packetFilter: [],
  sshPolicy: null,
  collectServices: false,
  health: null,
  controlTime: null,
  lastPingURL: null,
  lastPopBrowserURL: null,
  lastSeq: 0,
});

/** What one message changed; ID lists are sorted numerically. Flags are content comparisons, not presence. */
export interface NetMapChanges {
  self: boolean;
  peersAdded: NodeId[];
  peersRemoved: NodeId[];
  peersChanged: NodeId[];
  derpMap: boolean;
  dnsConfig: boolean;
  packetFilter: boolean;
  userProfiles: boolean;
}

export type ApplyResult =
  | {
      kind: 'ok';
      netmap: NetMap;
      changed: NetMapChanges;
      /** The message was a keep-alive: nothing but ControlTime/PingRequest/PopBrowserURL was applied. */
      keepAlive: boolean;
      /** A new PingRequest to answer (HTTP HEAD to URL when Types is ""). */
      pingRequest?: PingRequest;
      /** A new URL the control plane asks the user to open. */
      popBrowserURL?: string;
      /** Debug directives (headscale sends only DisableLogTail). */
      debug?: Debug;
    }
  | { kind: 'error'; reason: string };

export interface ApplyOptions {
  /** Control-corrected current time in ms since the epoch, for flagging expired keys (see the header). */
  nowMs?: number;
}

const NO_CHANGES: NetMapChanges = Object.freeze({
  self: false,
  peersAdded: [],
  peersRemoved: [],
  peersChanged: [],
  derpMap: false,
  dnsConfig: false,
  packetFilter: false,
  userProfiles: false,
}) as NetMapChanges;

/** Reports whether `node`'s key has expired at `nowMs` (a zero KeyExpiry never expires). */
export function isKeyExpired(node: Pick<Node, 'KeyExpiry'>, nowMs: number): boolean {
  if (isZeroTime(node.KeyExpiry)) return false;
  const t = parseGoTime(node.KeyExpiry);
  return t !== null && t < nowMs;
}

/** The peers ordered by numeric node ID, as Tailscale lists them. */
export function sortedPeers(nm: NetMap): Node[] {
  return [...nm.peers.values()].sort((a, b) => Number(a.ID) - Number(b.ID));
}

/** Folds one parsed-JSON MapResponse into `prev`. On error the caller keeps `prev`. */
export function applyMapResponse(prev: NetMap, raw: unknown, opts: ApplyOptions = {}): ApplyResult {
  const parsed = MapResponse.safeParse(raw);
  if (!parsed.success) return { kind: 'error', reason: describeIssues(parsed.error) };
  const msg = parsed.data;

  // Fields honoured on every message, keep-alives included (direct.go handles them before the keep-alive check).
  const controlTime = msg.ControlTime !== undefined && !isZeroTime(msg.ControlTime) ? msg.ControlTime : prev.controlTime;
  let pingRequest: PingRequest | undefined;
  let lastPingURL = prev.lastPingURL;
  if (msg.PingRequest && msg.PingRequest.URL !== '' && msg.PingRequest.URL !== prev.lastPingURL) {
    pingRequest = msg.PingRequest;
    lastPingURL = msg.PingRequest.URL;
  }
  let popBrowserURL: string | undefined;
  let lastPopBrowserURL = prev.lastPopBrowserURL;
  if (msg.PopBrowserURL !== '' && msg.PopBrowserURL !== prev.lastPopBrowserURL) {
    popBrowserURL = msg.PopBrowserURL;
    lastPopBrowserURL = msg.PopBrowserURL;
  }
  const effects = {
    ...(pingRequest ? { pingRequest } : {}),
    ...(popBrowserURL !== undefined ? { popBrowserURL } : {}),
  };
  const base: NetMap = { ...prev, controlTime, lastPingURL, lastPopBrowserURL, lastSeq: prev.lastSeq + 1 };

  if (msg.KeepAlive) return { kind: 'ok', netmap: base, changed: NO_CHANGES, keepAlive: true, ...effects };
  if (prev.self === null && !msg.Node) return { kind: 'error', reason: 'the first map message has no Node (self); Tailscale aborts such a stream' };

  const refMs = opts.nowMs ?? (controlTime !== null ? parseGoTime(controlTime) : null);
  const flagExpired = (n: Node): Node => (!n.Expired && refMs !== null && isKeyExpired(n, refMs) ? { ...n, Expired: true } : n);

  // Steps 1–6: the peer table, copied on first write.
  let peers: Map<NodeId, Node> | null = null;
  const touched = new Set<NodeId>();
  const writable = (): Map<NodeId, Node> => (peers ??= new Map(prev.peers));
  const current = (id: NodeId): Node | undefined => (peers ?? prev.peers).get(id);

  if (msg.Peers && msg.Peers.length > 0) {
    peers = new Map();
    for (const n of msg.Peers) peers.set(n.ID, flagExpired(n));
    for (const id of prev.peers.keys()) touched.add(id);
    for (const id of peers.keys()) touched.add(id);
  } else {
    for (const id of msg.PeersRemoved ?? []) {
      if (current(id) && writable().delete(id)) touched.add(id);
    }
    for (const n of msg.PeersChanged ?? []) {
      writable().set(n.ID, flagExpired(n));
      touched.add(n.ID);
    }
    for (const [id, seen] of msg.PeerSeenChange ?? []) {
      const p = current(id);
      if (!p) continue;
      if (seen) {
        // Go stamps the local clock; without one, the reference time stands in (or LastSeen stays).
        if (refMs !== null) writable().set(id, { ...p, LastSeen: formatGoTime(refMs) });
      } else writable().set(id, { ...p, LastSeen: undefined });
      touched.add(id);
    }
    for (const [id, online] of msg.OnlineChange ?? []) {
      const p = current(id);
      if (!p) continue;
      writable().set(id, { ...p, Online: online });
      touched.add(id);
    }
    for (const pc of msg.PeersChangedPatch ?? []) {
      const p = current(pc.NodeID);
      if (!p) continue;
      const n: Node = { ...p };
      if (pc.DERPRegion !== 0) n.HomeDERP = pc.DERPRegion;
      if (pc.Cap !== 0) n.Cap = pc.Cap;
      if (pc.Endpoints !== undefined) n.Endpoints = pc.Endpoints;
      if (pc.Key !== undefined) n.Key = pc.Key;
      if (pc.KeySignature !== undefined) n.KeySignature = pc.KeySignature;
      if (pc.DiscoKey !== undefined) n.DiscoKey = pc.DiscoKey;
      if (pc.Online !== undefined) n.Online = pc.Online;
      if (pc.LastSeen !== undefined) n.LastSeen = pc.LastSeen;
      if (pc.KeyExpiry !== undefined) {
        n.KeyExpiry = pc.KeyExpiry;
        n.Expired = refMs !== null && isKeyExpired(n, refMs);
      }
      if (pc.CapMap !== undefined) n.CapMap = pc.CapMap;
      writable().set(pc.NodeID, n);
      touched.add(pc.NodeID);
    }
  }

  const peersAdded: NodeId[] = [];
  const peersRemoved: NodeId[] = [];
  const peersChanged: NodeId[] = [];
  const nextPeers: Map<NodeId, Node> | null = peers;
  if (nextPeers) {
    for (const id of touched) {
      const before = prev.peers.get(id);
      const after = nextPeers.get(id);
      if (before && !after) peersRemoved.push(id);
      else if (!before && after) peersAdded.push(id);
      else if (before && after && !deepEqual(before, after)) peersChanged.push(id);
    }
  }
  const peersDiffer = peersAdded.length + peersRemoved.length + peersChanged.length > 0;

  // Step 7: self.
  const self = msg.Node ? flagExpired(msg.Node) : prev.self;

  // Step 8: user profiles.
  let userProfiles = prev.userProfiles;
  if (msg.UserProfiles && msg.UserProfiles.length > 0) {
    const m = new Map(prev.userProfiles);
    for (const up of msg.UserProfiles) m.set(up.ID, up);
    userProfiles = m;
  }

  // Step 9: DERP map.
  const derpMap = msg.DERPMap ? mergeDerpMap(prev.derpMap, msg.DERPMap) : prev.derpMap;

  // Step 10: packet filters.
  let packetFilters = prev.packetFilters;
  let packetFilter = prev.packetFilter;
  if (msg.PacketFilter !== undefined || msg.PacketFilters !== undefined) {
    const m = new Map(prev.packetFilters);
    if (msg.PacketFilter !== undefined) m.set('base', msg.PacketFilter);
    const named = msg.PacketFilters;
    if (named) {
      if (Object.hasOwn(named, '*') && named['*'] === null) m.clear();
      for (const [name, rules] of Object.entries(named)) {
        if (name === '*') continue;
        if (rules) m.set(name, rules);
        else m.delete(name);
      }
    }
    packetFilters = m;
    packetFilter = [...m.keys()].sort().flatMap((k) => m.get(k) ?? []);
  }

  // Step 11: the rest.
  const next: NetMap = {
    ...base,
    self,
    peers: peersDiffer && nextPeers ? nextPeers : prev.peers,
    derpMap,
    domain: msg.Domain !== '' ? msg.Domain : prev.domain,
    userProfiles,
    dnsConfig: msg.DNSConfig ?? prev.dnsConfig,
    packetFilters,
    packetFilter,
    sshPolicy: msg.SSHPolicy ?? prev.sshPolicy,
    collectServices: msg.CollectServices ?? prev.collectServices,
    health: msg.Health ?? prev.health,
  };

  const byId = (a: NodeId, b: NodeId): number => Number(a) - Number(b);
  const changed: NetMapChanges = {
    self: !deepEqual(prev.self, self),
    peersAdded: peersAdded.sort(byId),
    peersRemoved: peersRemoved.sort(byId),
    peersChanged: peersChanged.sort(byId),
    derpMap: !deepEqual(prev.derpMap, derpMap),
    dnsConfig: !deepEqual(prev.dnsConfig, next.dnsConfig),
    packetFilter: !deepEqual(prev.packetFilter, packetFilter),
    userProfiles: userProfiles !== prev.userProfiles,
  };
  return { kind: 'ok', netmap: next, changed, keepAlive: false, ...effects, ...(msg.Debug ? { debug: msg.Debug } : {}) };
}

/**
 * Merges a received DERP map into the previous one as map.go does: a null Regions keeps the old regions (and
 * OmitDefaultRegions), a null HomeParams keeps the old ones, and a null RegionScore keeps the old scores.
 */
function mergeDerpMap(prev: DerpMap | null, dm: DerpMapWire): DerpMap {
  let regions = dm.Regions;
  let omit = dm.OmitDefaultRegions;
  let home: DerpMap['HomeParams'] = dm.HomeParams;
  if (prev) {
    if (regions === undefined) {
      regions = prev.Regions;
      omit = prev.OmitDefaultRegions;
    }
    if (home === undefined) home = prev.HomeParams;
    else if (prev.HomeParams && home.RegionScore === undefined) home = { ...home, RegionScore: prev.HomeParams.RegionScore };
  }
  return {
    Regions: regions ?? {},
    ...(omit !== undefined ? { OmitDefaultRegions: omit } : {}),
    ...(home ? { HomeParams: home } : {}),
  };
}

/** A one-line reason from a schema failure: the first few issues with their JSON paths. */
function describeIssues(err: z.ZodError): string {
  const shown = err.issues.slice(0, 3).map((i) => `${i.path.length > 0 ? i.path.join('.') : '(message)'}: ${i.message}`);
  const more = err.issues.length - shown.length;
  return `malformed MapResponse: ${shown.join('; ')}${more > 0 ? ` (and ${more} more)` : ''}`;
}

/** Structural equality of JSON-like values; a key whose value is undefined counts as absent. */
function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => deepEqual(x, b[i]));
  }
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  const ka = Object.keys(ra).filter((k) => ra[k] !== undefined);
  const kb = Object.keys(rb).filter((k) => rb[k] !== undefined);
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(rb, k) && deepEqual(ra[k], rb[k]));
}
