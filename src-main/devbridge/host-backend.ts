/**
 * The dev bridge's backend: the app's host (src-main/host/host.ts) behind the validated dispatcher
 * (src-main/host/dispatch.ts), with every contract event forwarded. Electron-free; as in `weft up`, the WireGuard
 * interface is wireguard-go started directly, so the bridge runs as root (the NAT lab) or with CAP_NET_ADMIN.
 */
import { EVENT_NAMES, type EventName } from '../../src-shared/ipc/contract.ts';
import { cleanupStaleInterfaces } from '../engine/wg/stale.ts';
import { startWireguardGo } from '../engine/wg/wireguard-go.ts';
import { createDispatcher } from '../host/dispatch.ts';
import { createHost, type Host } from '../host/host.ts';
import type { BridgeBackend } from './server.ts';

export interface HostBackendOptions {
  /** The app's data directory (settings, one state directory per saved network). */
  stateDir: string;
  /** WireGuard interface name. */
  iface: string;
  /** UDP port of the engine's socket (0 = any). */
  udpPort: number;
  logf: (line: string) => void;
  /** Connect a saved network at start (the end-to-end test starts unjoined, so it joins from the page). @default false */
  autoConnect?: boolean;
}

export interface HostBackend extends BridgeBackend {
  readonly host: Host;
  /** Stops the engine (its interface is destroyed). */
  close(): Promise<void>;
}

export async function createHostBackend(o: HostBackendOptions): Promise<HostBackend> {
  // A crashed earlier run may have left its interface behind: remove Weft devices whose owner is gone.
  await cleanupStaleInterfaces('weft', {}, { logf: o.logf }).catch((e: unknown) => o.logf(`stale cleanup failed: ${(e as Error).message}`));
  const host = createHost({
    dataDir: o.stateDir,
    iface: o.iface,
    udpPort: o.udpPort,
    autoConnect: o.autoConnect ?? false,
    createInterface: (name) => startWireguardGo({ name }, { logf: o.logf }),
    logf: o.logf,
  });
  await host.start();
  const dispatch = createDispatcher(host.handlers, { logf: o.logf });
  let closing: Promise<void> | undefined;
  return {
    host,
    dispatch,
    onEvent(listener: (event: EventName, payload: unknown) => void): () => void {
      const offs = EVENT_NAMES.map((e) => host.on(e, (payload) => listener(e, payload)));
      return () => {
        for (const off of offs) off();
      };
    },
    close() {
      closing ??= host.stop();
      return closing;
    },
  };
}
