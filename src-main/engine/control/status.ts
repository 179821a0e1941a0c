/**
 * Builds the status report (`weft status --json`, and the UI's snapshot) from the control status and netmap.
 * Pure. Until the data plane exists, a peer's path is `connecting` when control says it is online and
 * `offline` otherwise.
 */
import type { PeerNetInfo, PeerStatus, StatusReport } from '../../../src-shared/model/status.ts';
import type { ControlStatus } from './client.ts';
import { isZeroTime, type NetInfo, type Node } from '../../protocol/control/tailcfg.ts';
import { sortedPeers, type NetMap } from './map-session.ts';

/** "100.64.0.1/32" → "100.64.0.1"; other prefixes stay as they are. */
function hostAddr(p: string): string {
  return p.replace(/\/(32|128)$/, '');
}

/** The short name: the first DNS label of Node.Name, else the hostname the node reported. */
export function shortName(n: Node): string {
  const label = n.Name.replace(/\.$/, '').split('.')[0];
  return label || n.Hostinfo?.Hostname || `node-${n.ID}`;
}

const bool = (v: unknown): boolean | null => (typeof v === 'boolean' ? v : null);

/** The MagicDNS name without its trailing dot (the short name when the tailnet has no base domain). */
export function fqdnOf(n: Node): string {
  return n.Name.replace(/\.$/, '') || shortName(n);
}

/** A peer offers an exit node when both default routes are in its AllowedIPs (Tailscale's tsaddr.ContainsExitRoutes). */
export function offersExitNode(n: Node): boolean {
  return n.AllowedIPs.includes('0.0.0.0/0') && n.AllowedIPs.includes('::/0');
}

/** The explanatory part of a peer's Hostinfo.NetInfo (absent fields stay null). */
export function peerNetInfo(n: NetInfo): PeerNetInfo {
  const pref = n.PreferredDERP;
  return {
    mappingVariesByDestIP: bool(n.MappingVariesByDestIP),
    workingUDP: bool(n.WorkingUDP),
    hairPinning: bool(n.HairPinning),
    havePortMap: bool(n.HavePortMap),
    preferredDERP: typeof pref === 'number' && pref > 0 ? pref : null,
  };
}

const time = (t: string | undefined | null): string | null => (t && !isZeroTime(t) ? t : null);

export function buildStatus(control: ControlStatus, nm: NetMap): StatusReport {
  const self = nm.self;
  const peers: PeerStatus[] = sortedPeers(nm).map((p) => ({
    id: p.ID,
    name: shortName(p),
    fqdn: fqdnOf(p),
    nodeKey: p.Key,
    discoKey: p.DiscoKey.endsWith('0'.repeat(64)) ? null : p.DiscoKey,
    addresses: p.Addresses.map(hostAddr),
    allowedIPs: [...p.AllowedIPs],
    primaryRoutes: [...p.PrimaryRoutes],
    exitNode: offersExitNode(p),
    endpoints: [...p.Endpoints],
    homeRegion: p.HomeDERP > 0 ? p.HomeDERP : null,
    online: p.Online ?? null,
    lastSeen: time(p.LastSeen),
    keyExpiry: time(p.KeyExpiry),
    path: p.Online === false || p.Expired ? { kind: 'offline' } : { kind: 'connecting' },
    lastHandshake: null,
    rxBytes: 0,
    txBytes: 0,
    netInfo: p.Hostinfo?.NetInfo ? peerNetInfo(p.Hostinfo.NetInfo) : null,
    disco: null,
  }));
  return {
    control: { state: control.state, url: control.url, error: control.error?.message ?? null, authUrl: control.authUrl, stage: control.stage },
    self: self ? { name: shortName(self), fqdn: fqdnOf(self), nodeKey: self.Key, addresses: self.Addresses.map(hostAddr), keyExpiry: time(self.KeyExpiry) } : null,
    peers,
    tailnet: null,
  };
}
