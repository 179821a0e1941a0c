/**
 * Port-mapping part of the NAT report: finds the gateway, probes NAT-PMP/PCP/UPnP, and when any of them
 * answers, creates a short test mapping and releases it at once. That is how the report can say whether
 * mapping really works: behind a CGNAT the home router answers but cannot map (NAT-PMP result 3).
 */
import type { PortMappingReport } from '../../../src-shared/model/netcheck.ts';
import { PORTMAP_PROBE_TIMEOUT_MS, PORTMAP_TEST_LIFETIME_S } from '../constants.ts';
import { findDefaultGateway, type DefaultGateway } from '../portmap/gateway.ts';
import { createMapping, probePortMapping, releaseMapping, type MapResult } from '../portmap/portmapper.ts';
import { discardLogf, type Logf } from '../sys/log.ts';
import { NO_PORT_MAPPING } from './prober.ts';

/** Words for a failed test mapping; result 3 from a router that does answer is the CGNAT signature. */
export function mappingFailure(r: Extract<MapResult, { ok: false }>, protocol: string): string {
  if (r.resultCode === 3)
    return `the router answered ${protocol} but could not create a mapping (result 3, network failure): it is behind another NAT, such as a carrier-grade NAT, so port mapping cannot open a path from the internet`;
  if (r.resultCode === 2) return `the router refused ${protocol} mappings (result 2, not authorized)`;
  return `the ${protocol} test mapping failed: ${r.error}`;
}

export function portMappingProbe(opts: { logf?: Logf; gateway?: () => Promise<DefaultGateway | null> } = {}): (localPort: number) => Promise<PortMappingReport> {
  const logf = opts.logf ?? discardLogf;
  return async (localPort) => {
    const gw = await (opts.gateway ?? findDefaultGateway)();
    if (!gw) return { ...NO_PORT_MAPPING, error: 'no IPv4 default gateway' };
    const probe = await probePortMapping({ gateway: gw.gateway, localIp: gw.localIp, timeoutMs: PORTMAP_PROBE_TIMEOUT_MS, logf });
    const base: PortMappingReport = { natpmp: probe.natpmp, pcp: probe.pcp, upnp: probe.upnp, externalV4: probe.externalV4, usable: null, error: null };
    if (!probe.natpmp && !probe.pcp && !probe.upnp) return base;
    const res = await createMapping({ gateway: gw.gateway, localIp: gw.localIp, internalPort: localPort, lifetimeS: PORTMAP_TEST_LIFETIME_S, probe, logf });
    const proto = probe.natpmp ? 'NAT-PMP' : probe.pcp ? 'PCP' : 'UPnP';
    if (!res.ok) return { ...base, usable: false, error: mappingFailure(res, proto) };
    await releaseMapping({ gateway: gw.gateway, localIp: gw.localIp, mapping: res.mapping, logf }).catch(() => {});
    return { ...base, usable: true, externalV4: base.externalV4 ?? res.mapping.externalIp };
  };
}
