/**
 * Subnet routes and exit nodes in `weft server`, as headscale 0.29.2 handles them (hscontrol/types/node.go
 * SubnetRoutes/ExitRoutes, state/node_store.go electPrimaryRoutes, grpcv1.go SetApprovedRoutes). Pure.
 *
 *   announced   Hostinfo.RoutableIPs: what the node offers (tailscale up --advertise-routes / --advertise-exit-node)
 *   approved    what an admin (`nodes approve-routes`) or the policy's autoApprovers allowed; may list routes the
 *               node does not announce
 *   subnet      announced ∩ approved, matched exactly, without the /0s: what the node may serve
 *   exit        the /0s both announced and approved: every viewer gets them (no election)
 *   primary     per subnet prefix, one online node serving it: the current primary while it stays online and
 *               healthy, otherwise the lowest healthy node id among the online candidates (a router that comes back
 *               does not take it back); healthy: answering the HA prober's pings (control/map-streams.ts)
 *
 * Prefixes are kept as canonical text ("192.168.1.0/24", "fd00:1::/64"); a prefix with host bits set is not a
 * route (tailscaled never announces one, and headscale's exact matching would never use it).
 */
import { fromBig, parseRange, type Family } from '../policy/ipset.ts';

export const EXIT_ROUTES: readonly string[] = ['0.0.0.0/0', '::/0'];

/** At most this many announced routes per node are considered (Hostinfo is capped in size anyway). */
export const MAX_ANNOUNCED_ROUTES = 256;

export const isExitRoute = (p: string): boolean => p === '0.0.0.0/0' || p === '::/0';

export interface Prefix {
  text: string;
  family: Family;
  /** The network address as an integer. */
  addr: bigint;
  bits: number;
}

/** Parses a masked prefix "IP/bits" into its canonical form, or null (not a prefix, or host bits set). */
export function parsePrefix(text: string): Prefix | null {
  if (typeof text !== 'string' || text.length > 64) return null;
  const slash = text.indexOf('/');
  const r = slash > 0 ? parseRange(text) : null;
  if (!r) return null;
  const bits = Number(text.slice(slash + 1));
  return { text: `${fromBig(r.first, r.family)}/${bits}`, family: r.family, addr: r.first, bits };
}

/**
 * Orders prefixes as Go's netip.Prefix.Compare (headscale sorts AllowedIPs with it): IPv4 before IPv6, then by
 * network address, then by length. Unparsable entries keep their place at the end.
 */
export function sortPrefixes(list: readonly string[]): string[] {
  const parsed = list.map((t) => ({ t, p: parsePrefix(t) }));
  return parsed
    .sort((x, y) => {
      if (!x.p || !y.p) return (x.p ? 0 : 1) - (y.p ? 0 : 1);
      if (x.p.family !== y.p.family) return x.p.family - y.p.family;
      if (x.p.addr !== y.p.addr) return x.p.addr < y.p.addr ? -1 : 1;
      return x.p.bits - y.p.bits;
    })
    .map((x) => x.t);
}

const announcedCache = new Map<string, readonly string[]>();
const ANNOUNCED_CACHE_MAX = 4096;

/** The routes a stored Hostinfo (JSON text) announces: its RoutableIPs that are masked prefixes, each once. */
export function announcedRoutes(hostinfo: string | null): readonly string[] {
  if (!hostinfo) return [];
  const hit = announcedCache.get(hostinfo);
  if (hit) return hit;
  let out: string[] = [];
  try {
    const h = JSON.parse(hostinfo) as unknown;
    const list = h && typeof h === 'object' ? (h as Record<string, unknown>)['RoutableIPs'] : undefined;
    if (Array.isArray(list)) {
      const seen = new Set<string>();
      for (const x of list.slice(0, MAX_ANNOUNCED_ROUTES)) {
        const p = typeof x === 'string' ? parsePrefix(x) : null;
        if (p && !seen.has(p.text)) {
          seen.add(p.text);
          out.push(p.text);
        }
      }
    }
  } catch {
    out = [];
  }
  if (announcedCache.size >= ANNOUNCED_CACHE_MAX) announcedCache.clear();
  announcedCache.set(hostinfo, out);
  return out;
}

