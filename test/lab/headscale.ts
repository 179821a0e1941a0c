// Real headscale inside the NAT lab (see the team reference real-peers.md, headscale section). The pinned
// binaries are built by test/setup/ensure-peers.sh. headscale runs in the lab's `srv` namespace with a config that
// turns off every outside fetch (DERP map download, update check, logtail); its state lives in lab.tmpDir.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { ControlNode, ControlUser, ControlServer } from './control-server.ts';
import type { ExecResult, HostName, Lab, LabProcess } from './lab.ts';

export type HeadscaleVersion = '0.29.2' | '0.26.1';
export const HEADSCALE_VERSIONS: readonly HeadscaleVersion[] = ['0.29.2', '0.26.1'];

/** A user from `headscale users list -o json`. */
export type HsUser = ControlUser;

/** A node from `headscale nodes list -o json`, with the field names of both pinned versions normalised. */
export type HsNode = ControlNode;

/** headscale as a ControlServer; `cli` is `headscale -c CONFIG ...args` (over its unix socket in the temp dir). */
export interface Headscale extends ControlServer {
  readonly kind: 'headscale';
  version: HeadscaleVersion;
  configPath: string;
  /** Replaces the policy at runtime (needs `tailnet.policyMode: 'database'`). */
  setPolicy(policy: unknown): Promise<void>;
  /** headscale 0.29's debug page pings a node with a PingRequest: GET /debug/ping?node=ID on the metrics listener. */
  debugPing(node: string): Promise<{ status: number; body: string }>;
  /** Approves an interactive registration: `auth register --auth-id` (0.29+) or `nodes register --key` (<= 0.28). */
  registerNode(user: HsUser, authIdOrKey: string): Promise<void>;
  /**
   * `debug create-node`: puts a fake node (random keys) into the pending-registration cache under a fresh auth id,
   * as an interactive login would, and returns that id for registerNode(). For tests without a real client.
   */
  debugCreateNode(user: HsUser, name: string): Promise<string>;
}

export interface StartHeadscaleOptions {
  /** One of the srv addresses; default 203.0.113.10. */
  listenIp?: string;
  /** HTTP port; default 8080. */
  port?: number;
  /** Metrics/debug listener port on listenIp; default per version (0.29.2: 9090, 0.26.1: 9091). */
  metricsPort?: number;
  /** Remote gRPC port on listenIp (not actually opened: plain HTTP without grpc_allow_insecure); default per version. */
  grpcPort?: number;
  /**
   * A YAML DERP map file for `derp.paths` (see derpMapYaml()). Default: without embeddedDerp, a placeholder map with
   * one unreachable lab region (headscale refuses to start with an empty DERP map); with embeddedDerp, none.
   */
  derpMapPath?: string;
  /** Run headscale's embedded DERP server (STUN on listenIp:3478); default false. */
  embeddedDerp?: boolean;
  /**
   * A tailnet as people run one: MagicDNS on under `baseDomain` (headscale's default config) and this policy file
   * (headscale's JSON policy format). Default: MagicDNS off and no policy (allow all).
   */
  tailnet?: {
    baseDomain: string;
    policy: unknown;
    /** `database` lets `setPolicy` change it at runtime (`headscale policy set`). @default 'file' */
    policyMode?: 'file' | 'database';
    /** dns.nameservers.global, with override_local_dns true when given (headscale's code default). */
    globalResolvers?: string[];
    /** dns.nameservers.split: domain → resolvers. */
    splitResolvers?: Record<string, string[]>;
    /** dns.extra_records. */
    extraRecords?: { name: string; type: string; value: string }[];
  };
  /** Extra environment for `headscale serve`. */
  env?: Record<string, string>;
}

const READY_TIMEOUT_MS = 20_000;
const CLI_TIMEOUT_MS = 15_000;

const DEFAULT_PORTS: Readonly<Record<HeadscaleVersion, { metrics: number; grpc: number }>> = {
  '0.29.2': { metrics: 9090, grpc: 50443 },
  '0.26.1': { metrics: 9091, grpc: 50444 },
};

