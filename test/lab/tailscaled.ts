// The official Tailscale client (tailscaled + tailscale CLI, pinned v1.100.0) inside the NAT lab, as a real peer for
// Weft (see the team reference real-peers.md, tailscaled section). The binaries are built by
// test/setup/ensure-peers.sh. Each instance runs in one lab namespace with a kernel TUN of a lab-unique name, and
// keeps every file (state, socket, log-policy config) in its own directory under lab.tmpDir. Log upload is off
// (--no-logs-no-support), DNS management is off (`up --accept-dns=false`), and so is netfilter (`--netfilter-mode=off`).
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ExecResult, HostName, Lab, LabProcess } from './lab.ts';
import { peersDir } from './headscale.ts';

export const TAILSCALE_VERSION = '1.100.0';

/**
 * tailscaled env for a DERP server that speaks plain HTTP, such as headscale's embedded one behind its http://
 * server_url (DERP at http://HOST:PORT/derp, no certificate). Do not use with a TLS derper (it would be dialled with
 * plain HTTP too).
 */
export const PLAIN_HTTP_DERP_ENV: Readonly<Record<string, string>> = { TS_DEBUG_USE_DERP_HTTP: 'true' };

/** Paths of the pinned binaries; throws (saying how to build them) when one is missing. */
export function tailscaleBinaries(): { tailscaled: string; tailscale: string } {
  const dir = join(peersDir(), `tailscale-v${TAILSCALE_VERSION}`);
  const bins = { tailscaled: join(dir, 'tailscaled'), tailscale: join(dir, 'tailscale') };
  for (const p of Object.values(bins)) {
    if (!existsSync(p)) {
      throw new Error(`tailscale ${TAILSCALE_VERSION} is not installed at ${p}; run: bash test/setup/ensure-peers.sh tailscale`);
    }
  }
  return bins;
}

/** One node of `tailscale status --json` (ipnstate.PeerStatus), normalised to camelCase. */
export interface TsPeer {
  /** StableNodeID */
  id: string;
  /** "nodekey:<hex>" */
  publicKey: string;
  hostName: string;
  dnsName: string;
  os: string;
  tailscaleIPs: string[];
  /** Endpoints tailscaled knows for the peer (ip:port), from the netmap and disco. */
  addrs: string[];
  /** The direct UDP path in use ("ip:port"); "" when there is none (traffic goes via DERP or a peer relay). */
  curAddr: string;
  /** The peer's home DERP region code (set whether or not the path is direct); "" when it has none. */
  relay: string;
  /** Peer relay in use ("ip:port:vni"); "". */
  peerRelay: string;
  /** Connected to the control server (from the netmap). */
  online: boolean;
  /** Traffic in the last few minutes. */
  active: boolean;
  rxBytes: number;
  txBytes: number;
  /** ISO 8601; undefined while there was no WireGuard handshake (Go's zero time). */
  lastHandshake?: string;
  inNetworkMap: boolean;
  inMagicSock: boolean;
  inEngine: boolean;
}

export interface TsStatus {
  version: string;
  /** "NoState" | "NeedsLogin" | "NeedsMachineAuth" | "Stopped" | "Starting" | "Running" */
  backendState: string;
  tun: boolean;
  tailscaleIPs: string[];
  self: TsPeer;
  /** Keyed by the peer's public key ("nodekey:<hex>"), as in the JSON. */
  peers: Record<string, TsPeer>;
  health: string[];
  /** The parsed JSON as tailscale printed it (Go field names: Self, Peer, CurAddr, Relay, ...). */
  raw: Record<string, unknown>;
}

export interface TsPingResult {
  /** At least one pong (and, with untilDirect, a direct one). */
  ok: boolean;
  /** The last pong came over a direct UDP path ("via ip:port"), not "via DERP(...)" / "via peer-relay(...)". */
  direct: boolean;
  /** The endpoint of the last direct pong ("ip:port"), when direct. */
  endpoint?: string;
  output: string;
}

export interface Tailscaled {
  host: HostName;
  dir: string;
  socket: string;
  tun: string;
  port: number;
  proc: LabProcess;
  /** `tailscale --socket SOCKET ...args` in the instance's namespace. */
  cli(args: string[], opts?: { timeoutMs?: number }): Promise<ExecResult>;
  /** `tailscale up` with a pre-auth key, DNS and netfilter management off; waits until Running (bounded, 60 s). */
  up(o: { loginServer: string; authKey: string; hostname: string; extraArgs?: string[] }): Promise<void>;
  /** Parsed `tailscale status --json`. */
  status(): Promise<TsStatus>;
  /** Finds a peer by one of its Tailscale IPs (undefined when not in the status). */
  peerByIp(ip: string): Promise<TsPeer | undefined>;
  /**
   * `tailscale ping` (disco ping). untilDirect (default true) stops at the first direct pong and fails when none
   * came within `count` pings (default 10, one per second); otherwise `count` pings are sent regardless.
   */
  ping(ip: string, opts?: { untilDirect?: boolean; count?: number; timeoutMs?: number }): Promise<TsPingResult>;
  /** `tailscale netcheck` output (text). */
  netcheck(): Promise<string>;
  /** Stops tailscaled (SIGTERM, which removes its TUN; SIGKILL after 3 s) and makes sure the TUN is gone. */
  stop(): Promise<void>;
}

