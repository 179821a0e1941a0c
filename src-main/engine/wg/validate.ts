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

/** Validates route prefixes and refuses /0. Returns them canonical (host bits cleared), de-duplicated. */
export function validateRoutes(prefixes: readonly string[]): string[] {
  const out = prefixes.map((s) => {
    const p = parseIpPrefix(s, { allowBare: true });
    if (!p) throw new WgError('invalid', `not an IP prefix: ${JSON.stringify(s)}`);
    if (p.bits === 0) throw new WgError('refused', `refusing a default route (${s}): Weft routes only peers' AllowedIPs`);
    return formatPrefix(maskPrefix(p));
  });
  return [...new Set(out)];
}

export function validateMtu(mtu: number): number {
  if (!Number.isInteger(mtu) || mtu < MIN_MTU || mtu > MAX_MTU) throw new WgError('invalid', `MTU must be an integer ${MIN_MTU}-${MAX_MTU}, got ${mtu}`);
  return mtu;
}
