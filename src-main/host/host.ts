/**
 * The host: the engine per saved network and every contract method, Electron-free. weftd runs it
 * (src-main/daemon/weftd.ts) and serves it to the app, the CLI and the dev bridge over its local API.
 *
 *   UI ──dispatch(method, payload)──▶ handlers ──▶ saved networks (settings.ts), one Engine at a time
 *   UI ◀──mesh:delta / mesh:stats / session:progress / log:entry── events ◀── engine events + status polling
 *   shell (tray, notifications, login item) ◀── onSnapshot / onNotice / onSettings
 *
 * Snapshots: on every engine event (netmap, path change, control status) and every POLL_MS while an engine runs,
 * the host asks `engine.status()`, builds a MeshSnapshot (snapshot.ts) and sends what changed: structure as
 * `mesh:delta`, counters as `mesh:stats`, each at most once per 250 ms. `mesh:snapshot` answers the current view,
 * so a UI that loads late gets everything, then follows the deltas.
 *
 * Joining: `session:join` saves the network as a profile and connects; like `session:connect` it resolves once
 * the node is connected or waiting for login approval (the AuthURL arrives in `session:progress`), and rejects
 * with the engine's error code. Only one engine runs; switching networks stops the old one first. The
 * `engine:*` reads answer what `weft status`, `weft ping` and `weft netcheck` show.
 *
 * All timers use the injected Clock. Ownership: every field below the constructor is owned by createHost's
 * closure and changed only by its functions.
 */
import { join } from 'node:path';
import { MeshError } from '../../src-shared/errors.ts';
import type { EventName, EventPayload, JoinProgress, JoinRequest, LogLevel, PingResult, Profile, Settings } from '../../src-shared/ipc/contract.ts';
import type { DerpMap } from '../../src-shared/model/derp-map.ts';
import { EVENT_NAMES, parseEvent } from '../../src-shared/ipc/contract.ts';
import type { MeshSnapshot, PeerStats } from '../../src-shared/model/mesh.ts';
import type { NetcheckReport } from '../../src-shared/model/netcheck.ts';
import type { StatusReport, WgDeviceStatus, WireguardGoStatus } from '../../src-shared/model/status.ts';
import type { ControlClient } from '../engine/control/client.ts';
import { parseServerUrl } from '../engine/control/transport.ts';
import { Engine, type EngineEvents, type EngineInit, type EnginePrefs } from '../engine/engine.ts';
import type { TailnetSystem } from '../engine/system.ts';
import { ensureStateDir } from '../engine/state/store.ts';
import { realClock, type Clock, type TimerHandle } from '../engine/sys/clock.ts';
import type { Logf } from '../engine/sys/log.ts';
import type { WgInterface } from '../engine/wg/iface.ts';
import { HostError, toIpcError, type Handlers } from './dispatch.ts';
import { joinQrText, qrSvg, startLocalServer, type LocalServer, type LocalServerDeps, type LocalServerOptions } from './local-network.ts';
import { LogBuffer, engineLineLevel } from './log-buffer.ts';
import { INITIAL_NOTICE_STATE, noticesFor, type Notice, type NoticeState } from './notifications.ts';
import { createSettingsStore, SETTINGS_FILE, type SettingsStore } from './settings.ts';
import { EMPTY_SNAPSHOT, diffSnapshots, statsChanges, statsOf, toSnapshot } from './snapshot.ts';

/** The part of Engine the host uses (a fake in tests). */
export interface HostedEngine {
  readonly control: Pick<ControlClient, 'status' | 'netmap' | 'logout' | 'loadOnly'>;
  start(): Promise<void>;
  stop(): Promise<void>;
  status(): Promise<StatusReport>;
  netcheck(): Promise<NetcheckReport>;
  ping(target: string, timeoutMs: number): Promise<PingResult>;
  /** Operator preferences (subnet routes, MagicDNS), applied to the running engine. */
  setPrefs?(p: EnginePrefs): void;
  readonly derpMap: DerpMap | null;
  on<E extends keyof EngineEvents>(event: E, listener: (...args: EngineEvents[E]) => void): unknown;
}

