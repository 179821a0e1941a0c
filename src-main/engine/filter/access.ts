/**
 * Who may open connections to this device, read from the packet filter now enforced: one AccessGrant per
 * FilterRule that opens something on one of this node's addresses, naming the peers inside its sources, the
 * protocols and the ports. `weft status` and the UI show it; it explains the filter, it does not enforce it
 * (compile.ts does). Pure.
 *
 * The reading is the filter's own (TS wgengine/filter/tailcfg.go `MatchesFromFilterRules`, filter.go, match.go),
 * with the same address parsing as compile.ts:
 * - a rule counts in a family only when it has a source of that family and a destination entry holding one of
 *   this node's addresses of that family (`*` and 0.0.0.0/0 hold them all);
 * - its ports are those of the entries that hold one of this node's addresses, listed only when it admits
 *   TCP, UDP or SCTP (ICMP and other protocols have none);
 * - ICMP follows addresses, not IPProto (`matchIPsOnly`), so every grant lists "icmp"; "tcp", "udp" and
 *   "sctp" come from IPProto (none listed means tcp and udp), and another protocol N shows as "proto N" only when
 *   an entry holding this node opens every port (`matchProtoAndIPsOnlyIfAllPorts`);
 * - a filter using the deprecated SrcBits/Bits fields admits nothing, so it grants nothing.
 *
 * `anyone` is true when the sources cover the whole tailnet in a family the rule counts in: all of
 * 100.64.0.0/10 except the 100.115.92.0/23 that headscale 0.29.2 leaves out of `*` for ChromeOS (it sends the two
 * ranges 100.64.0.0-100.115.91.255 and 100.115.94.0-100.127.255.255), or all of fd7a:115c:a1e0::/48; `*` and
 * 0.0.0.0/0 (headscale 0.26.1's `*`) cover both.
 *
 * Grants with the same sources and protocols are merged (their ports and peers joined): headscale emits one
 * rule per ACL entry and destination set, so several rules often read the same to a person. The output is
 * bounded: at most MAX_GRANTS grants, each listing at most MAX_SOURCES sources as sent.
 */
import type { AccessGrant, PortRange } from '../../../src-shared/model/tailnet.ts';
import type { FilterRule } from '../../protocol/control/tailcfg.ts';
import {
  coversSpans,
  hasDeprecatedBits,
  intersectSpans,
  normalizePorts,
  parseAddr,
  parseFilterAddr,
  parseRuleAddrs,
  ruleProtos,
  selfSpans,
  spansContain,
  type Family,
  type PortSpan,
  type Span,
} from './compile.ts';

export const MAX_GRANTS = 256;
/** Sources listed per grant; a longer list ends with "… and N more". */
export const MAX_SOURCES = 64;

export interface AccessPeer {
  name: string;
  /** Tailnet addresses, bare ("100.64.0.5") or as host prefixes ("100.64.0.5/32"). */
  addresses: readonly string[];
}

/** The whole tailnet, per family (see the header). */
const TAILNET: Record<Family, Span[]> = {
  4: rangeSpans(['100.64.0.0-100.115.91.255', '100.115.94.0-100.127.255.255'], 4),
  6: rangeSpans(['fd7a:115c:a1e0::/48'], 6),
};

function rangeSpans(texts: readonly string[], family: Family): Span[] {
  return texts.flatMap((t) => {
    const p = parseFilterAddr(t);
    return p.kind === 'ip' ? (family === 4 ? p.set.v4 : p.set.v6) : [];
  });
}

const PROTO_ORDER: readonly [number, string][] = [
  [6, 'tcp'],
  [17, 'udp'],
  [132, 'sctp'],
];

interface Draft {
  peers: Set<string>;
  anyone: boolean;
  sources: string[];
  protocols: string[];
  ports: PortSpan[];
}

/** Peers' addresses parsed once. */
function parsePeers(peers: readonly AccessPeer[]): { name: string; addrs: { family: Family; n: bigint }[] }[] {
  return peers.map((p) => ({
    name: p.name,
    addrs: p.addresses.flatMap((a) => {
      const slash = a.indexOf('/');
      const ip = parseAddr(slash < 0 ? a : a.slice(0, slash));
      return ip ? [ip] : [];
    }),
  }));
}

/** The access each rule gives to this node, merged and bounded; see the header. */
export function effectiveAccess(rules: readonly FilterRule[], selfAddrs: readonly string[], peers: readonly AccessPeer[]): AccessGrant[] {
  if (hasDeprecatedBits(rules)) return [];
  const self = selfSpans(selfAddrs);
  const mine: Record<Family, Span[]> = { 4: self.v4, 6: self.v6 };
  const parsedPeers = parsePeers(peers);
  const drafts = new Map<string, Draft>();

  for (const r of rules) {
    if ((r.DstPorts ?? []).length === 0) continue;
    const { sources, dsts } = parseRuleAddrs(r, () => undefined);
    const src: Record<Family, Span[]> = { 4: sources.v4, 6: sources.v6 };
    const families: Family[] = [];
    const ports: PortSpan[] = [];
    let allPorts = false;
    for (const family of [4, 6] as const) {
      if (src[family].length === 0) continue;
      // Entries holding one of this node's addresses of this family.
      const hits = dsts.filter((d) => {
        const spans = family === 4 ? d.set.v4 : d.set.v6;
        return intersectSpans(spans, mine[family]).length > 0;
      });
      if (hits.length === 0) continue;
      families.push(family);
      for (const d of hits) {
        ports.push(d.ports);
        if (d.ports.first === 0 && d.ports.last === 65535) allPorts = true;
      }
    }
    if (families.length === 0) continue;

    const { protos } = ruleProtos(r);
    const listed = protos ?? [6, 17];
    const protocols = PROTO_ORDER.filter(([n]) => listed.includes(n)).map(([, name]) => name);
    const portProtocols = protocols.length;
    protocols.push('icmp');
    if (allPorts) {
      for (const n of [...listed].sort((a, b) => a - b)) {
        if (![0, 1, 6, 17, 58, 99, 132].includes(n)) protocols.push(`proto ${n}`);
      }
    }

    const peerNames = parsedPeers.filter((p) => p.addrs.some((a) => families.includes(a.family) && spansContain(src[a.family], a.n))).map((p) => p.name);
    const anyone = families.some((f) => coversSpans(src[f], TAILNET[f]));
    const raw = r.SrcIPs ?? [];
    const key = JSON.stringify([raw, protocols]);
    const known = drafts.get(key);
    if (known) {
      for (const n of peerNames) known.peers.add(n);
      known.anyone ||= anyone;
      if (portProtocols > 0) known.ports = normalizePorts([...known.ports, ...ports]);
      continue;
    }
    if (drafts.size >= MAX_GRANTS) continue;
    const shown = raw.length > MAX_SOURCES ? [...raw.slice(0, MAX_SOURCES), `… and ${raw.length - MAX_SOURCES} more`] : [...raw];
    drafts.set(key, { peers: new Set(peerNames), anyone, sources: shown, protocols, ports: portProtocols > 0 ? normalizePorts(ports) : [] });
  }

  return [...drafts.values()].map((d) => ({
    peers: [...d.peers].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
    anyone: d.anyone,
    sources: d.sources,
    protocols: d.protocols,
    ports: d.ports.map((p): PortRange => ({ first: p.first, last: p.last })),
  }));
}
