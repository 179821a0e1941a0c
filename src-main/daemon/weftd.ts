/**
 * weftd: the one privileged process that owns the engine. `weft daemon` (the service) and `weft up` (a foreground
 * run for servers and scripts) both start it; the app, the tray, the `weft` CLI and the dev bridge are clients of
 * its local API (api-server.ts).
 *
 *   clients ──local API (read / operator socket)──▶ validated dispatcher ──▶ host (src-main/host) ──▶ Engine
 *
 * Every privileged change (the WireGuard interface, its addresses, peers and routes) is derived by the engine
 * from the netmap; the API carries only the contract's methods (join, leave, preferences, profiles, reads), so no
 * client ever hands weftd a route, an address, an interface name or a rule.
 *
 * Start order: the API's sockets first (a second engine on the same run directory is refused before anything is
 * touched), then the cleanup of what a killed earlier run left (interfaces whose owner is gone), then the host.
 */
import type { Profile } from '../../src-shared/ipc/contract.ts';
import { EVENT_NAMES, type EventName } from '../../src-shared/ipc/contract.ts';
import type { Logf } from '../engine/sys/log.ts';
import type { WgInterface } from '../engine/wg/iface.ts';
import { cleanupStaleInterfaces } from '../engine/wg/stale.ts';
import { defaultWireguardGo, type WireguardGoBinary } from '../engine/wg/resolve.ts';
import { startWireguardGo } from '../engine/wg/wireguard-go.ts';
import { chooseWgBackend, startKernelWireguard, type WgBackendChoice } from '../engine/wg/kernel.ts';
import { createLinuxSystem } from '../engine/system-linux.ts';
import { execRunner } from '../engine/io/exec.ts';
import { raiseFdLimit } from './fd-limit.ts';
import type { TailnetSystem } from '../engine/system.ts';
import { createDispatcher, type Dispatch } from '../host/dispatch.ts';
import { createHost, type Host, type HostInit } from '../host/host.ts';
import { startApiServer, type ApiServer } from './api-server.ts';

export interface WeftdOptions {
  /** Settings (saved networks, preferences) and, by default, one state directory per network. */
  dataDir: string;
  /** Where the API's sockets live. */
  runDir: string;
  /** @default 'weft' */
  operatorGroup?: string;
  /** Users who may write through sockets of their own. */
  operatorUsers?: readonly string[];
  /** The WireGuard interface weftd manages (a configuration value, never a client's choice). */
  iface: string;
  udpPort: number;
  /** Reconnect the saved active network at start (the service); `weft up` joins explicitly instead. */
  autoConnect: boolean;
  /** `weft up --state-dir DIR`: the one network's keys live in DIR itself. */
  stateDirFor?: (p: Profile) => string;
  hostname?: string;
  mapWatchdogMs?: number;
  /**
   * Creates the interface. @default wireguard-go. The debug variable WEFT_DEBUG_FAIL_IFACE=N makes the first N
   * creations fail, to show that the engine retries (tested in the lab).
   */
  createInterface?: (name: string) => Promise<WgInterface>;
  /**
   * Routes, the ACL filter and MagicDNS beside the interface. @default the Linux system (system-linux.ts) when the
   * interface is the default wireguard-go one; none when `createInterface` is given (tests with a fake interface).
   */
  createSystem?: (name: string) => TailnetSystem;
  /** Called after a method succeeded (e.g. `weft up` ends after session:logout or session:disconnect). */
  afterCall?: (method: string) => void;
  logf: Logf;
}

export interface Weftd {
  readonly host: Host;
  /** The wireguard-go weftd runs (path, version, whether it is the pinned build); null with `createInterface`. */
  readonly wireguardGo: WireguardGoBinary | null;
  readonly api: ApiServer;
  readonly dispatch: Dispatch;
  close(): Promise<void>;
}

/** Wraps interface creation so the first `n` attempts fail (a fault injected for tests). */
function failingFirst(n: number, create: (name: string) => Promise<WgInterface>): (name: string) => Promise<WgInterface> {
  let left = n;
  return async (name) => {
    if (left > 0) {
      left--;
      throw new Error(`injected fault: interface creation ${n - left} of ${n} fails (WEFT_DEBUG_FAIL_IFACE)`);
    }
    return create(name);
  };
}

