import { describe, expect, it } from 'vitest';
import { applyMeshDelta, MeshSnapshot } from '../../../src-shared/model/mesh.ts';
import type { StatusReport } from '../../../src-shared/model/status.ts';
import type { TailnetStatus } from '../../../src-shared/model/tailnet.ts';
import { diffSnapshots, EMPTY_SNAPSHOT, regionsOf, statsChanges, toSnapshot, type SnapshotInputs } from '../../../src-main/host/snapshot.ts';
import { DERP_MAP, peer } from './fake-engine.ts';

const TAILNET: TailnetStatus = {
  filter: { state: 'applied', ruleCount: 2, nftRuleCount: 6, appliedAt: '2026-11-22T12:03:04Z', error: null, skipped: [] },
  routes: {
    acceptRoutes: true,
    table: 52,
    installed: [{ prefix: '100.64.0.2/32', peer: 'peer2' }, { prefix: '10.20.0.0/16', peer: 'peer2' }],
    skipped: [{ prefix: '192.168.1.0/24', peer: 'peer3', reason: 'lan-overlap', note: 'route 192.168.1.0/24 from peer3 overlaps your LAN (eth0 192.168.1.0/24); your LAN wins' }],
    error: null,
  },
  dns: { acceptDns: true, mode: 'resolved', suffix: 'tailnet.example.com', serving: true, error: null },
  access: [{ peers: ['peer2'], anyone: false, sources: ['100.64.0.2/32'], protocols: ['tcp'], ports: [{ first: 22, last: 22 }] }],
};

const report: StatusReport = {
  control: { state: 'connected', url: 'https://hs.example.com', error: null, authUrl: null, stage: 'connected' },
  self: { name: 'laptop', fqdn: 'laptop.tailnet.example.com', nodeKey: 'nodekey:a', addresses: ['fd7a:115c:a1e0::1', '100.64.0.1'], keyExpiry: '2027-01-01T00:00:00Z' },
  peers: [
    peer('2', { addresses: ['fd7a:115c:a1e0::2', '100.64.0.2'], primaryRoutes: ['10.20.0.0/16'], exitNode: true }),
    peer('3', { path: { kind: 'relay', region: 2 } }),
  ],
  tailnet: TAILNET,
};

const inputs = (over: Partial<SnapshotInputs> = {}): SnapshotInputs => ({
  report,
  derpMap: DERP_MAP,
  selfHomeRegion: 1,
  peerOs: (id) => (id === '2' ? 'linux' : null),
  netcheck: null,
  failure: null,
  ...over,
});

describe('toSnapshot', () => {
  it('maps the status report to a contract-valid MeshSnapshot, IPv4 first', () => {
    const s = toSnapshot(inputs());
    expect(MeshSnapshot.safeParse(s).success).toBe(true);
    expect(s.control).toEqual({ state: 'connected', url: 'https://hs.example.com', error: null, authUrl: null });
    expect(s.self).toEqual({ name: 'laptop', fqdn: 'laptop.tailnet.example.com', nodeKey: 'nodekey:a', addresses: ['100.64.0.1', 'fd7a:115c:a1e0::1'], keyExpiry: '2027-01-01T00:00:00Z', homeRegion: 1 });
    expect(s.peers[0]).toMatchObject({ id: '2', os: 'linux', addresses: ['100.64.0.2', 'fd7a:115c:a1e0::2'], fqdn: 'peer2.tailnet.example.com', routes: ['10.20.0.0/16'], exitNode: true });
    expect(s.peers[1]).toMatchObject({ id: '3', os: null, path: { kind: 'relay', region: 2 }, routes: [], exitNode: false });
    expect(s.regions.map((r) => r.code)).toEqual(['fra', 'nyc']);
    expect(s.tailnet).toEqual(TAILNET);
  });

  it('falls back to the short name when the tailnet has no MagicDNS name', () => {
    const s = toSnapshot(inputs({ report: { ...report, self: { ...report.self!, fqdn: '' }, peers: [peer('5', { fqdn: '' })], tailnet: null } }));
    expect(s.self?.fqdn).toBe('laptop');
    expect(s.peers[0]?.fqdn).toBe('peer5');
    expect(s.tailnet).toBeNull();
    expect(MeshSnapshot.safeParse(s).success).toBe(true);
  });

  it('without an engine: empty, or an error control view after a failed start', () => {
    expect(toSnapshot(inputs({ report: null }))).toEqual(EMPTY_SNAPSHOT);
    expect(toSnapshot(inputs({ report: null, failure: { url: 'https://hs.example.com', message: 'refused' } })).control).toEqual({
      state: 'error',
      url: 'https://hs.example.com',
      error: 'refused',
      authUrl: null,
    });
  });

  it('names a region by its code when it has no name', () => {
    expect(regionsOf({ Regions: { '9': { RegionID: 9, RegionCode: 'lab' } } })).toEqual([{ id: 9, code: 'lab', name: 'lab' }]);
    expect(regionsOf(null)).toEqual([]);
  });
});

describe('diffSnapshots', () => {
  const a = toSnapshot(inputs());

  it('is null when only counters moved', () => {
    const b = toSnapshot(inputs({ report: { ...report, peers: [{ ...report.peers[0]!, rxBytes: 9, txBytes: 9, lastHandshake: '2026-11-22T12:00:00Z' }, report.peers[1]!] } }));
    expect(diffSnapshots(a, b)).toBeNull();
    expect(statsChanges(new Map(a.peers.map((p) => [p.id, { id: p.id, rxBytes: 0, txBytes: 0, latencyMs: null, lastHandshake: null }])), b)).toEqual([
      { id: '2', rxBytes: 9, txBytes: 9, latencyMs: null, lastHandshake: '2026-11-22T12:00:00Z' },
    ]);
  });

  it('upserts changed peers only, removes gone ones, and replaces changed top-level fields; applying it gives the new snapshot', () => {
    const b = toSnapshot(
      inputs({
        report: { ...report, control: { ...report.control, state: 'connecting' }, peers: [report.peers[0]!, peer('4')] },
        derpMap: { Regions: { '1': DERP_MAP.Regions['1'] } },
      }),
    );
    const d = diffSnapshots(a, b)!;
    expect(d.upsertPeers?.map((p) => p.id)).toEqual(['4']);
    expect(d.removePeers).toEqual(['3']);
    expect(d.control?.state).toBe('connecting');
    expect(d.regions).toEqual([{ id: 1, code: 'fra', name: 'Frankfurt' }]);
    expect(d.self).toBeUndefined();
    expect(d.tailnet).toBeUndefined();
    expect(applyMeshDelta(a, d)).toEqual(b);
  });

  it('carries a changed tailnet status (filter, routes, access) and applies it', () => {
    const tailnet: TailnetStatus = { ...TAILNET, access: [], filter: { ...TAILNET.filter, ruleCount: 0, appliedAt: '2026-11-22T12:05:00Z' } };
    const b = toSnapshot(inputs({ report: { ...report, tailnet } }));
    const d = diffSnapshots(a, b)!;
    expect(d.tailnet).toEqual(tailnet);
    expect(d.upsertPeers).toBeUndefined();
    expect(applyMeshDelta(a, d)).toEqual(b);
  });
});
