/**
 * The DERP map `weft server` hands out (control-protocol §9.6): either one from configuration, or the region
 * of its own embedded DERP (`--derp`) and STUN (`--stun`) servers, numbered 999 with code "headscale" as
 * headscale's embedded region is. Pure.
 */
import type { DerpMap, DerpNode } from '../../../src-shared/model/derp-map.ts';

export const EMBEDDED_REGION_ID = 999;

export interface EmbeddedRegionInit {
  /** The server URL clients use; the DERP node is that host and port. */
  serverUrl: URL;
  /** Whether DERP is served on the server URL (`--derp`). */
  derp: boolean;
  /** The embedded STUN server's UDP port, or null when STUN is off. */
  stunPort: number | null;
}

/** A one-region map for the embedded DERP/STUN servers; an empty map when both are off. */
export function embeddedDerpMap(o: EmbeddedRegionInit): DerpMap {
  if (!o.derp && o.stunPort === null) return { Regions: {} };
  const host = o.serverUrl.hostname.replace(/^\[|\]$/g, '');
  const isIp = /^[0-9.]+$/.test(host) || host.includes(':');
  const port = Number(o.serverUrl.port || (o.serverUrl.protocol === 'https:' ? 443 : 80));
  const node: DerpNode = {
    Name: `${EMBEDDED_REGION_ID}a`,
    RegionID: EMBEDDED_REGION_ID,
    HostName: host,
    ...(isIp ? (host.includes(':') ? { IPv6: host, IPv4: 'none' } : { IPv4: host }) : {}),
    STUNPort: o.stunPort ?? -1,
    STUNOnly: !o.derp,
    DERPPort: port,
  };
  return { Regions: { [String(EMBEDDED_REGION_ID)]: { RegionID: EMBEDDED_REGION_ID, RegionCode: 'headscale', RegionName: 'Weft Embedded DERP', Nodes: [node] } } };
}
