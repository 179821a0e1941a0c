import { describe, expect, it } from 'vitest';
import { applyMeshDelta, type MeshSnapshot, type PeerView } from '../../../src-shared/model/mesh.ts';
import { peerNetInfo } from '../../../src-main/engine/control/status.ts';
import { NetInfo } from '../../../src-main/protocol/control/tailcfg.ts';

const peer = (id: string, over: Partial<PeerView> = {}): PeerView => ({
  id,
  name: `p${id}`,
  fqdn: `p${id}.tailnet.example.com`,
  nodeKey: `nodekey:${id.padStart(64, '0')}`,
  addresses: [`100.64.0.${id}`],
  os: null,
  online: true,
  lastSeen: null,
  keyExpiry: null,
  homeRegion: 901,
  endpoints: [],
  path: { kind: 'connecting' },
  lastHandshake: null,
  rxBytes: 0,
  txBytes: 0,
  netInfo: null,
  disco: null,
  routes: [],
  exitNode: false,
  ...over,
});

const base: MeshSnapshot = { control: null, self: null, peers: [peer('1'), peer('2')], regions: [], netcheck: null, tailnet: null };

describe('applyMeshDelta', () => {
  it('upserts in place, appends new peers, removes gone ones, and leaves absent fields alone', () => {
    const s = applyMeshDelta(base, { upsertPeers: [peer('2', { path: { kind: 'relay', region: 901 } }), peer('3')], removePeers: ['1'] });
    expect(s.peers.map((p) => [p.id, p.path.kind])).toEqual([
      ['2', 'relay'],
      ['3', 'connecting'],
    ]);
    expect(s.control).toBeNull();
    expect(base.peers).toHaveLength(2); // pure
  });

  it('an explicit null clears a field', () => {
    const withSelf = applyMeshDelta(base, { self: { name: 'me', fqdn: 'me.tailnet.example.com', nodeKey: 'nodekey:00', addresses: ['100.64.0.9'], keyExpiry: null, homeRegion: 901 } });
    expect(withSelf.self?.name).toBe('me');
    expect(applyMeshDelta(withSelf, { self: null }).self).toBeNull();
    expect(applyMeshDelta(withSelf, {}).self?.name).toBe('me');
  });

  it('replaces the tailnet status when the delta carries it, and keeps it otherwise', () => {
    const tailnet: NonNullable<MeshSnapshot['tailnet']> = {
      filter: { state: 'none', ruleCount: 0, nftRuleCount: 0, appliedAt: null, error: null, skipped: [] },
      routes: { acceptRoutes: false, table: 52, installed: [], skipped: [], error: null },
      dns: { acceptDns: true, mode: 'off', suffix: null, serving: false, error: null },
      access: [],
    };
    const withTailnet = applyMeshDelta(base, { tailnet });
    expect(withTailnet.tailnet).toEqual(tailnet);
    expect(applyMeshDelta(withTailnet, { netcheck: null }).tailnet).toBe(tailnet);
    expect(applyMeshDelta(withTailnet, { tailnet: null }).tailnet).toBeNull();
  });
});

describe('peerNetInfo', () => {
  it('keeps the explanatory NetInfo fields and nulls what the peer did not report', () => {
    const ni = NetInfo.parse({ MappingVariesByDestIP: true, WorkingUDP: true, HavePortMap: false, PreferredDERP: 901, LinkType: 'wired' });
    expect(peerNetInfo(ni)).toEqual({ mappingVariesByDestIP: true, workingUDP: true, hairPinning: null, havePortMap: false, preferredDERP: 901 });
  });

  it('treats PreferredDERP 0 as none and a mistyped field as unreported', () => {
    const ni = NetInfo.parse({ WorkingUDP: 'yes', PreferredDERP: 0 });
    expect(peerNetInfo(ni)).toEqual({ mappingVariesByDestIP: null, workingUDP: null, hairPinning: null, havePortMap: null, preferredDERP: null });
  });
});
