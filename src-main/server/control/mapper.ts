/**
 * The map builder: store records → tailcfg JSON as headscale fills it (control-protocol §9.1, §9.3), and the
 * per-session diff that turns "what this client was last told" into a delta message.
 *
 *   full map:   ControlTime, Node, DERPMap, Domain, CollectServices, Debug, DNSConfig, PacketFilters,
 *               UserProfiles, Peers (omitted when there are none, as headscale's omitempty does)
 *   delta:      ControlTime + whichever of Node, PeersRemoved, PeersChanged, PeersChangedPatch, UserProfiles
 *               changed since the last message to this session
 *
 * Policy (server/policy/compile.ts): without one every node sees every other node and the packet filter allows
 * everything (headscale's answer with no ACL policy, §9.6); with one, a node's map holds only the peers the
 * policy lets it talk to (either way) and its own reduced filter.
 *
 * Routes (server/routes/routes.ts): AllowedIPs = the node's /32 and /128, the subnet routes it is the elected
 * primary for and its approved exit routes, sorted as Go's netip.Prefix.Compare; PrimaryRoutes = those subnet
 * routes. With a policy each viewer gets only the routes the policy lets it use (CompiledPolicy.routeVisible), plus
 * a peer's copy of a prefix the viewer serves itself (an HA standby sees its primary's route); its own node keeps
 * its exit routes. As headscale 0.29.2 builds them (types/node.go TailNode, state.go RoutesForPeer).
 *
 * A peer whose only changes are fields a PeerChange can carry (§9.4) goes out as a PeersChangedPatch entry;
 * anything else (a new hostinfo, an expiry that flips Expired, a rename) resends the whole Node.
 *
 * Pure: no I/O, no clock (the caller passes `now`).
 */
import type { DerpMap } from '../../../src-shared/model/derp-map.ts';
import { ZERO_TIME, formatGoTime } from '../../protocol/control/tailcfg.ts';
import type { NodeRecord, UserRecord } from '../store/types.ts';
import { FILTER_ALLOW_ALL, type CompiledPolicy, type WireFilterRule } from '../policy/compile.ts';
import { exitRoutes, isExitRoute, sortPrefixes, subnetRoutes } from '../routes/routes.ts';

/** A tailcfg.Node as this server emits it (JSON-ready; absent keys are omitted, as Go's omitempty does). */
export interface WireNode {
  ID: number;
  StableID: string;
  Name: string;
  User: number;
  Key: string;
  KeyExpiry?: string;
  Machine: string;
  DiscoKey?: string;
  Addresses: string[];
  AllowedIPs: string[];
  PrimaryRoutes?: string[];
  Endpoints?: string[];
  HomeDERP?: number;
  Hostinfo?: unknown;
  Created: string;
  Cap: number;
  Online?: boolean;
  LastSeen?: string;
  MachineAuthorized: boolean;
  Expired?: boolean;
}

/** tailcfg.PeerChange (§9.4). */
export interface WirePeerChange {
  NodeID: number;
  DERPRegion?: number;
  Cap?: number;
  Endpoints?: string[];
  Key?: string;
  DiscoKey?: string;
  Online?: boolean;
  LastSeen?: string;
  KeyExpiry?: string;
}

export interface WireUserProfile {
  ID: number;
  LoginName: string;
  DisplayName: string;
  ProfilePicURL: string;
}

/** A MapResponse as this server emits it. */
export interface WireMapResponse {
  KeepAlive?: boolean;
  /** tailcfg.PingRequest: the client fetches URL (HTTP HEAD) to show it is alive (the HA prober). */
  PingRequest?: { URL: string };
  ControlTime?: string;
  Node?: WireNode;
  DERPMap?: DerpMap;
  Domain?: string;
  CollectServices?: boolean;
  Debug?: { DisableLogTail: boolean };
  DNSConfig?: Record<string, unknown>;
  PacketFilters?: Record<string, unknown[]>;
  UserProfiles?: WireUserProfile[];
  Peers?: WireNode[];
  PeersChanged?: WireNode[];
  PeersRemoved?: number[];
  PeersChangedPatch?: WirePeerChange[];
}

