/**
 * Pure allocation rules shared by every ServerStore: node addresses (lowest free host number in 100.64.0.0/10,
 * mirrored into fd7a:115c:a1e0::/48) and unique DNS-safe given names. The store calls these inside the
 * transaction that inserts the node, so two registrations never get the same address or name.
 *
 *   host number n (1 ≤ n < 2^22-1)  →  IPv4 100.64.0.0 + n      e.g. 1 → 100.64.0.1, 256 → 100.64.1.0
 *                                   →  IPv6 fd7a:115c:a1e0::n   e.g. 1 → fd7a:115c:a1e0::1, 0x10001 → ::1:1
 *
 * Skipped host numbers (as headscale skips them): the network and broadcast addresses of the /10, Tailscale's
 * service address 100.100.100.100 (MagicDNS), the ChromeOS VM range 100.115.92.0/23, and 0x53, whose IPv6
 * mirror would be fd7a:115c:a1e0::53, Tailscale's IPv6 service address.
 */

const V4_BASE = (100 << 24) | (64 << 16); // as an unsigned value via >>> 0 where needed
const V4_SIZE = 1 << 22;
/** The highest usable host number (the last one of the /10 is its broadcast address). */
export const MAX_HOST = V4_SIZE - 2;

/** Reserved [first, last] host-number ranges, ascending. */
const RESERVED: readonly (readonly [number, number])[] = [
  [0x53, 0x53],
  [hostOf4(100, 100, 100, 100), hostOf4(100, 100, 100, 100)],
  [hostOf4(100, 115, 92, 0), hostOf4(100, 115, 93, 255)],
];

function hostOf4(a: number, b: number, c: number, d: number): number {
  return ((((a << 24) | (b << 16) | (c << 8) | d) >>> 0) - (V4_BASE >>> 0)) >>> 0;
}

/** The next host number ≥ n that is not reserved. */
function nextAllowed(n: number): number {
  let c = n;
  for (const [lo, hi] of RESERVED) if (c >= lo && c <= hi) c = hi + 1;
  return c;
}

/** Reports whether host number n may be given to a node. */
export function isAllocatable(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= MAX_HOST && nextAllowed(n) === n;
}

/** The lowest free host number given the ones in use in ascending order, or null when the pool is full. */
export function lowestFreeHost(usedAscending: Iterable<number>): number | null {
  let c = nextAllowed(1);
  for (const u of usedAscending) {
    if (u < c) continue;
    if (u > c) break;
    c = nextAllowed(c + 1);
  }
  return c <= MAX_HOST ? c : null;
}

export function ipv4ForHost(n: number): string {
  const v = ((V4_BASE >>> 0) + n) >>> 0;
  return `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
}

export function ipv6ForHost(n: number): string {
  const hi = n >>> 16;
  const lo = n & 0xffff;
  return hi === 0 ? `fd7a:115c:a1e0::${lo.toString(16)}` : `fd7a:115c:a1e0::${hi.toString(16)}:${lo.toString(16)}`;
}

/** The host number of an address in 100.64.0.0/10, or null for anything else. */
export function hostOfIpv4(ip: string): number | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return null;
  const o = [m[1], m[2], m[3], m[4]].map(Number) as [number, number, number, number];
  if (o.some((x) => x > 255) || o[0] !== 100 || o[1] < 64 || o[1] > 127) return null;
  return hostOf4(...o);
}

const MAX_LABEL = 63;

/** A DNS label from a hostname: lowercase a-z, 0-9 and '-', at most 63 characters, never empty ("node"). */
export function dnsSafeName(hostname: string): string {
  const s = hostname
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .slice(0, MAX_LABEL)
    .replace(/^-+|-+$/g, '');
  return s || 'node';
}

/** The first of base, base-2, base-3, … (each still a valid label) that `taken` does not report as taken. */
export function uniqueGivenName(hostname: string, taken: (name: string) => boolean): string {
  const base = dnsSafeName(hostname);
  if (!taken(base)) return base;
  for (let i = 2; ; i++) {
    const suffix = `-${i}`;
    const name = `${base.slice(0, MAX_LABEL - suffix.length).replace(/-+$/, '')}${suffix}`;
    if (!taken(name)) return name;
  }
}
