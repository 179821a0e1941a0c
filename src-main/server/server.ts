/**
 * `weft server` composition: one HTTP/1.1 listener carrying the control plane and hooks for the DERP server.
 *
 *   GET  /key?v=N          server Noise public key (control-protocol §3.2)
 *   GET  /health           {"status":"pass"}
 *   HEAD /machine/ping-response?id=…  a node answering a PingRequest (the HA prober, control/map-streams.ts)
 *   GET  /register/:id     how to approve an interactive registration
 *   POST /ts2021 + Upgrade Noise + HTTP/2 control protocol (control/noise-server.ts)
 *   attachUpgrade(path, h) e.g. '/derp' (Upgrade: DERP / websocket), handled by server/derp
 *   attachRoute(m, path, h) one extra route (exact method and path)
 *   attachHandler(h)       e.g. the DERP server's handleRequest (probe, latency-check, generate_204)
 *
 * The STUN server is a separate UDP socket (server/stun/server.ts); the CLI starts it and passes its port into
 * the DERP map with control/derp-map.ts. The store is the caller's: close() stops the control plane and the
 * listener, but does not close the store.
 */
import http from 'node:http';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { DerpMap } from '../../src-shared/model/derp-map.ts';
import type { Logf } from '../engine/sys/log.ts';
import { discardLogf } from '../engine/sys/log.ts';
import { generateKeyPair } from '../protocol/crypto/keys.ts';
import { ControlPlane, type ControlPlaneInit, type HttpReply } from './control/control-plane.ts';
import { loadOrCreateNoiseKey } from './control/noise-key.ts';
import type { ServerStore } from './store/types.ts';
import { PolicyFile, worldOf } from './policy/file.ts';
import type { DnsSettings } from './control/dns-config.ts';

/** The copy of the last good policy in the data directory (server/policy/file.ts). */
export const LAST_GOOD_POLICY_FILE = 'policy.last-good.hujson';

export type UpgradeHandler = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void;
export type RouteHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

export interface WeftServerInit {
  /** Where to listen; port 0 picks a free one. */
  listen: { host: string; port: number };
  /** The URL clients use; @default http://<listen host>:<bound port> */
  serverUrl?: URL;
  store: ServerStore;
  /** Directory holding the persistent Noise key (noise_private.key). Without it, `noisePrivateKey` or a fresh key. */
  dataDir?: string;
  noisePrivateKey?: Uint8Array;
  /** @default { Regions: {} } */
  derpMap?: DerpMap;
  logf?: Logf;
  /** Control plane tuning (timers, limits, clock), mostly for tests. */
  control?: Omit<ControlPlaneInit, 'store' | 'serverUrl' | 'noisePrivateKey' | 'derpMap' | 'logf' | 'policy'>;
  /**
   * An ACL policy file (headscale's format): loaded before serving, then watched; a bad change is refused and the
   * last good policy stays. With `dataDir` the last good policy is kept there too (LAST_GOOD_POLICY_FILE) and
   * stands in for a file that is bad at start; without one, a bad file fails the start. Without a policy file
   * every node may reach every other.
   */
  policyFile?: string;
  /** DNS settings (control/dns-config.ts, already checked); @default NO_DNS */
  dns?: DnsSettings;
}

export interface WeftServer {
  /** The URL clients use. */
  readonly url: URL;
  /** The bound address. */
  readonly address: { host: string; port: number };
  readonly control: ControlPlane;
  /** Why the policy file is not the policy in force (PolicyFile.problem), or null; null without a policy file. */
  policyProblem(): string | null;
  /** Routes HTTP upgrades on `path` (exact match) to `handler`, e.g. the DERP server on '/derp'. */
  attachUpgrade(path: string, handler: UpgradeHandler): void;
  /** Serves `method path` (exact match) with `handler`, before the built-in routes. */
  attachRoute(method: string, path: string, handler: RouteHandler): void;
  /**
   * Offers every request to `handler` before the built-in routes; it answers and returns true, or returns false
   * without touching the response (the shape of the DERP server's `handleRequest`).
   */
  attachHandler(handler: (req: http.IncomingMessage, res: http.ServerResponse) => boolean): void;
  close(): Promise<void>;
}

function reply(res: http.ServerResponse, r: HttpReply): void {
  res.writeHead(r.status, { 'content-type': r.contentType, 'content-length': Buffer.byteLength(r.body), 'x-content-type-options': 'nosniff' });
  res.end(r.body);
}

function rawRefuse(socket: Duplex, status: number, reason: string): void {
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
}