/** Belt and braces next to `disable_check_updates: true` in the config: the CLI's GitHub release check. */
const HS_ENV: Readonly<Record<string, string>> = { HEADSCALE_DISABLE_CHECK_UPDATES: 'true' };

/** Where test/setup/ensure-peers.sh puts the pinned peers. */
export function peersDir(): string {
  return process.env.WEFT_PEERS_DIR ?? join(homedir(), '.cache', 'weft-peers');
}

/** Path of the pinned headscale binary; throws (saying how to build it) when it is missing. */
export function headscaleBinary(version: HeadscaleVersion): string {
  const p = join(peersDir(), `headscale-v${version}`, 'headscale');
  if (!existsSync(p)) {
    throw new Error(`headscale ${version} is not installed at ${p}; run: bash test/setup/ensure-peers.sh`);
  }
  return p;
}

// ---------------------------------------------------------------------------------------------------------------
// DERP map files

export interface DerpNodeSpec {
  regionId: number;
  regionCode?: string;
  name?: string;
  hostName: string;
  ipv4?: string;
  /** 0 = 443 */
  derpPort?: number;
  /** 0 = 3478, -1 = no STUN */
  stunPort?: number;
  stunOnly?: boolean;
  /** tailcfg.DERPNode.InsecureForTests: clients skip TLS verification for this node (self-signed lab derper). */
  insecureForTests?: boolean;
}

/** A DERP map in the YAML form headscale reads from `derp.paths` (yaml.v3 on tailcfg.DERPMap: lower-case keys). */
export function derpMapYaml(nodes: readonly DerpNodeSpec[]): string {
  const byRegion = new Map<number, DerpNodeSpec[]>();
  for (const n of nodes) byRegion.set(n.regionId, [...(byRegion.get(n.regionId) ?? []), n]);
  const out = ['regions:'];
  for (const [id, ns] of byRegion) {
    const code = ns[0]?.regionCode ?? `lab${id}`;
    out.push(`  ${id}:`, `    regionid: ${id}`, `    regioncode: ${q(code)}`, `    regionname: ${q(`Lab ${code}`)}`, '    nodes:');
    ns.forEach((n, i) => {
      out.push(
        `      - name: ${q(n.name ?? `${id}${String.fromCharCode(97 + i)}`)}`,
        `        regionid: ${id}`,
        `        hostname: ${q(n.hostName)}`,
      );
      if (n.ipv4 !== undefined) out.push(`        ipv4: ${q(n.ipv4)}`);
      out.push(`        derpport: ${n.derpPort ?? 0}`, `        stunport: ${n.stunPort ?? 0}`);
      if (n.stunOnly) out.push('        stunonly: true');
      if (n.insecureForTests) out.push('        insecurefortests: true');
    });
  }
  return out.join('\n') + '\n';
}

/** Region used when a test gives no DERP map: a lab address where nothing listens (headscale needs >= 1 region). */
const PLACEHOLDER_DERP: DerpNodeSpec = {
  regionId: 900,
  regionCode: 'placeholder',
  hostName: '203.0.113.12',
  ipv4: '203.0.113.12',
  derpPort: 443,
  stunPort: -1,
};

// ---------------------------------------------------------------------------------------------------------------
// Config

interface ConfigParams {
  version: HeadscaleVersion;
  dir: string;
  listenIp: string;
  port: number;
  metricsPort: number;
  grpcPort: number;
  derpMapPath?: string;
  embeddedDerp: boolean;
  /** MagicDNS on with this base domain. */
  magicDnsBase?: string;
  policyPath?: string;
  policyMode?: 'file' | 'database';
  globalResolvers?: string[];
  splitResolvers?: Record<string, string[]>;
  extraRecords?: { name: string; type: string; value: string }[];
}

const q = (s: string): string => JSON.stringify(s); // a JSON string is a valid YAML double-quoted scalar

