/**
 * Routes by kind: which of the netmap's prefixes Weft routes, and which go into each peer's WireGuard AllowedIPs.
 * Pure.
 *
 * headscale puts three kinds of prefix into a peer's `AllowedIPs` (hscontrol/types/node.go `TailNode` in 0.29,
 * mapper/tail.go in 0.26): the peer's own addresses, the subnet routes the viewer may use (also listed in
 * `PrimaryRoutes`), and approved exit routes (0.0.0.0/0, ::/0). Like Tailscale's Linux client
 * (net/routemanager/routemanager.go, ipn/prefs.go `DefaultRouteAll`):
 *  - own addresses are always routed;
 *  - subnet routes only with accept-routes (off by default);
 *  - exit routes never here (they need the user to pick that exit node, a later feature).
 * A prefix Weft does not route is also left out of the peer's AllowedIPs, because AllowedIPs is WireGuard's
 * inbound source check too (wireguard-tools wg(8)): a peer cannot send from a subnet the operator did not accept.
 *
 * Unlike tailscaled (issue tailscale/tailscale#6231), a directly connected LAN keeps winning: an accepted route
 * that equals or lies inside a connected prefix is not installed, and one that contains a connected prefix is
 * installed with a `throw` for that prefix in Weft's table, so the lookup falls through to `main`.
 */
import type { RouteEntry, RouteSkip } from '../../../src-shared/model/tailnet.ts';
import type { Node } from '../../protocol/control/tailcfg.ts';
import { shortName } from '../control/status.ts';
import { formatPrefix, maskPrefix, parseIpPrefix, type IpPrefix } from '../wg/ip-prefix.ts';
import { routeRefusal } from '../wg/validate.ts';

/** A prefix of a directly connected network (from the host's interfaces). */
export interface LanPrefix {
  iface: string;
  prefix: string;
}

export interface RoutePlanInput {
  peers: readonly Node[];
  acceptRoutes: boolean;
  /** Connected networks of the host's other interfaces (not Weft's, not loopback). */
  lan: readonly LanPrefix[];
  /** False when the host runs IPv4-only: IPv6 prefixes are neither routed nor allowed. */
  ipv6: boolean;
}

export interface RoutePlan {
  /** Routes to install in Weft's table through its interface, with the peer that offers each. */
  routes: RouteEntry[];
  /** Connected prefixes to `throw` in Weft's table (an accepted route covers them; the LAN wins). */
  throws: string[];
  /** Offered and not routed, and LAN overlaps, each with a note for people. */
  skipped: RouteSkip[];
  /** Each peer's WireGuard AllowedIPs (by node ID): exactly what is routed to it. */
  allowedIPs: Map<string, string[]>;
}


/** Whether `outer` contains `inner` (same family, outer no longer, same leading bits). */
export function prefixContains(outer: IpPrefix, inner: IpPrefix): boolean {
  if (outer.family !== inner.family || outer.bits > inner.bits) return false;
  return maskPrefix({ ...inner, bits: outer.bits }).ip === maskPrefix(outer).ip;
}

