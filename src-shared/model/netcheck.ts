/**
 * The NAT report: what `weft netcheck --json` prints and what the engine sends to the UI.
 * Schemas are zod so that the report is validated wherever it crosses a boundary (IPC, CLI output tests).
 */
import { z } from 'zod';

export const NatBehaviour = z.enum(['endpoint-independent', 'address-dependent', 'address-and-port-dependent', 'unknown']);
export type NatBehaviour = z.infer<typeof NatBehaviour>;

/**
 * Summary a user understands:
 * - open: a public address with nothing filtering inbound (anyone can reach us);
 * - firewall: a public address behind a stateful firewall (no NAT, but unsolicited packets are dropped);
 * - easy: NAT whose mapping does not depend on the destination; hole punching works with most peers;
 * - hard: NAT whose mapping changes per destination; direct links need a peer with an easy NAT or a relay;
 * - udp-blocked: no UDP gets out; only a TCP relay (DERP over HTTPS) works;
 * - unknown: UDP works but too few servers answered to tell the mapping behaviour.
 */
export const NatType = z.enum(['open', 'firewall', 'easy', 'hard', 'udp-blocked', 'unknown']);
export type NatType = z.infer<typeof NatType>;

export const PortMappingReport = z.object({
  natpmp: z.boolean(),
  pcp: z.boolean(),
  upnp: z.boolean(),
  externalV4: z.string().nullable(),
  /** Whether a test mapping could be created (null when no service answered). */
  usable: z.boolean().nullable(),
  /** Why a found service is not usable, in words (for example a CGNAT between the router and the internet). */
  error: z.string().nullable(),
});
export type PortMappingReport = z.infer<typeof PortMappingReport>;

export const NetcheckReport = z.object({
  udp: z.boolean(),
  publicV4: z.string().nullable(),
  mapping: NatBehaviour,
  filtering: NatBehaviour,
  mappingVariesByDestIP: z.boolean().nullable(),
  portPreserved: z.boolean().nullable(),
  hairpinning: z.boolean().nullable(),
  portMapping: PortMappingReport,
  regionLatencyMs: z.record(z.string(), z.number()),
  preferredRegion: z.number().nullable(),
  natType: NatType,
  /** Whether the local address is itself public (no NAT between us and the STUN servers). */
  behindNat: z.boolean().nullable(),
  /** Whether the server answered RFC 5780 behaviour-discovery tests (CHANGE-REQUEST, OTHER-ADDRESS). */
  rfc5780: z.boolean(),
  localPort: z.number().int(),
  /** Each STUN server tried from the main socket, and what it saw. */
  servers: z.array(
    z.object({
      server: z.string(),
      mapped: z.string().nullable(),
      rttMs: z.number().nullable(),
      regionId: z.number().nullable(),
    }),
  ),
  /** Human-readable lines saying how each verdict was reached. */
  notes: z.array(z.string()),
});
export type NetcheckReport = z.infer<typeof NetcheckReport>;