/**
 * The per-version config. Both versions accept the shared keys; the differences (checked by starting each):
 *  - ephemeral node timeout: `ephemeral_node_inactivity_timeout` (0.26) vs `node.ephemeral.inactivity_timeout`
 *    (0.29, where the old key is only a warning) ; `node.expiry` only exists in 0.29;
 *  - `randomize_client_port` exists in 0.26 and is a fatal error in 0.29 (so it is left out of both).
 */
export function headscaleConfig(p: ConfigParams): string {
  const derpPaths = p.derpMapPath ? `[${q(p.derpMapPath)}]` : '[]';
  const lines = [
    `server_url: ${q(`http://${p.listenIp}:${p.port}`)}`,
    `listen_addr: ${q(`${p.listenIp}:${p.port}`)}`,
    `metrics_listen_addr: ${q(`${p.listenIp}:${p.metricsPort}`)}`,
    `grpc_listen_addr: ${q(`${p.listenIp}:${p.grpcPort}`)}`,
    'grpc_allow_insecure: false',
    'noise:',
    `  private_key_path: ${q(join(p.dir, 'noise_private.key'))}`,
    'prefixes:',
    '  v4: 100.64.0.0/10',
    '  v6: fd7a:115c:a1e0::/48',
    '  allocation: sequential',
    'derp:',
    '  server:',
    `    enabled: ${String(p.embeddedDerp)}`,
    '    region_id: 999',
    '    region_code: "headscale"',
    '    region_name: "Headscale Embedded DERP"',
    `    stun_listen_addr: ${q(`${p.listenIp}:3478`)}`,
    `    private_key_path: ${q(join(p.dir, 'derp_server_private.key'))}`,
    '    automatically_add_embedded_derp_region: true',
    `    ipv4: ${q(p.listenIp)}`,
    '  urls: []',
    `  paths: ${derpPaths}`,
    '  auto_update_enabled: false',
    '  update_frequency: 24h',
    'disable_check_updates: true',
    'database:',
    '  type: sqlite',
    '  sqlite:',
    `    path: ${q(join(p.dir, 'db.sqlite'))}`,
    '    write_ahead_log: true',
    'log:',
    '  level: info',
    '  format: text',
    'policy:',
    `  mode: ${p.policyMode ?? 'file'}`,
    `  path: ${q(p.policyMode === 'database' ? '' : (p.policyPath ?? ''))}`,
    'dns:',
    `  magic_dns: ${String(p.magicDnsBase !== undefined)}`,
    ...(p.magicDnsBase !== undefined ? [`  base_domain: ${q(p.magicDnsBase)}`] : []),
    `  override_local_dns: ${String((p.globalResolvers ?? []).length > 0)}`,
    '  nameservers:',
    `    global: ${JSON.stringify(p.globalResolvers ?? [])}`,
    `    split: ${JSON.stringify(p.splitResolvers ?? {})}`,
    '  search_domains: []',
    `  extra_records: ${JSON.stringify((p.extraRecords ?? []).map((r) => ({ name: r.name, type: r.type, value: r.value })))}`,
    `unix_socket: ${q(join(p.dir, 'headscale.sock'))}`,
    'unix_socket_permission: "0770"',
    'logtail:',
    '  enabled: false',
  ];
  if (p.version === '0.26.1') {
    lines.push('ephemeral_node_inactivity_timeout: 30m');
  } else {
    lines.push('node:', '  expiry: 0', '  ephemeral:', '    inactivity_timeout: 30m');
  }
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------------------------
// JSON normalisation (headscale's CLI marshals its protobuf messages with encoding/json: snake_case names,
// uint64 as numbers, timestamps as {seconds, nanos}; omitempty drops false/zero/empty fields)

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function field(o: Obj, names: readonly string[]): unknown {
  for (const n of names) if (o[n] !== undefined && o[n] !== null) return o[n];
  return undefined;
}

function numField(o: Obj, ...names: string[]): number {
  const v = field(o, names);
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && /^\d+$/.test(v)) return Number(v);
  return 0;
}

