/**
 * Notification policy, pure: which desktop notifications a snapshot transition deserves.
 *
 *   a peer's path flips direct ⇄ relay     → "path" notice, at most one per peer per PATH_NOTICE_GAP_MS
 *   this node's key expires within 24 h    → "key-expiry" notice, once per expiry time
 *   control enters needs-login / expired   → "login" notice, once per entry into that state
 *
 * With notifications turned off the state still advances (so turning them on later does not replay old
 * events) but nothing is shown. Time comes in as arguments: `now` is the host's monotonic clock (rate limits),
 * `wallNowMs` is Unix time (key expiry).
 */
import type { MeshSnapshot, PeerView } from '../../src-shared/model/mesh.ts';

/** A path flapping between direct and relay would otherwise notify on every flip; two minutes per peer. */
export const PATH_NOTICE_GAP_MS = 120_000;
/** Warn a day ahead: enough time to log in again before the node drops off the tailnet. */
export const KEY_EXPIRY_WARN_MS = 24 * 3600_000;

export type NoticeKind = 'path' | 'key-expiry' | 'login';

export interface Notice {
  kind: NoticeKind;
  title: string;
  body: string;
  /** The peer a path notice is about. */
  peerId?: string;
}

export interface NoticeState {
  /** When each peer's last path notice was shown (monotonic ms). */
  readonly lastPathNoticeAt: ReadonlyMap<string, number>;
  /** The key expiry already warned about. */
  readonly keyExpiryWarned: string | null;
  /** Whether the current needs-login spell has been announced. */
  readonly loginAnnounced: boolean;
}

export const INITIAL_NOTICE_STATE: NoticeState = { lastPathNoticeAt: new Map(), keyExpiryWarned: null, loginAnnounced: false };

export interface NoticePolicy {
  enabled: boolean;
  now: number;
  wallNowMs: number;
  pathGapMs?: number;
  keyWarnMs?: number;
}

function pathWords(p: PeerView, s: MeshSnapshot): string {
  if (p.path.kind === 'direct') return `connected directly (${p.path.endpoint})`;
  if (p.path.kind === 'relay') {
    const region = p.path.region;
    const r = s.regions.find((x) => x.id === region);
    return `relayed through ${r ? `${r.name} (${r.code})` : `DERP region ${region}`}`;
  }
  return p.path.kind;
}

const loginState = (s: MeshSnapshot): boolean => s.control?.state === 'needs-login' || s.control?.state === 'expired';

export function noticesFor(prev: MeshSnapshot, next: MeshSnapshot, state: NoticeState, policy: NoticePolicy): { notices: Notice[]; state: NoticeState } {
  const notices: Notice[] = [];
  const gap = policy.pathGapMs ?? PATH_NOTICE_GAP_MS;
  const lastPath = new Map(state.lastPathNoticeAt);
  const before = new Map(prev.peers.map((p) => [p.id, p.path.kind]));
  for (const p of next.peers) {
    const was = before.get(p.id);
    const is = p.path.kind;
    if ((was !== 'direct' && was !== 'relay') || (is !== 'direct' && is !== 'relay') || was === is) continue;
    const last = lastPath.get(p.id);
    if (last !== undefined && policy.now - last < gap) continue;
    lastPath.set(p.id, policy.now);
    notices.push({ kind: 'path', peerId: p.id, title: `${p.name}: ${is === 'direct' ? 'direct' : 'relayed'}`, body: `${p.name} is now ${pathWords(p, next)}.` });
  }
  const present = new Set(next.peers.map((p) => p.id));
  for (const id of lastPath.keys()) if (!present.has(id)) lastPath.delete(id);

  let keyExpiryWarned = state.keyExpiryWarned;
  const expiry = next.self?.keyExpiry ?? null;
  if (expiry && expiry !== keyExpiryWarned) {
    const left = Date.parse(expiry) - policy.wallNowMs;
    if (Number.isFinite(left) && left > 0 && left <= (policy.keyWarnMs ?? KEY_EXPIRY_WARN_MS)) {
      keyExpiryWarned = expiry;
      const hours = Math.max(1, Math.round(left / 3600_000));
      notices.push({ kind: 'key-expiry', title: 'Weft: key expires soon', body: `This device's key expires in about ${hours} hour${hours === 1 ? '' : 's'}; log in again to stay connected.` });
    }
  }

  let loginAnnounced = state.loginAnnounced;
  if (loginState(next)) {
    if (!loginAnnounced) {
      notices.push({ kind: 'login', title: 'Weft: login needed', body: next.control?.state === 'expired' ? 'This device was logged out or its key expired. Open Weft to log in again.' : 'Open Weft to finish logging in to your network.' });
    }
    loginAnnounced = true;
  } else loginAnnounced = false;

  return { notices: policy.enabled ? notices : [], state: { lastPathNoticeAt: lastPath, keyExpiryWarned, loginAnnounced } };
}