export interface HostTiming {
  /** Status poll while an engine runs: byte counters and handshakes have no event of their own. */
  pollMs: number;
  /** Least time between two status refreshes, so deltas stay at ≤ 4 per second however busy the engine is. */
  minRefreshGapMs: number;
  /** Least time between two `mesh:stats` events (≤ 4/s: smooth enough for counters, cheap over IPC). */
  statsGapMs: number;
}

export const DEFAULT_TIMING: HostTiming = { pollMs: 1000, minRefreshGapMs: 250, statsGapMs: 250 };

export interface HostInit {
  /** The app's data directory: settings.json and, by default, one state directory per profile. */
  dataDir: string;
  /** Creates the WireGuard interface `name` (wireguard-go in weftd, a fake in tests). */
  createInterface: (name: string) => Promise<WgInterface>;
  /**
   * Routes, the ACL filter and MagicDNS beside the interface `name` (weftd: system-linux.ts). Without it the engine
   * routes through the interface itself and filters nothing (tests with a fake interface).
   */
  createSystem?: (name: string) => TailnetSystem;
  /** Runs before each engine start (a failure fails the join with its error). */
  prepareInterface?: () => Promise<void>;
  /** @default 'weft0' */
  iface?: string;
  /** The wireguard-go `createInterface` runs, shown in `engine:status` under dataPath (weftd knows it; tests do not). */
  wireguardGo?: WireguardGoStatus;
  /** Which WireGuard device `createInterface` makes, and why (weftd knows it; tests do not). */
  wgDevice?: WgDeviceStatus;
  /** Name to register when the join request gives none. @default the OS hostname (engine default) */
  hostname?: string;
  /** @default 41641 (engine default) */
  udpPort?: number;
  /** @default true (engine default) */
  portMapping?: boolean;
  /** Map-stream watchdog (a debug knob for tests). @default the engine's (Tailscale's 120 s) */
  mapWatchdogMs?: number;
  /** A profile's engine state directory. @default `${dataDir}/profiles/${profile.id}` */
  stateDirFor?: (profile: Profile) => string;
  /** Opens an http(s) URL in the system browser; without it `session:open-auth-url` fails. */
  openExternal?: (url: string) => Promise<void>;
  /** Connect the active profile in start(). @default true */
  autoConnect?: boolean;
  /** @default new Engine(init) */
  createEngine?: (init: EngineInit) => HostedEngine;
  /** @default createSettingsStore(`${dataDir}/settings.json`) */
  settings?: SettingsStore;
  /** Monotonic time for the host's own timers. @default realClock */
  clock?: Clock;
  /** Unix time in ms, for log stamps and key expiry. @default Date.now */
  wallClock?: () => number;
  /** Also receives every log line (e.g. stderr in development). */
  logf?: Logf;
  timing?: Partial<HostTiming>;
  /** @default 2000 */
  logCapacity?: number;
  /** "Create a network on this computer": what the embedded server uses (tests inject an in-memory store). */
  localServer?: LocalServerDeps;
  /** @default startLocalServer (local-network.ts) */
  startLocalServer?: (o: LocalServerOptions) => Promise<LocalServer>;
}

/** The saved network's name for "Create a network on this computer". */
export const LOCAL_PROFILE_NAME = 'Network on this computer';

export interface Host {
  /** One handler per contract method; wrap with createDispatcher (dispatch.ts) for untrusted input. */
  readonly handlers: Handlers;
  /** Loads settings and, unless autoConnect is false, connects the active profile (in the background). */
  start(): Promise<void>;
  /** Stops the engine (its interface is destroyed) and every timer. */
  stop(): Promise<void>;
  snapshot(): MeshSnapshot;
  settings(): Settings;
  /** Contract events (payloads already validated). Returns the unsubscribe function. */
  on<E extends EventName>(event: E, listener: (payload: EventPayload<E>) => void): () => void;
  /** Every contract event, named (what a transport forwards). Returns the unsubscribe function. */
  onAny(listener: (event: EventName, payload: unknown) => void): () => void;
  /** Every new snapshot (tray). */
  onSnapshot(listener: (next: MeshSnapshot, prev: MeshSnapshot) => void): () => void;
  /** Desktop notifications the policy (notifications.ts) decided to show. */
  onNotice(listener: (n: Notice) => void): () => void;
  /** Settings as saved (login item, tray). */
  onSettings(listener: (s: Settings) => void): () => void;
  log(level: LogLevel, message: string): void;
}

