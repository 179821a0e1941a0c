/**
 * From a DERP map to what the engine dials (dataplane-protocol §5.7): per region, the DERP server to connect to
 * and the STUN servers to probe. Pure.
 *
 * Dialling follows the Go client: connect to the node's IPv4 when the map gives one (else its HostName), port
 * DERPPort (0 → 443), TLS with the node's CertName (else HostName) as the name to verify, and skip verification
 * only for a node marked InsecureForTests (a lab derper with a self-signed certificate). The first node of a
 * region that is not STUN-only is the region's DERP server.
 */
import { stunPort, type DerpMap } from '../../../src-shared/model/derp-map.ts';
import { ipToBytes, type UdpAddr } from '../../protocol/wire/addr.ts';

export interface DerpTarget {
  regionId: number;
  /** Address or name to connect to. */
  host: string;
  port: number;
  /** TLS (false only with the plain-HTTP debug switch). */
  secure: boolean;
  /** Name the certificate must match (and SNI); null when it is an IP address (no SNI for IPs, RFC 6066 §3). */
  serverName: string | null;
  /** InsecureForTests: accept any certificate from this node. */
  insecure: boolean;
}

export interface StunTarget {
  regionId: number;
  addr: UdpAddr;
}

/** A stable string for a target, to tell whether a region's server changed with a new DERP map. */
export function targetKey(t: DerpTarget): string {
  return `${t.secure ? 'https' : 'http'}://${t.host}:${t.port} sni=${t.serverName ?? '-'} insecure=${String(t.insecure)}`;
}

function usableIp(ip: string | undefined): ip is string {
  return ip !== undefined && ip !== '' && ip !== 'none' && ipToBytes(ip) !== null;
}

/**
 * The DERP server of each region. `plainHttp` is the debug switch for labs whose DERP serves plain HTTP
 * (headscale's embedded DERP behind a plain-HTTP control URL; Tailscale's TS_DEBUG_USE_DERP_HTTP).
 */
export function derpTargets(map: DerpMap | null | undefined, plainHttp = false): Map<number, DerpTarget> {
  const out = new Map<number, DerpTarget>();
  for (const r of Object.values(map?.Regions ?? {})) {
    const n = (r.Nodes ?? []).find((x) => !x.STUNOnly);
    if (!n) continue;
    const host = usableIp(n.IPv4) ? n.IPv4 : n.HostName;
    if (!host) continue;
    const name = n.CertName || n.HostName;
    out.set(r.RegionID, {
      regionId: r.RegionID,
      host,
      port: n.DERPPort && n.DERPPort > 0 ? n.DERPPort : 443,
      secure: !plainHttp,
      serverName: name && ipToBytes(name) === null ? name : null,
      insecure: n.InsecureForTests === true,
    });
  }
  return out;
}

/** Every IPv4 STUN server of the map, by region (nodes with STUNPort < 0 do no STUN). */
export function stunTargets(map: DerpMap | null | undefined): StunTarget[] {
  const out: StunTarget[] = [];
  for (const r of Object.values(map?.Regions ?? {})) {
    for (const n of r.Nodes ?? []) {
      const port = stunPort(n);
      if (port === null) continue;
      const ip = usableIp(n.STUNTestIP) ? n.STUNTestIP : usableIp(n.IPv4) ? n.IPv4 : null;
      if (ip && !ip.includes(':')) out.push({ regionId: r.RegionID, addr: { ip, port } });
    }
  }
  return out;
}
