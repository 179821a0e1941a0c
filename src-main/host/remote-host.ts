/**
 * The app's side of weftd: what the Electron shell (window IPC, tray, notifications) uses now that the engine lives
 * in the service. Electron-free, so it runs under plain Node in tests exactly as in the main process.
 *
 *   UI ──dispatch──▶ remote host ──DaemonLink (weftd's local API)──▶ weftd: host, engine
 *   tray, notices ◀── snapshot kept from mesh:snapshot + mesh:delta ◀── events
 *
 * It holds no engine and no privilege. Closing the app closes only this link: the tunnel stays up in weftd. When
 * weftd is not there (or restarts), the snapshot shows why and the link is retried every `retryMs`.
 *
 * `session:open-auth-url` is answered here, not by weftd (a root service cannot open the user's browser): only the
 * control server's login URL that weftd reports, or a URL on the control server's origin, is opened.
 *
 * Settings are split by owner. The app's own preferences (autoStart, startMinimised, notifications) belong to the
 * user and live in the app's data directory (`local`), so any user may change them; the saved networks, the
 * active one and the operator preferences that change the system (acceptRoutes: subnet routes, acceptDns:
 * MagicDNS) belong to weftd, and changing them is a write on its API (root and operators).
 */
import type { EventName, EventPayload, IpcResult, LogLevel, Settings } from '../../src-shared/ipc/contract.ts';
import { isMethodName, parseEvent, parseRequest, parseResponse } from '../../src-shared/ipc/contract.ts';
import { applyMeshDelta, type MeshSnapshot } from '../../src-shared/model/mesh.ts';
import { realClock, type Clock, type TimerHandle } from '../engine/sys/clock.ts';
import type { Dispatch } from './dispatch.ts';
import { INITIAL_NOTICE_STATE, noticesFor, type Notice, type NoticeState } from './notifications.ts';
import { DEFAULT_SETTINGS, type SettingsStore } from './settings.ts';
import { EMPTY_SNAPSHOT } from './snapshot.ts';

/** A SettingsStore in memory (no app data directory: tests, the lab's app stand-in). */
function createMemorySettings(): SettingsStore {
  let current: Settings = DEFAULT_SETTINGS;
  return {
    path: ':memory:',
    load: async () => ({ settings: current, problem: null }),
    get: () => current,
    update: async (patch) => (current = { ...current, ...patch }),
  };
}

/** One connection to weftd (src-main/daemon/api-client.ts's DaemonClient has this shape). */
export interface DaemonLink {
  readonly access: 'read' | 'write';
  dispatch(method: unknown, payload: unknown): Promise<IpcResult<unknown>>;
  onEvent(listener: (event: EventName, payload: unknown) => void): () => void;
  onClose(listener: () => void): void;
  close(): void;
}

export interface RemoteHostInit {
  /** Opens a link to weftd; rejects when it is not running. */
  connect: () => Promise<DaemonLink>;
  /** The user's own preferences (the app's settings file); without it they are kept in memory. */
  local?: SettingsStore;
  /** Opens an http(s) URL in the user's browser. */
  openExternal?: (url: string) => Promise<void>;
  /** @default 2000 */
  retryMs?: number;
  clock?: Clock;
  /** Unix time in ms (key expiry notices). @default Date.now */
  wallClock?: () => number;
  logf?: (line: string) => void;
}

export interface RemoteHost {
  /** The IPC contract, as the window calls it. */
  readonly dispatch: Dispatch;
  /** Connects (and keeps reconnecting) to weftd. Resolves after the first attempt, connected or not. */
  start(): Promise<void>;
  /** Closes the link; weftd and the tunnel stay up. */
  stop(): Promise<void>;
  /** Whether weftd answers, and with which access. */
  link(): { connected: boolean; access: 'read' | 'write' | null; problem: string | null };
  snapshot(): MeshSnapshot;
  settings(): Settings;
  onAny(listener: (event: EventName, payload: unknown) => void): () => void;
  onSnapshot(listener: (next: MeshSnapshot, prev: MeshSnapshot) => void): () => void;
  onNotice(listener: (n: Notice) => void): () => void;
  onSettings(listener: (s: Settings) => void): () => void;
  log(level: LogLevel, message: string): void;
}

