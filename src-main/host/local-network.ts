/**
 * "Create a network on this computer": the embedded control server (src-main/server/stack.ts, the composition
 * `weft server --derp --stun` uses too) started inside the app's main process, with its database in the app's data
 * directory. The host (host.ts) starts it once, joins this device to it like `session:join`, and hands out a
 * reusable pre-auth key and a QR code for other devices.
 *
 *   0.0.0.0:8080 (TCP)   control plane (TS2021) and the DERP relay on /derp; any free port when 8080 is taken
 *   0.0.0.0:<same>/udp   STUN (best effort: the server runs without it when the port cannot be bound)
 *   URL                  http://<this machine's LAN IPv4>:<port>, what other devices use as login server
 *   policy               ${dataDir}/server/policy.hujson (headscale's format), created without ACLs (everyone
 *                        reaches everyone, as before) on first start; edited by hand, reloaded when it changes, a
 *                        bad edit refused with its line while the last good policy stays, also across a restart
 *                        (server/policy/file.ts)
 *
 * This is the one host file that may import the server (test/arch/deps.test.ts); SQLite (a native module) is
 * loaded only when a network is created.
 */
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import { join } from 'node:path';
import QRCode from 'qrcode';
import type { Logf } from '../engine/sys/log.ts';
import { ensureDataDir } from '../server/control/noise-key.ts';
import { startServerStack, type ServerStack } from '../server/stack.ts';
import { DEFAULT_DNS } from '../server/control/dns-config.ts';
import { serverDbPath } from '../server/store/paths.ts';
import { access } from 'node:fs/promises';
import { writeFileAtomic } from '../engine/io/atomic-file.ts';
import { checkPolicyText, readPolicyFile } from '../server/policy/file.ts';
import { worldOf } from '../server/policy/compile.ts';
import type { PolicyCheck } from '../../src-shared/ipc/contract.ts';
import type { ServerStore } from '../server/store/types.ts';

/** The embedded server's data (database, Noise and DERP keys) under the app's data directory. */
export const LOCAL_SERVER_DIR = 'server';
export const DEFAULT_LOCAL_PORT = 8080;
/** The policy file of this computer's network, in LOCAL_SERVER_DIR. */
export const LOCAL_POLICY_FILE = 'policy.hujson';
/** What a new network's policy file holds: no "acls", so every device reaches every other one. */
export const DEFAULT_LOCAL_POLICY = `// The access policy of the network on this computer, in headscale's policy format (HuJSON: comments and
// trailing commas are fine). Weft reloads this file when it changes; an edit with a mistake is refused with its
// line in the log, and the last good policy stays in force. Check an edit first with:
//   weft server policy check policy.hujson --data <this directory>
//
// Without "acls" every device may reach every other one. Devices of this computer's network belong to the user
// "local"; for example, to allow only SSH and pings between them:
//   "acls": [
//     {"action": "accept", "proto": "tcp", "src": ["local@"], "dst": ["local@:22"]},
//     {"action": "accept", "proto": "icmp", "src": ["local@"], "dst": ["local@:*"]},
//   ],
{
}
`;
/** The user that owns this computer's network (nodes and keys). */
export const LOCAL_USER = 'local';
/** How long a key handed out for other devices stays valid (a device keeps its node key once joined). */
export const LOCAL_KEY_TTL_MS = 24 * 3600 * 1000;

export interface LocalServerDeps {
  /** @default the SQLite store at `${dataDir}/weft.db` (loaded lazily) */
  openStore?: (dataDir: string) => Promise<ServerStore>;
  /** This machine's address for the URL. @default lanIPv4() (127.0.0.1 when there is none) */
  lanAddress?: () => string | null;
  /** @default true */
  stun?: boolean;
  /** Unix ms. @default Date.now */
  now?: () => number;
}

export interface LocalServerOptions extends LocalServerDeps {
  /** The app's data directory; the server keeps its files in `${dataDir}/server`. */
  dataDir: string;
  /** Where to listen; without it 0.0.0.0:8080, or any free port when 8080 is taken. */
  listen?: { host: string; port: number };
  logf?: Logf;
}

export interface LocalServer {
  /** What devices use as login server. */
  readonly url: URL;
  /** The running server (control plane, DERP relay, STUN). */
  readonly stack: ServerStack;
  /** The policy file in force (created with DEFAULT_LOCAL_POLICY when missing). */
  readonly policyPath: string;
  /** The policy file's text now. */
  readPolicy(): Promise<string>;
  /** Why that file is not the policy in force (refused or unreadable; the last good policy stands in), or null. */
  policyProblem(): string | null;
  /** Checks a policy text against this network's users and nodes, as a reload would (unknown users are errors). */
  checkPolicy(text: string): PolicyCheck;
  /** Writes a valid policy text atomically (the server reloads it); an invalid one is not written. */
  savePolicy(text: string): Promise<PolicyCheck & { saved: boolean }>;
  /** A new pre-auth key (for `reusable` keys: many devices, valid LOCAL_KEY_TTL_MS). */
  newKey(o: { reusable: boolean }): string;
  close(): Promise<void>;
}

