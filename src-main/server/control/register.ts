/**
 * `POST /machine/register` (control-protocol §7), in headscale's order (§7.3):
 *
 *   1. Expiry in the past, node known        → logout (ephemeral: deleted; else expired now)
 *   2. no Auth, node known (by NodeKey)      → machine key must match; live → "restart" fast path;
 *                                              future Expiry → "extending key is not allowed"; expired → NodeKeyExpired
 *   3. Followup                              → wait (bounded) for the admin to approve the pending registration
 *   4. Auth.AuthKey                          → pre-auth registration (store.registerWithAuthKey, atomic)
 *   5. otherwise                             → new pending registration; answer its AuthURL
 *
 * Interactive registrations are bounded (RegisterDeps.pendingRefused: in all and per source IP; the control plane
 * sweeps expired ones), and the Hostinfo stored with a registration is capped (node-input.ts).
 *
 * Errors travel as HTTP 200 with `Error` set, as headscale does; only a capability version below the minimum is a
 * 400 (checked after the registration attempt, also as headscale does). The machine key always comes from the
 * Noise handshake, never from the request.
 */
import { randomBytes } from 'node:crypto';
import type { RegisterRequest } from '../../protocol/control/tailcfg.ts';
import { formatGoTime, isZeroTime, parseGoTime } from '../../protocol/control/tailcfg.ts';
import type { NodeRecord, RedeemError, ServerStore, UserRecord } from '../store/types.ts';
import { isExpired } from './mapper.ts';
import { cleanHostinfo } from './node-input.ts';

export interface RegisterReplyBody {
  User?: { ID: number; DisplayName: string; ProfilePicURL: string; Created: string };
  Login?: { ID: number; Provider: string; LoginName: string; DisplayName: string; ProfilePicURL: string };
  NodeKeyExpired: boolean;
  MachineAuthorized: boolean;
  AuthURL: string;
  Error: string;
}

export type RegisterOutcome = { kind: 'json'; body: RegisterReplyBody } | { kind: 'text'; status: number; text: string };

/** Waits for a pending registration to be approved: 'approved', 'timeout' (the bound or the request ended), 'gone'. */
export type ApprovalWaiter = (id: string, signal: AbortSignal) => Promise<'approved' | 'timeout' | 'gone'>;

export interface RegisterDeps {
  store: ServerStore;
  serverUrl: URL;
  now: () => number;
  minCapver: number;
  pendingTtlMs: number;
  waitApproval: ApprovalWaiter;
  /** Called after every store change made here, so map streams are updated. */
  changed: () => void;
  /** A node was registered (new, or again): the policy's autoApprovers look at the routes it announces. */
  registered?: (nodeId: number) => void;
  /** Why a new pending registration from this source IP is refused now (the total or per-address bound), or null. */
  pendingRefused: (ip: string) => string | null;
  /** A pending registration was stored for this source IP. */
  pendingAdded: (ip: string, id: string) => void;
  /** The id of a live pending registration from this source IP for the same machine and node keys, or null. */
  pendingExisting: (ip: string, machineKey: string, nodeKey: string) => string | null;
}

const REDEEM_TEXT: Record<RedeemError, string> = {
  unknown: 'invalid pre auth key',
  expired: 'authkey expired',
  used: 'authkey already used',
  revoked: 'authkey revoked',
};

const empty = (): RegisterReplyBody => ({ NodeKeyExpired: false, MachineAuthorized: false, AuthURL: '', Error: '' });
const failure = (error: string): RegisterOutcome => ({ kind: 'json', body: { ...empty(), Error: error } });

function identity(u: UserRecord | null): Pick<RegisterReplyBody, 'User' | 'Login'> {
  if (!u) return {};
  return {
    User: { ID: u.id, DisplayName: u.name, ProfilePicURL: '', Created: formatGoTime(u.createdAt) },
    Login: { ID: u.id, Provider: '', LoginName: u.name, DisplayName: u.name, ProfilePicURL: '' },
  };
}

function authorized(store: ServerStore, n: NodeRecord, expired = false): RegisterOutcome {
  return { kind: 'json', body: { ...empty(), ...identity(store.userById(n.userId)), MachineAuthorized: true, NodeKeyExpired: expired } };
}

/** The AuthURL of a pending registration. */
export function authUrl(serverUrl: URL, id: string): string {
  return new URL(`/register/${id}`, serverUrl).href;
}

/** The pending-registration id of an AuthURL (its path after /register/), or null. */
export function followupId(followup: string): string | null {
  let path: string;
  try {
    path = new URL(followup, 'http://x').pathname;
  } catch {
    return null;
  }
  const m = /^\/register\/([A-Za-z0-9_-]{1,64})$/.exec(path);
  return m ? m[1]! : null;
}

function hostnameOf(req: RegisterRequest): string {
  const h = req.Hostinfo?.Hostname;
  return typeof h === 'string' && h.trim() ? h.trim().slice(0, 255) : 'node';
}