function hostForUrl(host: string): string {
  const h = host === '0.0.0.0' || host === '' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return h.includes(':') ? `[${h}]` : h;
}

export async function createServer(init: WeftServerInit): Promise<WeftServer> {
  const logf = init.logf ?? discardLogf;
  const noisePrivateKey = init.noisePrivateKey ?? (init.dataDir ? await loadOrCreateNoiseKey(init.dataDir) : generateKeyPair().priv);
  const upgrades = new Map<string, UpgradeHandler>();
  const routes = new Map<string, RouteHandler>();
  const handlers: ((req: http.IncomingMessage, res: http.ServerResponse) => boolean)[] = [];
  let control: ControlPlane | null = null;

  const srv = http.createServer({ maxHeaderSize: 16 * 1024, requestTimeout: 30_000, headersTimeout: 15_000 }, (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const extra = routes.get(`${req.method} ${url.pathname}`);
    if (extra) return extra(req, res);
    for (const h of handlers) if (h(req, res)) return;
    if (!control) return reply(res, { status: 503, contentType: 'text/plain', body: 'starting\n' });
    if (req.method === 'GET' && url.pathname === '/key') return reply(res, control.keyReply(url.searchParams.get('v')));
    if (url.pathname === '/machine/ping-response') return reply(res, control.pingResponse(req.method ?? '', url.searchParams.get('id')));
    if (req.method === 'GET' && url.pathname === '/health') return reply(res, { status: 200, contentType: 'application/json', body: '{"status":"pass"}\n' });
    const m = /^\/register\/([^/]+)$/.exec(url.pathname);
    if (req.method === 'GET' && m) return reply(res, control.registerPage(decodeURIComponent(m[1]!)));
    if (url.pathname === '/ts2021') return reply(res, { status: 400, contentType: 'text/plain', body: 'this endpoint needs Upgrade: tailscale-control-protocol\n' });
    reply(res, { status: 404, contentType: 'text/plain', body: 'not found\n' });
  });
  srv.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === '/ts2021' && control) return control.handleUpgrade(req, socket, head);
    const h = upgrades.get(path);
    if (h) return h(req, socket, head);
    rawRefuse(socket, 404, 'Not Found');
  });
  srv.on('clientError', (_e, socket: Duplex) => {
    if (socket.writable) rawRefuse(socket, 400, 'Bad Request');
    else socket.destroy();
  });

  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(init.listen.port, init.listen.host, () => {
      srv.off('error', reject);
      resolve();
    });
  });
  const addr = srv.address();
  const port = typeof addr === 'object' && addr ? addr.port : init.listen.port;
  const url = init.serverUrl ?? new URL(`http://${hostForUrl(init.listen.host)}:${port}`);
  let policy: PolicyFile | null = null;
  if (init.policyFile) {
    const store = init.store;
    policy = new PolicyFile({
      path: init.policyFile,
      world: () => worldOf(store.listUsers(), store.listNodes()),
      onChange: () => control?.policyChanged(),
      logf,
      ...(init.dataDir ? { lastGoodPath: join(init.dataDir, LAST_GOOD_POLICY_FILE) } : {}),
    });
    try {
      await policy.load();
    } catch (e) {
      await new Promise<void>((resolve) => srv.close(() => resolve()));
      throw e;
    }
    policy.watch();
  }
  let cp: ControlPlane;
  try {
    cp = new ControlPlane({
      ...init.control,
      ...(policy ? { policy } : {}),
      ...(init.dns ? { dns: init.dns } : {}),
      store: init.store,
      serverUrl: url,
      noisePrivateKey,
      ...(init.derpMap ? { derpMap: init.derpMap } : {}),
      logf,
    });
    cp.start();
  } catch (e) {
    policy?.stop();
    await new Promise<void>((resolve) => srv.close(() => resolve()));
    throw e;
  }
  control = cp;
  logf(`server: listening on ${init.listen.host}:${port}, clients use ${url.origin}`);

  return {
    url,
    address: { host: init.listen.host, port },
    control: cp,
    attachUpgrade: (path, handler) => void upgrades.set(path, handler),
    attachRoute: (method, path, handler) => void routes.set(`${method.toUpperCase()} ${path}`, handler),
    attachHandler: (handler) => void handlers.push(handler),
    policyProblem: () => policy?.problem() ?? null,
    close: async () => {
      policy?.stop();
      cp.stop();
      await new Promise<void>((resolve) => {
        srv.close(() => resolve());
        srv.closeAllConnections();
      });
      // The copy of the last good policy is on disk before the next start reads it.
      await policy?.saved();
    },
  };
}
