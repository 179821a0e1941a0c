// NAT lab: a small "internet" of Linux network namespaces with NAT routers (natlab.md §2). Needs root.
//
//  srv 203.0.113.10-.14 ── inet (router, no NAT, no routes to private space)
//                           ├─ na  wan 198.51.100.2/28  br-lan 192.168.1.1/24 ── a1 .2, a2 .3
//                           ├─ nb  wan 198.51.100.18/28 lan 192.168.2.1/24    ── b1 .2
//                           ├─ cgn wan 198.51.100.34/28 br-sub 100.64.0.1/24  ── nc wan 100.64.0.2 lan 192.168.3.1 ── c1 .2
//                           │                                                 └─ nd wan 100.64.0.3 lan 192.168.4.1 ── d1 .2
//                           └─ fw  wan 198.51.100.50/28 lan 192.0.2.1/24 (routed, no NAT) ── e1 192.0.2.10
//
// No namespace has a link to the host namespace. Every namespace and the temp dir carry a per-run prefix
// ("w" + base36(pid) [+ "_" + n] + "-") so parallel runs cannot collide and stale runs can be swept.
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildRuleset, routerSysctls } from './nat-rules.ts';
import type { RouterContext, RouterProfile } from './nat-rules.ts';

export type { RouterProfile, MappingMode, FilterMode } from './nat-rules.ts';

export type HostName =
  | 'srv' | 'inet' | 'na' | 'a1' | 'a2' | 'nb' | 'b1' | 'cgn' | 'nc' | 'c1' | 'nd' | 'd1' | 'fw' | 'e1';
