/**
 * tailcfg.DERPMap as control servers send it (dataplane-protocol §5.7), as a zod schema.
 * Unknown fields are kept out; missing optional fields take Tailscale's defaults where they matter
 * (STUNPort 0 → 3478, negative → no STUN; DERPPort 0 → 443).
 */
import { z } from 'zod';

export const DerpNode = z.object({
  Name: z.string(),
  RegionID: z.number().int(),
  HostName: z.string(),
  CertName: z.string().optional(),
  IPv4: z.string().optional(),
  IPv6: z.string().optional(),
  STUNPort: z.number().int().optional(),
  STUNOnly: z.boolean().optional(),
  DERPPort: z.number().int().optional(),
  InsecureForTests: z.boolean().optional(),
  STUNTestIP: z.string().optional(),
  CanPort80: z.boolean().optional(),
});
export type DerpNode = z.infer<typeof DerpNode>;

export const DerpRegion = z.object({
  RegionID: z.number().int().positive(),
  RegionCode: z.string(),
  RegionName: z.string().optional(),
  Avoid: z.boolean().optional(),
  NoMeasureNoHome: z.boolean().optional(),
  Nodes: z.array(DerpNode).nullable().optional(),
});
export type DerpRegion = z.infer<typeof DerpRegion>;

export const DerpMap = z.object({
  Regions: z.record(z.string(), DerpRegion),
  OmitDefaultRegions: z.boolean().optional(),
  HomeParams: z.object({ RegionScore: z.record(z.string(), z.number()).nullable().optional() }).nullable().optional(),
});
export type DerpMap = z.infer<typeof DerpMap>;

/** STUN port of a node: 0/absent means 3478, negative means the node does no STUN (null). */
export function stunPort(n: DerpNode): number | null {
  const p = n.STUNPort ?? 0;
  if (p < 0) return null;
  return p === 0 ? 3478 : p;
}