export async function startWeftd(o: WeftdOptions): Promise<Weftd> {
  // Kernel WireGuard when the kernel has it (kernel.ts), else wireguard-go (resolve.ts: $WEFT_WIREGUARD_GO, Weft's
  // pinned build, then PATH): chosen and logged once.
  const device: WgBackendChoice | null = o.createInterface ? null : await chooseWgBackend();
  if (device) o.logf(`weftd: WireGuard device: ${device.kind} (${device.reason})`);
  const wireguardGo = device?.kind === 'wireguard-go' ? await defaultWireguardGo(o.logf) : null;
  let create =
    o.createInterface ??
    (device?.kind === 'kernel'
      ? (name: string): Promise<WgInterface> => startKernelWireguard(name, { logf: o.logf })
      : (name: string): Promise<WgInterface> => startWireguardGo({ name, ...(wireguardGo ? { binary: wireguardGo.path } : {}) }, { logf: o.logf }));
  const createSystem = o.createSystem ?? (o.createInterface ? undefined : (name: string): TailnetSystem => createLinuxSystem({ iface: name, stateDir: o.dataDir, logf: o.logf }));
  const fail = Number(process.env['WEFT_DEBUG_FAIL_IFACE'] ?? 0);
  if (Number.isInteger(fail) && fail > 0) create = failingFirst(fail, create);
  const init: HostInit = {
    dataDir: o.dataDir,
    iface: o.iface,
    udpPort: o.udpPort,
    autoConnect: o.autoConnect,
    createInterface: create,
    ...(wireguardGo ? { wireguardGo: { path: wireguardGo.path, version: wireguardGo.version, pinned: wireguardGo.pinned } } : {}),
    ...(device ? { wgDevice: { kind: device.kind, reason: device.reason } } : {}),
    ...(createSystem ? { createSystem } : {}),
    logf: o.logf,
    ...(o.stateDirFor ? { stateDirFor: o.stateDirFor } : {}),
    ...(o.hostname ? { hostname: o.hostname } : {}),
    ...(o.mapWatchdogMs ? { mapWatchdogMs: o.mapWatchdogMs } : {}),
  };
  const host = createHost(init);
  const validated = createDispatcher(host.handlers, { logf: o.logf });
  // Requests wait until the saved settings are loaded and the host runs: one answered earlier would see (or save
  // over) the defaults.
  let started: () => void = () => undefined;
  const ready = new Promise<void>((r) => (started = r));
  const dispatch: Dispatch = async (method, payload) => {
    await ready;
    const r = await validated(method, payload);
    if (r.ok && typeof method === 'string') o.afterCall?.(method);
    return r;
  };
  const api = await startApiServer({
    runDir: o.runDir,
    ...(o.operatorGroup ? { operatorGroup: o.operatorGroup } : {}),
    ...(o.operatorUsers ? { operatorUsers: o.operatorUsers } : {}),
    logf: o.logf,
    backend: {
      dispatch,
      onEvent(listener: (event: EventName, payload: unknown) => void) {
        const offs = EVENT_NAMES.map((e) => host.on(e, (payload) => listener(e, payload)));
        return () => offs.forEach((off) => off());
      },
    },
  });
  try {
    const stale = await cleanupStaleInterfaces('weft', {}, { logf: o.logf });
    const n = stale.killed.length + stale.removedLinks.length + stale.removedSockets.length;
    if (n > 0) o.logf(`weftd: removed what an earlier run left: ${JSON.stringify(stale)}`);
  } catch (e) {
    o.logf(`weftd: stale cleanup failed: ${(e as Error).message}`);
  }
  // Routes, rules and the resolv.conf a killed run left go now, before any network is joined: the machine's DNS must
  // not keep pointing at a MagicDNS that is gone while weftd waits (for a join, or for an unreachable server). The
  // filter stays until the engine replaces it: it is the fail-closed state.
  if (createSystem) {
    const leftover = createSystem(o.iface ?? 'weft0');
    await leftover.router.cleanup();
    await leftover.dns?.cleanupAtStart();
    await leftover.datapath?.cleanupAtStart();
    // Every relayed peer holds a loopback socket: room for thousands of them.
    await raiseFdLimit(execRunner, o.logf);
  }
  try {
    await host.start();
  } catch (e) {
    await api.close();
    throw e;
  }
  started();
  o.logf(`weftd: serving ${api.operatorPath} (operators) and ${api.readPath} (everyone, read-only)`);
  let closing: Promise<void> | undefined;
  return {
    host,
    wireguardGo,
    api,
    dispatch,
    close() {
      closing ??= (async () => {
        await api.close();
        await host.stop();
      })();
      return closing;
    },
  };
}