function strField(o: Obj, ...names: string[]): string {
  const v = field(o, names);
  return typeof v === 'string' ? v : '';
}

/** {seconds, nanos} or an RFC 3339 string -> ISO string; zero/absent -> undefined. */
function timeField(o: Obj, ...names: string[]): string | undefined {
  const v = field(o, names);
  if (typeof v === 'string') {
    const ms = Date.parse(v);
    return Number.isFinite(ms) && ms > 0 ? new Date(ms).toISOString() : undefined;
  }
  if (isObj(v)) {
    const s = numField(v, 'seconds');
    const nanos = numField(v, 'nanos');
    return s > 0 ? new Date(s * 1000 + Math.floor(nanos / 1e6)).toISOString() : undefined;
  }
  return undefined;
}

function parseJson(r: ExecResult, what: string): unknown {
  const text = r.stdout.trim();
  try {
    return JSON.parse(text === '' ? 'null' : text);
  } catch {
    throw new Error(`headscale ${what}: not JSON: ${r.stdout.slice(0, 2000)}${r.stderr.slice(0, 2000)}`);
  }
}

export function normaliseUser(v: unknown): HsUser {
  if (!isObj(v)) throw new Error(`headscale: unexpected user JSON: ${JSON.stringify(v)}`);
  return { id: numField(v, 'id'), name: strField(v, 'name') };
}

export function normaliseNode(v: unknown): HsNode {
  if (!isObj(v)) throw new Error(`headscale: unexpected node JSON: ${JSON.stringify(v)}`);
  const ips = field(v, ['ip_addresses', 'ipAddresses']);
  const user = field(v, ['user']);
  const node: HsNode = {
    id: numField(v, 'id'),
    name: strField(v, 'name'),
    givenName: strField(v, 'given_name', 'givenName'),
    online: field(v, ['online']) === true,
    ipAddresses: Array.isArray(ips) ? ips.filter((x): x is string => typeof x === 'string') : [],
    machineKey: strField(v, 'machine_key', 'machineKey'),
    nodeKey: strField(v, 'node_key', 'nodeKey'),
    user: isObj(user) ? strField(user, 'name') : '',
  };
  const expiry = timeField(v, 'expiry');
  if (expiry !== undefined) node.expiry = expiry;
  return node;
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP from inside the lab

/**
 * GET `url` from inside `host` (a node process using fetch), retrying until it answers 2xx or `timeoutMs` passes.
 * Resolves with the last status and body; status 0 when nothing answered.
 */
export async function labHttpGet(
  lab: Lab,
  host: HostName,
  url: string,
  opts: { timeoutMs?: number; retry?: boolean } = {},
): Promise<{ status: number; body: string }> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const script = `
const [url, timeoutMs, retry] = [process.argv[1], Number(process.argv[2]), process.argv[3] === '1'];
const deadline = Date.now() + timeoutMs;
let last = { status: 0, body: '' };
for (;;) {
  try {
    const left = Math.max(200, Math.min(2000, deadline - Date.now()));
    const r = await fetch(url, { signal: AbortSignal.timeout(left) });
    last = { status: r.status, body: await r.text() };
    if (r.ok || !retry) break;
  } catch (e) {
    last = { status: 0, body: String(e && e.cause ? e.cause : e) };
    if (!retry) break;
  }
  if (Date.now() >= deadline) break;
  await new Promise((res) => setTimeout(res, 100));
}
process.stdout.write(JSON.stringify(last));
`;
  const r = await lab.exec(
    host,
    [process.execPath, '--input-type=module', '-e', script, url, String(timeoutMs), opts.retry ? '1' : '0'],
    { timeoutMs: timeoutMs + 10_000 },
  );
  const parsed = parseJson(r, `GET ${url}`);
  if (!isObj(parsed) || typeof parsed.status !== 'number' || typeof parsed.body !== 'string') {
    throw new Error(`labHttpGet ${url} from ${host}: ${r.stdout}${r.stderr}`);
  }
  return { status: parsed.status, body: parsed.body };
}

