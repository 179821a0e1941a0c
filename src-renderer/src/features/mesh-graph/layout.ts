/**
 * The mesh graph's layout: this device fixed in the centre, one relay node per relay region in use on a ring around
 * it, direct peers on an inner ring, relayed peers clustered behind their relay, connecting and offline peers
 * further out. Computed with d3-force synchronously for a fixed number of ticks (no animation timer, no per-frame
 * React render); the caller memoises it on `layoutKey` (structure only: ids, kinds, regions) and passes the previous
 * positions back in, so a change moves nodes a little instead of reshuffling the whole graph.
 *
 * Deterministic: d3-force seeds its own random source, and initial positions are derived from the input order.
 */
import {
  forceCollide,
  forceLink,
  forceRadial,
  forceSimulation,
  type SimulationLinkDatum,
  type SimulationNodeDatum,
} from 'd3-force';

export type GraphLinkKind = 'direct' | 'relay' | 'connecting' | 'offline';

export interface LayoutPeer {
  id: string;
  kind: GraphLinkKind;
  /** The relay region for kind 'relay', else null. */
  region: number | null;
}

export interface Point {
  x: number;
  y: number;
}

export interface MeshLayout {
  /** Positions by node id: SELF_ID, relayNodeId(region), and peer ids. */
  positions: ReadonlyMap<string, Point>;
  /** Relay regions that have a node, in ring order. */
  relays: readonly number[];
  /** Half the side of a square (centred on this device) that holds every node with a margin. */
  extent: number;
}

export const SELF_ID = '\u0000self';
export const relayNodeId = (region: number): string => `\u0000relay:${region}`;

/** Ticks for a fresh layout, and for one seeded with the previous positions (which starts near equilibrium). */
export const FRESH_TICKS = 160;
export const WARM_TICKS = 60;

/** The structure the layout depends on; latency and counters are deliberately not part of it. */
export function layoutKey(peers: readonly LayoutPeer[]): string {
  return peers.map((p) => `${p.id}\u0001${p.kind}\u0001${p.region ?? ''}`).join('\u0002');
}

interface Node extends SimulationNodeDatum {
  id: string;
  kind: GraphLinkKind | 'self' | 'relay';
  ring: number;
}

interface Radii {
  direct: number;
  relay: number;
  relayed: number;
  connecting: number;
  offline: number;
}

function radii(peers: readonly LayoutPeer[]): Radii {
  let direct = 0;
  let relayed = 0;
  let other = 0;
  for (const p of peers) {
    if (p.kind === 'direct') direct++;
    else if (p.kind === 'relay') relayed++;
    else other++;
  }
  // A ring's band grows with the square root of its population, so 250 peers stay readable.
  const d = 110 + 9 * Math.sqrt(direct);
  const r = d + 70 + 3 * Math.sqrt(relayed);
  const rp = r + 55 + 5 * Math.sqrt(relayed);
  const c = Math.max(rp, r + 40) + 60 + 6 * Math.sqrt(other);
  return { direct: d, relay: r, relayed: rp, connecting: c, offline: c + 60 };
}

/** Computes the layout for `peers`, starting from `previous` positions where a node already had one. */
export function computeLayout(peers: readonly LayoutPeer[], previous?: ReadonlyMap<string, Point>): MeshLayout {
  const R = radii(peers);
  const relays = [...new Set(peers.filter((p) => p.kind === 'relay' && p.region !== null).map((p) => p.region!))].sort((a, b) => a - b);
  const relayAngle = new Map(relays.map((r, i) => [r, -Math.PI / 2 + (2 * Math.PI * i) / relays.length]));

  const nodes: Node[] = [{ id: SELF_ID, kind: 'self', ring: 0, x: 0, y: 0, fx: 0, fy: 0 }];
  for (const r of relays) {
    const a = relayAngle.get(r)!;
    const x = R.relay * Math.cos(a);
    const y = R.relay * Math.sin(a);
    nodes.push({ id: relayNodeId(r), kind: 'relay', ring: R.relay, x, y, fx: x, fy: y });
  }

  const links: SimulationLinkDatum<Node>[] = [];
  const golden = Math.PI * (3 - Math.sqrt(5));
  let warm = 0;
  peers.forEach((p, i) => {
    const ring = p.kind === 'direct' ? R.direct : p.kind === 'relay' ? R.relayed : p.kind === 'connecting' ? R.connecting : R.offline;
    const prev = previous?.get(p.id);
    let x: number;
    let y: number;
    if (prev) {
      warm++;
      x = prev.x;
      y = prev.y;
    } else if (p.kind === 'relay' && p.region !== null) {
      const a = relayAngle.get(p.region)! + ((i % 7) - 3) * 0.06;
      x = ring * Math.cos(a);
      y = ring * Math.sin(a);
    } else {
      const a = i * golden;
      x = ring * Math.cos(a);
      y = ring * Math.sin(a);
    }
    nodes.push({ id: p.id, kind: p.kind, ring, x, y });
    if (p.kind === 'relay' && p.region !== null) links.push({ source: p.id, target: relayNodeId(p.region) });
  });

  const sim = forceSimulation<Node>(nodes)
    .stop()
    // No many-body charge: the rings (radial) and collision already spread nodes, and charge was the main cost.
    .force('collide', forceCollide<Node>((n) => (n.kind === 'self' ? 30 : n.kind === 'relay' ? 22 : 10)))
    .force('ring', forceRadial<Node>((n) => n.ring).strength((n) => (n.kind === 'relay' ? 0.08 : n.kind === 'self' ? 0 : 0.55)))
    .force(
      'relay',
      forceLink<Node, SimulationLinkDatum<Node>>(links)
        .id((n) => n.id)
        .distance(() => 45 + 2 * Math.sqrt(links.length))
        .strength(0.6),
    );

  const isWarm = peers.length > 0 && warm >= peers.length * 0.5;
  const ticks = isWarm ? WARM_TICKS : FRESH_TICKS;
  sim.alpha(isWarm ? 0.35 : 1);
  sim.alphaDecay(1 - Math.pow(0.001, 1 / ticks));
  sim.tick(ticks);

  const positions = new Map<string, Point>();
  let extent = 60;
  for (const n of nodes) {
    const x = round(n.x ?? 0);
    const y = round(n.y ?? 0);
    positions.set(n.id, { x, y });
    extent = Math.max(extent, Math.abs(x), Math.abs(y));
  }
  return { positions, relays, extent: extent + 48 };
}

function round(v: number): number {
  return Math.round(v * 10) / 10;
}
