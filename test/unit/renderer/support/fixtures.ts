/**
 * Builders for the shapes the renderer and the explainer consume: NetcheckReports by NAT type, PeerViews by link
 * and NetInfo, and a snapshot. Every builder returns a value that passes the contract's schema (checked in tests).
 */
import type { MeshSnapshot, PeerView } from '../../../../src-shared/model/mesh.ts';
import type { NatType, NetcheckReport } from '../../../../src-shared/model/netcheck.ts';
import type { PeerNetInfo, PeerPath } from '../../../../src-shared/model/status.ts';

export function report(natType: NatType, over: Partial<NetcheckReport> = {}): NetcheckReport {
  const base: NetcheckReport = {
    udp: natType !== 'udp-blocked',
    publicV4: natType === 'udp-blocked' ? null : '198.51.100.10',
    mapping: 'endpoint-independent',
    filtering: 'endpoint-independent',
    mappingVariesByDestIP: false,
    portPreserved: true,
    hairpinning: null,
    portMapping: { natpmp: false, pcp: false, upnp: false, externalV4: null, usable: null, error: null },
    regionLatencyMs: { '1': 12.5, '2': 48 },
    preferredRegion: 1,
    natType,
    behindNat: true,
    rfc5780: true,
    localPort: 41641,
    servers: [],
    notes: [],
  };
  switch (natType) {
    case 'open':
      Object.assign(base, { behindNat: false });
      break;
    case 'firewall':
      Object.assign(base, { behindNat: false, filtering: 'address-and-port-dependent' });
      break;
    case 'easy':
      Object.assign(base, { filtering: 'address-and-port-dependent' });
      break;
    case 'hard':
      Object.assign(base, { mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent', mappingVariesByDestIP: true, portPreserved: false });
      break;
    case 'udp-blocked':
      Object.assign(base, { mapping: 'unknown', filtering: 'unknown', mappingVariesByDestIP: null, portPreserved: null, regionLatencyMs: {}, behindNat: null });
      break;
    case 'unknown':
      Object.assign(base, { mapping: 'unknown', filtering: 'unknown', mappingVariesByDestIP: null, portPreserved: null });
      break;
  }
  return { ...base, ...over };
}

export type PeerNat = 'easy' | 'hard' | 'hard+portmap' | 'udp-blocked' | 'unreported';

export function netInfo(kind: PeerNat): PeerNetInfo | null {
  switch (kind) {
    case 'easy':
      return { mappingVariesByDestIP: false, workingUDP: true, hairPinning: null, havePortMap: false, preferredDERP: 2 };
    case 'hard':
      return { mappingVariesByDestIP: true, workingUDP: true, hairPinning: null, havePortMap: false, preferredDERP: 2 };
    case 'hard+portmap':
      return { mappingVariesByDestIP: true, workingUDP: true, hairPinning: null, havePortMap: true, preferredDERP: 2 };
    case 'udp-blocked':
      return { mappingVariesByDestIP: null, workingUDP: false, hairPinning: null, havePortMap: false, preferredDERP: 2 };
    case 'unreported':
      return null;
  }
}

let seq = 0;

export function peer(over: Partial<PeerView> & { path?: PeerPath } = {}): PeerView {
  seq++;
  const id = over.id ?? `p${seq}`;
  return {
    id,
    name: over.name ?? `peer-${id}`,
    nodeKey: `nodekey:${'0'.repeat(63)}${seq % 10}`,
    addresses: [`100.64.0.${(seq % 250) + 1}`, `fd7a:115c:a1e0::${seq}`],
    os: 'linux',
    online: true,
    lastSeen: null,
    keyExpiry: null,
    homeRegion: 2,
    endpoints: ['203.0.113.5:41641'],
    path: { kind: 'relay', region: 2 },
    lastHandshake: null,
    rxBytes: 0,
    txBytes: 0,
    netInfo: netInfo('easy'),
    disco: null,
    ...over,
  };
}

export const direct = (latencyMs = 12): PeerPath => ({ kind: 'direct', endpoint: '203.0.113.5:41641', latencyMs });
export const relay = (region = 2): PeerPath => ({ kind: 'relay', region });
export const connecting: PeerPath = { kind: 'connecting' };
export const offline: PeerPath = { kind: 'offline' };

export function snapshot(peers: PeerView[], over: Partial<MeshSnapshot> = {}): MeshSnapshot {
  return {
    control: { state: 'connected', url: 'https://hs.example.com', error: null, authUrl: null },
    self: { name: 'laptop', nodeKey: `nodekey:${'a'.repeat(64)}`, addresses: ['100.64.0.1'], keyExpiry: null, homeRegion: 1 },
    peers,
    regions: [
      { id: 1, code: 'fra', name: 'Frankfurt' },
      { id: 2, code: 'nyc', name: 'New York' },
    ],
    netcheck: report('easy'),
    ...over,
  };
}
