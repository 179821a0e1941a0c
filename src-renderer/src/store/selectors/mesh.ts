/**
 * Pure selectors over the mesh: peers grouped by link kind, counts, the list's search/filter, one peer's link
 * (verdict + explanation), and whether the join screen should show. Factories (`filteredPeers(search, filters)`,
 * `linkFor(id)`) return memoised selectors; create them once per component (useMemo) and pass them to useWeft.
 */
import { explainLink, linkVerdict, type LinkExplanation, type LinkVerdict } from '../../../../src-shared/explain/why-relayed.ts';
import type { DerpRegionView, MeshSnapshot, PeerView } from '../../../../src-shared/model/mesh.ts';
import type { NetcheckReport } from '../../../../src-shared/model/netcheck.ts';
import type { PeerFilters } from '../slices/ui.ts';
import type { WeftState } from '../state.ts';
import { memo1, memo2 } from './memo.ts';

export type LinkKind = 'direct' | 'relay' | 'connecting' | 'offline';

/** The graph's link kind for a verdict (the test hooks say `relay`, the explainer says `relayed`). */
export function linkKindOf(peer: Pick<PeerView, 'path' | 'online'>): LinkKind {
  const v: LinkVerdict = linkVerdict(peer);
  return v === 'relayed' ? 'relay' : v;
}

export const selectSnapshot = (s: WeftState): MeshSnapshot => s.snapshot;
export const selectPeers = (s: WeftState): readonly PeerView[] => s.snapshot.peers;
export const selectNetcheck = (s: WeftState): NetcheckReport | null => s.snapshot.netcheck;

export type PeersByPath = Readonly<Record<LinkKind, readonly PeerView[]>>;

export function groupPeersByPath(peers: readonly PeerView[]): PeersByPath {
  const out: Record<LinkKind, PeerView[]> = { direct: [], relay: [], connecting: [], offline: [] };
  for (const p of peers) out[linkKindOf(p)].push(p);
  return out;
}

export const peersByPath: (s: WeftState) => PeersByPath = memo1(selectPeers, groupPeersByPath);

export const relayedCount = (s: WeftState): number => countKind(s.snapshot.peers, 'relay');
export const directCount = (s: WeftState): number => countKind(s.snapshot.peers, 'direct');
export const onlineCount = (s: WeftState): number => s.snapshot.peers.filter(isOnline).length;

function countKind(peers: readonly PeerView[], kind: LinkKind): number {
  let n = 0;
  for (const p of peers) if (linkKindOf(p) === kind) n++;
  return n;
}

/** Reports whether a peer counts as online for the filter: control says so, or we have a live path to it. */
export function isOnline(p: PeerView): boolean {
  const k = linkKindOf(p);
  return k === 'direct' || k === 'relay' || (p.online === true && k !== 'offline');
}

/**
 * The peer list's rows: every search word must match the name, the DNS name, an address, the OS or the endpoint text; filters
 * combine as online AND (direct OR relayed when either is set).
 */
export function filterPeers(peers: readonly PeerView[], search: string, filters: PeerFilters): PeerView[] {
  const words = search.toLowerCase().split(/\s+/).filter((w) => w.length > 0);
  return peers.filter((p) => {
    if (filters.online && !isOnline(p)) return false;
    if (filters.direct || filters.relayed) {
      const k = linkKindOf(p);
      if (!((filters.direct && k === 'direct') || (filters.relayed && k === 'relay'))) return false;
    }
    if (words.length === 0) return true;
    const hay = [p.name, p.fqdn, ...p.addresses, p.os ?? '', ...p.endpoints].join(' ').toLowerCase();
    return words.every((w) => hay.includes(w));
  });
}

export function filteredPeers(search: string, filters: PeerFilters): (s: WeftState) => PeerView[] {
  return memo1(selectPeers, (peers) => filterPeers(peers, search, filters));
}

export const selectPeerById = (id: string | null) => (s: WeftState): PeerView | null =>
  id === null ? null : (s.snapshot.peers.find((p) => p.id === id) ?? null);

export interface LinkInfo {
  peer: PeerView;
  kind: LinkKind;
  explanation: LinkExplanation;
  /** Relay region name for relayed links, e.g. "Frankfurt (fra)". */
  regionName: string | null;
}

/** One peer's link with its explanation; null when no such peer. */
export function linkFor(id: string | null): (s: WeftState) => LinkInfo | null {
  const peerSel = selectPeerById(id);
  const withRegions = memo2(peerSel, (s: WeftState) => s.snapshot.regions, (peer, regions) => ({ peer, regions }));
  return memo2(withRegions, selectNetcheck, ({ peer, regions }, netcheck) => {
    if (!peer) return null;
    const kind = linkKindOf(peer);
    const region = peer.path.kind === 'relay' ? peer.path.region : null;
    const r = region === null ? undefined : regions.find((x) => x.id === region);
    return {
      peer,
      kind,
      explanation: explainLink(netcheck, peer, { regionName: (id) => regions.find((x) => x.id === id)?.name }),
      regionName: region === null ? null : r ? `${r.name} (${r.code})` : `region ${region}`,
    };
  });
}

/** The region's display name, falling back to its number. */
export function regionLabel(regions: readonly DerpRegionView[], id: number): string {
  const r = regions.find((x) => x.id === id);
  return r ? r.name : `region ${id}`;
}

/**
 * Whether the join screen shows instead of the app: no network joined; a join under way, failed, or just
 * connected (held briefly to show it) from here; the user asked for it; or control needs a login / failed before
 * ever connecting.
 */
export function showJoinScreen(s: WeftState): boolean {
  const c = s.snapshot.control;
  if (!s.meshLoaded) return false;
  if (c === null) return true;
  if (s.joinRequested || s.join.active) return true;
  return (c.state === 'needs-login' || c.state === 'error') && !s.everConnected;
}
