/**
 * The tailcfg JSON messages of the control protocol, as zod schemas (control-protocol §7, §8.1, §9, §11).
 *
 * Covers the subset a headscale server sends and a client sends: RegisterRequest/RegisterResponse for
 * `POST /machine/register`, MapRequest/MapResponse for `POST /machine/map`, and their sub-objects (Node,
 * PeerChange, Hostinfo, NetInfo, UserProfile, DERPMap on the wire, DNSConfig, FilterRule, PingRequest).
 *
 * Decoding is as lenient as Go's encoding/json, because that is what both ends use (§11):
 * - unknown fields are ignored (stripped), except in objects kept and shown again verbatim (Hostinfo,
 *   DNSConfig, FilterRule, SSHPolicy), which keep them;
 * - `null` is accepted wherever Go accepts it: a nil slice, map or pointer, and even a plain bool/int/string
 *   (Go leaves the zero value). Inside a Node, nil and empty slices mean the same and both parse to `[]`; at
 *   the top level of a MapResponse and in a PeerChange, null/absent means "unchanged" and parses to
 *   `undefined`, while `[]` stays `[]`;
 * - zero keys and zero times may be sent explicitly (headscale ≤ 0.27) or omitted (0.28+); a parsed Node
 *   always carries them, so both forms read the same.
 *
 * Times stay RFC 3339 strings as sent (up to nanoseconds); `parseGoTime` converts one to milliseconds and
 * `isZeroTime` recognises Go's zero time `0001-01-01T00:00:00Z`.
 *
 * A parsed Node is already normalised as Tailscale's `upgradeNode` does (TS: control/controlclient/map.go):
 * the legacy `DERP` string "127.3.3.40:<region>" becomes `HomeDERP` when that is 0, and a null `AllowedIPs`
 * becomes a copy of `Addresses`. Marking expired keys needs the time and is done by the map session.
 *
 * Field names are the exact Go field names (PascalCase) except the tagged ones listed in §11. Go also matches
 * field names case-insensitively; this decoder does not (servers always send the canonical spelling).
 */
import { z } from 'zod';
import { DerpRegion, type DerpMap } from '../../../src-shared/model/derp-map.ts';
import { DiscoKey, MachineKey, NodeId, NodeKey, ZERO_DISCO_KEY, ZERO_MACHINE_KEY, ZERO_NODE_KEY } from '../../../src-shared/model/ids.ts';

// ---------------------------------------------------------------------------------------------------------
// Time

/** Go's zero `time.Time` as encoding/json writes it. */
export const ZERO_TIME = '0001-01-01T00:00:00Z';

const TIME_RE = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * Milliseconds since the Unix epoch of an RFC 3339 time as Go writes it (fractional digits beyond
 * milliseconds are truncated), or null when the text is not such a time.
 */