/** What a node's routes need from its record. */
export interface RouteSource {
  hostinfo: string | null;
  approvedRoutes: readonly string[];
}

/** announced ∩ approved, non-exit: the subnet routes a node may serve (headscale's SubnetRoutes). */
export function subnetRoutes(n: RouteSource): string[] {
  if (n.approvedRoutes.length === 0) return [];
  const approved = new Set(n.approvedRoutes);
  return announcedRoutes(n.hostinfo).filter((r) => !isExitRoute(r) && approved.has(r));
}

/** The /0s both announced and approved (headscale's ExitRoutes); a node with any is an exit node. */
export function exitRoutes(n: RouteSource): string[] {
  if (n.approvedRoutes.length === 0) return [];
  const approved = new Set(n.approvedRoutes);
  return announcedRoutes(n.hostinfo).filter((r) => isExitRoute(r) && approved.has(r));
}

/**
 * Elects the primary node per subnet prefix among `candidates` (the online nodes, each with its subnet routes), as
 * headscale 0.29.2's electPrimaryRoutes does with its HA prober's verdicts (`unhealthy`): the previous primary
 * while it is still a healthy candidate, otherwise the lowest healthy node id. When every candidate is unhealthy
 * the previous primary stays if it is still a candidate (a worse choice would be no better), else the prefix has
 * no primary. Prefixes nobody serves drop out.
 */
export function electPrimaries(
  prev: ReadonlyMap<string, number>,
  candidates: readonly { id: number; routes: readonly string[] }[],
  unhealthy: ReadonlySet<number> = new Set(),
): Map<string, number> {
  const out = new Map<string, number>();
  for (const [prefix, ids] of candidatesByPrefix(candidates)) {
    const was = prev.get(prefix);
    const healthy = ids.filter((id) => !unhealthy.has(id));
    if (was !== undefined && healthy.includes(was)) out.set(prefix, was);
    else if (healthy.length > 0) out.set(prefix, Math.min(...healthy));
    else if (was !== undefined && ids.includes(was)) out.set(prefix, was);
  }
  return out;
}

/** Subnet prefix → the candidates serving it, in prefix order. */
function candidatesByPrefix(candidates: readonly { id: number; routes: readonly string[] }[]): [string, number[]][] {
  const byPrefix = new Map<string, number[]>();
  for (const c of candidates) {
    for (const r of c.routes) {
      const l = byPrefix.get(r);
      if (l) l.push(c.id);
      else byPrefix.set(r, [c.id]);
    }
  }
  return [...byPrefix].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/**
 * The nodes the HA prober watches: those sharing a subnet prefix with at least one other candidate (headscale
 * 0.29.2 NodeStore.HANodes), in id order. A prefix with a single router has nobody to fail over to.
 */
export function haNodes(candidates: readonly { id: number; routes: readonly string[] }[]): number[] {
  const out = new Set<number>();
  for (const [, ids] of candidatesByPrefix(candidates)) if (ids.length > 1) for (const id of ids) out.add(id);
  return [...out].sort((a, b) => a - b);
}

/** The prefixes each node is primary for, sorted (nodes without any are absent). */
export function primariesByNode(primaries: ReadonlyMap<string, number>): Map<number, string[]> {
  const out = new Map<number, string[]>();
  for (const [prefix, id] of primaries) {
    const l = out.get(id);
    if (l) l.push(prefix);
    else out.set(id, [prefix]);
  }
  for (const [id, l] of out) out.set(id, sortPrefixes(l));
  return out;
}

/**
 * The approved set `nodes approve-routes --routes` asks for: each prefix canonical, either /0 bringing the other
 * (as headscale's SetApprovedRoutes does), sorted, each once. An empty list clears every approval.
 */
export function approvalList(list: readonly string[]): { routes: string[] } | { error: string } {
  const out = new Set<string>();
  for (const raw of list) {
    const t = raw.trim();
    if (t === '') continue;
    const p = parsePrefix(t);
    if (!p) return { error: `"${t}" is not a route: write a prefix with its host bits zero, e.g. 192.168.1.0/24` };
    if (isExitRoute(p.text)) for (const e of EXIT_ROUTES) out.add(e);
    else out.add(p.text);
  }
  return { routes: sortPrefixes([...out]) };
}