/** The Hostinfo to store (capped by node-input.ts; an oversized one is not stored), as JSON text or null. */
function storedHostinfo(req: RegisterRequest): string | null {
  if (!req.Hostinfo) return null;
  const c = cleanHostinfo(req.Hostinfo);
  return c.kind === 'ok' ? c.json : null;
}

export async function handleRegister(d: RegisterDeps, req: RegisterRequest, machineKey: string, remoteIp: string, signal: AbortSignal): Promise<RegisterOutcome> {
  const outcome = await register(d, req, machineKey, remoteIp, signal);
  if (req.Version < d.minCapver) return { kind: 'text', status: 400, text: `unsupported client version: ${req.Version}` };
  return outcome;
}

async function register(d: RegisterDeps, req: RegisterRequest, machineKey: string, remoteIp: string, signal: AbortSignal): Promise<RegisterOutcome> {
  const { store } = d;
  const now = d.now();
  const expiry = req.Expiry && !isZeroTime(req.Expiry) ? parseGoTime(req.Expiry) : null;
  const existing = store.nodeByNodeKey(req.NodeKey);
  const hostinfo = storedHostinfo(req);

  if (existing && existing.machineKey !== machineKey) return failure('node exists with a different machine key');

  // 1. Logout.
  if (expiry !== null && expiry <= now) {
    if (!existing) return { kind: 'json', body: { ...empty(), NodeKeyExpired: true } };
    if (existing.ephemeral) {
      store.deleteNode(existing.id);
      d.changed();
      return { kind: 'json', body: { ...empty(), NodeKeyExpired: true, MachineAuthorized: false } };
    }
    const n = store.updateNode(existing.id, { expiresAt: now }) ?? existing;
    d.changed();
    return authorized(store, n, true);
  }

  const authKey = req.Auth?.AuthKey ?? '';
  // 2. A known node without Auth: the restart fast path, or its expiry.
  if (existing && !authKey && !req.Followup) {
    if (isExpired(existing, now)) return { kind: 'json', body: { ...empty(), ...identity(store.userById(existing.userId)), NodeKeyExpired: true, MachineAuthorized: false } };
    if (expiry !== null) return failure('extending key is not allowed');
    return authorized(store, existing);
  }

  // 3. Followup: wait for the admin.
  if (req.Followup) {
    const id = followupId(req.Followup);
    const p = id ? store.pendingById(id) : null;
    if (!id || !p) return failure('invalid followup URL');
    if (p.machineKey !== machineKey || p.nodeKey !== req.NodeKey) return failure('invalid followup URL');
    if (p.createdAt + d.pendingTtlMs <= now) {
      store.deletePending(id);
      return startInteractive(d, req, machineKey, remoteIp, hostinfo);
    }
    const r = p.approvedUserId !== null ? 'approved' : await d.waitApproval(id, signal);
    if (r === 'timeout') return failure('registration timed out');
    const approved = store.pendingById(id);
    if (r === 'gone' || !approved || approved.approvedUserId === null) return startInteractive(d, req, machineKey, remoteIp, hostinfo);
    const n = store.registerForUser(
      { userId: approved.approvedUserId, machineKey, nodeKey: req.NodeKey, hostname: approved.hostname, hostinfo: hostinfo ?? approved.hostinfo, ephemeral: false, expiresAt: expiry, authKeyId: null },
      d.now(),
    );
    store.deletePending(id);
    d.registered?.(n.id);
    d.changed();
    return authorized(store, store.nodeById(n.id) ?? n);
  }

  // 4. Pre-auth key.
  if (authKey) {
    const r = store.registerWithAuthKey(authKey, { machineKey, nodeKey: req.NodeKey, hostname: hostnameOf(req), hostinfo, expiresAt: expiry }, now);
    if ('error' in r) return failure(REDEEM_TEXT[r.error]);
    d.registered?.(r.node.id);
    d.changed();
    return authorized(store, store.nodeById(r.node.id) ?? r.node);
  }

  // 5. Interactive.
  return startInteractive(d, req, machineKey, remoteIp, hostinfo);
}

function startInteractive(d: RegisterDeps, req: RegisterRequest, machineKey: string, remoteIp: string, hostinfo: string | null): RegisterOutcome {
  // The same device asking again (a repeated `tailscale up`, a restart) gets the registration it already has,
  // instead of taking another of its address's slots.
  const again = d.pendingExisting(remoteIp, machineKey, req.NodeKey);
  if (again) return { kind: 'json', body: { ...empty(), AuthURL: authUrl(d.serverUrl, again) } };
  const refused = d.pendingRefused(remoteIp);
  if (refused) return failure(`registration refused: ${refused}; try again later`);
  const id = randomBytes(12).toString('hex');
  d.store.addPending({ id, machineKey, nodeKey: req.NodeKey, hostname: hostnameOf(req), hostinfo, createdAt: d.now() });
  d.pendingAdded(remoteIp, id);
  return { kind: 'json', body: { ...empty(), AuthURL: authUrl(d.serverUrl, id) } };
}
