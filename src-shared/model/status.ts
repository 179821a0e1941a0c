/**
 * What `weft status --json` prints and what the engine reports to the UI: control state, this node, peers.
 */
import { z } from 'zod';

export const ControlState = z.enum(['connected', 'connecting', 'needs-login', 'expired', 'error']);

export const PeerPath = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('direct'), endpoint: z.string(), latencyMs: z.number() }),
  z.object({ kind: z.literal('relay'), region: z.number() }),
  z.object({ kind: z.literal('connecting') }),
  z.object({ kind: z.literal('offline') }),
]);
export type PeerPath = z.infer<typeof PeerPath>;

export const PeerStatus = z.object({
  id: z.string(),
  name: z.string(),
  nodeKey: z.string(),
  discoKey: z.string().nullable(),
  addresses: z.array(z.string()),
  allowedIPs: z.array(z.string()),
  endpoints: z.array(z.string()),
  homeRegion: z.number().nullable(),
  online: z.boolean().nullable(),
  lastSeen: z.string().nullable(),
  keyExpiry: z.string().nullable(),
  path: PeerPath,
  /** Last completed WireGuard handshake (RFC 3339), and bytes through the tunnel. */
  lastHandshake: z.string().nullable(),
  rxBytes: z.number(),
  txBytes: z.number(),
});
export type PeerStatus = z.infer<typeof PeerStatus>;

export const SelfStatus = z.object({
  name: z.string(),
  nodeKey: z.string(),
  addresses: z.array(z.string()),
  keyExpiry: z.string().nullable(),
});

export const StatusReport = z.object({
  control: z.object({
    state: ControlState,
    url: z.string(),
    error: z.string().nullable(),
    authUrl: z.string().nullable(),
  }),
  self: SelfStatus.nullable(),
  peers: z.array(PeerStatus),
});
export type StatusReport = z.infer<typeof StatusReport>;
