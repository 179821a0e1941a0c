/**
 * The single IPC contract between the UI and the main process: request/response methods (`invoke`) and push
 * events (main → UI). Declared once here; both sides parse every payload against these schemas at run time.
 * The Electron preload and the dev bridge (WebSocket) both implement exactly this contract.
 *
 * Conventions: method and event names are `area:verb`. A method answers `{ ok: true, value }` or
 * `{ ok: false, error: SerializedError }` (never throws across the boundary). Every payload is an object.
 */
import { z } from 'zod';
import { MeshDelta, MeshSnapshot, PeerStats } from '../model/mesh.ts';
import { NetcheckReport } from '../model/netcheck.ts';
import { DerpMap } from '../model/derp-map.ts';
import { JoinStage, StatusReport } from '../model/status.ts';

export { JoinStage };

export const ErrorCodeSchema = z.enum([
  'bad-url',
  'unreachable',
  'not-control-server',
  'handshake-rejected',
  'protocol',
  'auth-failed',
  'key-expired',
  'logged-out',
  'state',
  'cancelled',
  // IPC-level codes
  'invalid-payload',
  'unknown-method',
  'helper-denied',
  'internal',
  // weftd's local API: a write from a client that is neither root nor an operator
  'permission-denied',
  // weftd is not running (the app offers to install and start it)
  'daemon-unavailable',
]);
export type IpcErrorCode = z.infer<typeof ErrorCodeSchema>;

export const SerializedErrorSchema = z.object({ code: ErrorCodeSchema, message: z.string(), retryable: z.boolean() });
export type IpcError = z.infer<typeof SerializedErrorSchema>;

/** A saved network: where to log in and under which local state. */
export const Profile = z.object({
  id: z.string().regex(/^[a-z0-9-]{1,40}$/),
  name: z.string().min(1).max(80),
  serverUrl: z.string().url(),
});
export type Profile = z.infer<typeof Profile>;

export const Settings = z.object({
  autoStart: z.boolean(),
  startMinimised: z.boolean(),
  notifications: z.boolean(),
  profiles: z.array(Profile).max(32),
  activeProfile: z.string().nullable(),
  /** Use peers' subnet routes (`weft up --accept-routes`); off by default, as on Tailscale's Linux client. */
  acceptRoutes: z.boolean().default(false),
  /** Use MagicDNS: point the OS at 100.100.100.100 (`weft up --accept-dns`); on by default. */
  acceptDns: z.boolean().default(true),
});
export type Settings = z.infer<typeof Settings>;

/**
 * A partial Settings update (`settings:set`). The defaults are left out on purpose: zod 4 applies a `.default()`
 * even inside `.partial()`, so `{ notifications: false }` would otherwise arrive as an update that also resets
 * acceptRoutes and acceptDns.
 */
export const SettingsPatch = Settings.extend({ acceptRoutes: z.boolean(), acceptDns: z.boolean() }).partial().strict();
export type SettingsPatch = z.infer<typeof SettingsPatch>;

export const JoinRequest = z.object({
  serverUrl: z.string().url(),
  /** A pre-auth key; without one the browser login flow starts (AuthURL opened in the system browser). */
  authKey: z.string().min(1).max(512).optional(),
  hostname: z.string().regex(/^[A-Za-z0-9-]{1,63}$/).optional(),
  /** Save as a profile with this name (default: the server's host name). */
  profileName: z.string().min(1).max(80).optional(),
}).strict();
export type JoinRequest = z.infer<typeof JoinRequest>;

/** Where the embedded server listens: "HOST:PORT" with an IPv4 host (default 0.0.0.0:8080, any free port if busy). */
export const CreateLocalNetworkRequest = z
  .object({ listen: z.string().regex(/^(\d{1,3}\.){3}\d{1,3}:\d{1,5}$/).optional() })
  .strict();
export type CreateLocalNetworkRequest = z.infer<typeof CreateLocalNetworkRequest>;

export const LocalNetwork = z.object({
  /** The URL other devices use as their login server. */
  serverUrl: z.string().url(),
  /** A reusable pre-auth key for other devices (shown once; stored hashed by the server). */
  authKey: z.string().min(1).max(512),
  /** The join details as a QR code: a standalone SVG document (rendered as an <img>, never inlined). */
  qrSvg: z.string().startsWith('<svg').max(200_000),
  /** The text the QR code holds. */
  qrText: z.string(),
});
export type LocalNetwork = z.infer<typeof LocalNetwork>;

