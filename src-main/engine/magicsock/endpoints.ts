/**
 * Our UDP endpoint candidates, as reported to control (MapRequest.Endpoints/EndpointTypes) and sent in
 * CallMeMaybe (dataplane-protocol.md §4.2). Pure: the caller passes the interface table and STUN results.
 *
 * Order: STUN-observed (type 2), then local interface addresses with the socket's port (type 1). IPv4
 * link-local, loopback and Weft's own tunnel addresses are skipped; duplicates keep their first type.
 */
import { formatAddr, ipv4ToBytes, type UdpAddr } from '../../protocol/wire/addr.ts';

export const EndpointType = { Unknown: 0, Local: 1, Stun: 2, Portmapped: 3, Stun4LocalPort: 4, ExplicitConf: 5 } as const;
export type EndpointTypeValue = (typeof EndpointType)[keyof typeof EndpointType];

export interface Endpoint {
  addr: UdpAddr;
  type: EndpointTypeValue;
}

export interface IfaceAddress {
  address: string;
  family: string | number;
  internal: boolean;
}

/** Reports whether an IPv4 address is one we must not advertise (loopback, link-local, CGNAT tailnet range). */
function skipV4(ip: string): boolean {
  const b = ipv4ToBytes(ip);
  if (!b) return true;
  if (b[0] === 127) return true;
  if (b[0] === 169 && b[1] === 254) return true;
  // 100.64.0.0/10 is the tailnet's own range (Weft's and Tailscale's interface addresses).
  if (b[0] === 100 && b[1]! >= 64 && b[1]! <= 127) return true;
  return false;
}

/** Local IPv4 endpoints: every non-internal interface address with the shared socket's port. */
export function localEndpoints(ifaces: Record<string, readonly IfaceAddress[] | undefined>, port: number, ownIfaces: readonly string[] = []): Endpoint[] {
  const out: Endpoint[] = [];
  for (const [name, addrs] of Object.entries(ifaces)) {
    if (ownIfaces.includes(name)) continue;
    for (const a of addrs ?? []) {
      const v4 = a.family === 'IPv4' || a.family === 4;
      if (!v4 || a.internal || skipV4(a.address)) continue;
      out.push({ addr: { ip: a.address, port }, type: EndpointType.Local });
    }
  }
  return out;
}

/** Merges endpoint lists in priority order, dropping duplicates (first type wins). */
export function mergeEndpoints(...lists: Endpoint[][]): Endpoint[] {
  const seen = new Set<string>();
  const out: Endpoint[] = [];
  for (const l of lists)
    for (const e of l) {
      const k = formatAddr(e.addr);
      if (seen.has(k)) continue;
      seen.add(k);
      out.push(e);
    }
  return out;
}

/** Reports whether two endpoint sets are the same, ignoring order. */
export function sameEndpointSet(a: readonly Endpoint[], b: readonly Endpoint[]): boolean {
  if (a.length !== b.length) return false;
  const s = new Set(a.map((e) => `${formatAddr(e.addr)}/${e.type}`));
  return b.every((e) => s.has(`${formatAddr(e.addr)}/${e.type}`));
}