/** "HOST:PORT" (IPv4, as the contract's CreateLocalNetworkRequest allows) as a listen address. */
export function parseListen(text: string): { host: string; port: number } {
  const i = text.lastIndexOf(':');
  const host = text.slice(0, i);
  const port = Number(text.slice(i + 1));
  if (i < 0 || !host.split('.').every((o) => Number(o) <= 255) || !Number.isInteger(port) || port > 65535) {
    throw new HostError('invalid-payload', `listen must be IPv4:PORT, got ${JSON.stringify(text.slice(0, 60))}`, false);
  }
  return { host, port };
}

/** A profile id from the server's host name, unique among `taken`. */
export function newProfileId(server: URL, taken: Iterable<string>): string {
  const used = new Set(taken);
  const base =
    server.hostname
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 32) || 'network';
  let id = base;
  for (let n = 2; used.has(id); n++) id = `${base}-${n}`;
  return id;
}

interface Run {
  readonly gen: number;
  readonly engine: HostedEngine;
  profile: Profile;
  readonly server: URL;
  /** Settles the connect() waiting on this run (connected, waiting for approval, failed or cancelled). */
  settle: ((err?: unknown) => void) | null;
}

type AnyListener = (payload: unknown) => void;

export function createHost(init: HostInit): Host {
  const clock = init.clock ?? realClock;
  const wallClock = init.wallClock ?? Date.now;
  const timing: HostTiming = { ...DEFAULT_TIMING, ...init.timing };
  const settings = init.settings ?? createSettingsStore(join(init.dataDir, SETTINGS_FILE));
  const createEngine = init.createEngine ?? ((i: EngineInit): HostedEngine => new Engine(i));
  const stateDirFor = init.stateDirFor ?? ((p: Profile): string => join(init.dataDir, 'profiles', p.id));
  const logs = new LogBuffer(init.logCapacity ?? 2000);

  const listeners = new Map<EventName, Set<AnyListener>>(EVENT_NAMES.map((e) => [e, new Set<AnyListener>()]));
  const snapshotListeners = new Set<(next: MeshSnapshot, prev: MeshSnapshot) => void>();
  const noticeListeners = new Set<(n: Notice) => void>();
  const settingsListeners = new Set<(s: Settings) => void>();

  let run: Run | null = null;
  /** The embedded server of "Create a network on this computer" (started once, stopped in stop()). */
  let localServer: Promise<LocalServer> | null = null;
  let generation = 0;
  let failure: { url: string; message: string } | null = null;
  let netcheck: NetcheckReport | null = null;
  let current: MeshSnapshot = EMPTY_SNAPSHOT;
  let stopped = false;
  let lastProgress = '';
  let notices: NoticeState = INITIAL_NOTICE_STATE;
  // Refresh scheduling.
  let inflight: Promise<void> | null = null;
  let again = false;
  let lastRefreshAt = -Infinity;
  let refreshTimer: TimerHandle | null = null;
  let refreshDue = Infinity;
  // Stats coalescing: what the UI has, what waits to be sent.
  const sentStats = new Map<string, PeerStats>();
  const pendingStats = new Map<string, PeerStats>();
  let statsTimer: TimerHandle | null = null;
  let lastStatsAt = -Infinity;

  function safeCall<A extends unknown[]>(fn: (...a: A) => void, ...args: A): void {
    try {
      fn(...args);
    } catch (e) {
      record('error', `host: a listener failed: ${e instanceof Error ? e.message : String(e)}`, false);
    }
  }

  function emit<E extends EventName>(event: E, payload: EventPayload<E>): void {
    const checked = parseEvent(event, payload);
    if (!checked.ok) {
      record('error', `host: dropped an off-contract ${event}: ${checked.error.message}`, false);
      return;
    }
    for (const l of listeners.get(event) ?? []) safeCall(l, checked.value);
  }

  function record(level: LogLevel, message: string, announce = true): void {
    const entry = { at: new Date(wallClock()).toISOString(), level, message };
    logs.push(entry);
    init.logf?.(`${level}: ${message}`);
    if (announce) emit('log:entry', entry);
  }

  const engineLogf: Logf = (line) => record(engineLineLevel(line), line);

  // --- snapshots -----------------------------------------------------------------------------------------

  function build(r: Run | null, report: StatusReport | null): MeshSnapshot {
    const nm = r?.engine.control.netmap ?? null;
    const os = new Map([...(nm?.peers.values() ?? [])].map((n) => [String(n.ID), n.Hostinfo?.OS ?? null]));
    const home = nm?.self?.HomeDERP;
    return toSnapshot({
      report,
      derpMap: nm?.derpMap ?? null,
      selfHomeRegion: typeof home === 'number' && home > 0 ? home : null,
      peerOs: (id) => os.get(id) ?? null,
      netcheck,
      failure,
    });
  }

  function commit(next: MeshSnapshot): void {
    const prev = current;
    current = next;
    const delta = diffSnapshots(prev, next);
    if (delta) {
      emit('mesh:delta', delta);
      for (const p of delta.upsertPeers ?? []) {
        sentStats.set(p.id, statsOf(p));
        pendingStats.delete(p.id);
      }
      for (const id of delta.removePeers ?? []) {
        sentStats.delete(id);
        pendingStats.delete(id);
      }
    }
    for (const s of statsChanges(sentStats, next)) pendingStats.set(s.id, s);
    scheduleStats();
    const n = noticesFor(prev, next, notices, { enabled: settings.get().notifications, now: clock.now(), wallNowMs: wallClock() });
    notices = n.state;
    for (const notice of n.notices) for (const l of noticeListeners) safeCall(l, notice);
    for (const l of snapshotListeners) safeCall(l, next, prev);
  }

  function scheduleStats(): void {
    if (pendingStats.size === 0 || statsTimer || stopped) return;
    statsTimer = clock.setTimeout(flushStats, Math.max(0, lastStatsAt + timing.statsGapMs - clock.now()));
  }

  function flushStats(): void {
    statsTimer = null;
    const present = new Set(current.peers.map((p) => p.id));
    const peers = [...pendingStats.values()].filter((s) => present.has(s.id));
    pendingStats.clear();
    if (peers.length === 0) return;
    lastStatsAt = clock.now();
    for (const s of peers) sentStats.set(s.id, s);
    emit('mesh:stats', { peers });
  }

  /** Builds and commits a fresh snapshot; concurrent calls share one run, and a call during a run queues one more. */
  function refresh(): Promise<void> {
    if (inflight) {
      again = true;
      return inflight;
    }
    inflight = (async () => {
      do {
        again = false;
        const r = run;
        let report: StatusReport | null = null;
        if (r) {
          try {
            report = await r.engine.status();
          } catch (e) {
            record('warn', `host: engine status failed: ${e instanceof Error ? e.message : String(e)}`);
            continue;
          }
          if (run !== r) {
            again = true;
            continue;
          }
        }
        commit(build(r, report));
      } while (again && !stopped);
    })().finally(() => {
      inflight = null;
      lastRefreshAt = clock.now();
      if (run && !stopped) requestRefresh(timing.pollMs);
    });
    return inflight;
  }

  /** Schedules a refresh in `delayMs` (never sooner than the minimum gap after the last one). */
  function requestRefresh(delayMs = 0): void {
    if (stopped) return;
    const now = clock.now();
    const due = Math.max(now + delayMs, lastRefreshAt + timing.minRefreshGapMs);
    if (refreshTimer && refreshDue <= due) return;
    if (refreshTimer) clock.clearTimeout(refreshTimer);
    refreshDue = due;
    refreshTimer = clock.setTimeout(() => {
      refreshTimer = null;
      refreshDue = Infinity;
      void refresh();
    }, due - now);
  }

  // --- engine lifecycle ----------------------------------------------------------------------------------

  function progress(p: JoinProgress): void {
    const key = JSON.stringify(p);
    if (key === lastProgress) return;
    lastProgress = key;
    emit('session:progress', p);
  }

  const validUrl = (u: string | null): string | null => {
    if (!u) return null;
    try {
      new URL(u);
      return u;
    } catch {
      return null;
    }
  };

  function failRun(gen: number, server: URL, e: unknown): void {
    if (gen !== generation) return;
    const error = toIpcError(e);
    failure = { url: server.origin, message: error.message };
    record('error', `host: connecting to ${server.origin} failed: ${error.message}`);
    progress({ stage: 'failed', authUrl: null, error });
    void refresh();
  }

  async function connect(profile: Profile, opts: { authKey?: string | undefined; hostname?: string | undefined }): Promise<void> {
    await disconnect();
    const gen = ++generation;
    const server = parseServerUrl(profile.serverUrl);
    lastProgress = '';
    try {
      await init.prepareInterface?.();
      if (gen !== generation) throw new MeshError('cancelled', 'the connection was cancelled', true);
      await ensureStateDir(stateDirFor(profile));
    } catch (e) {
      failRun(gen, server, e);
      throw e;
    }
    if (gen !== generation) throw new MeshError('cancelled', 'the connection was cancelled', true);
    const hostname = opts.hostname ?? init.hostname;
    const engine = createEngine({
      server,
      stateDir: stateDirFor(profile),
      ...(opts.authKey ? { authKey: opts.authKey } : {}),
      ...(hostname ? { hostname } : {}),
      ...(init.udpPort !== undefined ? { udpPort: init.udpPort } : {}),
      ...(init.portMapping !== undefined ? { portMapping: init.portMapping } : {}),
      ...(init.mapWatchdogMs !== undefined ? { mapWatchdogMs: init.mapWatchdogMs } : {}),
      createInterface: () => init.createInterface(init.iface ?? 'weft0'),
      ...(init.createSystem ? { system: init.createSystem(init.iface ?? 'weft0') } : {}),
      acceptRoutes: settings.get().acceptRoutes,
      acceptDns: settings.get().acceptDns,
      logf: engineLogf,
    });
    const r: Run = { gen, engine, profile, server, settle: null };
    failure = null;
    run = r;
    record('info', `host: connecting to ${profile.name} (${server.origin})`);
    const done = new Promise<void>((resolve, reject) => {
      r.settle = (err?: unknown) => {
        r.settle = null;
        if (err === undefined) resolve();
        else reject(err);
      };
    });
    engine.on('control:status', (s) => {
      if (run !== r) return;
      if (s.stage) progress({ stage: s.stage, authUrl: validUrl(s.authUrl), error: engine.control.status.error });
      if (s.state === 'needs-login') r.settle?.();
      requestRefresh();
    });
    engine.on('peer:path-changed', () => {
      if (run === r) requestRefresh();
    });
    engine.on('netmap:updated', () => {
      if (run === r) requestRefresh();
    });
    requestRefresh();
    engine.start().then(
      () => {
        if (run !== r) return;
        r.settle?.();
        requestRefresh();
      },
      (e: unknown) => {
        if (run !== r) return;
        run = null;
        r.settle?.(e);
        failRun(gen, server, e);
        void engine.stop().catch((err: unknown) => record('warn', `host: stopping the failed engine: ${String(err)}`));
      },
    );
    return done;
  }

  async function disconnect(): Promise<void> {
    const r = run;
    run = null;
    generation++;
    const hadFailure = failure !== null;
    failure = null;
    if (!r) {
      if (hadFailure) await refresh();
      return;
    }
    r.settle?.(new MeshError('cancelled', 'disconnected', true));
    record('info', `host: disconnecting from ${r.profile.name}`);
    await r.engine.stop().catch((e: unknown) => record('warn', `host: stopping the engine: ${e instanceof Error ? e.message : String(e)}`));
    await refresh();
  }

  function activeProfile(): Profile | null {
    const s = settings.get();
    return s.profiles.find((p) => p.id === s.activeProfile) ?? null;
  }

  async function saveSettings(patch: Partial<Settings>): Promise<Settings> {
    const saved = await settings.update(patch);
    for (const l of settingsListeners) safeCall(l, saved);
    return saved;
  }

  /** After a settings change: the running engine must belong to the active profile. */
  async function reconcile(saved: Settings): Promise<void> {
    const r = run;
    if (!r) return;
    const mine = saved.profiles.find((p) => p.id === r.profile.id);
    if (mine && saved.activeProfile === mine.id) {
      r.profile = mine;
      return;
    }
    await disconnect();
    const next = activeProfile();
    if (next) void connect(next, {}).catch((e: unknown) => record('warn', `host: connecting ${next.name}: ${toIpcError(e).message}`));
  }

  /** Saves the network as a profile (the active one) and connects with the request's key and hostname. */
  async function joinNetwork(req: JoinRequest): Promise<void> {
    const server = parseServerUrl(req.serverUrl);
    const s = settings.get();
    const existing = s.profiles.find((p) => {
      try {
        return new URL(p.serverUrl).origin === server.origin;
      } catch {
        return false;
      }
    });
    const profile: Profile = existing
      ? { ...existing, serverUrl: req.serverUrl, ...(req.profileName ? { name: req.profileName } : {}) }
      : { id: newProfileId(server, s.profiles.map((p) => p.id)), name: req.profileName ?? server.hostname.slice(0, 80), serverUrl: req.serverUrl };
    await saveSettings({ profiles: [...s.profiles.filter((p) => p.id !== profile.id), profile], activeProfile: profile.id });
    await connect(profile, { authKey: req.authKey, hostname: req.hostname });
  }

  // --- handlers ------------------------------------------------------------------------------------------

  const done = { done: true } as const;

  /** The network on this computer, once `network:create-local` started it. */
  const runningLocalServer = async (): Promise<LocalServer> => {
    const ls = localServer ? await localServer.catch(() => null) : null;
    if (!ls) throw new HostError('state', 'no network runs on this computer: create it first', false);
    return ls;
  };

  const handlers: Handlers = {
    'mesh:snapshot': async () => current,

    'session:join': async (req) => {
      await joinNetwork(req);
      return done;
    },

    'network:create-local': async (req) => {
      const listen = req.listen ? parseListen(req.listen) : undefined;
      if (!localServer) {
        const start = init.startLocalServer ?? startLocalServer;
        localServer = start({ ...init.localServer, dataDir: init.dataDir, ...(listen ? { listen } : {}), logf: (l) => record('info', l) });
        localServer.catch(() => {
          localServer = null;
        });
      }
      let ls: LocalServer;
      try {
        ls = await localServer;
      } catch (e) {
        const why = e instanceof Error ? e.message : String(e);
        record('error', `host: cannot start the network on this computer: ${why}`);
        throw new HostError('internal', `cannot start the network on this computer: ${why}`, true, { cause: e });
      }
      const serverUrl = ls.url.origin;
      // This device joins with a single-use key of its own (unless it already runs on this network).
      if (run?.server.origin !== serverUrl) await joinNetwork({ serverUrl, authKey: ls.newKey({ reusable: false }), profileName: LOCAL_PROFILE_NAME });
      const authKey = ls.newKey({ reusable: true });
      const qrText = joinQrText(serverUrl, authKey);
      return { serverUrl, authKey, qrText, qrSvg: await qrSvg(qrText) };
    },

    'network:policy-get': async () => {
      const ls = await runningLocalServer();
      // A file with very many errors is cut short here (the contract bounds the text; the log has all of it).
      const problem = ls.policyProblem();
      return { path: ls.policyPath, text: await ls.readPolicy(), problem: problem && problem.length > 16_000 ? `${problem.slice(0, 16_000)}\n…` : problem };
    },
    'network:policy-check': async (req) => (await runningLocalServer()).checkPolicy(req.text),
    'network:policy-save': async (req) => (await runningLocalServer()).savePolicy(req.text),

    'session:connect': async () => {
      const profile = activeProfile();
      if (!profile) throw new MeshError('logged-out', 'no network is saved yet: join one first', false);
      await connect(profile, {});
      return done;
    },

    'session:disconnect': async () => {
      await disconnect();
      return done;
    },

    'session:logout': async () => {
      const r = run;
      if (r) {
        await r.engine.control.logout();
        await disconnect();
        return done;
      }
      const profile = activeProfile();
      if (!profile) throw new MeshError('logged-out', 'no network is active', false);
      const engine = createEngine({ server: parseServerUrl(profile.serverUrl), stateDir: stateDirFor(profile), createInterface: () => init.createInterface(init.iface ?? 'weft0'), logf: engineLogf });
      try {
        await engine.control.loadOnly();
        await engine.control.logout();
      } finally {
        await engine.stop().catch(() => undefined);
      }
      record('info', `host: logged out of ${profile.name}`);
      return done;
    },

    'session:open-auth-url': async (req) => {
      const u = new URL(req.url);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new HostError('invalid-payload', 'only http and https URLs can be opened', false);
      const r = run;
      const allowed = current.control?.authUrl === req.url || (r !== null && u.origin === r.server.origin);
      if (!allowed) throw new HostError('invalid-payload', "only the login server's URLs can be opened", false);
      if (!init.openExternal) throw new HostError('internal', 'no browser can be opened from here', false);
      await init.openExternal(u.href);
      return done;
    },

    'netcheck:run': async () => {
      const r = run;
      if (!r) throw new MeshError('state', 'connect to a network first: netcheck uses its DERP servers', true);
      const report = await r.engine.netcheck();
      netcheck = report;
      await refresh();
      return report;
    },

    'settings:get': async () => settings.get(),

    'settings:set': async (patch) => {
      const saved = await saveSettings(patch);
      run?.engine.setPrefs?.({ acceptRoutes: saved.acceptRoutes, acceptDns: saved.acceptDns });
      await reconcile(saved);
      return saved;
    },

    'profiles:switch': async ({ id }) => {
      const s = settings.get();
      const profile = s.profiles.find((p) => p.id === id);
      if (!profile) throw new HostError('invalid-payload', `no saved network with id ${JSON.stringify(id.slice(0, 40))}`, false);
      if (s.activeProfile === id) return done;
      const wasRunning = run !== null;
      await saveSettings({ activeProfile: id });
      if (wasRunning) await connect(profile, {});
      return done;
    },

    'profiles:remove': async ({ id }) => {
      const s = settings.get();
      const profiles = s.profiles.filter((p) => p.id !== id);
      if (run?.profile.id === id) await disconnect();
      return saveSettings({ profiles, activeProfile: s.activeProfile === id ? (profiles[0]?.id ?? null) : s.activeProfile });
    },

    'logs:get': async ({ level, limit }) => logs.recent(level ?? 'debug', limit ?? 500),

    'engine:status': async () => {
      const r = run;
      if (!r) throw new MeshError('state', 'not connected to any network: join one, or connect the saved one', true);
      const s = await r.engine.status();
      if (!s.dataPath) return s;
      return {
        ...s,
        dataPath: { ...s.dataPath, ...(init.wireguardGo ? { wireguardGo: init.wireguardGo } : {}), ...(init.wgDevice ? { device: init.wgDevice } : {}) },
      };
    },

    'engine:ping': async ({ peer, timeoutMs }) => {
      const r = run;
      if (!r) throw new MeshError('state', 'not connected to any network', true);
      try {
        return await r.engine.ping(peer, timeoutMs ?? 5000);
      } catch (e) {
        if (e instanceof MeshError) throw e;
        throw new MeshError('state', e instanceof Error ? e.message : String(e), true);
      }
    },

    'engine:derp-map': async () => run?.engine.derpMap ?? null,
  };

  return {
    handlers,
    async start() {
      const loaded = await settings.load();
      if (loaded.problem) record('warn', `settings: ${loaded.problem}`);
      commit(build(null, null));
      const profile = activeProfile();
      if ((init.autoConnect ?? true) && profile) {
        void connect(profile, {}).catch((e: unknown) => record('warn', `host: connecting ${profile.name}: ${toIpcError(e).message}`));
      }
    },
    async stop() {
      await disconnect();
      const ls = localServer;
      localServer = null;
      if (ls) await ls.then((l) => l.close()).catch(() => undefined);
      stopped = true;
      if (refreshTimer) clock.clearTimeout(refreshTimer);
      if (statsTimer) clock.clearTimeout(statsTimer);
      refreshTimer = null;
      statsTimer = null;
      await inflight;
    },
    snapshot: () => current,
    settings: () => settings.get(),
    on(event, listener) {
      const set = listeners.get(event)!;
      const l = listener as AnyListener;
      set.add(l);
      return () => set.delete(l);
    },
    onAny(listener) {
      const offs = EVENT_NAMES.map((e) => {
        const l: AnyListener = (p) => listener(e, p);
        listeners.get(e)!.add(l);
        return () => listeners.get(e)!.delete(l);
      });
      return () => offs.forEach((off) => off());
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
    log: (level, message) => record(level, message),
  };
}