export interface StartTailscaledOptions {
  /** UDP port for WireGuard/disco; default 41641. */
  port?: number;
  /** TUN name (<= 15 characters); default lab.prefix + "t" + host, unique across the lab's namespaces. */
  tunName?: string;
  /** Extra environment for tailscaled (e.g. TS_DEBUG_USE_DERP_HTTP=true for a plain-HTTP lab DERP). */
  env?: Record<string, string>;
  /** --verbose level; default 0. */
  verbose?: number;
}

const READY_TIMEOUT_MS = 20_000;
const CLI_TIMEOUT_MS = 15_000;
const UP_TIMEOUT_S = 60;

/**
 * Environment for both tailscaled and the CLI. TS_NO_LOGS_NO_SUPPORT: no log upload (same as --no-logs-no-support,
 * which is passed too). TS_LOGS_DIR: the log-policy config would otherwise go to /var/lib/tailscale on the shared
 * filesystem. TS_UPDATE_SKIP_VERSION_CHECK: only matters for `tailscale update` (never run), belt and braces.
 */
function baseEnv(dir: string): Record<string, string> {
  return { TS_NO_LOGS_NO_SUPPORT: 'true', TS_LOGS_DIR: dir, TS_UPDATE_SKIP_VERSION_CHECK: 'true' };
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(o: Obj, k: string): string {
  const v = o[k];
  return typeof v === 'string' ? v : '';
}

function num(o: Obj, k: string): number {
  const v = o[k];
  return typeof v === 'number' ? v : 0;
}

function strs(o: Obj, k: string): string[] {
  const v = o[k];
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

/** Go's zero time.Time marshals as "0001-01-01T00:00:00Z". */
function time(o: Obj, k: string): string | undefined {
  const v = str(o, k);
  if (v === '' || v.startsWith('0001-01-01')) return undefined;
  const ms = Date.parse(v);
  return Number.isFinite(ms) ? new Date(ms).toISOString() : undefined;
}

export function normalisePeer(v: unknown): TsPeer {
  if (!isObj(v)) throw new Error(`tailscale: unexpected peer JSON: ${JSON.stringify(v)}`);
  const p: TsPeer = {
    id: str(v, 'ID'),
    publicKey: str(v, 'PublicKey'),
    hostName: str(v, 'HostName'),
    dnsName: str(v, 'DNSName'),
    os: str(v, 'OS'),
    tailscaleIPs: strs(v, 'TailscaleIPs'),
    addrs: strs(v, 'Addrs'),
    curAddr: str(v, 'CurAddr'),
    relay: str(v, 'Relay'),
    peerRelay: str(v, 'PeerRelay'),
    online: v.Online === true,
    active: v.Active === true,
    rxBytes: num(v, 'RxBytes'),
    txBytes: num(v, 'TxBytes'),
    inNetworkMap: v.InNetworkMap === true,
    inMagicSock: v.InMagicSock === true,
    inEngine: v.InEngine === true,
  };
  const hs = time(v, 'LastHandshake');
  if (hs !== undefined) p.lastHandshake = hs;
  return p;
}

export function parseStatus(text: string): TsStatus {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new Error(`tailscale status --json: not JSON: ${text.slice(0, 2000)}`);
  }
  if (!isObj(raw)) throw new Error(`tailscale status --json: not an object: ${text.slice(0, 2000)}`);
  const peers: Record<string, TsPeer> = {};
  if (isObj(raw.Peer)) for (const [k, v] of Object.entries(raw.Peer)) peers[k] = normalisePeer(v);
  return {
    version: str(raw, 'Version'),
    backendState: str(raw, 'BackendState'),
    tun: raw.TUN === true,
    tailscaleIPs: strs(raw, 'TailscaleIPs'),
    self: normalisePeer(raw.Self ?? {}),
    peers,
    health: strs(raw, 'Health'),
    raw,
  };
}

/** Interprets `tailscale ping` output: "pong from NAME (IP) via ENDPOINT|DERP(code)|peer-relay(...) in Nms". */
export function parsePing(output: string, code: number | null, untilDirect: boolean): TsPingResult {
  const pongs = [...output.matchAll(/^pong from \S+ \([^)]*\) via (\S+) in /gm)].map((m) => m[1] ?? '');
  const last = pongs.at(-1);
  const direct = last !== undefined && !/^(DERP|peer-relay)\(/.test(last) && /:\d+$/.test(last);
  const r: TsPingResult = { ok: code === 0 && pongs.length > 0 && (!untilDirect || direct), direct, output };
  if (direct && last !== undefined) r.endpoint = last;
  return r;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function defaultTun(lab: Lab, host: HostName): string {
  return `${lab.prefix}t${host}`;
}

/** Starts tailscaled in `host` and waits (bounded) until its LocalAPI answers. Not logged in yet: call up(). */
export async function startTailscaled(lab: Lab, host: HostName, opts: StartTailscaledOptions = {}): Promise<Tailscaled> {
  const bins = tailscaleBinaries();
  const port = opts.port ?? 41641;
  const tun = opts.tunName ?? defaultTun(lab, host);
  if (tun.length > 15 || !/^[A-Za-z0-9_.-]+$/.test(tun)) throw new Error(`tailscaled: bad TUN name ${JSON.stringify(tun)}`);
  const dir = join(lab.tmpDir, `tailscaled-${host}-${port}`);
  if (existsSync(dir)) throw new Error(`tailscaled is already running in ${host} on port ${port} in this lab`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const socket = join(dir, 'tailscaled.sock');
  const env = { ...baseEnv(dir), ...opts.env };

  const argv = [
    bins.tailscaled,
    '--state', join(dir, 'tailscaled.state'),
    '--statedir', dir,
    '--socket', socket,
    '--tun', tun,
    '--port', String(port),
    '--no-logs-no-support',
  ];
  if (opts.verbose !== undefined) argv.push('--verbose', String(opts.verbose));
  const proc = lab.spawn(host, argv, { env });
  let exited = false;
  void proc.exited.then(() => {
    exited = true;
  });

  const cli = (args: string[], o: { timeoutMs?: number } = {}): Promise<ExecResult> =>
    lab.exec(host, [bins.tailscale, '--socket', socket, ...args], {
      timeoutMs: o.timeoutMs ?? CLI_TIMEOUT_MS,
      env: baseEnv(dir),
    });

  const fail = (what: string, r?: ExecResult): Error =>
    new Error(
      `tailscaled in ${host}: ${what}${r ? ` (code ${String(r.code)}): ${r.stdout}${r.stderr}` : ''}\n` +
        `--- tailscaled output (tail) ---\n${proc.output().slice(-4000)}`,
    );

  const status = async (): Promise<TsStatus> => {
    const r = await cli(['status', '--json']);
    if (r.code !== 0 && r.stdout.trim() === '') throw fail('status --json failed', r);
    return parseStatus(r.stdout);
  };

  // Ready when the LocalAPI answers `status --json` (any BackendState).
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last: ExecResult | undefined;
  try {
    for (;;) {
      if (exited) throw fail('exited while starting');
      if (existsSync(socket)) {
        last = await cli(['status', '--json'], { timeoutMs: 5_000 });
        if (last.stdout.trimStart().startsWith('{')) break;
      }
      if (Date.now() > deadline) throw fail(`LocalAPI did not answer within ${READY_TIMEOUT_MS} ms`, last);
      await sleep(100);
    }
  } catch (e) {
    await proc.kill('SIGKILL');
    throw e;
  }

  /** false also when the namespace is gone (lab destroyed). */
  const tunExists = async (): Promise<boolean> => {
    try {
      return (await lab.exec(host, ['ip', 'link', 'show', 'dev', tun], { timeoutMs: 10_000 })).code === 0;
    } catch {
      return false;
    }
  };

  const ts: Tailscaled = {
    host,
    dir,
    socket,
    tun,
    port,
    proc,
    cli,
    async up(o) {
      const r = await cli(
        [
          'up',
          '--login-server', o.loginServer,
          '--auth-key', o.authKey,
          '--hostname', o.hostname,
          '--accept-dns=false',
          '--netfilter-mode=off',
          '--timeout', `${UP_TIMEOUT_S}s`,
          ...(o.extraArgs ?? []),
        ],
        { timeoutMs: (UP_TIMEOUT_S + 10) * 1000 },
      );
      if (r.code !== 0) throw fail('tailscale up failed', r);
      const st = await status();
      if (st.backendState !== 'Running') throw fail(`after up, BackendState is ${st.backendState}`);
    },
    status,
    async peerByIp(ip) {
      const st = await status();
      return Object.values(st.peers).find((p) => p.tailscaleIPs.includes(ip));
    },
    async ping(ip, o = {}) {
      const untilDirect = o.untilDirect ?? true;
      const count = o.count ?? 10;
      const r = await cli(['ping', `--until-direct=${String(untilDirect)}`, '-c', String(count), ip], {
        timeoutMs: o.timeoutMs ?? (count + 1) * 6_000,
      });
      return parsePing(r.stdout + r.stderr, r.code, untilDirect);
    },
    async netcheck() {
      const r = await cli(['netcheck'], { timeoutMs: 60_000 });
      return r.stdout + r.stderr;
    },
    async stop() {
      await proc.kill('SIGTERM');
      // tailscaled deletes its TUN on a clean exit; after a SIGKILL the kernel does when the fd closes. Be sure.
      for (let i = 0; i < 20 && (await tunExists()); i++) await sleep(100);
      if (await tunExists()) await lab.exec(host, ['ip', 'link', 'del', 'dev', tun], { timeoutMs: 10_000 });
      if (await tunExists()) throw fail(`TUN ${tun} still exists after stop()`);
    },
  };
  return ts;
}