/** The local network's ACL policy (headscale's format, HuJSON), as weft server checks it: each error with its line. */
export const PolicyText = z.object({ text: z.string().max(1 << 20) }).strict();
export const PolicyError = z.object({ line: z.number().int(), column: z.number().int(), message: z.string() });
export type PolicyError = z.infer<typeof PolicyError>;
export const PolicyCheck = z.object({ valid: z.boolean(), errors: z.array(PolicyError) });
export type PolicyCheck = z.infer<typeof PolicyCheck>;
export const PolicyFileView = z.object({
  path: z.string(),
  text: z.string(),
  /** Why this file is not the policy in force (refused, with each error's line, or unreadable), or null. */
  problem: z.string().max(64 * 1024).nullable(),
});
export type PolicyFileView = z.infer<typeof PolicyFileView>;

export const JoinProgress = z.object({
  stage: JoinStage,
  /** The login URL while waiting for approval. */
  authUrl: z.string().url().nullable(),
  error: SerializedErrorSchema.nullable(),
});
export type JoinProgress = z.infer<typeof JoinProgress>;

export const LogLevel = z.enum(['debug', 'info', 'warn', 'error']);
export type LogLevel = z.infer<typeof LogLevel>;

export const LogEntry = z.object({ at: z.string(), level: LogLevel, message: z.string() });
export type LogEntry = z.infer<typeof LogEntry>;

const Empty = z.object({}).strict();

export const PingResult = z.object({
  peer: z.string(),
  /** The pong's source (a direct endpoint, or the DERP pseudo-address) and its latency; null when none came. */
  reply: z.object({ from: z.string(), latencyMs: z.number() }).nullable(),
});
export type PingResult = z.infer<typeof PingResult>;
const Ok = z.object({ done: z.literal(true) });

/** Request/response methods the UI may call. */
export const methods = {
  /** The whole current state; the UI calls it once on load, then follows `mesh:delta`. */
  'mesh:snapshot': { request: Empty, response: MeshSnapshot },
  /** Join a network (and remember it as a profile); progress arrives as `session:progress`. */
  'session:join': { request: JoinRequest, response: Ok },
  /** Reconnect the active profile / disconnect (the node stays registered). */
  'session:connect': { request: Empty, response: Ok },
  'session:disconnect': { request: Empty, response: Ok },
  /** Log out of the active profile (expires the node key on the server). */
  'session:logout': { request: Empty, response: Ok },
  /** Open the control server's login URL in the system browser (http/https only). */
  'session:open-auth-url': { request: z.object({ url: z.string().url() }).strict(), response: Ok },
  /** Run netcheck now; the report also arrives in a `mesh:delta`. */
  'netcheck:run': { request: Empty, response: NetcheckReport },
  'settings:get': { request: Empty, response: Settings },
  /** Partial update; answers the settings as saved. */
  'settings:set': { request: SettingsPatch, response: Settings },
  'profiles:switch': { request: z.object({ id: z.string() }).strict(), response: Ok },
  'profiles:remove': { request: z.object({ id: z.string() }).strict(), response: Settings },
  /**
   * "Create a network on this computer": start the embedded control server (with its DERP relay) in the main
   * process, join this device to it, and answer how other devices join (the URL, a reusable pre-auth key, and both
   * as a QR code in SVG). Calling it again while the server runs answers the same URL with a fresh key.
   */
  'network:create-local': { request: CreateLocalNetworkRequest, response: LocalNetwork },
  /** The policy file of the network on this computer (after `network:create-local`): its path and text. */
  'network:policy-get': { request: Empty, response: PolicyFileView },
  /** Checks a policy text against the local network's users, as the server would on reload; nothing is written. */
  'network:policy-check': { request: PolicyText, response: PolicyCheck },
  /** Checks and, when valid, writes the policy file (atomically); the server reloads it within a second. */
  'network:policy-save': { request: PolicyText, response: PolicyCheck.extend({ saved: z.boolean() }) },
  /** The most recent log lines at or above `level` (at most `limit`, default 500). */
  'logs:get': { request: z.object({ level: LogLevel.optional(), limit: z.number().int().positive().max(5000).optional() }).strict(), response: z.array(LogEntry) },
  /** What `weft status --json` prints: control state, this node, each peer's path and counters. */
  'engine:status': { request: Empty, response: StatusReport },
  /** A disco ping to a peer (name, 100.x address or node key), as `tailscale ping` does. */
  'engine:ping': { request: z.object({ peer: z.string().min(1).max(256), timeoutMs: z.number().int().positive().max(30_000).optional() }).strict(), response: PingResult },
  /** The control server's DERP map (null before the first netmap); `weft netcheck` probes its STUN servers. */
  'engine:derp-map': { request: Empty, response: DerpMap.nullable() },
} as const;

