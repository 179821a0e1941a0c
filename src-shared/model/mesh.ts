/**
 * What the UI shows: one snapshot of the mesh (this device, its NAT report, every peer with its link and the facts
 * that explain it), and the deltas that keep it current. Built by the main process from the engine's status; the
 * same shapes travel over Electron IPC and over the dev bridge's WebSocket.
 */
import { z } from 'zod';
import { NetcheckReport } from './netcheck.ts';
import { TailnetStatus } from './tailnet.ts';
import { ControlState, DiscoStats, PeerNetInfo, PeerPath } from './status.ts';

export { DiscoStats, PeerNetInfo };

export const PeerView = z.object({
  id: z.string(),
  name: z.string(),
  /** The MagicDNS name ("nas.tailnet.example.com"), without the trailing dot. */
  fqdn: z.string(),
  nodeKey: z.string(),
  /** Tailnet addresses without prefix length, IPv4 first. */
  addresses: z.array(z.string()),
  os: z.string().nullable(),
  online: z.boolean().nullable(),
  lastSeen: z.string().nullable(),
  keyExpiry: z.string().nullable(),
  homeRegion: z.number().nullable(),
  endpoints: z.array(z.string()),
  path: PeerPath,
  lastHandshake: z.string().nullable(),
  rxBytes: z.number().nonnegative(),
  txBytes: z.number().nonnegative(),
  netInfo: PeerNetInfo.nullable(),
  disco: DiscoStats.nullable(),
  /** Subnet routes the peer offers, and whether it offers an exit node. */
  routes: z.array(z.string()),
  exitNode: z.boolean(),
});
export type PeerView = z.infer<typeof PeerView>;

export const SelfView = z.object({
  name: z.string(),
  fqdn: z.string(),
  nodeKey: z.string(),
  addresses: z.array(z.string()),
  keyExpiry: z.string().nullable(),
  /** Home DERP region id, null when none. */
  homeRegion: z.number().nullable(),
});
export type SelfView = z.infer<typeof SelfView>;

export const DerpRegionView = z.object({ id: z.number(), code: z.string(), name: z.string() });
export type DerpRegionView = z.infer<typeof DerpRegionView>;

export const ControlView = z.object({
  state: ControlState,
  url: z.string(),
  error: z.string().nullable(),
  authUrl: z.string().nullable(),
});
export type ControlView = z.infer<typeof ControlView>;

export const MeshSnapshot = z.object({
  /** null while no network is joined (fresh install, or after disconnect). */
  control: ControlView.nullable(),
  self: SelfView.nullable(),
  peers: z.array(PeerView),
  regions: z.array(DerpRegionView),
  /** The latest NAT report (from the engine's netcheck), null until one ran. */
  netcheck: NetcheckReport.nullable(),
  /** The filter, routes, MagicDNS and effective access as the engine enforces them; null without an engine. */
  tailnet: TailnetStatus.nullable(),
});
export type MeshSnapshot = z.infer<typeof MeshSnapshot>;

/** A change to the snapshot: every field present replaces the old value; peers are upserted by id. */
export const MeshDelta = z.object({
  control: ControlView.nullable().optional(),
  self: SelfView.nullable().optional(),
  upsertPeers: z.array(PeerView).optional(),
  removePeers: z.array(z.string()).optional(),
  regions: z.array(DerpRegionView).optional(),
  netcheck: NetcheckReport.nullable().optional(),
  tailnet: TailnetStatus.nullable().optional(),
});
export type MeshDelta = z.infer<typeof MeshDelta>;

/** High-rate counters, coalesced by the main process to a few updates per second. */
export const PeerStats = z.object({
  id: z.string(),
  rxBytes: z.number().nonnegative(),
  txBytes: z.number().nonnegative(),
  latencyMs: z.number().nonnegative().nullable(),
  lastHandshake: z.string().nullable(),
});
export type PeerStats = z.infer<typeof PeerStats>;

/** Applies a delta to a snapshot (pure). Peers keep their order; new ones are appended. */
export function applyMeshDelta(s: MeshSnapshot, d: MeshDelta): MeshSnapshot {
  let peers = s.peers;
  if (d.removePeers?.length) {
    const gone = new Set(d.removePeers);
    peers = peers.filter((p) => !gone.has(p.id));
  }
  if (d.upsertPeers?.length) {
    const byId = new Map(d.upsertPeers.map((p) => [p.id, p]));
    peers = peers.map((p) => byId.get(p.id) ?? p);
    const known = new Set(peers.map((p) => p.id));
    peers = [...peers, ...d.upsertPeers.filter((p) => !known.has(p.id))];
  }
  return {
    control: d.control !== undefined ? d.control : s.control,
    self: d.self !== undefined ? d.self : s.self,
    peers,
    regions: d.regions ?? s.regions,
    netcheck: d.netcheck !== undefined ? d.netcheck : s.netcheck,
    tailnet: d.tailnet !== undefined ? d.tailnet : s.tailnet,
  };
}