/** Allow-all, headscale's filter when no ACL policy is set (tailcfg.FilterAllowAll). */
export { FILTER_ALLOW_ALL };

/** What the maps need of the policy: each node's filter and who sees whom. null: no policy (allow all). */
export type MapPolicy = Pick<CompiledPolicy, 'filterFor' | 'canSee' | 'routeVisible'> | null;

function filterOf(policy: MapPolicy, selfId: number): WireFilterRule[] {
  return policy ? policy.filterFor(selfId) : FILTER_ALLOW_ALL;
}

export interface MapperConfig {
  /** The tailnet name sent as `Domain`: headscale sends the server URL's hostname (§9.2). */
  domain: string;
  /** When set, node names are `<given>.<baseDomain>.`; else just the given name. */
  baseDomain: string | null;
  /** The DNSConfig every map carries (dns-config.ts dnsConfigOf); @default {} */
  dnsConfig?: Record<string, unknown>;
  derpMap: DerpMap;
}

/** What the mapper needs to know about a node besides its record. */
export interface NodeView {
  record: NodeRecord;
  /** Whether a map stream of this node is open (or in its offline grace period). */
  online: boolean;
  /** The subnet routes this node is the elected primary for, sorted (routes.ts electPrimaries). @default [] */
  primaries?: readonly string[];
}

/** Reports whether a node's key has expired at `now`. */
export function isExpired(n: NodeRecord, now: number): boolean {
  return n.expiresAt !== null && n.expiresAt <= now;
}

