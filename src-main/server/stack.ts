/**
 * The whole embedded server, composed once: the control plane (server.ts), the DERP relay on /derp and the STUN
 * server, with the DERP map that announces them. `weft server` (cli/commands/server.ts) and the app's "Create a
 * network on this computer" (host/local-network.ts) both start it here, so they cannot drift apart.
 *
 *   HTTP listener ── /ts2021, /key, /register/:id ─▶ control plane
 *                 └─ /derp, /derp/probe, /generate_204 ─▶ DERP relay (when `derp`)
 *   UDP ── STUN (when `stun`): its own address, or the listener's port on the listener's host ('same-port')
 *
 * The relay admits only node keys the control plane admits (registered, not expired: headscale's verify_clients),
 * and since admission is checked once, at connect, the relay also drops the connections of every key the control
 * plane reports revoked later (node deleted, expired, logged out or key rotated; here or with the admin CLI).
 *
 * The store is the caller's (it opens it; close() does not close it).
 */
import { join } from 'node:path';
import type { Logf } from '../engine/sys/log.ts';
import { discardLogf } from '../engine/sys/log.ts';
import { keyText, parseKeyText } from '../protocol/crypto/keys.ts';
import { embeddedDerpMap } from './control/derp-map.ts';
import { createDerpServer, DERP_PATH, loadOrCreateDerpServerKey, type DerpServer } from './derp/index.ts';
import { createServer, type WeftServer, type WeftServerInit } from './server.ts';
import type { ServerStore } from './store/types.ts';
import type { DnsSettings } from './control/dns-config.ts';
import { startStunServer, type StunServer } from './stun/server.ts';

export interface ServerStackInit {
  listen: { host: string; port: number };
  /** The URL clients use; @default http://<listen host>:<bound port> */
  serverUrl?: URL;
  store: ServerStore;
  /** Keys (Noise, DERP) live here. */
  dataDir: string;
  /** Serve the DERP relay on /derp and announce it. */
  derp: boolean;
  /**
   * STUN: on an address of its own, on the listener's host and port ('same-port'), or none. With `stunBestEffort`
   * a STUN socket that cannot be bound is logged and the server runs without it; otherwise the start fails.
   */
  stun: { host: string; port: number } | 'same-port' | null;
  stunBestEffort?: boolean;
  /** Unix ms, for key expiry at relay admission; @default Date.now */
  now?: () => number;
  logf?: Logf;
  /** Control plane tuning, mostly for tests. */
  control?: WeftServerInit['control'];
  /** The ACL policy file (server.ts WeftServerInit.policyFile). */
  policyFile?: string;
  /** DNS settings, checked (control/dns-config.ts). */
  dns?: DnsSettings;
}

export interface ServerStack {
  readonly server: WeftServer;
  readonly url: URL;
  readonly address: { host: string; port: number };
  /** null without `derp`. */
  readonly derp: DerpServer | null;
  /** null without STUN (off, or best effort and not bound). */
  readonly stun: StunServer | null;
  close(): Promise<void>;
}

export async function startServerStack(init: ServerStackInit): Promise<ServerStack> {
  const logf = init.logf ?? discardLogf;
  const now = init.now ?? Date.now;
  const closers: (() => Promise<void>)[] = [];
  const closeAll = async (): Promise<void> => {
    for (const c of closers.splice(0)) await c().catch((e: unknown) => logf(`server: close failed: ${(e as Error).message}`));
  };
  try {
    const server = await createServer({
      listen: init.listen,
      ...(init.serverUrl ? { serverUrl: init.serverUrl } : {}),
      store: init.store,
      dataDir: init.dataDir,
      logf,
      ...(init.control ? { control: init.control } : {}),
      ...(init.policyFile ? { policyFile: init.policyFile } : {}),
      ...(init.dns ? { dns: init.dns } : {}),
    });
    closers.push(() => server.close());

    let derp: DerpServer | null = null;
    if (init.derp) {
      const store = init.store;
      const d = createDerpServer({
        privateKey: await loadOrCreateDerpServerKey(join(init.dataDir, 'derp_server.key')),
        verifyClient: (pub) => {
          const n = store.nodeByNodeKey(keyText('nodekey', pub));
          return n !== null && (n.expiresAt === null || n.expiresAt > now());
        },
        logf,
      });
      derp = d;
      server.attachUpgrade(DERP_PATH, (req, socket, head) => d.handleUpgrade(req, socket, head));
      server.attachHandler((req, res) => d.handleRequest(req, res));
      const unsubscribe = server.control.onNodeKeysRevoked(
        (keys) => {
          for (const k of keys) {
            const pub = parseKeyText('nodekey', k);
            const n = pub ? d.disconnect(pub) : 0;
            if (n > 0) logf(`server: dropped ${n} DERP connection(s) of ${k.slice(0, 20)}…: the node is no longer admitted`);
          }
        },
        () => d.connectedKeysHex().map((hex) => `nodekey:${hex}`),
      );
      closers.unshift(async () => {
        unsubscribe();
        await d.close();
      });
    }

    let stun: StunServer | null = null;
    if (init.stun !== null) {
      const at = init.stun === 'same-port' ? { host: init.listen.host, port: server.address.port } : init.stun;
      try {
        stun = await startStunServer({ primary: { ip: at.host, port: at.port }, logf });
        const s = stun;
        closers.unshift(() => s.close());
      } catch (e) {
        if (!init.stunBestEffort) throw e;
        logf(`server: no STUN on udp ${at.host}:${at.port}: ${(e as Error).message}`);
      }
    }
    server.control.setDerpMap(embeddedDerpMap({ serverUrl: server.url, derp: init.derp, stunPort: stun ? stun.addrs.primary.port : null }));
    return { server, url: server.url, address: server.address, derp, stun, close: closeAll };
  } catch (e) {
    await closeAll();
    throw e;
  }
}