// ---------------------------------------------------------------------------------------------------------------

/**
 * A fresh id in the version's registration-id format: 24 URL-safe characters (<= 0.28), or "hskey-authreq-" + 24
 * URL-safe characters (0.29+; the server checks only prefix and length).
 */
export function newAuthId(version: HeadscaleVersion): string {
  const rnd = randomBytes(18).toString('base64url');
  return version === '0.26.1' ? rnd : `hskey-authreq-${rnd}`;
}

function pickDir(lab: Lab, version: HeadscaleVersion, listenIp: string, port: number): string {
  const first = join(lab.tmpDir, `headscale-${version}`);
  const dir = existsSync(first) ? join(lab.tmpDir, `headscale-${version}-${listenIp}-${port}`) : first;
  if (existsSync(dir)) throw new Error(`headscale ${version} is already running on ${listenIp}:${port} in this lab`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Starts headscale `version` in srv and waits (bounded) until GET /health answers 200. */
export async function startHeadscale(
  lab: Lab,
  version: HeadscaleVersion,
  opts: StartHeadscaleOptions = {},
): Promise<Headscale> {
  const bin = headscaleBinary(version);
  const listenIp = opts.listenIp ?? '203.0.113.10';
  const port = opts.port ?? 8080;
  const dir = pickDir(lab, version, listenIp, port);
  const configPath = join(dir, 'config.yaml');
  const params: ConfigParams = {
    version,
    dir,
    listenIp,
    port,
    metricsPort: opts.metricsPort ?? DEFAULT_PORTS[version].metrics,
    grpcPort: opts.grpcPort ?? DEFAULT_PORTS[version].grpc,
    embeddedDerp: opts.embeddedDerp ?? false,
  };
  if (opts.tailnet) {
    params.magicDnsBase = opts.tailnet.baseDomain;
    params.policyPath = join(dir, 'policy.json');
    writeFileSync(params.policyPath, JSON.stringify(opts.tailnet.policy, null, 2));
    if (opts.tailnet.policyMode) params.policyMode = opts.tailnet.policyMode;
    if (opts.tailnet.globalResolvers) params.globalResolvers = opts.tailnet.globalResolvers;
    if (opts.tailnet.splitResolvers) params.splitResolvers = opts.tailnet.splitResolvers;
    if (opts.tailnet.extraRecords) params.extraRecords = opts.tailnet.extraRecords;
  }
  if (opts.derpMapPath !== undefined) {
    params.derpMapPath = opts.derpMapPath;
  } else if (!params.embeddedDerp) {
    params.derpMapPath = join(dir, 'derp.yaml');
    writeFileSync(params.derpMapPath, derpMapYaml([PLACEHOLDER_DERP]));
  }
  writeFileSync(configPath, headscaleConfig(params));
  const url = `http://${listenIp}:${port}`;
  // The debug page (tsweb's AllowDebugAccess) answers loopback, tailnet IPs and TS_ALLOW_DEBUG_IP only; the lab
  // calls it from the server's own address.
  const serveEnv = { ...HS_ENV, TS_ALLOW_DEBUG_IP: listenIp, ...opts.env };

  let proc: LabProcess | undefined;
  let running = false;

  const waitReady = async (p: LabProcess): Promise<void> => {
    const health = labHttpGet(lab, 'srv', `${url}/health`, { timeoutMs: READY_TIMEOUT_MS, retry: true });
    const exited = p.exited.then((code) => ({ exited: code }));
    const r = await Promise.race([health, exited]);
    if ('exited' in r) {
      throw new Error(`headscale ${version} exited (code ${String(r.exited)}) while starting:\n${p.output().slice(-4000)}`);
    }
    if (r.status !== 200) {
      throw new Error(
        `headscale ${version} did not answer ${url}/health within ${READY_TIMEOUT_MS} ms (${r.status} ${r.body}):\n` +
          p.output().slice(-4000),
      );
    }
  };

  const start = async (): Promise<void> => {
    if (running && proc) return;
    const p = lab.spawn('srv', [bin, '-c', configPath, 'serve'], { env: serveEnv });
    proc = p;
    running = true;
    void p.exited.then(() => {
      if (proc === p) running = false;
    });
    try {
      await waitReady(p);
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
    lab.exec('srv', [bin, '-c', configPath, ...args], { timeoutMs: o.timeoutMs ?? CLI_TIMEOUT_MS, env: HS_ENV });

  /** Runs a CLI command with `-o json`, throws on a non-zero exit, returns the parsed output. */
  const cliJson = async (args: string[]): Promise<unknown> => {
    const r = await cli([...args, '-o', 'json']);
    if (r.code !== 0) {
      throw new Error(`headscale ${version} ${args.join(' ')} failed (code ${String(r.code)}): ${r.stdout}${r.stderr}`);
    }
    return parseJson(r, args.join(' '));
  };

  const listUsers = async (): Promise<HsUser[]> => {
    const v = await cliJson(['users', 'list']);
    return Array.isArray(v) ? v.map(normaliseUser) : [];
  };

  const hs: Headscale = {
    kind: 'headscale',
    label: `headscale ${version}`,
    version,
    url,
    configPath,
    get proc(): LabProcess {
      if (!proc) throw new Error('headscale: not started');
      return proc;
    },
    cli,
    async createUser(name) {
      return normaliseUser(await cliJson(['users', 'create', name]));
    },
    listUsers,
    async createPreauthKey(user, o = {}) {
      const args = ['preauthkeys', 'create', '--user', String(user.id), '--expiration', o.expiration ?? '1h'];
      if (o.reusable) args.push('--reusable');
      if (o.ephemeral) args.push('--ephemeral');
      const v = await cliJson(args);
      const key = isObj(v) ? strField(v, 'key') : '';
      if (key === '') throw new Error(`headscale ${version}: preauthkeys create gave no key: ${JSON.stringify(v)}`);
      return key;
    },
    async approveRoutes(nodeId, routes) {
      await cliJson(['nodes', 'approve-routes', '--identifier', String(nodeId), '--routes', routes.join(',')]);
    },
    async listNodes() {
      const v = await cliJson(['nodes', 'list']);
      return Array.isArray(v) ? v.map(normaliseNode) : [];
    },
    async registerNode(user, authIdOrKey) {
      const args =
        version === '0.26.1'
          ? ['nodes', 'register', '--user', user.name, '--key', authIdOrKey]
          : ['auth', 'register', '--user', user.name, '--auth-id', authIdOrKey];
      await cliJson(args);
    },
    async debugCreateNode(user, name) {
      const authId = newAuthId(version);
      await cliJson(['debug', 'create-node', '--name', name, '--user', user.name, '--key', authId]);
      return authId;
    },
    async deleteNode(id) {
      await cliJson(['nodes', 'delete', '--identifier', String(id), '--force']);
    },
    async expireNode(id) {
      await cliJson(['nodes', 'expire', '--identifier', String(id)]);
    },
    async setPolicy(policy) {
      const f = join(dir, `policy-${Date.now()}.json`);
      writeFileSync(f, JSON.stringify(policy, null, 2));
      const r = await cli(['policy', 'set', '-f', f]);
      if (r.code !== 0) throw new Error(`headscale ${version} policy set failed: ${r.stdout}${r.stderr}`);
    },
    async debugPing(node) {
      if (version === '0.26.1') throw new Error('headscale 0.26.1 has no debug ping (it never sends PingRequest)');
      return labHttpGet(lab, 'srv', `http://${listenIp}:${params.metricsPort}/debug/ping?node=${encodeURIComponent(node)}`, { timeoutMs: 40_000 });
    },
    stop,
    start,
  };

  await start();
  if (opts.tailnet?.policyMode === 'database') await hs.setPolicy(opts.tailnet.policy);
  return hs;
}
