/**
 * Folds the raw observations of a probe run into a NetcheckReport. Pure: prober.ts gathers, this decides.
 *
 * Mapping (RFC 5780 §4.3), all from one local socket "A":
 *   T1: A → server S (primary)            → X1
 *   T2: A → S's OTHER-ADDRESS IP, S port  → X2     X1 = X2       → endpoint-independent
 *   T3: A → OTHER-ADDRESS IP and port     → X3     X2 = X3       → address-dependent, else address-and-port-dependent
 * Without RFC 5780 we compare the mappings several servers saw: equal across two IPs → endpoint-independent;
 * different across IPs, and servers sharing an IP with other ports tell address- from address-and-port-dependent.
 * Anything we cannot tell is "unknown", never a guess.
 *
 * Filtering (RFC 5780 §4.4), from a fresh socket "B" that has only talked to S:
 *   CHANGE-REQUEST ip+port answered → endpoint-independent
 *   CHANGE-REQUEST port answered    → address-dependent
 *   neither                          → address-and-port-dependent
 */
import type { NatBehaviour, NatType, NetcheckReport, PortMappingReport } from '../../../src-shared/model/netcheck.ts';
import { formatAddr, sameAddr, type UdpAddr } from '../../protocol/wire/addr.ts';
import { isMapped, type StunAnswer } from './stun-client.ts';

export interface ServerObservation {
  server: UdpAddr;
  regionId: number | null;
  answer: StunAnswer | null;
}

export interface Rfc5780Observation {
  server: UdpAddr;
  other: UdpAddr;
  /** A → other IP, server port. */
  test2: StunAnswer | null;
  /** A → other IP, other port. */
  test3: StunAnswer | null;
  /** Socket B: plain request to the server. */
  filterBase: StunAnswer | null;
  /** Socket B: CHANGE-REQUEST change IP and port. */
  filterChangeBoth: StunAnswer | null;
  /** Socket B: CHANGE-REQUEST change port. */
  filterChangePort: StunAnswer | null;
}

export interface ProbeObservations {
  localIps: readonly string[];
  localPort: number;
  servers: readonly ServerObservation[];
  rfc5780: Rfc5780Observation | null;
  hairpin: boolean | null;
  portMapping: PortMappingReport;
}

const ok = isMapped;

