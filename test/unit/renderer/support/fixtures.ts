/**
 * Builders for the shapes the renderer and the explainer consume: NetcheckReports by NAT type, PeerViews by link
 * and NetInfo, and a snapshot. Every builder returns a value that passes the contract's schema (checked in tests).
 */
import type { MeshSnapshot, PeerView } from '../../../../src-shared/model/mesh.ts';
import type { NatType, NetcheckReport } from '../../../../src-shared/model/netcheck.ts';
import type { PeerNetInfo, PeerPath } from '../../../../src-shared/model/status.ts';
import type { TailnetStatus } from '../../../../src-shared/model/tailnet.ts';

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
  const name = over.name ?? `peer-${id}`;
  return {
    id,
    name,
    fqdn: `${name}.tailnet.example.com`,
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
    routes: [],
    exitNode: false,
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
    self: { name: 'laptop', fqdn: 'laptop.tailnet.example.com', nodeKey: `nodekey:${'a'.repeat(64)}`, addresses: ['100.64.0.1'], keyExpiry: null, homeRegion: 1 },
    peers,
    regions: [
      { id: 1, code: 'fra', name: 'Frankfurt' },
      { id: 2, code: 'nyc', name: 'New York' },
    ],
    netcheck: report('easy'),
    tailnet: null,
    ...over,
  };
}

/**
 * A tailnet as the engine reports it with an ACL applied: nas offers 192.168.1.0/24 (which overlaps the LAN) and
 * 10.20.0.0/16, and three grants to this device (SSH from two peers, web ports from anyone, everything from admin).
 */
export function tailnet(over: Partial<TailnetStatus> = {}): TailnetStatus {
  return {
    filter: { state: 'applied', ruleCount: 3, nftRuleCount: 9, appliedAt: '2026-11-22T12:03:04Z', error: null, skipped: [] },
    routes: {
      acceptRoutes: true,
      table: 52,
      installed: [{ prefix: '10.20.0.0/16', peer: 'nas' }],
      skipped: [
        { prefix: '192.168.1.0/24', peer: 'nas', reason: 'lan-overlap', note: 'route 192.168.1.0/24 from nas overlaps your LAN (eth0 192.168.1.0/24); your LAN wins' },
        { prefix: '0.0.0.0/0', peer: 'gw', reason: 'exit-route', note: 'exit route from gw is not used (no exit node selected)' },
      ],
      error: null,
    },
    dns: { acceptDns: true, mode: 'resolved', suffix: 'tailnet.example.com', serving: true, error: null },
    access: [
      { peers: ['desktop', 'nas'], anyone: false, sources: ['100.64.0.2/32', '100.64.0.3/32'], protocols: ['tcp'], ports: [{ first: 22, last: 22 }] },
      { peers: ['desktop', 'nas', 'phone'], anyone: true, sources: ['*'], protocols: ['tcp', 'udp'], ports: [{ first: 80, last: 443 }] },
      { peers: ['admin'], anyone: false, sources: ['100.64.0.9/32'], protocols: ['tcp', 'udp', 'icmp'], ports: [{ first: 0, last: 65535 }] },
    ],
    ...over,
  };
}