/**
 * Methods that change what weftd does. On its local API only root and operators (the `weft` group) may call
 * them; everyone else gets 'permission-denied'. Every other method is a read, open to any local user.
 */
export const WRITE_METHODS: ReadonlySet<MethodName> = new Set<MethodName>([
  'session:join',
  'session:connect',
  'session:disconnect',
  'session:logout',
  'session:open-auth-url',
  'settings:set',
  'profiles:switch',
  'profiles:remove',
  'network:create-local',
  // The policy is the server's configuration: only operators read or change it.
  'network:policy-get',
  'network:policy-save',
]);

/** The version of weftd's local API; a client that gets another one in the hello frame refuses to talk. */
export const DAEMON_API_VERSION = 1;

/** Events the main process pushes to the UI. */
export const events = {
  'mesh:delta': MeshDelta,
  /** Per-peer counters, coalesced to at most a few per second. */
  'mesh:stats': z.object({ peers: z.array(PeerStats) }),
  'session:progress': JoinProgress,
  'log:entry': LogEntry,
} as const;

export type Methods = typeof methods;
export type MethodName = keyof Methods;
export type EventName = keyof typeof events;
export type MethodRequest<M extends MethodName> = z.input<Methods[M]['request']>;
export type MethodResponse<M extends MethodName> = z.infer<Methods[M]['response']>;
export type EventPayload<E extends EventName> = z.infer<(typeof events)[E]>;

export type IpcResult<T> = { ok: true; value: T } | { ok: false; error: IpcError };

/** The API the preload exposes as `window.weft` (and the dev bridge provides in a browser). */
export interface WeftApi {
  invoke<M extends MethodName>(method: M, request: MethodRequest<M>): Promise<IpcResult<MethodResponse<M>>>;
  /** Subscribes to an event; returns the unsubscribe function. */
  on<E extends EventName>(event: E, listener: (payload: EventPayload<E>) => void): () => void;
}

export const METHOD_NAMES = Object.keys(methods) as MethodName[];
export const EVENT_NAMES = Object.keys(events) as EventName[];

export function isMethodName(x: unknown): x is MethodName {
  return typeof x === 'string' && Object.prototype.hasOwnProperty.call(methods, x);
}

export function isEventName(x: unknown): x is EventName {
  return typeof x === 'string' && Object.prototype.hasOwnProperty.call(events, x);
}

/** Validates a request for `method`; a bad payload is an `invalid-payload` error, never a throw. */
export function parseRequest<M extends MethodName>(method: M, payload: unknown): IpcResult<z.infer<Methods[M]['request']>> {
  const r = methods[method].request.safeParse(payload);
  return r.success ? { ok: true, value: r.data as z.infer<Methods[M]['request']> } : { ok: false, error: invalidPayload(`${method} request`, r.error) };
}

/** Validates a response for `method` (the UI side checks what the main process sent). */
export function parseResponse<M extends MethodName>(method: M, payload: unknown): IpcResult<MethodResponse<M>> {
  const r = methods[method].response.safeParse(payload);
  return r.success ? { ok: true, value: r.data as MethodResponse<M> } : { ok: false, error: invalidPayload(`${method} response`, r.error) };
}

/** Validates an event payload. */
export function parseEvent<E extends EventName>(event: E, payload: unknown): IpcResult<EventPayload<E>> {
  const r = events[event].safeParse(payload);
  return r.success ? { ok: true, value: r.data as EventPayload<E> } : { ok: false, error: invalidPayload(`${event} event`, r.error) };
}

function invalidPayload(what: string, e: z.ZodError): IpcError {
  const first = e.issues[0];
  const where = first && first.path.length > 0 ? ` at ${first.path.join('.')}` : '';
  return { code: 'invalid-payload', message: `invalid ${what}${where}: ${first?.message ?? 'does not match the contract'}`, retryable: false };
}