/** The preferences the app keeps per user; the rest of Settings (networks, acceptRoutes, acceptDns) is weftd's. */
const APP_KEYS = ['autoStart', 'startMinimised', 'notifications'] as const;
type AppPrefs = Pick<Settings, (typeof APP_KEYS)[number]>;
const appPart = (s: Partial<Settings>): Partial<AppPrefs> => Object.fromEntries(APP_KEYS.filter((k) => s[k] !== undefined).map((k) => [k, s[k]])) as Partial<AppPrefs>;
const SETTINGS_CHANGERS = new Set(['profiles:switch', 'profiles:remove', 'session:join', 'network:create-local']);

export function createRemoteHost(init: RemoteHostInit): RemoteHost {
  const clock = init.clock ?? realClock;
  const wallClock = init.wallClock ?? Date.now;
  const retryMs = init.retryMs ?? 2000;
  const logf = init.logf ?? ((): void => undefined);
  const anyListeners = new Set<(event: EventName, payload: unknown) => void>();
  const snapshotListeners = new Set<(next: MeshSnapshot, prev: MeshSnapshot) => void>();
  const noticeListeners = new Set<(n: Notice) => void>();
  const settingsListeners = new Set<(s: Settings) => void>();

  let link: DaemonLink | null = null;
  let problem: string | null = 'not connected yet';
  let current: MeshSnapshot = EMPTY_SNAPSHOT;
  const local = init.local ?? createMemorySettings();
  /** weftd's part (profiles, active profile, acceptRoutes, acceptDns), as last read. */
  let daemonSettings: Settings = DEFAULT_SETTINGS;
  const merged = (): Settings => ({ ...daemonSettings, ...appPart(local.get()) });
  const announceSettings = (): void => {
    const s = merged();
    for (const li of settingsListeners) safe(li, s);
  };
  let notices: NoticeState = INITIAL_NOTICE_STATE;
  let retry: TimerHandle | null = null;
  let stopped = false;

  const safe = <A extends unknown[]>(fn: (...a: A) => void, ...a: A): void => {
    try {
      fn(...a);
    } catch (e) {
      logf(`remote host: a listener failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  };

  function commit(next: MeshSnapshot): void {
    const prev = current;
    current = next;
    const n = noticesFor(prev, next, notices, { enabled: local.get().notifications, now: clock.now(), wallNowMs: wallClock() });
    notices = n.state;
    for (const notice of n.notices) for (const l of noticeListeners) safe(l, notice);
    for (const l of snapshotListeners) safe(l, next, prev);
  }

  function forward<E extends EventName>(event: E, payload: EventPayload<E>): void {
    for (const l of anyListeners) safe(l, event, payload);
  }

  /** The view while weftd cannot be reached: the control card says why. */
  function unavailable(why: string): void {
    problem = why;
    const gone = current.peers.map((p) => p.id);
    const next: MeshSnapshot = { ...EMPTY_SNAPSHOT, control: { state: 'error', url: '', error: why, authUrl: null } };
    commit(next);
    forward('mesh:delta', { control: next.control, self: null, removePeers: gone, regions: [], netcheck: null });
  }

  async function refreshSettings(l: DaemonLink): Promise<void> {
    const r = await l.dispatch('settings:get', {});
    const s = r.ok ? parseResponse('settings:get', r.value) : r;
    if (!s.ok) return;
    daemonSettings = s.value;
    announceSettings();
  }

  /** settings:set split by owner: the user's preferences here, networks and routes/DNS on weftd (a write there). */
  async function setSettings(payload: unknown): Promise<IpcResult<unknown>> {
    const req = parseRequest('settings:set', payload);
    if (!req.ok) return req;
    const mine = appPart(req.value);
    const theirs = Object.fromEntries(Object.entries(req.value).filter(([k]) => !(APP_KEYS as readonly string[]).includes(k)));
    if (Object.keys(theirs).length > 0) {
      const l = link;
      if (!l) return { ok: false, error: { code: 'daemon-unavailable', message: problem ?? 'the Weft service is not running', retryable: true } };
      const r = await l.dispatch('settings:set', theirs);
      if (!r.ok) return r;
      await refreshSettings(l);
    }
    if (Object.keys(mine).length > 0) await local.update(mine);
    announceSettings();
    return { ok: true, value: merged() };
  }

  async function attach(l: DaemonLink): Promise<void> {
    link = l;
    problem = null;
    l.onEvent((event, payload) => {
      const checked = parseEvent(event, payload);
      if (!checked.ok) return logf(`remote host: dropped an off-contract ${event}: ${checked.error.message}`);
      if (event === 'mesh:delta') commit(applyMeshDelta(current, checked.value as EventPayload<'mesh:delta'>));
      forward(event, checked.value);
    });
    l.onClose(() => {
      if (link !== l) return;
      link = null;
      if (stopped) return;
      logf('remote host: weftd closed the connection; reconnecting');
      unavailable('the Weft service stopped or restarted; reconnecting');
      schedule();
    });
    const snap = await l.dispatch('mesh:snapshot', {});
    const parsed = snap.ok ? parseResponse('mesh:snapshot', snap.value) : snap;
    if (parsed.ok) {
      const prev = current;
      commit(parsed.value);
      forward('mesh:delta', { control: parsed.value.control, self: parsed.value.self, upsertPeers: parsed.value.peers, removePeers: prev.peers.map((p) => p.id).filter((id) => !parsed.value.peers.some((p) => p.id === id)), regions: parsed.value.regions, netcheck: parsed.value.netcheck });
    }
    await refreshSettings(l);
  }

  async function tryConnect(): Promise<void> {
    if (stopped || link) return;
    try {
      const l = await init.connect();
      if (stopped) return l.close();
      await attach(l);
      logf(`remote host: connected to weftd (${l.access === 'write' ? 'operator' : 'read-only'})`);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      if (why !== problem) unavailable(why);
      schedule();
    }
  }

  function schedule(): void {
    if (retry || stopped) return;
    retry = clock.setTimeout(() => {
      retry = null;
      void tryConnect();
    }, retryMs);
  }

  async function openAuthUrl(payload: unknown): Promise<IpcResult<unknown>> {
    const url = (payload as { url?: unknown } | null)?.url;
    let u: URL;
    try {
      u = new URL(String(url));
    } catch {
      return { ok: false, error: { code: 'invalid-payload', message: 'not a URL', retryable: false } };
    }
    const control = current.control;
    let controlOrigin: string | null;
    try {
      controlOrigin = control?.url ? new URL(control.url).origin : null;
    } catch {
      controlOrigin = null;
    }
    const allowed = (u.protocol === 'http:' || u.protocol === 'https:') && (control?.authUrl === u.href || control?.authUrl === url || (controlOrigin !== null && u.origin === controlOrigin));
    if (!allowed) return { ok: false, error: { code: 'invalid-payload', message: "only the login server's URLs can be opened", retryable: false } };
    if (!init.openExternal) return { ok: false, error: { code: 'internal', message: 'no browser can be opened from here', retryable: false } };
    await init.openExternal(u.href);
    return { ok: true, value: { done: true } };
  }

  const dispatch: Dispatch = async (method, payload) => {
    if (method === 'session:open-auth-url') return (await openAuthUrl(payload)) as Awaited<ReturnType<Dispatch>>;
    if (method === 'settings:set') return (await setSettings(payload)) as Awaited<ReturnType<Dispatch>>;
    if (method === 'settings:get') {
      if (link) await refreshSettings(link);
      return { ok: true, value: merged() } as Awaited<ReturnType<Dispatch>>;
    }
    const l = link;
    if (!l) return { ok: false, error: { code: 'daemon-unavailable', message: problem ?? 'the Weft service is not running', retryable: true } };
    const r = await l.dispatch(method, payload);
    if (r.ok && typeof method === 'string' && SETTINGS_CHANGERS.has(method)) await refreshSettings(l);
    if (r.ok && isMethodName(method)) return parseResponse(method, r.value) as Awaited<ReturnType<Dispatch>>;
    return r as Awaited<ReturnType<Dispatch>>;
  };

  return {
    dispatch,
    async start() {
      stopped = false;
      const loaded = await local.load();
      if (loaded.problem) logf(`remote host: app settings: ${loaded.problem}`);
      await tryConnect();
    },
    async stop() {
      stopped = true;
      if (retry) clock.clearTimeout(retry);
      retry = null;
      link?.close();
      link = null;
    },
    link: () => ({ connected: link !== null, access: link?.access ?? null, problem }),
    snapshot: () => current,
    settings: merged,
    onAny(listener) {
      anyListeners.add(listener);
      return () => anyListeners.delete(listener);
    },
    onSnapshot(listener) {
      snapshotListeners.add(listener);
      return () => snapshotListeners.delete(listener);
    },
    onNotice(listener) {
      noticeListeners.add(listener);
      return () => noticeListeners.delete(listener);
    },
    onSettings(listener) {
      settingsListeners.add(listener);
      return () => settingsListeners.delete(listener);
    },
    log(level, message) {
      logf(`${level}: ${message}`);
    },
  };
}
