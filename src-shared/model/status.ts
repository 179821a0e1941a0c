/**
 * What `weft status --json` prints and what the engine reports to the UI: control state, this node, peers.
 */
import { z } from 'zod';
import { TailnetStatus } from './tailnet.ts';

export const ControlState = z.enum(['connected', 'connecting', 'needs-login', 'expired', 'error']);

/** Where joining stands (finer than ControlState, for the join screen); `failed` comes with ControlState error. */
export const JoinStage = z.enum(['reaching-server', 'handshake', 'registering', 'waiting-approval', 'connected', 'failed']);
export type JoinStage = z.infer<typeof JoinStage>;

export const PeerPath = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('direct'), endpoint: z.string(), latencyMs: z.number() }),
  z.object({ kind: z.literal('relay'), region: z.number() }),
  z.object({ kind: z.literal('connecting') }),
  z.object({ kind: z.literal('offline') }),
]);
export type PeerPath = z.infer<typeof PeerPath>;

/**
 * A peer's own network facts, as it reported them to control (Hostinfo.NetInfo); null fields were not reported.
 * Together with our own NetcheckReport they explain why a link is relayed.
 */
export const PeerNetInfo = z.object({
  mappingVariesByDestIP: z.boolean().nullable(),
  workingUDP: z.boolean().nullable(),
  hairPinning: z.boolean().nullable(),
  havePortMap: z.boolean().nullable(),
  preferredDERP: z.number().nullable(),
});
export type PeerNetInfo = z.infer<typeof PeerNetInfo>;

/** Disco evidence for one peer: how many pings we sent and how many were answered over UDP (direct). */
export const DiscoStats = z.object({
  pingsSent: z.number().int().nonnegative(),
  pongsReceived: z.number().int().nonnegative(),
  /** When the last direct pong arrived (RFC 3339), null if never. */
  lastPongAt: z.string().nullable(),
  /** Whether the peer has pinged us directly (its packets reach us over UDP). */
  pingsReceived: z.number().int().nonnegative(),
});
export type DiscoStats = z.infer<typeof DiscoStats>;

export const PeerStatus = z.object({
  id: z.string(),
  name: z.string(),
  /** The MagicDNS name without the trailing dot ("nas.tailnet.example.com"); the short name when the tailnet has no base domain. */
  fqdn: z.string().default(''),
  nodeKey: z.string(),
  discoKey: z.string().nullable(),
  addresses: z.array(z.string()),
  allowedIPs: z.array(z.string()),
  /** Subnet routes this peer is the primary router for (exit routes are not listed here). */
  primaryRoutes: z.array(z.string()).default([]),
  /** The peer offers an exit node (0.0.0.0/0 and ::/0 approved). */
  exitNode: z.boolean().default(false),
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
  /** The peer's own NetInfo from control, and our disco evidence for it (both explain a relayed link). */
  netInfo: PeerNetInfo.nullable().default(null),
  disco: DiscoStats.nullable().default(null),
});
export type PeerStatus = z.infer<typeof PeerStatus>;

export const SelfStatus = z.object({
  name: z.string(),
  fqdn: z.string().default(''),
  nodeKey: z.string(),
  addresses: z.array(z.string()),
  keyExpiry: z.string().nullable(),
});

/** The wireguard-go binary the data plane runs (weftd's choice: $WEFT_WIREGUARD_GO, Weft's pinned build, or PATH). */
export const WireguardGoStatus = z.object({
  path: z.string(),
  /** What its `--version` printed ("0.0.20250522"); null when it did not answer. */
  version: z.string().nullable(),
  /** It is the version Weft pins (scripts/build-wireguard-go.sh); false means an older, slower build such as Debian's. */
  pinned: z.boolean(),
});
export type WireguardGoStatus = z.infer<typeof WireguardGoStatus>;

/** The WireGuard device: a kernel link (`ip link add type wireguard`) or a wireguard-go process, and why. */
export const WgDeviceStatus = z.object({ kind: z.enum(['kernel', 'wireguard-go']), reason: z.string() });
export type WgDeviceStatus = z.infer<typeof WgDeviceStatus>;

export const StatusReport = z.object({
  control: z.object({
    state: ControlState,
    url: z.string(),
    error: z.string().nullable(),
    authUrl: z.string().nullable(),
    stage: JoinStage.nullable().default(null),
  }),
  self: SelfStatus.nullable(),
  peers: z.array(PeerStatus),
  /**
   * Why the data plane is not in step with the netmap (the interface could not be created yet, or the last netmap
   * could not be applied and the previous WireGuard peers and routes stay in force); null when it is.
   */
  dataPlaneError: z.string().nullable().optional(),
  /**
   * How WireGuard's packets travel (null before the data plane exists): `kernel` when WireGuard owns the public
   * port and sends straight to peers with a direct path; `proxy` when every packet passes through Weft's own
   * socket (nft missing or refused, or turned off), with the reason.
   */
  dataPath: z
    .object({
      mode: z.enum(['kernel', 'proxy']),
      reason: z.string().nullable(),
      wireguardGo: WireguardGoStatus.nullable().optional(),
      device: WgDeviceStatus.nullable().optional(),
    })
    .nullable()
    .optional(),
  /** The ACL filter, routes and MagicDNS as enforced (null before the data plane exists). */
  tailnet: TailnetStatus.nullable().default(null),
});
export type StatusReport = z.infer<typeof StatusReport>;