export function planRoutes(inp: RoutePlanInput): RoutePlan {
  const routes: RouteEntry[] = [];
  const throws = new Set<string>();
  const skipped: RouteSkip[] = [];
  const allowedIPs = new Map<string, string[]>();
  const taken = new Set<string>();
  const lan = inp.lan.flatMap((l) => {
    const p = parseIpPrefix(l.prefix, { allowBare: true });
    return p ? [{ iface: l.iface, p: maskPrefix(p), text: formatPrefix(maskPrefix(p)) }] : [];
  });
  const peers = [...inp.peers].filter((p) => !p.Expired).sort((a, b) => Number(a.ID) - Number(b.ID) || a.ID.localeCompare(b.ID));
  for (const peer of peers) {
    const name = shortName(peer);
    // Only host prefixes count as a peer's own address; anything wider goes through the subnet-route checks.
    const own = new Set(peer.Addresses.flatMap((a) => {
      const p = parseIpPrefix(a, { allowBare: true });
      return p && p.bits === (p.family === 4 ? 32 : 128) ? [formatPrefix(p)] : [];
    }));
    const allowed: string[] = [];
    let exitNoted = false;
    for (const raw of peer.AllowedIPs) {
      const parsed = parseIpPrefix(raw, { allowBare: true });
      if (!parsed) {
        skipped.push({ prefix: raw.slice(0, 64), peer: name, reason: 'malformed', note: `${name} offers ${JSON.stringify(raw.slice(0, 64))}, which is not an IP prefix` });
        continue;
      }
      const p = maskPrefix(parsed);
      const text = formatPrefix(p);
      if (p.family === 6 && !inp.ipv6) continue;
      if (p.bits === 0) {
        if (!exitNoted) skipped.push({ prefix: text, peer: name, reason: 'exit-route', note: `${name} offers an exit node; Weft uses exit nodes only when you pick one` });
        exitNoted = true;
        continue;
      }
      if (taken.has(text)) continue; // one prefix belongs to one WireGuard peer; the lower node ID keeps it
      if (own.has(text)) {
        taken.add(text);
        allowed.push(text);
        routes.push({ prefix: text, peer: name });
        continue;
      }
      // A subnet route.
      if (!inp.acceptRoutes) {
        skipped.push({ prefix: text, peer: name, reason: 'accept-routes-off', note: `route ${text} from ${name} is not used: subnet routes are off` });
        continue;
      }
      const why = routeRefusal(text);
      if (why) {
        skipped.push({ prefix: text, peer: name, reason: 'too-wide', note: why });
        continue;
      }
      const inside = lan.find((l) => prefixContains(l.p, p));
      if (inside) {
        skipped.push({
          prefix: text,
          peer: name,
          reason: 'lan-overlap',
          note: `route ${text} from ${name} overlaps your LAN (${inside.iface} ${inside.text}); your LAN wins`,
        });
        continue;
      }
      for (const l of lan.filter((l) => prefixContains(p, l.p))) {
        throws.add(l.text);
        skipped.push({
          prefix: text,
          peer: name,
          reason: 'lan-overlap',
          note: `route ${text} from ${name} covers your LAN (${l.iface} ${l.text}); your LAN wins there`,
        });
      }
      taken.add(text);
      allowed.push(text);
      routes.push({ prefix: text, peer: name });
    }
    allowedIPs.set(peer.ID, allowed);
  }
  return { routes, throws: [...throws].sort(), skipped, allowedIPs };
}

/**
 * The host's connected prefixes from `os.networkInterfaces()`-shaped data: every non-internal address's network,
 * except Weft's own interfaces, IPv6 link-local and tailnet addresses (100.64.0.0/10, fd7a:115c:a1e0::/48).
 */
export function connectedPrefixes(
  ifaces: Record<string, readonly { address: string; cidr: string | null; internal: boolean }[] | undefined>,
  skipIface: (name: string) => boolean,
): LanPrefix[] {
  const out = new Map<string, LanPrefix>();
  const tailnet = [parseIpPrefix('100.64.0.0/10')!, parseIpPrefix('fd7a:115c:a1e0::/48')!, parseIpPrefix('fe80::/10')!];
  for (const [name, addrs] of Object.entries(ifaces)) {
    if (skipIface(name)) continue;
    for (const a of addrs ?? []) {
      if (a.internal || !a.cidr) continue;
      const p = parseIpPrefix(a.cidr);
      if (!p || p.bits === 0) continue;
      const m = maskPrefix(p);
      if (tailnet.some((t) => prefixContains(t, m))) continue;
      // A host route (/32, /128) is no network to protect.
      if (m.bits === (m.family === 4 ? 32 : 128)) continue;
      out.set(formatPrefix(m), { iface: name, prefix: formatPrefix(m) });
    }
  }
  return [...out.values()];
}