export function buildReport(obs: ProbeObservations): NetcheckReport {
  const notes: string[] = [];
  const answered = obs.servers.filter((s) => ok(s.answer));
  const udp = answered.length > 0;
  const first = answered[0];
  const publicV4 = answered.find((s) => ok(s.answer) && !s.answer.mapped.ip.includes(':'));
  const primaryMapped = first && ok(first.answer) ? first.answer.mapped : null;

  const regionLatencyMs: Record<string, number> = {};
  for (const s of answered) {
    if (s.regionId === null || !s.answer) continue;
    const k = String(s.regionId);
    const rtt = Math.round(s.answer.rttMs * 10) / 10;
    regionLatencyMs[k] = Math.min(regionLatencyMs[k] ?? Infinity, rtt);
  }
  let preferredRegion: number | null = null;
  for (const [k, v] of Object.entries(regionLatencyMs)) {
    if (preferredRegion === null || v < regionLatencyMs[String(preferredRegion)]!) preferredRegion = Number(k);
  }

  const behindNat = primaryMapped ? !obs.localIps.includes(primaryMapped.ip) : null;
  const portPreserved = primaryMapped ? primaryMapped.port === obs.localPort : null;

  // ---- mapping
  let mapping: NatBehaviour = 'unknown';
  let mappingVariesByDestIP: boolean | null = null;
  const r = obs.rfc5780;
  if (r && ok(r.test2) && primaryMapped) {
    mappingVariesByDestIP = !sameAddr(r.test2.mapped, primaryMapped);
    if (!mappingVariesByDestIP) {
      mapping = 'endpoint-independent';
      notes.push(`mapping: ${formatAddr(primaryMapped)} for ${formatAddr(r.server)} and for ${r.other.ip}:${r.server.port} (RFC 5780 tests I and II)`);
    } else if (ok(r.test3)) {
      mapping = sameAddr(r.test3.mapped, r.test2.mapped) ? 'address-dependent' : 'address-and-port-dependent';
      notes.push(
        `mapping: ${formatAddr(primaryMapped)} vs ${formatAddr(r.test2.mapped)} vs ${formatAddr(r.test3.mapped)} (RFC 5780 tests I, II, III)`,
      );
    } else {
      notes.push('mapping: varies with the destination IP, but test III got no answer; address- vs port-dependence unknown');
    }
  } else {
    const v4 = answered.filter((s) => ok(s.answer) && !s.answer.mapped.ip.includes(':')) as (ServerObservation & { answer: StunAnswer & { mapped: UdpAddr } })[];
    const base = v4[0];
    if (base) {
      const otherIp = v4.filter((s) => s.server.ip !== base.server.ip);
      const samePortDiff = v4.filter((s) => s.server.ip === base.server.ip && s.server.port !== base.server.port);
      if (otherIp.length > 0) {
        mappingVariesByDestIP = otherIp.some((s) => !sameAddr(s.answer.mapped, base.answer.mapped));
        if (!mappingVariesByDestIP) {
          mapping = 'endpoint-independent';
          notes.push(`mapping: the same ${formatAddr(base.answer.mapped)} seen by ${v4.length} servers on ${new Set(v4.map((s) => s.server.ip)).size} IPs`);
        } else if (samePortDiff.length > 0) {
          const portDep = samePortDiff.some((s) => !sameAddr(s.answer.mapped, base.answer.mapped));
          mapping = portDep ? 'address-and-port-dependent' : 'address-dependent';
          notes.push('mapping: compared servers on other IPs and on other ports of the same IP');
        } else {
          notes.push('mapping: varies with the destination IP; no two servers share an IP, so address- vs port-dependence is unknown');
        }
      } else if (samePortDiff.length > 0 && samePortDiff.some((s) => !sameAddr(s.answer.mapped, base.answer.mapped))) {
        mapping = 'address-and-port-dependent';
        notes.push('mapping: changes between two ports of the same server IP');
      } else {
        notes.push('mapping: only one server IP answered and it has no RFC 5780 support; cannot tell');
      }
    }
  }

  // ---- filtering
  let filtering: NatBehaviour = 'unknown';
  if (r && ok(r.filterBase)) {
    const unsupported = [r.filterChangeBoth, r.filterChangePort].some((a) => a?.kind === 'error');
    if (unsupported) {
      notes.push('filtering: the server refused CHANGE-REQUEST; cannot tell');
    } else if (ok(r.filterChangeBoth)) {
      filtering = 'endpoint-independent';
      notes.push(`filtering: an answer from ${r.other.ip}:${r.other.port}, never contacted, got through`);
    } else if (ok(r.filterChangePort)) {
      filtering = 'address-dependent';
      notes.push('filtering: an answer from a new port of a known IP got through; one from a new IP did not');
    } else {
      filtering = 'address-and-port-dependent';
      notes.push('filtering: only answers from the exact address we sent to got through');
    }
  } else if (udp) {
    notes.push('filtering: needs an RFC 5780 server (CHANGE-REQUEST); none answered, so unknown');
  }

  if (obs.hairpin !== null) notes.push(`hairpinning: a packet to our own public address ${obs.hairpin ? 'came back' : 'did not come back'}`);

  const natType = summarise(udp, behindNat, mapping, filtering, mappingVariesByDestIP);
  return {
    udp,
    publicV4: publicV4 && ok(publicV4.answer) ? formatAddr(publicV4.answer.mapped) : null,
    mapping,
    filtering,
    mappingVariesByDestIP,
    portPreserved,
    hairpinning: obs.hairpin,
    portMapping: obs.portMapping,
    regionLatencyMs,
    preferredRegion,
    natType,
    behindNat,
    rfc5780: !!(r && ok(r.test2)),
    localPort: obs.localPort,
    servers: obs.servers.map((s) => ({
      server: formatAddr(s.server),
      mapped: ok(s.answer) ? formatAddr(s.answer.mapped) : null,
      rttMs: s.answer ? Math.round(s.answer.rttMs * 10) / 10 : null,
      regionId: s.regionId,
    })),
    notes,
  };
}

