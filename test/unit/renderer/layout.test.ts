/** The mesh graph's force layout: structure, stability, and speed with 250 peers. */
import { describe, expect, it } from 'vitest';
import { computeLayout, layoutKey, relayNodeId, SELF_ID, type LayoutPeer } from '../../../src-renderer/src/features/mesh-graph/layout.ts';

function mesh(n: number): LayoutPeer[] {
  const kinds = ['direct', 'direct', 'relay', 'connecting', 'offline'] as const;
  return Array.from({ length: n }, (_, i) => {
    const kind = kinds[i % kinds.length]!;
    return { id: `p${i}`, kind, region: kind === 'relay' ? (i % 3) + 1 : null };
  });
}

const dist = (p: { x: number; y: number }) => Math.hypot(p.x, p.y);

describe('computeLayout', () => {
  it('places this device at the centre, one node per relay region in use, and every peer', () => {
    const peers = mesh(30);
    const l = computeLayout(peers);
    expect(l.positions.get(SELF_ID)).toEqual({ x: 0, y: 0 });
    expect(l.relays).toEqual([1, 2, 3]);
    for (const r of l.relays) expect(l.positions.has(relayNodeId(r))).toBe(true);
    for (const p of peers) expect(l.positions.has(p.id)).toBe(true);
    for (const p of l.positions.values()) {
      expect(Number.isFinite(p.x) && Number.isFinite(p.y)).toBe(true);
      expect(Math.abs(p.x)).toBeLessThanOrEqual(l.extent);
      expect(Math.abs(p.y)).toBeLessThanOrEqual(l.extent);
    }
  });

  it('keeps direct peers inside, offline peers outside, relayed peers near their relay', () => {
    const peers = mesh(100);
    const l = computeLayout(peers);
    const avg = (kind: LayoutPeer['kind']) => {
      const ds = peers.filter((p) => p.kind === kind).map((p) => dist(l.positions.get(p.id)!));
      return ds.reduce((a, b) => a + b, 0) / ds.length;
    };
    expect(avg('direct')).toBeLessThan(avg('relay'));
    expect(avg('relay')).toBeLessThan(avg('offline'));
    for (const p of peers.filter((x) => x.kind === 'relay')) {
      const mine = l.positions.get(relayNodeId(p.region!))!;
      const pos = l.positions.get(p.id)!;
      const nearest = Math.min(...l.relays.map((r) => Math.hypot(pos.x - l.positions.get(relayNodeId(r))!.x, pos.y - l.positions.get(relayNodeId(r))!.y)));
      expect(Math.hypot(pos.x - mine.x, pos.y - mine.y)).toBeLessThanOrEqual(nearest + 60);
    }
  });

  it('is deterministic', () => {
    const peers = mesh(40);
    expect([...computeLayout(peers).positions]).toEqual([...computeLayout(peers).positions]);
  });

  it('moves existing nodes only a little when one peer changes', () => {
    const peers = mesh(120);
    const a = computeLayout(peers);
    const changed = peers.map((p) => (p.id === 'p0' ? { ...p, kind: 'offline' as const } : p));
    const b = computeLayout(changed, a.positions);
    const moves = peers.slice(1).map((p) => Math.hypot(a.positions.get(p.id)!.x - b.positions.get(p.id)!.x, a.positions.get(p.id)!.y - b.positions.get(p.id)!.y));
    moves.sort((x, y) => x - y);
    expect(moves[Math.floor(moves.length / 2)]!).toBeLessThan(15);
  });

  it('lays out 250 peers quickly', () => {
    const peers = mesh(250);
    computeLayout(peers.slice(0, 20)); // warm up the JIT
    const t0 = performance.now();
    const l = computeLayout(peers);
    const ms = performance.now() - t0;
    expect(l.positions.size).toBe(250 + 1 + 3);
    expect(ms).toBeLessThan(1500);
  });

  it('handles no peers', () => {
    const l = computeLayout([]);
    expect([...l.positions.keys()]).toEqual([SELF_ID]);
    expect(l.relays).toEqual([]);
  });

  it('keys on structure only', () => {
    expect(layoutKey(mesh(3))).toBe(layoutKey(mesh(3)));
    expect(layoutKey(mesh(3))).not.toBe(layoutKey(mesh(4)));
    expect(layoutKey([{ id: 'a', kind: 'relay', region: 1 }])).not.toBe(layoutKey([{ id: 'a', kind: 'relay', region: 2 }]));
  });
});