export function parseGoTime(s: string): number | null {
  const m = TIME_RE.exec(s);
  if (!m) return null;
  const frac = (m[7] ?? '').padEnd(3, '0').slice(0, 3);
  const zone = m[8] === 'z' || m[8] === 'Z' ? 'Z' : m[8]!;
  const ms = Date.parse(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.${frac}${zone}`);
  return Number.isNaN(ms) ? null : ms;
}

const ZERO_TIME_MS = Date.parse('0001-01-01T00:00:00.000Z');

/** Reports whether `t` is Go's zero time (or missing, which Go also decodes as the zero time). */
export function isZeroTime(t: string | null | undefined): boolean {
  return t === null || t === undefined || parseGoTime(t) === ZERO_TIME_MS;
}

/** RFC 3339 text of a time in milliseconds, in UTC. */
export function formatGoTime(ms: number): string {
  return new Date(ms).toISOString();
}

/** A `time.Time` value: RFC 3339 text. */
export const GoTime = z.string().refine((s) => parseGoTime(s) !== null, 'expected an RFC 3339 time');

// ---------------------------------------------------------------------------------------------------------
// Go-style leniency helpers

/** A plain Go bool/int/string field: null or absent leaves Go's zero value. */
const goBool = z.boolean().nullish().transform((v) => v ?? false);
const goInt = z.int().nullish().transform((v) => v ?? 0);
const goString = z.string().nullish().transform((v) => v ?? '');
/** A Go pointer or optional value: null or absent → undefined. */
const opt = <T extends z.ZodType>(t: T) => t.nullish().transform((v) => v ?? undefined);
/** A Go slice where nil means "unchanged" (deltas): null/absent → undefined, `[]` stays `[]`. */
const deltaSlice = <T extends z.ZodType>(t: T) => z.array(t).nullish().transform((v) => v ?? undefined);
/** A Go slice where nil and empty mean the same (whole objects): null/absent → `[]`. */
const slice = <T extends z.ZodType>(t: T) => z.array(t).nullish().transform((v) => v ?? []);
/** `opt.Bool`: true, false, or null/absent for "unset" (TS: types/opt/bool.go). */
const optBool = z.boolean().nullish().transform((v) => v ?? undefined);

/** A map keyed by decimal node IDs (`OnlineChange`, `PeerSeenChange`), as [id, value] pairs. */
const nodeIdBoolMap = z
  .record(z.string(), z.boolean().nullable())
  .nullish()
  .transform((m, ctx) => {
    if (!m) return undefined;
    const out: [NodeId, boolean][] = [];
    for (const [k, v] of Object.entries(m)) {
      const id = NodeId.safeParse(k);
      if (!id.success) {
        ctx.issues.push({ code: 'custom', message: `map key ${JSON.stringify(k)} is not a node ID`, input: k });
        return z.NEVER;
      }
      out.push([id.data, v ?? false]);
    }
    return out;
  });

/** A CapMap (`NodeCapMap`): capability name → array of raw JSON values, or null. */
export const CapMap = z.record(z.string(), z.array(z.unknown()).nullable());
export type CapMap = z.infer<typeof CapMap>;

// ---------------------------------------------------------------------------------------------------------
// Hostinfo (kept verbatim: shown to peers and in the UI)

/** Each typed field falls back to undefined when mistyped, so one peer's odd Hostinfo cannot sink a map. */
const lenient = <T extends z.ZodType>(t: T) => t.optional().catch(undefined);

export const NetInfo = z.looseObject({
  MappingVariesByDestIP: lenient(z.boolean().nullable()),
  WorkingIPv6: lenient(z.boolean().nullable()),
  OSHasIPv6: lenient(z.boolean().nullable()),
  WorkingUDP: lenient(z.boolean().nullable()),
  WorkingICMPv4: lenient(z.boolean().nullable()),
  HavePortMap: lenient(z.boolean()),
  UPnP: lenient(z.boolean().nullable()),
  PMP: lenient(z.boolean().nullable()),
  PCP: lenient(z.boolean().nullable()),
  /** The home DERP region this node chose; headscale turns it into `Node.HomeDERP` for peers (§8.1). */
  PreferredDERP: lenient(z.int()),
  LinkType: lenient(z.string()),
  DERPLatency: lenient(z.record(z.string(), z.number()).nullable()),
  FirewallMode: lenient(z.string()),
});
export type NetInfo = z.infer<typeof NetInfo>;

export const Hostinfo = z.looseObject({
  IPNVersion: lenient(z.string()),
  FrontendLogID: lenient(z.string()),
  BackendLogID: lenient(z.string()),
  OS: lenient(z.string()),
  OSVersion: lenient(z.string()),
  Distro: lenient(z.string()),
  DistroVersion: lenient(z.string()),
  Package: lenient(z.string()),
  DeviceModel: lenient(z.string()),
  /** Node name / DNS label headscale derives (§7.4). */
  Hostname: lenient(z.string()),
  GoArch: lenient(z.string()),
  GoVersion: lenient(z.string()),
  ShieldsUp: lenient(z.boolean()),
  /** Announced subnet and exit routes. */
  RoutableIPs: lenient(z.array(z.string()).nullable()),
  RequestTags: lenient(z.array(z.string()).nullable()),
  Services: lenient(z.array(z.looseObject({ Proto: z.string(), Port: z.int(), Description: z.string().optional() })).nullable()),
  NetInfo: lenient(NetInfo.nullable()),
  sshHostKeys: lenient(z.array(z.string()).nullable()),
  Userspace: lenient(z.boolean().nullable()),
  UserspaceRouter: lenient(z.boolean().nullable()),
});
export type Hostinfo = z.infer<typeof Hostinfo>;

// ---------------------------------------------------------------------------------------------------------
// Node (§9.3)

const NodeWire = z.object({
  ID: NodeId,
  StableID: goString,
  /** FQDN with a trailing dot, e.g. "laptop.tailnet.example.com.". */
  Name: goString,
  User: goInt,
  Sharer: goInt,
  Key: NodeKey.nullish().transform((v) => v ?? ZERO_NODE_KEY),
  /** Zero time = never expires. */
  KeyExpiry: GoTime.nullish().transform((v) => v ?? ZERO_TIME),
  KeySignature: opt(z.string()),
  Machine: MachineKey.nullish().transform((v) => v ?? ZERO_MACHINE_KEY),
  DiscoKey: DiscoKey.nullish().transform((v) => v ?? ZERO_DISCO_KEY),
  /** The node's own addresses as /32 and /128 prefixes. */
  Addresses: slice(z.string()),
  /** Kept null/absent here so that upgradeNode can copy Addresses (a literal `[]` stays empty). */
  AllowedIPs: deltaSlice(z.string()),
  /** UDP endpoints "ip:port". */
  Endpoints: slice(z.string()),
  /** Legacy "127.3.3.40:<region>" (headscale ≤ 0.28); folded into HomeDERP and dropped by upgradeNode. */
  DERP: opt(z.string()),
  HomeDERP: goInt,
  Hostinfo: opt(Hostinfo),
  Created: GoTime.nullish().transform((v) => v ?? ZERO_TIME),
  Cap: goInt,
  Tags: slice(z.string()),
  PrimaryRoutes: slice(z.string()),
  /** Only set while the node is offline. */
  LastSeen: opt(GoTime),
  /** undefined = unknown. */
  Online: opt(z.boolean()),
  MachineAuthorized: goBool,
  CapMap: opt(CapMap),
  IsWireGuardOnly: goBool,
  Expired: goBool,
});

/** The DERP "magic IP" of the legacy `DERP` string (TS: tailcfg.DerpMagicIP). */
const DERP_MAGIC_IP = '127.3.3.40';

type NodeWire = z.infer<typeof NodeWire>;
export type Node = Omit<NodeWire, 'DERP' | 'AllowedIPs'> & { AllowedIPs: string[] };

/** The client-side normalisation of a Node as received (TS: control/controlclient/map.go `upgradeNode`). */
function upgradeNode(n: NodeWire): Node {
  const { DERP, AllowedIPs, ...rest } = n;
  let homeDERP = rest.HomeDERP;
  if (DERP && homeDERP === 0) {
    const colon = DERP.lastIndexOf(':');
    const port = DERP.slice(colon + 1);
    if (colon > 0 && DERP.slice(0, colon) === DERP_MAGIC_IP && /^[0-9]+$/.test(port)) homeDERP = Number(port);
  }
  return { ...rest, HomeDERP: homeDERP, AllowedIPs: AllowedIPs ?? [...rest.Addresses] };
}

export const Node: z.ZodType<Node, z.input<typeof NodeWire>> = NodeWire.transform(upgradeNode);

// ---------------------------------------------------------------------------------------------------------
// PeerChange (§9.4): absent/null fields are left unchanged

export const PeerChange = z.object({
  NodeID: NodeId,
  /** Sets HomeDERP when non-zero. */
  DERPRegion: goInt,
  /** Sets Cap when non-zero. */
  Cap: goInt,
  CapMap: opt(CapMap),
  Endpoints: deltaSlice(z.string()),
  Key: opt(NodeKey),
  KeySignature: opt(z.string()),
  DiscoKey: opt(DiscoKey),
  Online: opt(z.boolean()),
  LastSeen: opt(GoTime),
  /** Zero time = no expiry. */
  KeyExpiry: opt(GoTime),
});
export type PeerChange = z.infer<typeof PeerChange>;

// ---------------------------------------------------------------------------------------------------------
// Other MapResponse sub-objects

export const UserProfile = z.object({
  ID: z.int(),
  LoginName: goString,
  DisplayName: goString,
  ProfilePicURL: goString,
  Groups: opt(z.array(z.string())),
});
export type UserProfile = z.infer<typeof UserProfile>;

/**
 * tailcfg.DERPMap as it arrives in a MapResponse: a null region (headscale was seen sending them) is dropped,
 * and a null `Regions` or `HomeParams` means "keep the previous ones", which the map session resolves.
 */
export const DerpMapWire = z
  .object({
    Regions: opt(z.record(z.string(), DerpRegion.nullable())),
    HomeParams: opt(z.object({ RegionScore: opt(z.record(z.string(), z.number())) })),
    omitDefaultRegions: opt(z.boolean()),
    /** Not Go's tag, but Go matches names case-insensitively; accepted for hand-written maps. */
    OmitDefaultRegions: opt(z.boolean()),
  })
  .transform((m) => {
    let regions: DerpMap['Regions'] | undefined;
    if (m.Regions) {
      regions = {};
      for (const [id, r] of Object.entries(m.Regions)) if (r) regions[id] = r;
    }
    return {
      Regions: regions,
      HomeParams: m.HomeParams,
      OmitDefaultRegions: m.omitDefaultRegions ?? m.OmitDefaultRegions,
    };
  });
export type DerpMapWire = z.infer<typeof DerpMapWire>;

const DnsResolver = z.looseObject({
  Addr: goString,
  BootstrapResolution: opt(z.array(z.string())),
  UseWithExitNode: opt(z.boolean()),
});

/** tailcfg.DNSConfig (§9.6); kept verbatim apart from the fields typed here. */
export const DnsConfig = z.looseObject({
  Resolvers: opt(z.array(DnsResolver)),
  Routes: opt(z.record(z.string(), z.array(DnsResolver).nullable())),
  FallbackResolvers: opt(z.array(DnsResolver)),
  Domains: opt(z.array(z.string())),
  Proxied: opt(z.boolean()),
  Nameservers: opt(z.array(z.string())),
  CertDomains: opt(z.array(z.string())),
  ExtraRecords: opt(z.array(z.looseObject({ Name: goString, Type: goString, Value: goString }))),
});
export type DnsConfig = z.infer<typeof DnsConfig>;

/** tailcfg.FilterRule (§9.6): the packet filter applies to inbound packets. */
export const FilterRule = z.looseObject({
  SrcIPs: slice(z.string()),
  DstPorts: slice(
    z.looseObject({
      IP: goString,
      Bits: opt(z.int()),
      Ports: z
        .object({ First: goInt, Last: goInt })
        .nullish()
        .transform((p) => p ?? { First: 0, Last: 0 }),
    }),
  ),
  /** Empty = TCP, UDP and ICMP. */
  IPProto: slice(z.int()),
  CapGrant: opt(z.array(z.unknown())),
});
export type FilterRule = z.infer<typeof FilterRule>;

/** Tailscale SSH policy; its fields use lowercase tags (`rules`, …). Kept verbatim. */
export const SshPolicy = z.looseObject({});
export type SshPolicy = z.infer<typeof SshPolicy>;

/** tailcfg.Debug: headscale sends only DisableLogTail. */
export const Debug = z.looseObject({
  SleepSeconds: opt(z.number()),
  DisableLogTail: opt(z.boolean()),
  Exit: opt(z.int()),
});
export type Debug = z.infer<typeof Debug>;

/** tailcfg.PingRequest: answer `Types` "" with an HTTP HEAD to URL (over Noise when URLIsNoise). */
export const PingRequest = z.object({
  URL: goString,
  URLIsNoise: goBool,
  Log: goBool,
  Types: goString,
  IP: opt(z.string()),
  Payload: opt(z.string()),
});
export type PingRequest = z.infer<typeof PingRequest>;

// ---------------------------------------------------------------------------------------------------------
// MapResponse (§9.2): every field absent or null means "unchanged"

export const MapResponse = z.preprocess(
  // Go decodes a JSON `null` into an untouched (empty) struct.
  (v) => (v === null ? {} : v),
  z.object({
    KeepAlive: goBool,
    PingRequest: opt(PingRequest),
    PopBrowserURL: goString,
    ControlTime: opt(GoTime),
    Node: opt(Node),
    DERPMap: opt(DerpMapWire),
    Peers: deltaSlice(Node),
    PeersChanged: deltaSlice(Node),
    PeersRemoved: deltaSlice(NodeId),
    PeersChangedPatch: deltaSlice(PeerChange),
    PeerSeenChange: nodeIdBoolMap,
    OnlineChange: nodeIdBoolMap,
    DNSConfig: opt(DnsConfig),
    Domain: goString,
    CollectServices: optBool,
    PacketFilter: deltaSlice(FilterRule),
    /** Named chunks; a null value deletes a name, and "*": null clears all first. */
    PacketFilters: opt(z.record(z.string(), z.array(FilterRule).nullable())),
    UserProfiles: deltaSlice(UserProfile),
    SSHPolicy: opt(SshPolicy),
    Debug: opt(Debug),
    /** non-nil replaces the control plane's health warnings; `[]` = healthy. */
    Health: deltaSlice(z.string()),
  }),
);
export type MapResponse = z.infer<typeof MapResponse>;

// ---------------------------------------------------------------------------------------------------------
// Requests the client sends (§7.1, §8.1)

export const RegisterResponseAuth = z.object({
  AuthKey: z.string().optional(),
  /** oauth2.Token with lowercase tags; headscale ignores it. */
  Oauth2Token: z.unknown().optional(),
});

export const RegisterRequest = z.object({
  /** The capability version. */
  Version: z.int(),
  NodeKey: NodeKey,
  OldNodeKey: NodeKey.optional(),
  NLKey: z.string().optional(),
  Auth: RegisterResponseAuth.nullish(),
  /** Zero = no request; a past time = logout (§7.7). */
  Expiry: GoTime.optional(),
  /** The AuthURL of the interactive flow's first step (§7.5). */
  Followup: z.string().optional(),
  Hostinfo: Hostinfo.nullish(),
  Ephemeral: z.boolean().optional(),
});
export type RegisterRequest = z.infer<typeof RegisterRequest>;

/** tailcfg.User as headscale sends it in RegisterResponse. */
export const RegisterUser = z.object({
  ID: goInt,
  DisplayName: goString,
  ProfilePicURL: goString,
  Created: opt(GoTime),
});

/** tailcfg.Login. */
export const RegisterLogin = z.object({
  ID: goInt,
  Provider: goString,
  LoginName: goString,
  DisplayName: goString,
  ProfilePicURL: goString,
});

export const RegisterResponse = z.object({
  User: opt(RegisterUser),
  Login: opt(RegisterLogin),
  NodeKeyExpired: goBool,
  MachineAuthorized: goBool,
  /** Non-empty: interactive login pending. */
  AuthURL: goString,
  NodeKeySignature: opt(z.string()),
  /** Non-empty: the registration failed; ignore the other fields. */
  Error: goString,
});
export type RegisterResponse = z.infer<typeof RegisterResponse>;

/** The register reply body: headscale answers a literal `null` after deleting an ephemeral node (§7.2). */
export const RegisterResponseBody = RegisterResponse.nullable();

/** MapRequest.EndpointTypes values, parallel to Endpoints (TS: tailcfg.EndpointType). */
export const EndpointType = {
  Unknown: 0,
  Local: 1,
  STUN: 2,
  Portmapped: 3,
  STUN4LocalPort: 4,
  ExplicitConf: 5,
} as const;
export type EndpointType = (typeof EndpointType)[keyof typeof EndpointType];

export const MapRequest = z.object({
  Version: z.int(),
  /** "zstd" → each message body is a zstd frame; absent → raw JSON. */
  Compress: z.enum(['zstd', '']).optional(),
  KeepAlive: z.boolean().optional(),
  NodeKey: NodeKey,
  DiscoKey: DiscoKey.optional(),
  /** Must be true to receive a map (§8.2). */
  Stream: z.boolean().optional(),
  Hostinfo: Hostinfo.nullish(),
  MapSessionHandle: z.string().optional(),
  MapSessionSeq: z.int().optional(),
  Endpoints: z.array(z.string()).nullish(),
  EndpointTypes: z.array(z.int()).nullish(),
  TKAHead: z.string().optional(),
  ReadOnly: z.boolean().optional(),
  OmitPeers: z.boolean().optional(),
  DebugFlags: z.array(z.string()).nullish(),
});
export type MapRequest = z.infer<typeof MapRequest>;