/** The first non-internal IPv4 address, preferring private (RFC 1918) ones; null when there is none. */
export function lanIPv4(ifaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces()): string | null {
  const all = Object.values(ifaces)
    .flatMap((l) => l ?? [])
    .filter((a) => a.family === 'IPv4' && !a.internal && !a.address.startsWith('169.254.'))
    .map((a) => a.address);
  const isPrivate = (ip: string): boolean => /^(10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.)/.test(ip);
  // Weft's own tunnel addresses (100.64.0.0/10) are not how another device first reaches this one.
  const tunnel = (ip: string): boolean => /^100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\./.test(ip);
  return all.find(isPrivate) ?? all.find((ip) => !tunnel(ip)) ?? null;
}

/** What the QR code holds: the login server and the key, as the command that joins with them. */
export function joinQrText(serverUrl: string, authKey: string): string {
  return `tailscale up --login-server=${serverUrl} --auth-key=${authKey}`;
}

/** A standalone SVG document (no scripts) for <img src="data:image/svg+xml,…">. */
export function qrSvg(text: string): Promise<string> {
  return QRCode.toString(text, { type: 'svg', margin: 2, errorCorrectionLevel: 'M' });
}

async function openSqlite(dataDir: string): Promise<ServerStore> {
  const { openSqliteStore } = await import('../server/store/sqlite.ts');
  return openSqliteStore(serverDbPath(dataDir));
}

const isAddrInUse = (e: unknown): boolean => (e as NodeJS.ErrnoException | null)?.code === 'EADDRINUSE';

export async function startLocalServer(o: LocalServerOptions): Promise<LocalServer> {
  const logf: Logf = (l) => o.logf?.(`local network: ${l}`);
  const now = o.now ?? Date.now;
  const dir = join(o.dataDir, LOCAL_SERVER_DIR);
  await ensureDataDir(dir);
  const policyPath = join(dir, LOCAL_POLICY_FILE);
  if (!(await access(policyPath).then(() => true, () => false))) await writeFileAtomic(policyPath, DEFAULT_LOCAL_POLICY);
  const store = await (o.openStore ?? openSqlite)(dir);
  const closers: (() => Promise<void>)[] = [async () => store.close()];
  const closeAll = async (): Promise<void> => {
    for (const c of closers.splice(0)) await c().catch((e: unknown) => logf(`close failed: ${(e as Error).message}`));
  };
  try {
    const host = o.listen?.host ?? '0.0.0.0';
    const lan = (o.lanAddress ?? lanIPv4)() ?? '127.0.0.1';
    const urlFor = (port: number): URL => new URL(`http://${host === '0.0.0.0' ? lan : host}:${port}`);
    const start = async (port: number): Promise<ServerStack> => {
      // The control plane takes its URL (with the port) at start, so "any free port" is picked beforehand.
      const bound = port === 0 ? await freePort(host) : port;
      return startServerStack({
        listen: { host, port: bound },
        serverUrl: urlFor(bound),
        store,
        dataDir: dir,
        derp: true,
        stun: (o.stun ?? true) ? 'same-port' : null,
        stunBestEffort: true,
        // MagicDNS on, as headscale's default: devices reach each other as <name>.weft.internal.
        dns: DEFAULT_DNS,
        policyFile: policyPath,
        now,
        logf,
      });
    };
    let server: ServerStack;
    if (o.listen) server = await start(o.listen.port);
    else {
      server = await start(DEFAULT_LOCAL_PORT).catch(async (e: unknown) => {
        if (!isAddrInUse(e)) throw e;
        logf(`port ${DEFAULT_LOCAL_PORT} is taken, using any free port`);
        return start(0);
      });
    }
    closers.unshift(() => server.close());

    const user = store.userByName(LOCAL_USER) ?? store.createUser(LOCAL_USER, now());
    const checkPolicy = (text: string): PolicyCheck => {
      const r = checkPolicyText(text, worldOf(store.listUsers(), store.listNodes()));
      return r.kind === 'ok' ? { valid: true, errors: [] } : { valid: false, errors: r.errors.map((e) => ({ line: e.line, column: e.column, message: e.message })) };
    };
    logf(`serving ${server.url.origin} (listening on ${host}:${server.address.port})`);
    return {
      url: server.url,
      stack: server,
      policyPath,
      readPolicy: () => readPolicyFile(policyPath),
      policyProblem: () => server.server.policyProblem(),
      checkPolicy,
      savePolicy: async (text) => {
        const c = checkPolicy(text);
        if (!c.valid) return { ...c, saved: false };
        await writeFileAtomic(policyPath, text);
        logf(`policy saved to ${policyPath}`);
        return { ...c, saved: true };
      },
      newKey: ({ reusable }) =>
        store.createPreAuthKey({ userId: user.id, reusable, ephemeral: false, expiresAt: now() + LOCAL_KEY_TTL_MS }, now()).key,
      close: closeAll,
    };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

/** A TCP port free on `host` right now (bound and released). */
async function freePort(host: string): Promise<number> {
  const { createServer: createNetServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}
