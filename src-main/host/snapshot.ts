/**
 * The UI's view of the mesh, built from the engine's StatusReport, and the changes between two views. Pure.
 *
 *   engine.status() ──toSnapshot──▶ MeshSnapshot ──diffSnapshots(prev, next)──▶ MeshDelta   (structure: ≤ 4/s)
 *                                                └─statsChanges(sent, next)──▶ PeerStats[] (counters: ≤ 4/s)
 *
 * A peer counts as changed for a delta only when something other than its counters changed: bytes, the last
 * handshake and a direct path's latency move all the time and travel as `mesh:stats` instead, so a busy link
 * does not re-send the whole peer several times a second.
 */
import type { DerpMap } from '../../src-shared/model/derp-map.ts';
import type { DerpRegionView, MeshDelta, MeshSnapshot, PeerStats, PeerView } from '../../src-shared/model/mesh.ts';
import type { NetcheckReport } from '../../src-shared/model/netcheck.ts';
import type { StatusReport } from '../../src-shared/model/status.ts';

export const EMPTY_SNAPSHOT: MeshSnapshot = { control: null, self: null, peers: [], regions: [], netcheck: null, tailnet: null };

export interface SnapshotInputs {
  /** The engine's report; null when no engine runs. */
  report: StatusReport | null;
  derpMap: DerpMap | null;
  /** This node's home DERP region as control knows it (netmap self HomeDERP), null when none. */
  selfHomeRegion: number | null;
  /** A peer's OS from its Hostinfo, by peer id. */
  peerOs: (id: string) => string | null;
  netcheck: NetcheckReport | null;
  /** Shown as the control view when no engine runs because the last start failed. */
  failure: { url: string; message: string } | null;
}

/** The DERP regions of a map, by id. */
export function regionsOf(dm: DerpMap | null): DerpRegionView[] {
  if (!dm) return [];
  return Object.values(dm.Regions)
    .map((r) => ({ id: r.RegionID, code: r.RegionCode, name: r.RegionName || r.RegionCode }))
    .sort((a, b) => a.id - b.id);
}

export function toSnapshot(inp: SnapshotInputs): MeshSnapshot {
  const r = inp.report;
  if (!r) {
    return {
      ...EMPTY_SNAPSHOT,
      control: inp.failure ? { state: 'error', url: inp.failure.url, error: inp.failure.message, authUrl: null } : null,
      netcheck: inp.netcheck,
    };
  }
  const peers: PeerView[] = r.peers.map((p) => ({
    id: p.id,
    name: p.name,
    fqdn: p.fqdn || p.name,
    nodeKey: p.nodeKey,
    addresses: ipv4First(p.addresses),
    os: inp.peerOs(p.id),
    online: p.online,
    lastSeen: p.lastSeen,
    keyExpiry: p.keyExpiry,
    homeRegion: p.homeRegion,
    endpoints: p.endpoints,
    path: p.path,
    lastHandshake: p.lastHandshake,
    rxBytes: Math.max(0, p.rxBytes),
    txBytes: Math.max(0, p.txBytes),
    netInfo: p.netInfo,
    disco: p.disco,
    routes: p.primaryRoutes,
    exitNode: p.exitNode,
  }));
  return {
    control: { state: r.control.state, url: r.control.url, error: r.control.error, authUrl: r.control.authUrl },
    self: r.self ? { name: r.self.name, fqdn: r.self.fqdn || r.self.name, nodeKey: r.self.nodeKey, addresses: ipv4First(r.self.addresses), keyExpiry: r.self.keyExpiry, homeRegion: inp.selfHomeRegion } : null,
    peers,
    regions: regionsOf(inp.derpMap),
    netcheck: inp.netcheck,
    tailnet: r.tailnet,
  };
}

function ipv4First(addrs: readonly string[]): string[] {
  return [...addrs.filter((a) => !a.includes(':')), ...addrs.filter((a) => a.includes(':'))];
}

/** A peer without its fast-moving counters: what decides whether it goes into a delta. */
function structuralKey(p: PeerView): string {
  const path = p.path.kind === 'direct' ? { kind: 'direct', endpoint: p.path.endpoint } : p.path;
  return JSON.stringify({ ...p, rxBytes: 0, txBytes: 0, lastHandshake: null, path });
}

const same = (a: unknown, b: unknown): boolean => a === b || JSON.stringify(a) === JSON.stringify(b);

/** The delta that turns `prev` into `next` (up to counters), or null when nothing but counters changed. */
export function diffSnapshots(prev: MeshSnapshot, next: MeshSnapshot): MeshDelta | null {
  const d: MeshDelta = {};
  if (!same(prev.control, next.control)) d.control = next.control;
  if (!same(prev.self, next.self)) d.self = next.self;
  if (!same(prev.regions, next.regions)) d.regions = next.regions;
  if (prev.netcheck !== next.netcheck && !same(prev.netcheck, next.netcheck)) d.netcheck = next.netcheck;
  if (prev.tailnet !== next.tailnet && !same(prev.tailnet, next.tailnet)) d.tailnet = next.tailnet;
  const before = new Map(prev.peers.map((p) => [p.id, structuralKey(p)]));
  const upsert = next.peers.filter((p) => before.get(p.id) !== structuralKey(p));
  const now = new Set(next.peers.map((p) => p.id));
  const removed = prev.peers.filter((p) => !now.has(p.id)).map((p) => p.id);
  if (upsert.length > 0) d.upsertPeers = upsert;
  if (removed.length > 0) d.removePeers = removed;
  return Object.keys(d).length > 0 ? d : null;
}

export function statsOf(p: PeerView): PeerStats {
  return { id: p.id, rxBytes: p.rxBytes, txBytes: p.txBytes, latencyMs: p.path.kind === 'direct' ? Math.max(0, p.path.latencyMs) : null, lastHandshake: p.lastHandshake };
}

/** The counters in `next` that differ from what the UI last received (`sent`, by peer id). */
export function statsChanges(sent: ReadonlyMap<string, PeerStats>, next: MeshSnapshot): PeerStats[] {
  return next.peers.map(statsOf).filter((s) => !same(sent.get(s.id), s));
}
