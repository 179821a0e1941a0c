/**
 * Mesh slice: the MeshSnapshot as last known (snapshot once, then `mesh:delta`s applied with the shared
 * `applyMeshDelta`), the latest per-peer counters from `mesh:stats`, and a bounded latency history per peer for the
 * detail sparkline. Everything is replaced, never mutated, so selectors can memoise on references.
 */
import type { StateCreator } from 'zustand/vanilla';
import { applyMeshDelta, type MeshDelta, type MeshSnapshot, type PeerStats } from '../../../../src-shared/model/mesh.ts';
import type { NetcheckReport } from '../../../../src-shared/model/netcheck.ts';
import type { WeftState } from '../state.ts';

/** Samples kept per peer: at ~4 Hz from main that is the last 30 s; enough for a sparkline, small for 250 peers. */
export const LATENCY_HISTORY_MAX = 120;

export interface LatencySample {
  /** ms since the epoch, as passed in by the caller (the store reads no clock). */
  at: number;
  /** null when the peer had no direct latency at that moment (relayed or down). */
  ms: number | null;
}

export const EMPTY_SNAPSHOT: MeshSnapshot = { control: null, self: null, peers: [], regions: [], netcheck: null, tailnet: null };

export interface MeshSlice {
  snapshot: MeshSnapshot;
  /** Whether a full snapshot has arrived; deltas before it are dropped (the snapshot already contains them). */
  meshLoaded: boolean;
  /** Whether control has been seen connected since the last time no network was joined. */
  everConnected: boolean;
  /** Latest counters per peer id (from `mesh:stats`). */
  liveStats: Readonly<Record<string, PeerStats>>;
  latencyHistory: Readonly<Record<string, readonly LatencySample[]>>;
  setSnapshot(snapshot: MeshSnapshot): void;
  applyDelta(delta: MeshDelta): void;
  applyStats(stats: readonly PeerStats[], at: number): void;
  setNetcheck(report: NetcheckReport): void;
}

export const createMeshSlice: StateCreator<WeftState, [], [], MeshSlice> = (set, get) => ({
  snapshot: EMPTY_SNAPSHOT,
  meshLoaded: false,
  everConnected: false,
  liveStats: {},
  latencyHistory: {},

  setSnapshot(snapshot) {
    set((s) => ({
      snapshot,
      meshLoaded: true,
      everConnected: nextEverConnected(s.everConnected, snapshot),
      ...pruneStats(s, snapshot),
    }));
  },

  applyDelta(delta) {
    if (!get().meshLoaded) return;
    set((s) => {
      const snapshot = applyMeshDelta(s.snapshot, delta);
      const pruned = delta.removePeers?.length ? pruneStats(s, snapshot) : {};
      return { snapshot, everConnected: nextEverConnected(s.everConnected, snapshot), ...pruned };
    });
  },

  applyStats(stats, at) {
    if (stats.length === 0) return;
    set((s) => {
      const liveStats = { ...s.liveStats };
      const latencyHistory = { ...s.latencyHistory };
      for (const st of stats) {
        liveStats[st.id] = st;
        const prev = latencyHistory[st.id] ?? [];
        const next = prev.length >= LATENCY_HISTORY_MAX ? prev.slice(prev.length - LATENCY_HISTORY_MAX + 1) : prev.slice();
        next.push({ at, ms: st.latencyMs });
        latencyHistory[st.id] = next;
      }
      return { liveStats, latencyHistory };
    });
  },

  setNetcheck(report) {
    set((s) => ({ snapshot: { ...s.snapshot, netcheck: report } }));
  },
});

function nextEverConnected(prev: boolean, s: MeshSnapshot): boolean {
  if (s.control === null) return false;
  return prev || s.control.state === 'connected';
}

/** Drops counters and history of peers that left (once the snapshot knows its peers). */
function pruneStats(s: WeftState, snapshot: MeshSnapshot): Pick<MeshSlice, 'liveStats' | 'latencyHistory'> {
  const ids = new Set(snapshot.peers.map((p) => p.id));
  const keep = <T>(r: Readonly<Record<string, T>>): Record<string, T> =>
    Object.fromEntries(Object.entries(r).filter(([id]) => ids.has(id)));
  return { liveStats: keep(s.liveStats), latencyHistory: keep(s.latencyHistory) };
}
