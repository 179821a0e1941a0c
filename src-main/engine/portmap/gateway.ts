/**
 * Finds the IPv4 default gateway and our local IPv4 address toward it (Linux: /proc/net/route).
 *
 * /proc/net/route is a tab-separated table with a header line:
 *
 *   Iface  Destination  Gateway   Flags  RefCnt  Use  Metric  Mask      MTU  Window  IRTT
 *   eth0   00000000     0101A8C0  0003   0       0    100     00000000  0    0       0
 *
 * Destination, Gateway and Mask are the 32-bit address printed with %08X in *host* byte order, so on a
 * little-endian machine 0101A8C0 is 192.168.1.1. Flags is hex: RTF_UP = 0x1, RTF_GATEWAY = 0x2.
 * A default route has Destination = 0 and Mask = 0.
 *
 * The parsing and selection are pure exported functions; `findDefaultGateway` does the IO.
 */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { ipv4ToBytes } from '../../protocol/wire/addr.ts';

const RTF_UP = 0x1;
const RTF_GATEWAY = 0x2;

export interface RouteEntry {
  iface: string;
  destination: string;
  gateway: string;
  mask: string;
  flags: number;
  metric: number;
}

export interface DefaultGateway {
  /** Gateway IPv4 address. */
  gateway: string;
  /** Interface the default route uses. */
  iface: string;
  /** Our IPv4 address on that interface (preferring one in the gateway's subnet). */
  localIp: string;
  /** Whether the gateway is an RFC 1918 address, i.e. plausibly a home router. */
  likelyHomeRouter: boolean;
}

/** The subset of os.networkInterfaces() the selection needs. */
export interface IfaceAddr {
  address: string;
  netmask: string;
  family: string | number;
  internal: boolean;
}
export type IfaceTable = Record<string, readonly IfaceAddr[] | undefined>;

function hexToIpv4(hex: string, endianness: 'LE' | 'BE'): string | null {
  if (!/^[0-9A-Fa-f]{8}$/.test(hex)) return null;
  const n = parseInt(hex, 16);
  const b = [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
  if (endianness === 'LE') b.reverse();
  return b.join('.');
}

/** Parses the text of /proc/net/route. Unparseable lines are skipped. Never throws. */
export function parseProcNetRoute(text: string, endianness: 'LE' | 'BE' = 'LE'): RouteEntry[] {
  const out: RouteEntry[] = [];
  const lines = text.split('\n');
  for (const raw of lines.slice(1)) {
    const f = raw.trim().split(/\s+/);
    if (f.length < 8) continue;
    const [iface, dst, gw, flagsHex, , , metricText, maskHex] = f as [string, string, string, string, string, string, string, string];
    const destination = hexToIpv4(dst, endianness);
    const gateway = hexToIpv4(gw, endianness);
    const mask = hexToIpv4(maskHex, endianness);
    if (!destination || !gateway || !mask) continue;
    if (!/^[0-9A-Fa-f]{1,8}$/.test(flagsHex) || !/^\d+$/.test(metricText)) continue;
    out.push({ iface, destination, gateway, mask, flags: parseInt(flagsHex, 16), metric: Number(metricText) });
  }
  return out;
}

/** Default routes (up, via a gateway, 0.0.0.0/0), lowest metric first; stable for equal metrics. */
export function defaultRoutes(routes: readonly RouteEntry[], opts: { excludeIfaces?: readonly string[] } = {}): RouteEntry[] {
  const excluded = new Set(opts.excludeIfaces ?? []);
  return routes
    .map((r, i) => ({ r, i }))
    .filter(
      ({ r }) =>
        r.destination === '0.0.0.0' &&
        r.mask === '0.0.0.0' &&
        (r.flags & RTF_UP) !== 0 &&
        (r.flags & RTF_GATEWAY) !== 0 &&
        r.gateway !== '0.0.0.0' &&
        !excluded.has(r.iface),
    )
    .sort((a, b) => a.r.metric - b.r.metric || a.i - b.i)
    .map(({ r }) => r);
}

function toU32(ip: string): number | null {
  const b = ipv4ToBytes(ip);
  return b ? ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0 : null;
}

/** Reports whether an IPv4 address is in 10/8, 172.16/12 or 192.168/16. */
export function isRfc1918(ip: string): boolean {
  const n = toU32(ip);
  if (n === null) return false;
  return n >>> 24 === 10 || n >>> 20 === (172 << 4) + 1 || n >>> 16 === (192 << 8) + 168;
}

function sameSubnet(a: string, b: string, mask: string): boolean {
  const x = toU32(a);
  const y = toU32(b);
  const m = toU32(mask);
  if (x === null || y === null || m === null) return false;
  return ((x & m) >>> 0) === ((y & m) >>> 0);
}

/**
 * Picks the first default route (by metric) whose interface has a usable IPv4 address and returns it
 * with that address. Pure.
 */
export function pickDefaultGateway(
  routes: readonly RouteEntry[],
  ifaces: IfaceTable,
  opts: { excludeIfaces?: readonly string[] } = {},
): DefaultGateway | null {
  for (const r of defaultRoutes(routes, opts)) {
    const addrs = (ifaces[r.iface] ?? []).filter((a) => (a.family === 'IPv4' || a.family === 4) && !a.internal && ipv4ToBytes(a.address));
    const chosen = addrs.find((a) => sameSubnet(a.address, r.gateway, a.netmask)) ?? addrs[0];
    if (!chosen) continue;
    return { gateway: r.gateway, iface: r.iface, localIp: chosen.address, likelyHomeRouter: isRfc1918(r.gateway) };
  }
  return null;
}

/**
 * Our IPv4 address on the interface whose subnet contains `gateway`, or null. Loopback interfaces count
 * only for a loopback gateway (tests). Pure; pass os.networkInterfaces().
 */
export function localIpForGateway(gateway: string, ifaces: IfaceTable): string | null {
  if (!ipv4ToBytes(gateway)) return null;
  const loopbackGw = gateway.startsWith('127.');
  for (const addrs of Object.values(ifaces)) {
    for (const a of addrs ?? []) {
      if (!(a.family === 'IPv4' || a.family === 4) || !ipv4ToBytes(a.address)) continue;
      if (a.internal && !loopbackGw) continue;
      if (sameSubnet(a.address, gateway, a.netmask)) return a.address;
    }
  }
  return null;
}

/**
 * Reads /proc/net/route and the interface table and returns the default gateway, or null when there is
 * none (or not on Linux, or the file cannot be read).
 */
export async function findDefaultGateway(
  opts: { excludeIfaces?: readonly string[]; routeFile?: string; ifaces?: IfaceTable } = {},
): Promise<DefaultGateway | null> {
  let text: string;
  try {
    text = await readFile(opts.routeFile ?? '/proc/net/route', 'utf8');
  } catch {
    return null;
  }
  const routes = parseProcNetRoute(text, os.endianness());
  return pickDefaultGateway(routes, opts.ifaces ?? os.networkInterfaces(), opts);
}