function parseHostinfo(text: string | null): unknown {
  if (text === null) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** The tailcfg.Node of a stored node, as seen by a client that connected with capability version `capver`. */
export function wireNode(v: NodeView, cfg: MapperConfig, capver: number, now: number): WireNode {
  const n = v.record;
  const expired = isExpired(n, now);
  const addrs = [`${n.ipv4}/32`, `${n.ipv6}/128`];
  const primaries = v.primaries ?? [];
  const routes = [...primaries, ...exitRoutes(n)];
  const out: WireNode = {
    ID: n.id,
    StableID: String(n.id),
    Name: cfg.baseDomain ? `${n.givenName}.${cfg.baseDomain}.` : n.givenName,
    User: n.userId,
    Key: n.nodeKey,
    Machine: n.machineKey,
    Addresses: addrs,
    AllowedIPs: routes.length ? sortPrefixes([...addrs, ...routes]) : [...addrs],
    ...(primaries.length ? { PrimaryRoutes: [...primaries] } : {}),
    Created: formatGoTime(n.createdAt),
    // headscale fills Cap with the receiving client's version (errata §3.1).
    Cap: capver,
    MachineAuthorized: !expired,
  };
  if (n.expiresAt !== null) out.KeyExpiry = formatGoTime(n.expiresAt);
  if (n.discoKey) out.DiscoKey = n.discoKey;
  if (n.endpoints.length > 0) out.Endpoints = [...n.endpoints];
  if (n.homeDerp > 0) out.HomeDERP = n.homeDerp;
  const hi = parseHostinfo(n.hostinfo);
  if (hi !== undefined) out.Hostinfo = hi;
  out.Online = v.online;
  if (!v.online && n.lastSeen !== null) out.LastSeen = formatGoTime(n.lastSeen);
  if (expired) out.Expired = true;
  return out;
}

/** The node with only the routes `keep` accepts in AllowedIPs and PrimaryRoutes (the same object when all stay). */
export function withRoutes(w: WireNode, keep: (route: string) => boolean): WireNode {
  if (w.AllowedIPs.length === w.Addresses.length) return w;
  const addrs = new Set(w.Addresses);
  const allowed = w.AllowedIPs.filter((p) => addrs.has(p) || keep(p));
  if (allowed.length === w.AllowedIPs.length) return w;
  const kept = new Set(allowed);
  const { PrimaryRoutes, ...rest } = w;
  const primaries = (PrimaryRoutes ?? []).filter((p) => kept.has(p));
  return { ...rest, AllowedIPs: allowed, ...(primaries.length ? { PrimaryRoutes: primaries } : {}) };
}

/**
 * How viewer `selfId` gets nodes under `policy`: peers with the routes it may use (and its own prefixes when it
 * serves them too), itself with the routes it may use and all of its exit routes.
 */
function viewerOf(policy: MapPolicy, self: NodeView): { peer: (w: WireNode) => WireNode; self: (w: WireNode) => WireNode } {
  if (!policy) return { peer: (w) => w, self: (w) => w };
  const id = self.record.id;
  const mine = new Set(subnetRoutes(self.record));
  return {
    peer: (w) => withRoutes(w, (r) => mine.has(r) || policy.routeVisible(id, r)),
    self: (w) => withRoutes(w, (r) => isExitRoute(r) || policy.routeVisible(id, r)),
  };
}

/** Whether a node carries routes (its AllowedIPs may differ per viewer and per policy). */
const hasRoutes = (v: NodeView): boolean => (v.primaries?.length ?? 0) > 0 || exitRoutes(v.record).length > 0;

export function userProfile(u: UserRecord): WireUserProfile {
  return { ID: u.id, LoginName: u.name, DisplayName: u.name, ProfilePicURL: '' };
}

/** What one map session has told its client so far; `diffSession` returns the next one. */
export interface SessionView {
  self: WireNode;
  /** Peers by ID, as last sent. */
  peers: Map<number, WireNode>;
  /** User IDs whose profile was sent. */
  users: Set<number>;
  /** The packet filter last sent, as JSON. */
  filter: string;
}

export interface Snapshot {
  nodes: NodeView[];
  users: Map<number, UserRecord>;
}

/** What changed between two snapshots: node ids that are new or differ, and ids that are gone. */
export interface SnapshotChanges {
  changed: ReadonlySet<number>;
  removed: ReadonlySet<number>;
}

/** A node's state as it shows on the wire, as one string: equal strings, equal WireNodes (for any receiver). */
export function nodeFingerprint(v: NodeView, now: number): string {
  return `${JSON.stringify(v.record)}|${v.online ? 1 : 0}|${isExpired(v.record, now) ? 1 : 0}|${(v.primaries ?? []).join(',')}`;
}

/**
 * The delta for one session when only `changes` happened since its view was built, computed over those nodes
 * alone (O(changes) per session, where diffSession is O(all nodes)). `view` is updated in place (the session owns
 * it) and returned with the message; null when nothing reached this client; undefined when its own node is gone.
 * `wire` builds a node for this session's capability version (the caller shares one cache per version).
 *
 * With a policy, `policyMoved` says whether the compiled policy is a new one: then this node's filter is compared
 * with the one it was sent, and, when `recheckAll` (the policy text changed, or this node's own identity did:
 * visibility depends only on the policy and the two nodes), every node's visibility is checked again, not only
 * the changed ones'. A peer that is no longer visible is removed, one that became visible is added whole. Nodes
 * with routes (`routers`) are looked at again whenever the policy moved, since which routes a viewer gets depends
 * on it.
 */
/** Node ids whose wire form carries routes (for diffChanged's `routers`). */
export function routerIds(nodes: Iterable<NodeView>): Set<number> {
  const out = new Set<number>();
  for (const v of nodes) if (hasRoutes(v)) out.add(v.record.id);
  return out;
}

export function diffChanged(
  view: SessionView,
  byId: ReadonlyMap<number, NodeView>,
  users: ReadonlyMap<number, UserRecord>,
  selfId: number,
  changes: SnapshotChanges,
  wire: (v: NodeView) => WireNode,
  now: number,
  policy: MapPolicy = null,
  policyMoved = false,
  recheckAll = false,
  routers: ReadonlySet<number> = new Set(),
): { msg: WireMapResponse; view: SessionView } | null | undefined {
  const selfView = byId.get(selfId);
  if (!selfView) return undefined;
  const msg: WireMapResponse = {};
  const newUsers = new Set<number>();
  const as = viewerOf(policy, selfView);
  if (changes.changed.has(selfId) || (policyMoved && routers.has(selfId))) {
    const self = as.self(wire(selfView));
    if (!same(view.self, self)) {
      msg.Node = self;
      view.self = self;
      if (!view.users.has(self.User)) newUsers.add(self.User);
    }
  }
  if (policyMoved) {
    const filter = filterOf(policy, selfId);
    const text = JSON.stringify(filter);
    if (text !== view.filter) {
      msg.PacketFilters = { base: filter };
      view.filter = text;
    }
  }
  const removed: number[] = [];
  for (const id of changes.removed) if (view.peers.delete(id)) removed.push(id);
  const candidates = recheckAll && policy ? [...byId.keys()] : policyMoved ? [...new Set([...changes.changed, ...routers])] : [...changes.changed];
  const changed: WireNode[] = [];
  const patches: WirePeerChange[] = [];
  for (const id of candidates.sort((a, b) => a - b)) {
    if (id === selfId) continue;
    const v = byId.get(id);
    if (!v) continue;
    const old = view.peers.get(id);
    if (policy && !policy.canSee(selfId, id)) {
      if (old) {
        view.peers.delete(id);
        removed.push(id);
      }
      continue;
    }
    if (old && !changes.changed.has(id) && !(policyMoved && routers.has(id))) continue; // visible before and after, and unchanged
    const p = as.peer(wire(v));
    if (!old) changed.push(p);
    else if (!same(old, p)) {
      const patch = peerPatch(old, p);
      if (patch) patches.push(patch);
      else changed.push(p);
    } else continue;
    if (!view.users.has(p.User)) newUsers.add(p.User);
    view.peers.set(id, p);
  }
  const profiles = [...newUsers].flatMap((id) => {
    const u = users.get(id);
    return u ? [userProfile(u)] : [];
  });
  for (const u of profiles) view.users.add(u.ID);
  if (removed.length) msg.PeersRemoved = removed.sort((a, b) => a - b);
  if (changed.length) msg.PeersChanged = changed;
  if (patches.length) msg.PeersChangedPatch = patches;
  if (profiles.length) msg.UserProfiles = profiles;
  if (Object.keys(msg).length === 0) return null;
  return { msg: { ControlTime: formatGoTime(now), ...msg }, view };
}

/** The full map for node `selfId` (undefined when that node no longer exists), and the session state it sets. */
export function fullMap(snap: Snapshot, selfId: number, cfg: MapperConfig, capver: number, now: number, policy: MapPolicy = null): { msg: WireMapResponse; view: SessionView } | undefined {
  const selfView = snap.nodes.find((n) => n.record.id === selfId);
  if (!selfView) return undefined;
  const as = viewerOf(policy, selfView);
  const self = as.self(wireNode(selfView, cfg, capver, now));
  const peers = new Map<number, WireNode>();
  for (const v of snap.nodes) {
    if (v.record.id === selfId || (policy && !policy.canSee(selfId, v.record.id))) continue;
    peers.set(v.record.id, as.peer(wireNode(v, cfg, capver, now)));
  }
  const userIds = new Set<number>([self.User, ...[...peers.values()].map((p) => p.User)]);
  const profiles = [...userIds].flatMap((id) => {
    const u = snap.users.get(id);
    return u ? [userProfile(u)] : [];
  });
  const sorted = [...peers.values()].sort((a, b) => a.ID - b.ID);
  const filter = filterOf(policy, selfId);
  const msg: WireMapResponse = {
    ControlTime: formatGoTime(now),
    Node: self,
    DERPMap: cfg.derpMap,
    Domain: cfg.domain,
    CollectServices: false,
    Debug: { DisableLogTail: true },
    DNSConfig: cfg.dnsConfig ?? {},
    PacketFilters: { base: filter },
    UserProfiles: profiles,
    ...(sorted.length > 0 ? { Peers: sorted } : {}),
  };
  return { msg, view: { self, peers, users: new Set(profiles.map((p) => p.ID)), filter: JSON.stringify(filter) } };
}

/**
 * The one message an expired or logged-out node gets instead of a map: itself (KeyExpiry in the past, Expired,
 * not MachineAuthorized), no peers and a filter that admits nothing. Tailscale clients learn of their key's
 * expiry only from the self node's KeyExpiry in a map (they then need a login); a refused request would leave
 * them retrying instead. Undefined when the node does not exist.
 */
export function expiredMap(snap: Snapshot, selfId: number, cfg: MapperConfig, capver: number, now: number): WireMapResponse | undefined {
  const m = fullMap(snap, selfId, cfg, capver, now, NOTHING);
  return m && { ...m.msg, DNSConfig: {} };
}

/** A policy that admits nothing and shows no peers (for expiredMap). */
const NOTHING: MapPolicy = { filterFor: () => [], canSee: () => false, routeVisible: () => false };

/** Fields a PeerChange can set; any other difference resends the whole node. */
const PATCHABLE = new Set<keyof WireNode>(['Online', 'LastSeen', 'Endpoints', 'HomeDERP', 'DiscoKey', 'Key', 'KeyExpiry', 'Cap']);

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** A PeerChange taking `prev` to `next`, or null when the difference needs the whole Node. */
export function peerPatch(prev: WireNode, next: WireNode): WirePeerChange | null {
  const keys = new Set([...Object.keys(prev), ...Object.keys(next)] as (keyof WireNode)[]);
  const patch: WirePeerChange = { NodeID: next.ID };
  for (const k of keys) {
    if (same(prev[k], next[k])) continue;
    if (!PATCHABLE.has(k)) return null;
    switch (k) {
      case 'Online':
        patch.Online = next.Online ?? false;
        break;
      case 'LastSeen':
        // Only set, never cleared, by a patch; clearing it (coming online) rides along with Online.
        if (next.LastSeen === undefined) {
          if (next.Online !== true) return null;
        } else patch.LastSeen = next.LastSeen;
        break;
      case 'Endpoints':
        patch.Endpoints = next.Endpoints ?? [];
        break;
      case 'HomeDERP':
        if (!next.HomeDERP) return null; // a PeerChange cannot set it back to 0
        patch.DERPRegion = next.HomeDERP;
        break;
      case 'DiscoKey':
        if (!next.DiscoKey) return null;
        patch.DiscoKey = next.DiscoKey;
        break;
      case 'Key':
        patch.Key = next.Key;
        break;
      case 'KeyExpiry':
        patch.KeyExpiry = next.KeyExpiry ?? ZERO_TIME;
        break;
      case 'Cap':
        patch.Cap = next.Cap;
        break;
      default:
        return null;
    }
  }
  return patch;
}

/**
 * The delta taking a session from `view` to the current snapshot: null when nothing changed, `undefined` when
 * the session's own node is gone (the caller ends the stream).
 */
export function diffSession(view: SessionView, snap: Snapshot, selfId: number, cfg: MapperConfig, capver: number, now: number, policy: MapPolicy = null): { msg: WireMapResponse; view: SessionView } | null | undefined {
  const next = fullMap(snap, selfId, cfg, capver, now, policy);
  if (!next) return undefined;
  const msg: WireMapResponse = {};
  if (!same(view.self, next.view.self)) msg.Node = next.view.self;
  if (view.filter !== next.view.filter) msg.PacketFilters = next.msg.PacketFilters!;
  const removed = [...view.peers.keys()].filter((id) => !next.view.peers.has(id)).sort((a, b) => a - b);
  const changed: WireNode[] = [];
  const patches: WirePeerChange[] = [];
  for (const [id, p] of [...next.view.peers].sort((a, b) => a[0] - b[0])) {
    const old = view.peers.get(id);
    if (!old) changed.push(p);
    else if (!same(old, p)) {
      const patch = peerPatch(old, p);
      if (patch) patches.push(patch);
      else changed.push(p);
    }
  }
  const newUsers = (next.msg.UserProfiles ?? []).filter((u) => !view.users.has(u.ID));
  if (removed.length) msg.PeersRemoved = removed;
  if (changed.length) msg.PeersChanged = changed;
  if (patches.length) msg.PeersChangedPatch = patches;
  if (newUsers.length) msg.UserProfiles = newUsers;
  if (Object.keys(msg).length === 0) return null;
  return { msg: { ControlTime: formatGoTime(now), ...msg }, view: { ...next.view, users: new Set([...view.users, ...next.view.users]) } };
}