export type RouterName = 'na' | 'nb' | 'cgn' | 'nc' | 'nd' | 'fw';

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface LabProcess {
  pid: number;
  host: HostName;
  /** stdout+stderr so far (interleaved in arrival order). */
  output(): string;
  /** Resolves with the first match of `re` in output(); rejects on timeout or if the process exits first. */
  waitForOutput(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  /** Writes to the process's stdin (extension of the lead's API; used by the udp-tool agent). */
  write(text: string): void;
  /** SIGTERM (or `signal`) to the process group, waits for exit, SIGKILL after 3 s. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Exit code (null when killed by a signal). */
  exited: Promise<number | null>;
}

export interface LabAddresses {
  srv: string[];
  naWan: string;
  nbWan: string;
  cgnWan: string;
  ncWan: string;
  ndWan: string;
  fwWan: string;
  a1: string;
  a2: string;
  b1: string;
  c1: string;
  d1: string;
  e1: string;
}

export interface ExecOptions {
  timeoutMs?: number;
  env?: Record<string, string>;
  input?: string;
}

export interface Lab {
  prefix: string;
  nsName(host: HostName): string;
  addr: LabAddresses;
  /** Replaces the router's whole nftables ruleset, sets its conntrack UDP timeouts, flushes its conntrack table. */
  setRouter(router: RouterName, profile: RouterProfile): Promise<void>;
  /** Runs argv in the host's namespace (`ip netns exec`), default timeout 30 s (then SIGKILL, code null). */
  exec(host: HostName, argv: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Starts a tracked long-running process in the host's namespace; destroy() kills it. */
  spawn(host: HostName, argv: string[], opts?: { env?: Record<string, string> }): LabProcess;
  /** Per-run temp dir, removed in destroy(). */
  tmpDir: string;
  /** Kills tracked processes by PID, deletes the namespaces, removes tmpDir. Idempotent. */
  destroy(): Promise<void>;
}

export const HOSTS: readonly HostName[] = [
  'srv', 'inet', 'na', 'a1', 'a2', 'nb', 'b1', 'cgn', 'nc', 'c1', 'nd', 'd1', 'fw', 'e1',
];
export const ROUTERS: readonly RouterName[] = ['na', 'nb', 'cgn', 'nc', 'nd', 'fw'];

/** Interfaces and addresses of each router (the WAN interface is always "wan"). */
export const ROUTER_INFO: Readonly<Record<RouterName, RouterContext>> = {
  na: { wanIf: 'wan', wanIp: '198.51.100.2', lanIf: 'br-lan', lanCidr: '192.168.1.0/24' },
  nb: { wanIf: 'wan', wanIp: '198.51.100.18', lanIf: 'lan', lanCidr: '192.168.2.0/24' },
  cgn: { wanIf: 'wan', wanIp: '198.51.100.34', lanIf: 'br-sub', lanCidr: '100.64.0.0/24' },
  nc: { wanIf: 'wan', wanIp: '100.64.0.2', lanIf: 'lan', lanCidr: '192.168.3.0/24' },
  nd: { wanIf: 'wan', wanIp: '100.64.0.3', lanIf: 'lan', lanCidr: '192.168.4.0/24' },
  fw: { wanIf: 'wan', wanIp: '198.51.100.50', lanIf: 'lan', lanCidr: '192.0.2.0/24' },
};

/** Profiles every router gets at createLab(): NAT routers eim/apdf, fw a stateful firewall without NAT. */
export const DEFAULT_PROFILES: Readonly<Record<RouterName, RouterProfile>> = {
  na: { mapping: 'eim', filtering: 'apdf' },
  nb: { mapping: 'eim', filtering: 'apdf' },
  cgn: { mapping: 'eim', filtering: 'apdf' },
  nc: { mapping: 'eim', filtering: 'apdf' },
  nd: { mapping: 'eim', filtering: 'apdf' },
  fw: { mapping: 'none', filtering: 'apdf', forward: 'stateful' },
};

export const ADDR: Readonly<LabAddresses> = {
  srv: ['203.0.113.10', '203.0.113.11', '203.0.113.12', '203.0.113.13', '203.0.113.14'],
  naWan: '198.51.100.2',
  nbWan: '198.51.100.18',
  cgnWan: '198.51.100.34',
  ncWan: '100.64.0.2',
  ndWan: '100.64.0.3',
  fwWan: '198.51.100.50',
  a1: '192.168.1.2',
  a2: '192.168.1.3',
  b1: '192.168.2.2',
  c1: '192.168.3.2',
  d1: '192.168.4.2',
  e1: '192.0.2.10',
};

/** Repository root (cwd of lab processes, so `node --import tsx` resolves). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

const NS_RE = new RegExp(`^w([0-9a-z]+)(?:_(\\d+))?-(${HOSTS.join('|')})$`);
const TMP_RE = /^weft-lab-w([0-9a-z]+)(?:_(\d+))?-/;
const KILL_GRACE_MS = 3000;
const OUTPUT_CAP = 8 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------------------------
// Topology script

interface Link {
  a: HostName;
  aIf: string;
  b: HostName;
  bIf: string;
}

const LINKS: readonly Link[] = [
  { a: 'inet', aIf: 'i-srv', b: 'srv', bIf: 'eth0' },
  { a: 'inet', aIf: 'i-na', b: 'na', bIf: 'wan' },
  { a: 'inet', aIf: 'i-nb', b: 'nb', bIf: 'wan' },
  { a: 'inet', aIf: 'i-cgn', b: 'cgn', bIf: 'wan' },
  { a: 'inet', aIf: 'i-fw', b: 'fw', bIf: 'wan' },
  { a: 'na', aIf: 'p-a1', b: 'a1', bIf: 'eth0' },
  { a: 'na', aIf: 'p-a2', b: 'a2', bIf: 'eth0' },
  { a: 'nb', aIf: 'lan', b: 'b1', bIf: 'eth0' },
  { a: 'cgn', aIf: 'p-nc', b: 'nc', bIf: 'wan' },
  { a: 'cgn', aIf: 'p-nd', b: 'nd', bIf: 'wan' },
  { a: 'nc', aIf: 'lan', b: 'c1', bIf: 'eth0' },
  { a: 'nd', aIf: 'lan', b: 'd1', bIf: 'eth0' },
  { a: 'fw', aIf: 'lan', b: 'e1', bIf: 'eth0' },
];

/** `ip -batch` lines (run inside the namespace) that configure addresses, bridges and routes. */
const NS_SETUP: Readonly<Record<HostName, readonly string[]>> = {
  srv: [
    ...ADDR.srv.map((ip) => `addr add ${ip}/24 dev eth0`),
    'link set eth0 up',
    'route add default via 203.0.113.1',
  ],
  inet: [
    'addr add 203.0.113.1/24 dev i-srv',
    'addr add 198.51.100.1/28 dev i-na',
    'addr add 198.51.100.17/28 dev i-nb',
    'addr add 198.51.100.33/28 dev i-cgn',
    'addr add 198.51.100.49/28 dev i-fw',
    ...['i-srv', 'i-na', 'i-nb', 'i-cgn', 'i-fw'].map((i) => `link set ${i} up`),
    'route add 192.0.2.0/24 via 198.51.100.50',
  ],
  na: [
    'addr add 198.51.100.2/28 dev wan',
    'link set wan up',
    'link add br-lan type bridge',
    'link set p-a1 master br-lan',
    'link set p-a2 master br-lan',
    'addr add 192.168.1.1/24 dev br-lan',
    'link set p-a1 up',
    'link set p-a2 up',
    'link set br-lan up',
    'route add default via 198.51.100.1',
  ],
  a1: ['addr add 192.168.1.2/24 dev eth0', 'link set eth0 up', 'route add default via 192.168.1.1'],
  a2: ['addr add 192.168.1.3/24 dev eth0', 'link set eth0 up', 'route add default via 192.168.1.1'],
  nb: [
    'addr add 198.51.100.18/28 dev wan',
    'addr add 192.168.2.1/24 dev lan',
    'link set wan up',
    'link set lan up',
    'route add default via 198.51.100.17',
  ],
  b1: ['addr add 192.168.2.2/24 dev eth0', 'link set eth0 up', 'route add default via 192.168.2.1'],
  cgn: [
    'addr add 198.51.100.34/28 dev wan',
    'link set wan up',
    'link add br-sub type bridge',
    'link set p-nc master br-sub',
    'link set p-nd master br-sub',
    'addr add 100.64.0.1/24 dev br-sub',
    'link set p-nc up',
    'link set p-nd up',
    'link set br-sub up',
    'route add default via 198.51.100.33',
  ],
  nc: [
    'addr add 100.64.0.2/24 dev wan',
    'addr add 192.168.3.1/24 dev lan',
    'link set wan up',
    'link set lan up',
    'route add default via 100.64.0.1',
  ],
  c1: ['addr add 192.168.3.2/24 dev eth0', 'link set eth0 up', 'route add default via 192.168.3.1'],
  nd: [
    'addr add 100.64.0.3/24 dev wan',
    'addr add 192.168.4.1/24 dev lan',
    'link set wan up',
    'link set lan up',
    'route add default via 100.64.0.1',
  ],
  d1: ['addr add 192.168.4.2/24 dev eth0', 'link set eth0 up', 'route add default via 192.168.4.1'],
  fw: [
    'addr add 198.51.100.50/28 dev wan',
    'addr add 192.0.2.1/24 dev lan',
    'link set wan up',
    'link set lan up',
    'route add default via 198.51.100.49',
  ],
  e1: ['addr add 192.0.2.10/24 dev eth0', 'link set eth0 up', 'route add default via 192.0.2.1'],
};

function isRouterName(h: HostName): h is RouterName {
  return (ROUTERS as readonly string[]).includes(h);
}

function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** One shell script (run on the host with `sh -e`) that builds the whole topology. */
function topologyScript(ns: (h: HostName) => string, routerFiles: ReadonlyMap<RouterName, string>): string {
  const out: string[] = ['set -e'];
  // 1. namespaces, 2. sysctls (IPv6 off before any interface exists), 3. veth pairs, 4. per-ns ip config, 5. nft.
  out.push(`ip -batch - <<'EOF'\n${HOSTS.map((h) => `netns add ${ns(h)}`).join('\n')}\nEOF`);
  for (const h of HOSTS) {
    const s = ['net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'];
    if (h === 'inet' || isRouterName(h)) s.push('net.ipv4.ip_forward=1');
    if (h === 'na' || h === 'cgn') s.push('net.bridge.bridge-nf-call-iptables=0');
    if (isRouterName(h)) {
      for (const [k, v] of Object.entries(routerSysctls(DEFAULT_PROFILES[h]))) s.push(`${k}=${v}`);
    }
    out.push(`ip netns exec ${ns(h)} sysctl -q -w ${s.join(' ')}`);
  }
  const links = LINKS.map((l) => `link add ${l.aIf} netns ${ns(l.a)} type veth peer name ${l.bIf} netns ${ns(l.b)}`);
  out.push(`ip -batch - <<'EOF'\n${links.join('\n')}\nEOF`);
  for (const h of HOSTS) {
    out.push(`ip -n ${ns(h)} -batch - <<'EOF'\nlink set lo up\n${NS_SETUP[h].join('\n')}\nEOF`);
  }
  for (const [r, file] of routerFiles) out.push(`ip netns exec ${ns(r)} nft -f ${shQuote(file)}`);
  return out.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------------------------
// Process helpers

/** Reports whether a process with this pid exists (EPERM counts: it exists but is not ours). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  // Lab children are started detached, so each leads its own process group; fall back to the single PID.
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      /* already gone */
    }
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let t: NodeJS.Timeout | undefined;
  const timer = new Promise<'timeout'>((r) => {
    t = setTimeout(() => r('timeout'), ms);
  });
  return Promise.race([p, timer]).finally(() => clearTimeout(t));
}

class Proc implements LabProcess {
  readonly pid: number;
  readonly exited: Promise<number | null>;
  private buf = '';
  private done = false;
  private readonly waiters = new Set<() => void>();

  constructor(
    readonly host: HostName,
    private readonly child: ChildProcess,
  ) {
    if (child.pid === undefined) throw new Error(`lab: failed to spawn in ${host}`);
    this.pid = child.pid;
    const onData = (d: Buffer): void => {
      this.buf += d.toString('utf8');
      if (this.buf.length > OUTPUT_CAP) this.buf = this.buf.slice(this.buf.length - OUTPUT_CAP);
      this.notify();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.stdin?.on('error', () => undefined);
    this.exited = new Promise((res) => {
      child.on('close', (code) => {
        this.done = true;
        this.notify();
        res(code);
      });
      child.on('error', (err) => {
        this.buf += `\n[lab] spawn error: ${err.message}\n`;
        this.done = true;
        this.notify();
        res(null);
      });
    });
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  get finished(): boolean {
    return this.done;
  }

  output(): string {
    return this.buf;
  }

  write(text: string): void {
    if (this.done || !this.child.stdin || this.child.stdin.destroyed) throw new Error(`lab: stdin of ${this.pid} closed`);
    this.child.stdin.write(text);
  }

  waitForOutput(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const rx = new RegExp(re.source, re.flags.replace(/[gy]/g, ''));
    return new Promise((res, rej) => {
      const check = (): void => {
        const m = this.buf.match(rx);
        if (m) return finish(() => res(m));
        if (this.done) {
          finish(() => rej(new Error(`lab: process ${this.pid} in ${this.host} exited before ${String(re)}:\n${this.tail()}`)));
        }
      };
      const timer = setTimeout(() => {
        finish(() => rej(new Error(`lab: timeout ${timeoutMs} ms waiting for ${String(re)} in ${this.host}:\n${this.tail()}`)));
      }, timeoutMs);
      const finish = (f: () => void): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        f();
      };
      this.waiters.add(check);
      check();
    });
  }

  private tail(): string {
    return this.buf.slice(-2000);
  }

  async kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.done) return;
    signalGroup(this.pid, signal);
    if ((await withTimeout(this.exited, KILL_GRACE_MS)) !== 'timeout') return;
    signalGroup(this.pid, 'SIGKILL');
    await withTimeout(this.exited, KILL_GRACE_MS);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Registry of live labs, for the exit/signal handlers

interface LiveLab {
  namespaces: string[];
  pids: Set<number>;
  tmpDir: string;
}

const live = new Set<LiveLab>();
let handlersInstalled = false;
let labCounter = 0;

function cleanupSync(l: LiveLab): void {
  for (const pid of l.pids) signalGroup(pid, 'SIGKILL');
  spawnSync('ip', ['-force', '-batch', '-'], {
    input: l.namespaces.map((n) => `netns del ${n}`).join('\n') + '\n',
    stdio: ['pipe', 'ignore', 'ignore'],
    timeout: 10_000,
  });
  removeNetnsEtc(l.namespaces);
  rmSync(l.tmpDir, { recursive: true, force: true });
}

function cleanupAllSync(): void {
  for (const l of [...live]) {
    live.delete(l);
    try {
      cleanupSync(l);
    } catch {
      /* best effort at exit */
    }
  }
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', cleanupAllSync);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    const handler = (): void => {
      cleanupAllSync();
      process.removeListener(sig, handler);
      // Without other listeners, re-raise so the default action (termination) happens.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, handler);
  }
}

/**
 * Each lab namespace's own /etc files: `ip netns exec` bind-mounts /etc/netns/NAME/* over /etc/* in the command's
 * mount namespace (ip-netns(8)). Every lab host gets its own resolv.conf there before anything runs, so a Weft node
 * that manages DNS (MagicDNS in "direct" mode) edits that file, never the machine's /etc/resolv.conf.
 */
export const NETNS_ETC = '/etc/netns';

/** The resolv.conf a lab host starts with (no resolver: the lab has none unless a test starts one). */
export const LAB_RESOLV_CONF = '# weft lab namespace: no resolver unless a test configures one\nnameserver 192.0.2.53\n';

function createNetnsEtc(namespaces: readonly string[]): void {
  for (const n of namespaces) {
    mkdirSync(join(NETNS_ETC, n), { recursive: true });
    writeFileSync(join(NETNS_ETC, n, 'resolv.conf'), LAB_RESOLV_CONF);
  }
}

function removeNetnsEtc(namespaces: readonly string[]): void {
  for (const n of namespaces) {
    if (!NS_RE.test(n)) continue; // only directories named like this lab's namespaces
    rmSync(join(NETNS_ETC, n), { recursive: true, force: true });
  }
}

/** Every network namespace on the machine (`ip netns list`). */
export function listNamespaces(): string[] {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) throw new Error(`lab: ip netns list failed: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n !== '');
}

/** Deletes namespaces and temp dirs of earlier lab runs whose process is gone. Returns the deleted namespaces. */
export function sweepStale(): string[] {
  const stale = listNamespaces().filter((n) => {
    const m = NS_RE.exec(n);
    if (!m?.[1]) return false;
    const pid = parseInt(m[1], 36);
    return pid !== process.pid && !pidAlive(pid);
  });
  if (stale.length > 0) {
    spawnSync('ip', ['-force', '-batch', '-'], {
      input: stale.map((n) => `netns del ${n}`).join('\n') + '\n',
      stdio: ['pipe', 'ignore', 'ignore'],
      timeout: 10_000,
    });
  }
  // /etc/netns directories of lab namespaces whose run is gone (deleted above, or earlier).
  try {
    const gone = readdirSync(NETNS_ETC).filter((n) => {
      const m = NS_RE.exec(n);
      return !!m?.[1] && parseInt(m[1], 36) !== process.pid && !pidAlive(parseInt(m[1], 36));
    });
    removeNetnsEtc(gone);
  } catch {
    /* no /etc/netns yet */
  }
  try {
    for (const d of readdirSync(tmpdir())) {
      const m = TMP_RE.exec(d);
      if (!m?.[1]) continue;
      const pid = parseInt(m[1], 36);
      if (pid !== process.pid && !pidAlive(pid)) rmSync(join(tmpdir(), d), { recursive: true, force: true });
    }
  } catch {
    /* tmp sweep is best effort */
  }
  return stale;
}

// ---------------------------------------------------------------------------------------------------------------

function runChild(
  argv: string[],
  opts: { input?: string; timeoutMs: number; env?: Record<string, string>; track: Set<number> },
): Promise<ExecResult> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) return Promise.reject(new Error('lab: empty argv'));
  return new Promise((res) => {
    const child = spawn(cmd, args, {
      cwd: REPO_ROOT,
      env: { ...process.env, ...opts.env },
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let settled = false;
    const pid = child.pid;
    if (pid !== undefined) opts.track.add(pid);
    child.stdout.on('data', (d: Buffer) => {
      if (stdout.length < OUTPUT_CAP) stdout += d.toString('utf8');
    });
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < OUTPUT_CAP) stderr += d.toString('utf8');
    });
    child.stdin.on('error', () => undefined);
    const timer = setTimeout(() => {
      if (pid !== undefined) signalGroup(pid, 'SIGKILL');
    }, opts.timeoutMs);
    const done = (code: number | null, extra = ''): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (pid !== undefined) opts.track.delete(pid);
      res({ code, stdout, stderr: stderr + extra });
    };
    child.on('close', (code) => done(code));
    child.on('error', (err) => done(null, `\n[lab] spawn error: ${err.message}`));
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

export async function createLab(): Promise<Lab> {
  if (process.getuid?.() !== 0) throw new Error('lab: needs root (network namespaces)');
  installHandlers();
  sweepStale();

  const n = labCounter++;
  const prefix = `w${process.pid.toString(36)}${n === 0 ? '' : `_${n}`}-`;
  const nsName = (h: HostName): string => `${prefix}${h}`;
  const tmpDir = mkdtempSync(join(tmpdir(), `weft-lab-${prefix}`));
  const pids = new Set<number>();
  const procs = new Set<Proc>();
  const me: LiveLab = { namespaces: HOSTS.map(nsName), pids, tmpDir };
  live.add(me);

  let destroyed: Promise<void> | undefined;
  const destroy = (): Promise<void> => {
    destroyed ??= (async () => {
      await Promise.all([...procs].map((p) => p.kill()));
      for (const pid of pids) signalGroup(pid, 'SIGKILL');
      await runChild(['ip', '-force', '-batch', '-'], {
        input: me.namespaces.map((x) => `netns del ${x}`).join('\n') + '\n',
        timeoutMs: 15_000,
        track: new Set(),
      });
      removeNetnsEtc(me.namespaces);
      rmSync(tmpDir, { recursive: true, force: true });
      live.delete(me);
    })();
    return destroyed;
  };

  const exec = (host: HostName, argv: string[], opts: ExecOptions = {}): Promise<ExecResult> => {
    if (destroyed) return Promise.reject(new Error('lab: destroyed'));
    const o: { input?: string; timeoutMs: number; env?: Record<string, string>; track: Set<number> } = {
      timeoutMs: opts.timeoutMs ?? 30_000,
      track: pids,
    };
    if (opts.input !== undefined) o.input = opts.input;
    if (opts.env !== undefined) o.env = opts.env;
    return runChild(['ip', 'netns', 'exec', nsName(host), ...argv], o);
  };

  const spawnIn = (host: HostName, argv: string[], opts: { env?: Record<string, string> } = {}): LabProcess => {
    if (destroyed) throw new Error('lab: destroyed');
    if (argv.length === 0) throw new Error('lab: empty argv');
    // `ip netns exec` execs the command, so the child's PID is the command's PID.
    const child = spawn('ip', ['netns', 'exec', nsName(host), ...argv], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...opts.env },
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const p = new Proc(host, child);
    procs.add(p);
    pids.add(p.pid);
    void p.exited.then(() => {
      pids.delete(p.pid);
      procs.delete(p);
    });
    return p;
  };

  const setRouter = async (router: RouterName, profile: RouterProfile): Promise<void> => {
    const rules = buildRuleset(ROUTER_INFO[router], profile);
    const sysctls = Object.entries(routerSysctls(profile)).map(([k, v]) => `${k}=${v}`);
    const file = join(tmpDir, `nft-${router}.nft`);
    writeFileSync(file, rules);
    const r = await exec(router, ['nft', '-f', file], { timeoutMs: 15_000 });
    if (r.code !== 0) throw new Error(`lab: nft -f failed in ${router} (code ${String(r.code)}): ${r.stderr}\n${rules}`);
    const s = await exec(router, ['sh', '-c', `sysctl -q -w ${sysctls.join(' ')} && conntrack -F`], { timeoutMs: 15_000 });
    if (s.code !== 0) throw new Error(`lab: sysctl/conntrack -F failed in ${router}: ${s.stderr}`);
  };

  try {
    createNetnsEtc(me.namespaces);
    const files = new Map<RouterName, string>();
    for (const r of ROUTERS) {
      const f = join(tmpDir, `nft-${r}.nft`);
      writeFileSync(f, buildRuleset(ROUTER_INFO[r], DEFAULT_PROFILES[r]));
      files.set(r, f);
    }
    const r = await runChild(['sh', '-e'], { input: topologyScript(nsName, files), timeoutMs: 60_000, track: pids });
    if (r.code !== 0) throw new Error(`lab: topology setup failed (code ${String(r.code)}): ${r.stderr}`);
  } catch (e) {
    await destroy();
    throw e;
  }

  return {
    prefix,
    nsName,
    addr: { ...ADDR, srv: [...ADDR.srv] },
    setRouter,
    exec,
    spawn: spawnIn,
    tmpDir,
    destroy,
  };
}

/** argv that runs test/lab/udp-tool.ts with tsx (processes run with cwd = repo root). */
export function udpToolArgv(args: string[]): string[] {
  return [process.execPath, '--import', 'tsx', join(REPO_ROOT, 'test', 'lab', 'udp-tool.ts'), ...args];
}
