/**
 * What the engine does with a real tailnet's features, as `weft status --json` and the UI show it: the ACL filter
 * it enforces on inbound traffic, the routes it installed (and the ones it did not, with the reason), MagicDNS, and
 * the effective access to this device computed from the filter.
 */
import { z } from 'zod';

/** One port range on this device, inclusive; {first: 0, last: 65535} is every port. */
export const PortRange = z.object({ first: z.number().int().min(0).max(65535), last: z.number().int().min(0).max(65535) });
export type PortRange = z.infer<typeof PortRange>;

/**
 * Who may open connections to this device, one entry per filter rule that names one of its addresses: the peers
 * whose tailnet addresses fall inside the rule's sources, the protocols and the ports.
 */
export const AccessGrant = z.object({
  /** Names of the current peers inside the sources, sorted. */
  peers: z.array(z.string()),
  /** True when the sources cover the whole tailnet ("*", 0.0.0.0/0, or the CGNAT range and the ULA /48). */
  anyone: z.boolean(),
  /** The rule's sources as the filter gives them (what the peer list was computed from). */
  sources: z.array(z.string()),
  /** "tcp", "udp", "icmp", "sctp", or "proto N"; the filter's default (no IPProto) is tcp, udp and icmp. */
  protocols: z.array(z.string()),
  /** Ports on this device the rule opens (ignored by ICMP). */
  ports: z.array(PortRange),
});
export type AccessGrant = z.infer<typeof AccessGrant>;

export const FilterStatus = z.object({
  /** "none" until the first filter is in place (everything inbound is dropped then), "applied", or "error". */
  state: z.enum(['none', 'applied', 'error']),
  /** Rules from control (FilterRule entries) in the filter now enforced. */
  ruleCount: z.number().int().nonnegative(),
  /** nftables rules generated from them (per family and protocol class). */
  nftRuleCount: z.number().int().nonnegative(),
  /** When the filter now enforced was applied (RFC 3339), null before the first. */
  appliedAt: z.string().nullable(),
  /** Why the latest filter from control is not enforced (the last good one stays); null when it is. */
  error: z.string().nullable(),
  /** Entries of the filter that were skipped (malformed, capability-only, cap: sources), with the reason. */
  skipped: z.array(z.string()),
});
export type FilterStatus = z.infer<typeof FilterStatus>;

export const RouteEntry = z.object({
  prefix: z.string(),
  /** The peer that offers it (short name). */
  peer: z.string(),
});
export type RouteEntry = z.infer<typeof RouteEntry>;

export const RouteSkip = RouteEntry.extend({
  reason: z.enum(['accept-routes-off', 'exit-route', 'lan-overlap', 'malformed', 'too-wide']),
  /** For people: "route 192.168.1.0/24 from nas overlaps your LAN (eth0 192.168.1.0/24); your LAN wins". */
  note: z.string(),
});
export type RouteSkip = z.infer<typeof RouteSkip>;

export const RouteStatus = z.object({
  /** Subnet routes are used only when the operator accepts them (`weft up --accept-routes`, "Use subnet routes"). */
  acceptRoutes: z.boolean(),
  /** The routing table of Weft's own the routes live in, reached by policy rules. */
  table: z.number().int(),
  /** Routes now installed: peers' own addresses and accepted subnet routes. */
  installed: z.array(RouteEntry),
  /** Routes offered in the netmap and not installed, and the LAN overlaps (the LAN keeps winning). */
  skipped: z.array(RouteSkip),
  /** Why the routes could not be applied (the previous ones stay); null when they are in place. */
  error: z.string().nullable(),
});
export type RouteStatus = z.infer<typeof RouteStatus>;

export const DnsStatus = z.object({
  /** MagicDNS as configured by the operator (`--accept-dns`, "Use MagicDNS"). */
  acceptDns: z.boolean(),
  /** How the OS is pointed at 100.100.100.100: systemd-resolved per link, /etc/resolv.conf written directly, or not. */
  mode: z.enum(['resolved', 'direct', 'off']),
  /** The tailnet's MagicDNS suffix (e.g. "tailnet.example.com"), null when MagicDNS is off in the tailnet. */
  suffix: z.string().nullable(),
  /** Whether the resolver at 100.100.100.100 is serving. */
  serving: z.boolean(),
  /** Why DNS is not configured as the netmap asks (the last good configuration stays); null when it is. */
  error: z.string().nullable(),
});
export type DnsStatus = z.infer<typeof DnsStatus>;

export const TailnetStatus = z.object({
  filter: FilterStatus,
  routes: RouteStatus,
  dns: DnsStatus,
  /** Who may reach this device, from the filter now enforced. */
  access: z.array(AccessGrant),
});
export type TailnetStatus = z.infer<typeof TailnetStatus>;
