/**
 * Pure selectors over the tailnet status the engine enforces (snapshot.tailnet): who may reach this device (one
 * row per ACL grant), the filter's state in words, MagicDNS in one line, the LAN overlaps of subnet routes, and
 * what became of each route a peer offers. Time formatting is passed in where a clock would be read, so every
 * function here is deterministic.
 */
import type { PeerView } from '../../../../src-shared/model/mesh.ts';
import type { AccessGrant, DnsStatus, FilterStatus, PortRange, RouteSkip, TailnetStatus } from '../../../../src-shared/model/tailnet.ts';
import type { WeftState } from '../state.ts';
import { memo1 } from './memo.ts';

export const selectTailnet = (s: WeftState): TailnetStatus | null => s.snapshot.tailnet;

/** Local wall-clock time of an RFC 3339 stamp, "12:03:04" (the stamp itself when it does not parse). */
export function clockTime(iso: string): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const d = new Date(t);
  const p = (x: number): string => String(x).padStart(2, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export const isAllPorts = (r: PortRange): boolean => r.first === 0 && r.last === 65535;

/** "22", "80-443", or "all ports". */
export function portRangeText(r: PortRange): string {
  if (isAllPorts(r)) return 'all ports';
  return r.first === r.last ? String(r.first) : `${r.first}-${r.last}`;
}

/** Protocols that have ports (the filter's ports mean nothing to ICMP). */
const PORTED = new Set(['tcp', 'udp', 'sctp']);

export interface AccessRow {
  key: string;
  /** "Anyone in the tailnet", "desktop, nas", or why nobody matches now. */
  who: string;
  /** The rule's sources as the filter gives them, for a tooltip. */
  sources: string;
  anyone: boolean;
  /** "tcp", "tcp, udp", "tcp, udp, icmp". */
  protocols: string;
  /** One entry per port range ("22", "80-443", "all ports"); empty when no protocol of the grant has ports. */
  ports: string[];
  /** The whole line: "tcp 22", "tcp, udp 80-443", "icmp". */
  summary: string;
}

/** Names of the peers a grant covers, shortened past `max` ("a, b, c and 4 more"). */
export function whoText(g: AccessGrant, max = 6): string {
  if (g.anyone) return 'Anyone in the tailnet';
  if (g.peers.length === 0) return 'No device in the tailnet now';
  if (g.peers.length <= max) return g.peers.join(', ');
  return `${g.peers.slice(0, max).join(', ')} and ${g.peers.length - max} more`;
}

export function accessRow(g: AccessGrant, i: number): AccessRow {
  const protocols = g.protocols.length > 0 ? g.protocols.join(', ') : 'tcp, udp, icmp';
  const hasPorts = g.protocols.length === 0 || g.protocols.some((p) => PORTED.has(p));
  const ports = hasPorts ? g.ports.map(portRangeText) : [];
  return {
    key: `${i}:${g.sources.join(',')}:${protocols}`,
    who: whoText(g),
    sources: g.sources.join(', '),
    anyone: g.anyone,
    protocols,
    ports,
    summary: ports.length > 0 ? `${protocols} ${ports.join(', ')}` : protocols,
  };
}

export type Tone = 'ok' | 'warn' | 'error';

export interface Line {
  tone: Tone;
  text: string;
}

const rules = (n: number): string => `${n} rule${n === 1 ? '' : 's'}`;

/**
 * The filter's state for people: "ACL applied 12:03:04, 3 rules", "No filter yet: nothing can connect", or the
 * error with what stays in force.
 */
export function filterLine(f: FilterStatus, timeOf: (iso: string) => string = clockTime): Line {
  const applied = f.appliedAt ? `applied ${timeOf(f.appliedAt)}, ${rules(f.ruleCount)}` : `applied, ${rules(f.ruleCount)}`;
  switch (f.state) {
    case 'applied':
      return { tone: 'ok', text: `ACL ${applied}` };
    case 'none':
      return f.error ? { tone: 'error', text: `No filter yet: ${f.error}; nothing can connect` } : { tone: 'warn', text: 'No filter yet: nothing can connect' };
    case 'error': {
      const why = f.error ?? 'the new ACL could not be applied';
      return f.appliedAt ? { tone: 'error', text: `${why}; keeping the last good filter (${applied})` } : { tone: 'error', text: `${why}; nothing can connect` };
    }
  }
}

export interface AccessCard {
  /** No tailnet status (no engine yet, or an older service). */
  known: boolean;
  filter: Line | null;
  rows: AccessRow[];
  /** Shown instead of rows: "Nobody in the tailnet can open connections to this device", or null. */
  empty: string | null;
  /** Filter entries the engine skipped, with the reason. */
  skipped: readonly string[];
}

export function accessCard(t: TailnetStatus | null, timeOf: (iso: string) => string = clockTime): AccessCard {
  if (!t) return { known: false, filter: null, rows: [], empty: null, skipped: [] };
  const rows = t.access.map(accessRow);
  const enforced = t.filter.state === 'applied' || (t.filter.state === 'error' && t.filter.appliedAt !== null);
  return {
    known: true,
    filter: filterLine(t.filter, timeOf),
    rows,
    empty: rows.length === 0 && enforced ? 'Nobody in the tailnet can open connections to this device' : null,
    skipped: t.filter.skipped,
  };
}

/** The access card for the device view (memoised on the tailnet status). */
export const selectAccessCard: (s: WeftState) => AccessCard = memo1(selectTailnet, (t) => accessCard(t));

/** Subnet routes that overlap this device's LAN (the LAN keeps winning), with their notes. */
export function lanOverlaps(t: TailnetStatus | null): RouteSkip[] {
  return t ? t.routes.skipped.filter((k) => k.reason === 'lan-overlap') : [];
}

export const selectLanOverlaps: (s: WeftState) => RouteSkip[] = memo1(selectTailnet, lanOverlaps);

const DNS_MODE_TEXT: Record<DnsStatus['mode'], string> = {
  resolved: 'systemd-resolved',
  direct: '/etc/resolv.conf',
  off: 'off',
};

export interface DnsLine extends Line {
  mode: DnsStatus['mode'];
}

/**
 * MagicDNS in one line (beside a "MagicDNS" label): how the OS is pointed at it and the tailnet's suffix, or why it
 * is off: "On via systemd-resolved · tailnet.example.com".
 */
export function dnsLine(d: DnsStatus): DnsLine {
  const suffix = d.suffix ?? 'no MagicDNS suffix';
  let line: Line;
  if (!d.acceptDns) line = { tone: 'ok', text: 'Off (Use MagicDNS is off in Settings)' };
  else if (d.mode === 'off') line = d.suffix ? { tone: 'warn', text: `Not in use · ${suffix}` } : { tone: 'ok', text: 'Off: the tailnet has none' };
  else if (!d.serving) line = { tone: 'warn', text: `On via ${DNS_MODE_TEXT[d.mode]} · ${suffix} (100.100.100.100 is not answering)` };
  else line = { tone: 'ok', text: `On via ${DNS_MODE_TEXT[d.mode]} · ${suffix}` };
  if (d.error) line = { tone: 'error', text: `${line.text}. ${d.error}; keeping the last good DNS configuration` };
  return { ...line, mode: d.mode };
}

export type RouteState = 'in-use' | 'not-used' | 'unknown';

export interface PeerRoute {
  prefix: string;
  state: RouteState;
  /** "in use", "not used: Use subnet routes is off", "not used: overlaps your LAN", or the engine's note. */
  text: string;
  /** The engine's full note, when it skipped the route. */
  note: string | null;
}

const SKIP_TEXT: Partial<Record<RouteSkip['reason'], string>> = {
  'accept-routes-off': 'not used: Use subnet routes is off',
  'lan-overlap': 'not used: overlaps your LAN',
};

/** What became of each subnet route the peer offers (routes are keyed by prefix and the peer's short name). */
export function peerRoutes(peer: Pick<PeerView, 'name' | 'routes'>, t: TailnetStatus | null): PeerRoute[] {
  return peer.routes.map((prefix) => {
    if (!t) return { prefix, state: 'unknown', text: 'offered', note: null };
    if (t.routes.installed.some((r) => r.prefix === prefix && r.peer === peer.name)) return { prefix, state: 'in-use', text: 'in use', note: null };
    const skip = t.routes.skipped.find((r) => r.prefix === prefix && r.peer === peer.name);
    if (skip) return { prefix, state: 'not-used', text: SKIP_TEXT[skip.reason] ?? `not used: ${skip.note}`, note: skip.note };
    return { prefix, state: t.routes.acceptRoutes ? 'unknown' : 'not-used', text: t.routes.acceptRoutes ? 'offered' : SKIP_TEXT['accept-routes-off']!, note: null };
  });
}

/**
 * Subnet routes in one line for this device (beside a "Subnet routes" label): whether they are accepted and how
 * many of the routes peers offer are in use (installed routes also hold the peers' own addresses, not counted).
 */
export function routesLine(t: TailnetStatus, peers: readonly Pick<PeerView, 'name' | 'routes'>[]): Line {
  const offered = new Set(peers.flatMap((p) => p.routes.map((r) => `${p.name} ${r}`)));
  const inUse = t.routes.installed.filter((r) => offered.has(`${r.peer} ${r.prefix}`)).length;
  if (t.routes.error) return { tone: 'error', text: `${t.routes.error}; the previous routes stay` };
  if (!t.routes.acceptRoutes) return { tone: 'ok', text: offered.size > 0 ? `Off · ${offered.size} offered in the tailnet` : 'Off' };
  return { tone: 'ok', text: offered.size === 0 ? 'On · none offered' : `On · ${inUse} of ${offered.size} in use` };
}