/** The one-word summary; see NatType in src-shared for what each word means to a user. */
export function summarise(
  udp: boolean,
  behindNat: boolean | null,
  mapping: NatBehaviour,
  filtering: NatBehaviour,
  variesByDestIP: boolean | null,
): NatType {
  if (!udp) return 'udp-blocked';
  if (behindNat === false) return filtering === 'endpoint-independent' ? 'open' : 'firewall';
  if (mapping === 'endpoint-independent') return 'easy';
  if (mapping === 'address-dependent' || mapping === 'address-and-port-dependent' || variesByDestIP === true) return 'hard';
  return 'unknown';
}

/** A short explanation of the report for people, as `weft netcheck` prints it without --json. */
export function explain(rep: NetcheckReport): string[] {
  const lines: string[] = [];
  const what: Record<NatType, string> = {
    open: 'Open: this device has a public address and nothing filters inbound UDP. Every peer can reach it directly.',
    firewall:
      'Firewall: a public address, but a stateful firewall drops unsolicited packets. Direct links work by hole punching with almost every peer.',
    easy: 'Easy NAT: the router keeps one public port per local port, whatever the destination. Hole punching works with peers behind easy NATs and firewalls; a peer behind a hard NAT can usually still reach us.',
    hard: 'Hard NAT: the router picks a new public port for each destination, so peers cannot predict where to send. Direct links need the other side to have an easy NAT with lenient filtering or a port mapping; otherwise traffic goes through a relay.',
    'udp-blocked': 'UDP blocked: no STUN answer came back. Direct links are impossible; all traffic must go through a DERP relay over HTTPS (TCP 443).',
    unknown: 'Unknown: UDP works, but too few STUN servers answered to tell how the NAT maps ports.',
  };
  lines.push(`NAT type:        ${rep.natType}`);
  lines.push(`  ${what[rep.natType]}`);
  lines.push(`UDP:             ${rep.udp ? 'yes' : 'no'}`);
  lines.push(`Public IPv4:     ${rep.publicV4 ?? '-'}${rep.behindNat === false ? ' (this device, no NAT)' : ''}`);
  lines.push(`Mapping:         ${rep.mapping}${rep.portPreserved === null ? '' : rep.portPreserved ? ' (port preserved)' : ' (port not preserved)'}`);
  lines.push(`Filtering:       ${rep.filtering}`);
  lines.push(`Hairpinning:     ${rep.hairpinning === null ? 'unknown' : rep.hairpinning ? 'yes' : 'no'}`);
  const pm = rep.portMapping;
  const services = [pm.natpmp && 'NAT-PMP', pm.pcp && 'PCP', pm.upnp && 'UPnP'].filter(Boolean).join(', ') || 'none';
  lines.push(`Port mapping:    ${services}${pm.externalV4 ? ` (router says ${pm.externalV4})` : ''}${pm.usable === false ? ' - not usable' : pm.usable ? ' - works' : ''}`);
  if (pm.error) lines.push(`  ${pm.error}`);
  const regions = Object.entries(rep.regionLatencyMs);
  if (regions.length > 0) {
    lines.push(`DERP latency:    ${regions.map(([k, v]) => `${k}: ${v} ms`).join(', ')}${rep.preferredRegion !== null ? ` (preferred ${rep.preferredRegion})` : ''}`);
  }
  for (const n of rep.notes) lines.push(`  - ${n}`);
  return lines;
}
