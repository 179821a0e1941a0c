/**
 * Validation of what becomes an `ip` argument: interface addresses, route prefixes, MTU. Shared by the
 * wireguard-go backend, the fake and the helper's schemas, so every path refuses the same things. Pure.
 */
import { WgError } from './iface.ts';
import { formatPrefix, maskPrefix, parseIpPrefix } from './ip-prefix.ts';

/** MTU bounds: IPv4's minimum datagram size, and the largest a TUN takes. */
export const MIN_MTU = 576;
export const MAX_MTU = 65535;

/** Validates interface addresses ("ip/bits" or a bare host address); returns them canonical. */
export function validateAddresses(addresses: readonly string[]): string[] {
  return addresses.map((a) => {
    const p = parseIpPrefix(a, { allowBare: true });
    if (!p) throw new WgError('invalid', `not an IP address or prefix: ${JSON.stringify(a)}`);
    return formatPrefix(p);
  });
}

/**
 * The shortest prefixes Weft installs as routes. Anything wider captures a large part of all traffic: /0 (a default
 * route, which only an exit node the user selected may take) and pairs like 0.0.0.0/1 + 128.0.0.0/1 that add up to
 * one. Such prefixes never come from a peer's own addresses or an ordinary subnet route.
 */
export const MIN_ROUTE_BITS = { 4: 8, 6: 16 } as const;

/** Why Weft will not install `text` as a route, or null when it may. */
export function routeRefusal(text: string): string | null {
  const p = parseIpPrefix(text, { allowBare: true });
  if (!p) return `not an IP prefix: ${JSON.stringify(text.slice(0, 64))}`;
  if (p.bits === 0) return `refusing a default route (${text}): Weft routes only peers' own addresses and subnets`;
  if (p.bits < MIN_ROUTE_BITS[p.family]) return `refusing ${text}: wider than /${MIN_ROUTE_BITS[p.family]}, it would capture this machine's traffic`;
  return null;
}

/** Validates route prefixes (routeRefusal). Returns them canonical (host bits cleared), de-duplicated. */
export function validateRoutes(prefixes: readonly string[]): string[] {
  const out = prefixes.map((s) => {
    const why = routeRefusal(s);
    if (why) throw new WgError(why.startsWith('not an') ? 'invalid' : 'refused', why);
    return formatPrefix(maskPrefix(parseIpPrefix(s, { allowBare: true })!));
  });
  return [...new Set(out)];
}

export function validateMtu(mtu: number): number {
  if (!Number.isInteger(mtu) || mtu < MIN_MTU || mtu > MAX_MTU) throw new WgError('invalid', `MTU must be an integer ${MIN_MTU}-${MAX_MTU}, got ${mtu}`);
  return mtu;
}
