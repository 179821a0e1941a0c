// `weft server` (Weft's headscale-compatible control server, with its embedded DERP and STUN) inside the NAT lab, as a
// ControlServer: it runs in the lab's `srv` namespace on a lab address, keeps its database and keys in a directory
// under lab.tmpDir, and is administered with its own CLI (`weft server users|preauthkeys|nodes … --data DIR -o json`,
// which works on the SQLite database directly; the running server notices the writes).
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ControlNode, ControlServer, ControlUser } from './control-server.ts';
import { labHttpGet } from './headscale.ts';
import type { ExecResult, Lab, LabProcess } from './lab.ts';

const WEFT = ['node', 'src-main/cli/bin.mjs'];
const READY_TIMEOUT_MS = 20_000;
const CLI_TIMEOUT_MS = 15_000;

/** The region id `weft server --derp` gives its embedded DERP in the map it hands out (control/derp-map.ts). */
export const WEFT_SERVER_DERP_REGION = 999;

export interface WeftServer extends ControlServer {
  readonly kind: 'weft';
  /** The data directory (database, Noise and DERP keys). */
  readonly dataDir: string;
}

export interface StartWeftServerOptions {
  /** One of the srv addresses; default 203.0.113.10. */
  listenIp?: string;
  /** HTTP port; default 8080. */
  port?: number;
  /** Serve the embedded DERP on /derp (region 999); default true. */
  derp?: boolean;
  /** STUN port on listenIp, or null for none; default 3478. */
  stunPort?: number | null;
  /** Extra environment for the server process. */
  env?: Record<string, string>;
  /** `--policy FILE`: an ACL policy file (headscale's format), watched by the server. */
  policyFile?: string;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (o: Obj, k: string): string => (typeof o[k] === 'string' ? o[k] : '');
const num = (o: Obj, k: string): number => (typeof o[k] === 'number' ? o[k] : 0);

function normaliseUser(v: unknown): ControlUser {
  if (!isObj(v)) throw new Error(`weft server: unexpected user JSON: ${JSON.stringify(v)}`);
  return { id: num(v, 'id'), name: str(v, 'name') };
}

/** A node from `weft server nodes list -o json` (server-admin-view.ts nodeView). */
export function normaliseWeftNode(v: unknown): ControlNode {
  if (!isObj(v)) throw new Error(`weft server: unexpected node JSON: ${JSON.stringify(v)}`);
  const ips = v['ipAddresses'];
  const node: ControlNode = {
    id: num(v, 'id'),
    name: str(v, 'hostname'),
    givenName: str(v, 'givenName'),
    online: v['online'] === true,
    ipAddresses: Array.isArray(ips) ? ips.filter((x): x is string => typeof x === 'string') : [],
    machineKey: str(v, 'machineKey'),
    nodeKey: str(v, 'nodeKey'),
    user: str(v, 'user'),
  };
  const exp = v['expiresAt'];
  if (typeof exp === 'string' && Number.isFinite(Date.parse(exp))) node.expiry = new Date(Date.parse(exp)).toISOString();
  return node;
}

function pickDir(lab: Lab, listenIp: string, port: number): string {
  const dir = join(lab.tmpDir, `weft-server-${listenIp}-${port}`);
  if (existsSync(dir)) throw new Error(`weft server is already running on ${listenIp}:${port} in this lab`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/** Starts `weft server` in srv and waits (bounded) until it says it is ready and GET /health answers 200. */
export async function startWeftServer(lab: Lab, opts: StartWeftServerOptions = {}): Promise<WeftServer> {
  const listenIp = opts.listenIp ?? '203.0.113.10';
  const port = opts.port ?? 8080;
  const stunPort = opts.stunPort === undefined ? 3478 : opts.stunPort;
  const dataDir = pickDir(lab, listenIp, port);
  const url = `http://${listenIp}:${port}`;
  const argv = [...WEFT, 'server', '--listen', `${listenIp}:${port}`, '--server-url', url, '--data', dataDir];
  if (opts.derp ?? true) argv.push('--derp');
  if (stunPort !== null) argv.push('--stun', `${listenIp}:${stunPort}`);
  if (opts.policyFile) argv.push('--policy', opts.policyFile);

  let proc: LabProcess | undefined;
  let running = false;

  const start = async (): Promise<void> => {
    if (running && proc) return;
    const p = lab.spawn('srv', argv, { env: { ...opts.env } });
    proc = p;
    running = true;
    void p.exited.then(() => {
      if (proc === p) running = false;
    });
    try {
      await p.waitForOutput(/weft server: ready on /, READY_TIMEOUT_MS);
      const h = await labHttpGet(lab, 'srv', `${url}/health`, { timeoutMs: 5_000, retry: true });
      if (h.status !== 200) throw new Error(`weft server did not answer ${url}/health (${h.status} ${h.body}):\n${p.output().slice(-4000)}`);
    } catch (e) {
      await p.kill('SIGKILL');
      throw e;
    }
  };

  const stop = async (o: { signal?: NodeJS.Signals } = {}): Promise<void> => {
    if (!proc) return;
    await proc.kill(o.signal ?? 'SIGTERM');
    running = false;
  };

  const cli = (args: string[], o: { timeoutMs?: number } = {}): Promise<ExecResult> =>
    lab.exec('srv', [...WEFT, 'server', ...args, '--data', dataDir], { timeoutMs: o.timeoutMs ?? CLI_TIMEOUT_MS });

  /** Runs an admin verb with `-o json`; throws on a non-zero exit; returns the parsed output. */
  const cliJson = async (args: string[]): Promise<unknown> => {
    const r = await cli([...args, '-o', 'json']);
    if (r.code !== 0) throw new Error(`weft server ${args.join(' ')} failed (code ${String(r.code)}): ${r.stdout}${r.stderr}`);
    try {
      return JSON.parse(r.stdout) as unknown;
    } catch {
      throw new Error(`weft server ${args.join(' ')}: not JSON: ${r.stdout.slice(0, 2000)}${r.stderr.slice(0, 2000)}`);
    }
  };

  const server: WeftServer = {
    kind: 'weft',
    label: 'weft server',
    url,
    dataDir,
    get proc(): LabProcess {
      if (!proc) throw new Error('weft server: not started');
      return proc;
    },
    cli,
    async createUser(name) {
      return normaliseUser(await cliJson(['users', 'create', name]));
    },
    async listUsers() {
      const v = await cliJson(['users', 'list']);
      return Array.isArray(v) ? v.map(normaliseUser) : [];
    },
    async createPreauthKey(user, o = {}) {
      const args = ['preauthkeys', 'create', '--user', String(user.id), '--expiration', o.expiration ?? '1h'];
      if (o.reusable) args.push('--reusable');
      if (o.ephemeral) args.push('--ephemeral');
      const v = await cliJson(args);
      const key = isObj(v) ? str(v, 'key') : '';
      if (key === '') throw new Error(`weft server: preauthkeys create gave no key: ${JSON.stringify(v)}`);
      return key;
    },
    async listNodes() {
      const v = await cliJson(['nodes', 'list']);
      return Array.isArray(v) ? v.map(normaliseWeftNode) : [];
    },
    async registerNode(user, authId) {
      await cliJson(['nodes', 'register', '--user', String(user.id), '--key', authId]);
    },
    async deleteNode(id) {
      await cliJson(['nodes', 'delete', '--identifier', String(id), '--force']);
    },
    async expireNode(id) {
      await cliJson(['nodes', 'expire', '--identifier', String(id)]);
    },
    async approveRoutes(nodeId, routes) {
      await cliJson(['nodes', 'approve-routes', '--identifier', String(nodeId), '--routes', routes.join(',')]);
    },
    stop,
    start,
  };

  await start();
  return server;
}
