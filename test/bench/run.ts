// `npm run bench`: Weft's data-plane throughput and start-up times against references, all measured in ONE run of
// the NAT lab (test/lab/lab.ts). Not a test: it prints ratios and writes JSON, it asserts nothing.
//
//   node --import tsx test/bench/run.ts [--time S] [--rounds N] [--runs N] [--derp auto|derper|embedded] [--only LIST] [--out FILE]
//
//   --time S     iperf3 seconds per throughput measurement (default 10; 1 more second is sent and omitted, -O 1)
//   --rounds N   throughput rounds (default 2): every case is measured once per round, the order of the cases is
//                reversed in every other round (so each compared pair runs in both orders), the median is reported
//   --runs N     start-up runs per client (default 3; the median is reported)
//   --derp MODE  DERP server for every case: a real Tailscale derper (test/lab/derper.ts, TLS, InsecureForTests), or
//                headscale's embedded DERP over plain HTTP. auto (default): the derper when its binary is built,
//                falling back to the embedded DERP (for both clients) when Weft cannot relay through it.
//   --only LIST  comma-separated subset of: relay,direct,startup,footprint (for development)
//   --out FILE   JSON results (default test/bench/results/latest.json)
//
// Topology: a1 behind router na, b1 behind router nb. iperf3 TCP from a1 (client) to b1 (server) over the tunnel.
//   direct cases: na and nb both EIM+APDF (port-preserving masquerade): hole punching works.
//   relay cases:  na and nb both EDM+APDF (random ports): no direct path, traffic goes through DERP.
//   reference for Weft direct: plain wireguard-go + wg set by hand in a1/b1, endpoints through the NATs.
//   diagnostic reference: the same with connection tracking on in a1/b1 (one `ct state` rule), as Weft's ACL has it.
//   every tunnel interface has MTU 1280 (Weft's and tailscaled's default; set on the wireguard-go one by hand).
// CPU per GB: utime + stime (/proc/PID/stat, test/bench/cpu.ts) of the client's processes on BOTH hosts while the
// iperf3 client runs (the omitted second included), divided by the bytes iperf3 carried in that time (received bytes
// plus the omitted second's): Weft = the `weft up` node process + its wireguard-go child (+ any other child);
// tailscaled = tailscaled (WireGuard inside); plain reference = its two wireguard-go processes.
// Start-up: a long-running peer of the same client in a1; in b1 a fresh node (new state, new UDP port) is started
// per run. t0 = spawning `weft up` (node + tsx + the daemon itself) / `tailscale up` (tailscaled is already running,
// its own start is recorded separately). First reply = first success of `ping -c1 -W1 PEER` from b1, tried every
// 0.2 s. Direct = the fresh node reports the peer's path as direct (Weft status path.kind, tailscaled CurAddr),
// polled every 0.2 s while the pings go on. Every loop is bounded.
//
// Needs root. Everything it starts is stopped, and the lab destroyed, in a finally; lab.ts's own SIGINT/SIGTERM
// handler kills the lab's processes and namespaces if the run is interrupted.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { StatusReport, type PeerPath } from '../../src-shared/model/status.ts';
import { connectDaemon } from '../../src-main/daemon/api-client.ts';
import { describeWireguardGo, resolveWireguardGo } from '../../src-main/engine/wg/resolve.ts';
import { clockTicks, startCpuMeter, type CpuRoot, type CpuWindow } from './cpu.ts';
import { createLab, REPO_ROOT, type HostName, type Lab, type LabProcess, type RouterProfile } from '../lab/lab.ts';
import { startDerper } from '../lab/derper.ts';
import { derpMapYaml, peersDir, startHeadscale, type Headscale } from '../lab/headscale.ts';
import { PLAIN_HTTP_DERP_ENV, startTailscaled, TAILSCALE_VERSION, type Tailscaled } from '../lab/tailscaled.ts';

/** WEFT_BENCH_CPU_PROF=DIR: every `weft up` node writes a V8 CPU profile there when it exits (for finding hot spots). */
const PROF_DIR = process.env['WEFT_BENCH_CPU_PROF'];
const WEFT = [process.execPath, ...(PROF_DIR ? ['--cpu-prof', '--cpu-prof-dir', PROF_DIR] : []), join(REPO_ROOT, 'src-main', 'cli', 'bin.mjs')];
const MTU = 1280;
const EIM: RouterProfile = { mapping: 'eim', filtering: 'apdf' };
const EDM: RouterProfile = { mapping: 'edm', filtering: 'apdf' };
/** Bounds. */
const UP_TIMEOUT_MS = 45_000;
const PATH_TIMEOUT_MS = 45_000;
const STARTUP_TIMEOUT_MS = 60_000;
const STEP_MS = 200;

// ---------------------------------------------------------------------------------------------------------------
// Options

type DerpMode = 'auto' | 'derper' | 'embedded';
type Phase = 'relay' | 'direct' | 'startup' | 'footprint';

interface Options {
  seconds: number;
  rounds: number;
  runs: number;
  derp: DerpMode;
  only: Set<Phase>;
  out: string;
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    seconds: 10,
    rounds: 2,
    runs: 3,
    derp: 'auto',
    only: new Set<Phase>(['relay', 'direct', 'startup', 'footprint']),
    out: join(REPO_ROOT, 'test', 'bench', 'results', 'latest.json'),
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    const need = (): string => {
      if (v === undefined) throw new Error(`bench: ${String(a)} needs a value`);
      i++;
      return v;
    };
    switch (a) {
      case '--time':
        o.seconds = Number(need());
        if (!Number.isInteger(o.seconds) || o.seconds < 1 || o.seconds > 60) throw new Error('bench: --time must be 1..60');
        break;
      case '--rounds':
        o.rounds = Number(need());
        if (!Number.isInteger(o.rounds) || o.rounds < 1 || o.rounds > 5) throw new Error('bench: --rounds must be 1..5');
        break;
      case '--runs':
        o.runs = Number(need());
        if (!Number.isInteger(o.runs) || o.runs < 1 || o.runs > 9) throw new Error('bench: --runs must be 1..9');
        break;
      case '--derp': {
        const m = need();
        if (m !== 'auto' && m !== 'derper' && m !== 'embedded') throw new Error('bench: --derp must be auto|derper|embedded');
        o.derp = m;
        break;
      }
      case '--only': {
        const list = need().split(',').filter((x) => x !== '');
        for (const p of list) if (!['relay', 'direct', 'startup', 'footprint'].includes(p)) throw new Error(`bench: unknown phase ${p}`);
        o.only = new Set(list as Phase[]);
        break;
      }
      case '--out':
        o.out = resolve(need());
        break;
      case '--help':
      case '-h':
        process.stdout.write('usage: node --import tsx test/bench/run.ts [--time S] [--rounds N] [--runs N] [--derp auto|derper|embedded] [--only relay,direct,startup,footprint] [--out FILE]\n');
        process.exit(0);
        break;
      default:
        throw new Error(`bench: unknown argument ${String(a)}`);
    }
  }
  return o;
}

// ---------------------------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const now = (): number => performance.now();

function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Polls `cond` every `stepMs` until it is true or `timeoutMs` passes; `poke` runs between polls. */
async function waitUntil(cond: () => Promise<boolean>, timeoutMs: number, poke?: () => Promise<void>, stepMs = 500): Promise<boolean> {
  const deadline = now() + timeoutMs;
  for (;;) {
    if (await cond().catch(() => false)) return true;
    if (now() > deadline) return false;
    if (poke) await poke().catch(() => undefined);
    await sleep(stepMs);
  }
}

/** Last lines of a process's output, for error reports. */
function tail(p: LabProcess, chars = 2500): string {
  return p.output().slice(-chars);
}

// ---------------------------------------------------------------------------------------------------------------
// Control server and DERP

type StartDerper = typeof startDerper;

/** The lab derper (test/lab/derper.ts) when its binary is built; null otherwise (then the embedded DERP is used). */
function derperIfBuilt(): StartDerper | null {
  return existsSync(join(peersDir(), `tailscale-v${TAILSCALE_VERSION}`, 'derper')) ? startDerper : null;
}

interface Control {
  derp: 'derper' | 'embedded';
  hs: Headscale;
  key: string;
  weftEnv: Record<string, string>;
  tsEnv: Record<string, string>;
  derpUrl: string;
  /** The lab derper's expvars (null for the embedded DERP), for its drop counters. */
  derpVars: (() => Promise<Record<string, unknown>>) | null;
  stop(): Promise<void>;
}

async function startControl(lab: Lab, kind: 'derper' | 'embedded', port: number, start: StartDerper | null): Promise<Control> {
  if (kind === 'derper') {
    if (!start) throw new Error('bench: derper requested but its binary is missing');
    const derper = await start(lab, {});
    try {
      const mapPath = join(lab.tmpDir, `bench-derp-${port}.yaml`);
      writeFileSync(mapPath, derpMapYaml([derper.node]));
      const hs = await startHeadscale(lab, '0.29.2', { derpMapPath: mapPath, port });
      const key = await hs.createPreauthKey(await hs.createUser(`bench${port}`), { reusable: true, expiration: '2h' });
      return {
        derp: 'derper',
        hs,
        key,
        weftEnv: {},
        tsEnv: {},
        derpUrl: derper.url,
        derpVars: () => derper.debugVars(),
        stop: async () => {
          await hs.stop();
          await derper.stop();
        },
      };
    } catch (e) {
      await derper.stop();
      throw e;
    }
  }
  const hs = await startHeadscale(lab, '0.29.2', { embeddedDerp: true, port });
  const key = await hs.createPreauthKey(await hs.createUser(`bench${port}`), { reusable: true, expiration: '2h' });
  return {
    derp: 'embedded',
    hs,
    key,
    weftEnv: { WEFT_DEBUG_DERP_HTTP: '1' },
    tsEnv: { ...PLAIN_HTTP_DERP_ENV },
    derpUrl: `${hs.url}/derp (headscale embedded, plain HTTP)`,
    derpVars: null,
    stop: () => hs.stop(),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Nodes

type Kind = 'weft' | 'tailscaled';

interface Node {
  kind: Kind;
  name: string;
  host: HostName;
  ip: string;
  /** 'direct' | 'relay' | 'connecting' | ... as this node sees its path to `peerName` ('none' = not in its status). */
  pathTo(peerName: string): Promise<string>;
  /** The node's process (its children are found by the CPU meter). */
  cpuRoot: CpuRoot;
  output(): string;
  stop(): Promise<void>;
}

let seq = 0;
/** Every node gets its own UDP port (and so its own tailscaled state dir); EIM NATs preserve it. */
let nextPort = 41641;
const newPort = (): number => nextPort++;

function weftIfaceName(lab: Lab, n: number): string {
  // weft + 1..10 of [0-9a-z], unique across namespaces (the UAPI socket path is machine-wide).
  return `weft${lab.prefix.replace(/[^0-9a-z]/g, '').slice(-6)}b${n}`.slice(0, 14);
}

async function weftStatus(dir: string): Promise<StatusReport> {
  // What `weft status --json --state-dir DIR` asks, without paying for a node + tsx start per poll.
  const c = await connectDaemon(dir);
  try {
    const r = await c.invoke('engine:status', {}, 5_000);
    if (!r.ok) throw new Error(`status: ${r.error.message}`);
    return StatusReport.parse(r.value);
  } finally {
    c.close();
  }
}

function describePath(p: PeerPath | undefined): string {
  if (!p) return 'none';
  return p.kind === 'relay' ? `relay(region ${p.region})` : p.kind === 'direct' ? `direct(${p.endpoint})` : p.kind;
}

/** Spawns `weft up` in `host` and returns right away (the node is not connected yet). */
function spawnWeft(lab: Lab, ctl: Control, host: HostName, port: number): { proc: LabProcess; name: string; dir: string; iface: string } {
  const n = ++seq;
  const name = `bw${n}${host}`;
  const dir = join(lab.tmpDir, `bench-${name}`);
  const iface = weftIfaceName(lab, n);
  uapiSocket(iface);
  const argv = [...WEFT, 'up', '--login-server', ctl.hs.url, '--auth-key', ctl.key, '--hostname', name, '--state-dir', dir, '--iface', iface, '--port', String(port)];
  const proc = lab.spawn(host, argv, { env: ctl.weftEnv });
  return { proc, name, dir, iface };
}

function weftNode(host: HostName, s: { proc: LabProcess; name: string; dir: string }, ip: string): Node {
  return {
    kind: 'weft',
    name: s.name,
    host,
    ip,
    async pathTo(peerName) {
      const st = await weftStatus(s.dir);
      return describePath(st.peers.find((p) => p.name === peerName)?.path);
    },
    cpuRoot: { label: 'weft-node', host, pid: s.proc.pid },
    output: () => s.proc.output(),
    async stop() {
      await s.proc.kill('SIGTERM');
    },
  };
}

async function upWeft(lab: Lab, ctl: Control, host: HostName, port: number): Promise<Node> {
  const s = spawnWeft(lab, ctl, host, port);
  try {
    const m = await s.proc.waitForOutput(/weft: connected as \S+ \["(100\.[0-9.]+)\/32"/, UP_TIMEOUT_MS);
    return weftNode(host, s, m[1]!);
  } catch (e) {
    await s.proc.kill('SIGTERM');
    throw e;
  }
}

function tsPath(ts: Tailscaled, peerName: string): Promise<string> {
  return ts.status().then((st) => {
    const p = Object.values(st.peers).find((x) => x.hostName === peerName);
    if (!p) return 'none';
    if (p.curAddr !== '') return `direct(${p.curAddr})`;
    return p.relay !== '' ? `relay(${p.relay})` : 'connecting';
  });
}

function tsNode(ts: Tailscaled, name: string, ip: string): Node {
  return {
    kind: 'tailscaled',
    name,
    host: ts.host,
    ip,
    pathTo: (peerName) => tsPath(ts, peerName),
    cpuRoot: { label: 'tailscaled', host: ts.host, pid: ts.proc.pid },
    output: () => ts.proc.output(),
    stop: () => ts.stop(),
  };
}

async function upTailscaled(lab: Lab, ctl: Control, host: HostName, port: number): Promise<Node> {
  const name = `bt${++seq}${host}`;
  const ts = await startTailscaled(lab, host, { port, env: ctl.tsEnv });
  try {
    await ts.up({ loginServer: ctl.hs.url, authKey: ctl.key, hostname: name });
    const ip = (await ts.status()).tailscaleIPs.find((a) => a.startsWith('100.'));
    if (!ip) throw new Error(`tailscaled ${name}: no 100.x address`);
    return tsNode(ts, name, ip);
  } catch (e) {
    await ts.stop();
    throw e;
  }
}

async function up(kind: Kind, lab: Lab, ctl: Control, host: HostName, port: number): Promise<Node> {
  return kind === 'weft' ? upWeft(lab, ctl, host, port) : upTailscaled(lab, ctl, host, port);
}

async function pingOnce(lab: Lab, from: HostName, ip: string, waitS = 1): Promise<boolean> {
  const r = await lab.exec(from, ['ping', '-n', '-c1', `-W${waitS}`, ip], { timeoutMs: (waitS + 5) * 1000 });
  return r.code === 0;
}

/** Pings both ways (one packet each) until both answer, bounded. */
async function waitPing(lab: Lab, a: Node, b: Node, timeoutMs: number): Promise<boolean> {
  return waitUntil(
    async () => {
      const [x, y] = await Promise.all([pingOnce(lab, a.host, b.ip), pingOnce(lab, b.host, a.ip)]);
      return x && y;
    },
    timeoutMs,
    undefined,
    STEP_MS,
  );
}

/** Waits until both sides report `want` ('direct' | 'relay') for each other, pinging to keep traffic flowing. */
async function waitPath(lab: Lab, a: Node, b: Node, want: 'direct' | 'relay', timeoutMs: number): Promise<[string, string]> {
  let last: [string, string] = ['none', 'none'];
  await waitUntil(
    async () => {
      last = await Promise.all([a.pathTo(b.name), b.pathTo(a.name)]);
      return last.every((p) => p.startsWith(want));
    },
    timeoutMs,
    async () => {
      await Promise.all([pingOnce(lab, a.host, b.ip), pingOnce(lab, b.host, a.ip)]);
    },
  );
  return last;
}

// ---------------------------------------------------------------------------------------------------------------
// iperf3

interface IperfJson {
  error?: string;
  intervals?: { sum?: { bytes?: number; omitted?: boolean } }[];
  end?: { sum_received?: { bits_per_second?: number; bytes?: number }; sum_sent?: { retransmits?: number } };
}

interface Throughput {
  mbitPerS: number;
  retransmits: number | null;
  /** Bytes carried while the client ran: received (measured seconds) + sent in the omitted second, GB (1e9 B). */
  gbCarried: number | null;
  /** CPU time of `cpuRoots` (and their children) while the client ran; null with cpuError when it failed. */
  cpu: CpuWindow | null;
  cpuError: string | null;
}

/**
 * iperf3 TCP, client in `from`, server in `to` bound to `ip`: Mbit/s received. The CPU time of `cpuRoots` is
 * metered from just before the client starts to just after it exits.
 */
/** `ping -q` summary (loss and min/avg/max/mdev) from `from` to `ip`: a diagnostic for WEFT_BENCH_LOGS. */
async function rtt(lab: Lab, from: HostName, ip: string, count: number, intervalS: number): Promise<string> {
  const r = await lab.exec(from, ['ping', '-n', '-q', '-c', String(count), '-i', String(intervalS), '-W', '2', ip], {
    timeoutMs: (count * intervalS + 10) * 1000,
  });
  const lines = r.stdout.trim().split('\n').slice(-2);
  return lines.join('; ') || `ping failed (code ${String(r.code)})`;
}

/** The derper expvars that changed between two snapshots and name drops, queues or packets (flattened one level). */
function derpDelta(before: Record<string, unknown>, after: Record<string, unknown>): string {
  const flat = (o: Record<string, unknown>): Map<string, number> => {
    const m = new Map<string, number>();
    for (const [k, v] of Object.entries(o)) {
      if (typeof v === 'number') m.set(k, v);
      else if (v && typeof v === 'object') for (const [k2, v2] of Object.entries(v)) if (typeof v2 === 'number') m.set(`${k}.${k2}`, v2);
    }
    return m;
  };
  const b = flat(before);
  const out: string[] = [];
  for (const [k, v] of flat(after)) {
    if (!/drop|packets|queue/i.test(k)) continue;
    const d = v - (b.get(k) ?? 0);
    if (d !== 0) out.push(`${k} +${d}`);
  }
  return out.join(', ') || 'no change';
}

/** A host's UDP error counters (/proc/net/snmp, per namespace): a diagnostic for WEFT_BENCH_LOGS. */
async function udpCounters(lab: Lab, host: HostName): Promise<Record<string, number>> {
  const lines = (await lab.exec(host, ['cat', '/proc/net/snmp'])).stdout.split('\n').filter((l) => l.startsWith('Udp:'));
  const [names, values] = [lines[0]?.split(/\s+/).slice(1) ?? [], lines[1]?.split(/\s+/).slice(1) ?? []];
  const out: Record<string, number> = {};
  names.forEach((n, i) => {
    if (/Errors|NoPorts/.test(n)) out[n] = Number(values[i]);
  });
  return out;
}

async function iperf(lab: Lab, from: HostName, to: HostName, ip: string, seconds: number, cpuRoots: readonly CpuRoot[]): Promise<Throughput> {
  const port = String(5300 + (++seq % 100));
  const server = lab.spawn(to, ['iperf3', '-s', '-1', '--forceflush', '-B', ip, '-p', port]);
  try {
    await server.waitForOutput(/Server listening/, 10_000);
    const udpBefore = process.env['WEFT_BENCH_LOGS'] ? await Promise.all([from, to].map((h) => udpCounters(lab, h))) : null;
    let meter: ReturnType<typeof startCpuMeter> | null = null;
    let cpuError: string | null = null;
    try {
      meter = startCpuMeter(cpuRoots);
    } catch (e) {
      cpuError = errText(e);
    }
    const r = await lab.exec(from, ['iperf3', '-c', ip, '-p', port, '-t', String(seconds), '-O', '1', '-J', '--connect-timeout', '5000'], {
      timeoutMs: (seconds + 30) * 1000,
    });
    if (udpBefore) {
      const after = await Promise.all([from, to].map((h) => udpCounters(lab, h)));
      const d = [from, to].map((h, i) => `${h}: ${Object.entries(after[i]!).map(([k, v]) => `${k}+${v - (udpBefore[i]![k] ?? 0)}`).join(' ')}`);
      log(`UDP counters during iperf3 (/proc/net/snmp): ${d.join('; ')}`);
    }
    let cpu: CpuWindow | null = null;
    try {
      cpu = meter?.stop() ?? null;
    } catch (e) {
      cpuError = errText(e);
    }
    let j: IperfJson;
    try {
      j = JSON.parse(r.stdout) as IperfJson;
    } catch {
      throw new Error(`iperf3 gave no JSON (code ${String(r.code)}): ${r.stdout.slice(0, 500)}${r.stderr.slice(0, 500)}`);
    }
    if (j.error !== undefined) throw new Error(`iperf3: ${j.error}`);
    const bps = j.end?.sum_received?.bits_per_second;
    if (bps === undefined) throw new Error(`iperf3: no sum_received in ${r.stdout.slice(0, 500)}`);
    const received = j.end?.sum_received?.bytes;
    const omitted = (j.intervals ?? []).reduce((a, i) => a + (i.sum?.omitted === true ? (i.sum.bytes ?? 0) : 0), 0);
    const gbCarried = received === undefined ? null : (received + omitted) / 1e9;
    if (cpuError !== null) log(`WARNING: no CPU figure: ${cpuError}`);
    return { mbitPerS: bps / 1e6, retransmits: j.end?.sum_sent?.retransmits ?? null, gbCarried, cpu, cpuError };
  } finally {
    await server.kill('SIGTERM');
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Plain wireguard-go reference

/**
 * UAPI sockets (/var/run/wireguard/NAME.sock) of every device this run creates, the reference ones and Weft's:
 * machine-wide files that a SIGKILLed wireguard-go cannot unlink. Removed at the end and on SIGINT/SIGTERM.
 */
const wgSockets = new Set<string>();

function uapiSocket(ifname: string): string {
  const p = `/var/run/wireguard/${ifname}.sock`;
  wgSockets.add(p);
  return p;
}

function removeWgSockets(only?: readonly string[]): void {
  for (const s of only ?? wgSockets) rmSync(s, { force: true });
}

interface PlainWg {
  ipA: string;
  ipB: string;
  cpuRoots: CpuRoot[];
  stop(): Promise<void>;
}

/**
 * `conntrack`: a one-rule nftables table on each host (`ct state established,related accept` on input) turns the
 * kernel's connection tracking on there, as Weft's stateful ACL does, so every packet, outer and inner, is tracked.
 * A diagnostic reference: how much of Weft's gap to plain wireguard-go is that tracking.
 */
async function plainWireguard(lab: Lab, conntrack = false): Promise<PlainWg> {
  const tag = lab.prefix.replace(/[^0-9a-z]/g, '').slice(-8);
  const port = 51820;
  const sides = [
    { host: 'a1' as const, ifname: `bwg${tag}a`, ip: '10.199.0.1', peerEndpoint: `${lab.addr.nbWan}:${port}` },
    { host: 'b1' as const, ifname: `bwg${tag}b`, ip: '10.199.0.2', peerEndpoint: `${lab.addr.naWan}:${port}` },
  ];
  const procs: LabProcess[] = [];
  const sockets = sides.map((s) => uapiSocket(s.ifname));
  const ctTable = ['inet', `bench_ct${tag}`];
  const stop = async (): Promise<void> => {
    await Promise.all(procs.map((p) => p.kill('SIGTERM')));
    removeWgSockets(sockets);
    if (conntrack) for (const s of sides) await lab.exec(s.host, ['nft', 'delete', 'table', ...ctTable]);
  };
  try {
    if (conntrack) {
      for (const s of sides) {
        for (const c of [
          ['nft', 'add', 'table', ...ctTable],
          ['nft', 'add', 'chain', ...ctTable, 'in', '{', 'type', 'filter', 'hook', 'input', 'priority', '0', ';', '}'],
          ['nft', 'add', 'rule', ...ctTable, 'in', 'ct', 'state', 'established,related', 'accept'],
        ]) {
          const r = await lab.exec(s.host, c);
          if (r.code !== 0) throw new Error(`${c.join(' ')}: ${r.stderr}`);
        }
      }
    }
    const keys: { priv: string; pub: string; file: string }[] = [];
    for (const s of sides) {
      const g = await lab.exec(s.host, ['wg', 'genkey']);
      const priv = g.stdout.trim();
      const p = await lab.exec(s.host, ['wg', 'pubkey'], { input: `${priv}\n` });
      const file = join(lab.tmpDir, `${s.ifname}.key`);
      writeFileSync(file, `${priv}\n`, { mode: 0o600 });
      keys.push({ priv, pub: p.stdout.trim(), file });
    }
    // The same wireguard-go Weft runs (resolve.ts: Weft's pinned build when it is there), so the ratio compares
    // Weft's forwarding with that binary alone.
    const wgBin = await resolveWireguardGo();
    log(`plain reference: ${describeWireguardGo(wgBin)}`);
    for (const s of sides) {
      procs.push(lab.spawn(s.host, [wgBin.path, '-f', s.ifname], { env: { LOG_LEVEL: 'error' } }));
    }
    for (const [i, s] of sides.entries()) {
      const ready = await waitUntil(async () => (await lab.exec(s.host, ['wg', 'show', s.ifname])).code === 0, 10_000, undefined, 100);
      if (!ready) throw new Error(`wireguard-go ${s.ifname} did not come up: ${tail(procs[i]!)}`);
      const peer = keys[1 - i]!;
      const cmds = [
        ['wg', 'set', s.ifname, 'private-key', keys[i]!.file, 'listen-port', String(port), 'peer', peer.pub, 'endpoint', s.peerEndpoint, 'allowed-ips', `${sides[1 - i]!.ip}/32`, 'persistent-keepalive', '1'],
        ['ip', 'addr', 'add', `${s.ip}/32`, 'dev', s.ifname],
        ['ip', 'link', 'set', s.ifname, 'mtu', String(MTU), 'up'],
        ['ip', 'route', 'add', `${sides[1 - i]!.ip}/32`, 'dev', s.ifname],
      ];
      for (const c of cmds) {
        const r = await lab.exec(s.host, c);
        if (r.code !== 0) throw new Error(`${c.join(' ')}: ${r.stderr}`);
      }
    }
    // Both sides send (keepalives, handshakes) toward the other's public port, so the APDF NATs open up.
    const ok = await waitUntil(async () => pingOnce(lab, 'a1', sides[1]!.ip), 30_000, undefined, STEP_MS);
    if (!ok) throw new Error('plain wireguard-go: no ping through the tunnel within 30 s');
    const cpuRoots = sides.map((s, i) => ({ label: 'wireguard-go', host: s.host, pid: procs[i]!.pid }));
    return { ipA: sides[0]!.ip, ipB: sides[1]!.ip, cpuRoots, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Cases

/** CPU use in one measurement: both hosts' processes, summed per role (the root's label, or a child's comm). */
interface RoundCpu {
  /** CPU seconds per role, both hosts together. */
  byRoleS: Record<string, number>;
  totalS: number;
  sPerGB: number | null;
  byRoleSPerGB: Record<string, number>;
  window: CpuWindow;
}

/** One measurement of one case. */
interface Round {
  round: number;
  /** Position of the case in its round (1 = measured first). */
  position: number;
  mbitPerS: number | null;
  retransmits: number | null;
  gbCarried: number | null;
  path: string[] | null;
  cpu: RoundCpu | null;
  cpuError: string | null;
  loadavg: number[];
  error: string | null;
}

interface ThroughputCase {
  name: string;
  /** Median over the rounds that worked. */
  mbitPerS: number | null;
  /** Median over the rounds with a CPU figure: the total and each role (both hosts). */
  cpuSPerGB: number | null;
  cpuSPerGBByRole: Record<string, number>;
  rounds: Round[];
  /** The failed rounds' errors; null when every round worked. */
  error: string | null;
}

const REAPED = 'exited children';

function roundCpu(w: CpuWindow | null, gb: number | null): RoundCpu | null {
  if (w === null) return null;
  const byRoleS: Record<string, number> = {};
  const add = (k: string, v: number): void => {
    byRoleS[k] = (byRoleS[k] ?? 0) + v;
  };
  for (const p of w.processes) {
    add(p.pid === p.root ? p.label : p.comm, p.cpuS);
    if (p.reapedS > 0) add(REAPED, p.reapedS);
  }
  const per = (x: number): number | null => (gb !== null && gb > 0 ? x / gb : null);
  const byRoleSPerGB: Record<string, number> = {};
  for (const [k, v] of Object.entries(byRoleS)) {
    const x = per(v);
    if (x !== null) byRoleSPerGB[k] = x;
  }
  return { byRoleS, totalS: w.totalS, sPerGB: per(w.totalS), byRoleSPerGB, window: w };
}

function measured(round: number, position: number, t: Throughput, path: string[]): Round {
  return {
    round,
    position,
    mbitPerS: t.mbitPerS,
    retransmits: t.retransmits,
    gbCarried: t.gbCarried,
    path,
    cpu: roundCpu(t.cpu, t.gbCarried),
    cpuError: t.cpuError,
    loadavg: loadavg().map((x) => Number(x.toFixed(2))),
    error: null,
  };
}

interface StartupRun {
  /** t0 to `weft up` printing "connected" / `tailscale up` returning (BackendState Running). */
  upS: number | null;
  firstReplyS: number | null;
  directS: number | null;
  error: string | null;
}

interface StartupResult {
  kind: Kind;
  runs: StartupRun[];
  medianFirstReplyS: number | null;
  medianDirectS: number | null;
  /** tailscaled only: the daemon's own start (spawn to LocalAPI answering), before t0, per run. */
  daemonStartS?: number[];
}

function failed(name: string, round: number, position: number, e: unknown): Round {
  log(`${name}: FAILED: ${errText(e)}`);
  const loads = loadavg().map((x) => Number(x.toFixed(2)));
  return { round, position, mbitPerS: null, retransmits: null, gbCarried: null, path: null, cpu: null, cpuError: null, loadavg: loads, error: errText(e).slice(0, 4000) };
}

function logRound(name: string, r: Round): void {
  const c = r.cpu;
  const roles = c ? Object.entries(c.byRoleS).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(' + ') : '';
  const cpu = c ? `; CPU ${c.totalS.toFixed(2)} s (${roles}) for ${r.gbCarried?.toFixed(2) ?? '-'} GB = ${c.sPerGB?.toFixed(2) ?? '-'} s/GB` : '';
  log(`${name}: ${r.mbitPerS?.toFixed(1) ?? '-'} Mbit/s${cpu}`);
}

/** Folds a case's rounds into medians. */
function throughputCase(name: string, rounds: Round[]): ThroughputCase {
  const ok = rounds.flatMap((r) => (r.mbitPerS === null ? [] : [r.mbitPerS]));
  const cpus = rounds.flatMap((r) => (r.cpu === null ? [] : [r.cpu]));
  const byRole: Record<string, number> = {};
  for (const k of new Set(cpus.flatMap((c) => Object.keys(c.byRoleSPerGB)))) {
    const m = median(cpus.map((c) => c.byRoleSPerGB[k] ?? 0));
    if (m !== null) byRole[k] = m;
  }
  const errors = rounds.flatMap((r) => (r.error === null ? [] : [`round ${r.round}: ${r.error}`]));
  return {
    name,
    mbitPerS: median(ok),
    cpuSPerGB: median(cpus.flatMap((c) => (c.sPerGB === null ? [] : [c.sPerGB]))),
    cpuSPerGBByRole: byRole,
    rounds,
    error: errors.length === 0 ? null : errors.join('\n'),
  };
}

/** A pair of nodes of `kind` (a1, b1), waits for `want`, runs iperf3 a1 -> b1. */
async function tunnelCase(lab: Lab, ctl: Control, kind: Kind, want: 'direct' | 'relay', seconds: number, round: number, position: number): Promise<Round> {
  const name = `${kind}-${want}`;
  const nodes: Node[] = [];
  try {
    log(`${name} (round ${round}): starting two ${kind} nodes`);
    nodes.push(await up(kind, lab, ctl, 'a1', newPort()));
    nodes.push(await up(kind, lab, ctl, 'b1', newPort()));
    const [a, b] = nodes as [Node, Node];
    if (!(await waitPing(lab, a, b, PATH_TIMEOUT_MS))) throw new Error(`no ping over the tunnel within ${PATH_TIMEOUT_MS} ms`);
    const path = await waitPath(lab, a, b, want, PATH_TIMEOUT_MS);
    if (!path.every((p) => p.startsWith(want))) throw new Error(`path never became ${want} on both sides: ${path.join(' / ')}`);
    log(`${name}: paths ${path.join(' / ')}; iperf3 ${seconds} s`);
    const diag = process.env['WEFT_BENCH_LOGS'] !== undefined;
    if (diag) log(`${name}: idle RTT a1->b1 ${await rtt(lab, 'a1', b.ip, 20, 0.05)}`);
    const varsBefore = diag && ctl.derpVars ? await ctl.derpVars().catch(() => null) : null;
    // Under load: a slow ping beside the iperf3 flow shows the queueing delay on the path.
    const loaded = diag ? rtt(lab, 'a1', b.ip, Math.max(1, Math.floor((seconds - 1) / 0.2)), 0.2) : null;
    const t = await iperf(lab, 'a1', 'b1', b.ip, seconds, [a.cpuRoot, b.cpuRoot]);
    if (loaded) log(`${name}: RTT a1->b1 under load ${await loaded}`);
    if (varsBefore && ctl.derpVars) {
      const varsAfter = await ctl.derpVars().catch(() => null);
      if (varsAfter) log(`${name}: derper counters during the case: ${derpDelta(varsBefore, varsAfter)}`);
    }
    const after = await Promise.all([a.pathTo(b.name), b.pathTo(a.name)]);
    if (!after.every((p) => p.startsWith(want))) log(`${name}: WARNING: path changed during iperf3: ${after.join(' / ')}`);
    const r = measured(round, position, t, path);
    logRound(name, r);
    if (process.env['WEFT_BENCH_LOGS']) for (const n of nodes) log(`--- ${n.name} output tail:\n${n.output().slice(-3000)}`);
    return r;
  } catch (e) {
    const logs = nodes.map((n) => `--- ${n.name} (${n.kind} in ${n.host}) output tail:\n${n.output().slice(-2000)}`).join('\n');
    return failed(name, round, position, `${errText(e)}\n${logs}`);
  } finally {
    for (const n of nodes.reverse()) await n.stop().catch((e: unknown) => log(`stop ${n.name}: ${errText(e)}`));
  }
}

async function wireguardCase(lab: Lab, seconds: number, round: number, position: number, conntrack = false): Promise<Round> {
  const name = conntrack ? 'wireguard-go+ct' : 'wireguard-go';
  let wg: PlainWg | undefined;
  try {
    log(`${name} (round ${round}): plain wireguard-go a1 <-> b1 through both NATs (MTU ${MTU})${conntrack ? ', conntrack on in both hosts' : ''}`);
    wg = await plainWireguard(lab, conntrack);
    const t = await iperf(lab, 'a1', 'b1', wg.ipB, seconds, wg.cpuRoots);
    const r = measured(round, position, t, [`direct(${lab.addr.nbWan}:51820)`, `direct(${lab.addr.naWan}:51820)`]);
    logRound(name, r);
    return r;
  } catch (e) {
    return failed(name, round, position, e);
  } finally {
    await wg?.stop();
  }
}

/** One start-up run: `fresh` starts in b1; pings and path polls toward `peer` (a1) run until both are seen. */
async function startupRun(
  lab: Lab,
  peer: Node,
  start: () => { ready: Promise<Node>; pathTo: (peerName: string) => Promise<string>; stop: () => Promise<void> },
): Promise<StartupRun> {
  const t0 = now();
  const fresh = start();
  const deadline = t0 + STARTUP_TIMEOUT_MS;
  let firstReply: number | null = null;
  let direct: number | null = null;
  let upError: string | null = null;
  let upDone: number | null = null;
  void fresh.ready.then(
    () => {
      upDone = (now() - t0) / 1000;
    },
    (e: unknown) => {
      upError = errText(e);
    },
  );
  const done = (): boolean => (firstReply !== null && direct !== null) || upError !== null || now() > deadline;
  try {
    await Promise.all([
      (async () => {
        while (!done()) {
          const t = now();
          if (await pingOnce(lab, 'b1', peer.ip)) firstReply ??= (t - t0) / 1000;
          await sleep(STEP_MS);
        }
      })(),
      (async () => {
        while (!done()) {
          const t = now();
          const p = await fresh.pathTo(peer.name).catch(() => 'none');
          if (p.startsWith('direct')) direct ??= (t - t0) / 1000;
          await sleep(STEP_MS);
        }
      })(),
    ]);
    // Whatever happened, the up must have ended (resolved or failed) before the node is stopped.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([fresh.ready.catch(() => undefined), new Promise((r) => (timer = setTimeout(r, UP_TIMEOUT_MS)))]);
    clearTimeout(timer);
    const error = upError ?? (firstReply === null || direct === null ? `not seen within ${STARTUP_TIMEOUT_MS / 1000} s` : null);
    return { upS: upDone, firstReplyS: firstReply, directS: direct, error };
  } finally {
    await fresh.stop();
  }
}

async function startupCase(lab: Lab, ctl: Control, kind: Kind, runs: number): Promise<StartupResult> {
  const res: StartupResult = { kind, runs: [], medianFirstReplyS: null, medianDirectS: null };
  if (kind === 'tailscaled') res.daemonStartS = [];
  let peer: Node | undefined;
  try {
    log(`startup ${kind}: long-running peer in a1`);
    peer = await up(kind, lab, ctl, 'a1', newPort());
    for (let i = 0; i < runs; i++) {
      const port = newPort();
      let run: StartupRun;
      try {
        if (kind === 'weft') {
          run = await startupRun(lab, peer, () => {
            const s = spawnWeft(lab, ctl, 'b1', port);
            const ready = s.proc.waitForOutput(/weft: connected as /, STARTUP_TIMEOUT_MS).then(() => weftNode('b1', s, ''));
            return { ready, pathTo: (n) => weftNode('b1', s, '').pathTo(n), stop: () => s.proc.kill('SIGTERM') };
          });
        } else {
          const d0 = now();
          const ts = await startTailscaled(lab, 'b1', { port, env: ctl.tsEnv });
          res.daemonStartS!.push((now() - d0) / 1000);
          const name = `bt${++seq}b1`;
          run = await startupRun(lab, peer, () => {
            const ready = ts.up({ loginServer: ctl.hs.url, authKey: ctl.key, hostname: name }).then(() => tsNode(ts, name, ''));
            return { ready, pathTo: (n) => tsPath(ts, n), stop: () => ts.stop() };
          });
        }
      } catch (e) {
        run = { upS: null, firstReplyS: null, directS: null, error: errText(e) };
      }
      log(`startup ${kind} run ${i + 1}: up ${run.upS?.toFixed(2) ?? '-'} s, first reply ${run.firstReplyS?.toFixed(2) ?? '-'} s, direct ${run.directS?.toFixed(2) ?? '-'} s${run.error ? ` (${run.error})` : ''}`);
      res.runs.push(run);
    }
  } catch (e) {
    log(`startup ${kind}: FAILED: ${errText(e)}`);
    res.runs.push({ upS: null, firstReplyS: null, directS: null, error: errText(e) });
  } finally {
    await peer?.stop().catch(() => undefined);
  }
  res.medianFirstReplyS = median(res.runs.flatMap((r) => (r.firstReplyS === null ? [] : [r.firstReplyS])));
  res.medianDirectS = median(res.runs.flatMap((r) => (r.directS === null ? [] : [r.directS])));
  return res;
}

// ---------------------------------------------------------------------------------------------------------------
// Report

// ---------------------------------------------------------------------------------------------------------------
// Footprint: weftd from the build (bundled JavaScript, as the packages run it) beside tailscaled, both in a1 with one
// peer, then with 250. RSS is VmRSS from /proc after 10 s idle; weftd's figure adds its wireguard-go child (tailscaled
// has WireGuard inside). Start-up: spawn until the local API answers (weftd: "weftd: ready"; tailscaled: LocalAPI).

const BUNDLED_WEFT = join(REPO_ROOT, 'out', 'main', 'weft.js');
const IDLE_MS = 10_000;

interface Footprint {
  weftdStartS: number | null;
  tailscaledStartS: number | null;
  /** MB, [1 peer, 250 peers]. */
  weftdRssMB: [number | null, number | null];
  weftdTreeRssMB: [number | null, number | null];
  tailscaledRssMB: [number | null, number | null];
  peers: [number, number];
  error: string | null;
}

function rssMB(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** RSS of a process and all its descendants. */
function treeRssMB(pid: number): number | null {
  const own = rssMB(pid);
  if (own === null) return null;
  let sum = own;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let kids: string[];
    try {
      kids = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter((x) => x !== '');
    } catch {
      kids = [];
    }
    for (const k of kids) sum += treeRssMB(Number(k)) ?? 0;
  }
  return sum;
}

async function footprintCase(lab: Lab, ctl: Control, total: number): Promise<Footprint> {
  const f: Footprint = { weftdStartS: null, tailscaledStartS: null, weftdRssMB: [null, null], weftdTreeRssMB: [null, null], tailscaledRssMB: [null, null], peers: [1, total], error: null };
  if (!existsSync(BUNDLED_WEFT)) {
    f.error = `${BUNDLED_WEFT} is missing: run npm run build first`;
    return f;
  }
  const peer = await upWeft(lab, ctl, 'b1', newPort());
  const dir = join(lab.tmpDir, 'footprint-weftd');
  let weftd: LabProcess | null = null;
  let ts: Tailscaled | null = null;
  try {
    const t0 = now();
    weftd = lab.spawn('a1', [process.execPath, BUNDLED_WEFT, 'daemon', '--state-dir', dir, '--socket-dir', dir, '--iface', weftIfaceName(lab, 900), '--port', String(newPort())], { env: ctl.weftEnv });
    await weftd.waitForOutput(/weftd: ready/, STARTUP_TIMEOUT_MS);
    f.weftdStartS = (now() - t0) / 1000;
    const c = await connectDaemon(dir);
    try {
      const r = await c.invoke('session:join', { serverUrl: ctl.hs.url, authKey: ctl.key, hostname: 'footprint-weftd' }, UP_TIMEOUT_MS);
      if (!r.ok) throw new Error(`weftd join: ${r.error.message}`);
    } finally {
      c.close();
    }
    const t1 = now();
    ts = await startTailscaled(lab, 'a1', { port: newPort(), tunName: `${lab.prefix}tfp`, env: ctl.tsEnv });
    f.tailscaledStartS = (now() - t1) / 1000;
    await ts.up({ loginServer: ctl.hs.url, authKey: ctl.key, hostname: 'footprint-ts' });
    const tsd = ts;
    const seen = async (n: number): Promise<boolean> => {
      const w = (await weftStatus(dir)).peers.length;
      const t = Object.keys((await tsd.status()).peers).length;
      return w >= n && t >= n;
    };
    // One peer each: b1, plus each other (both run in a1): 2 peers in the netmap, the "1 peer" figure's setting.
    if (!(await waitUntil(() => seen(2), UP_TIMEOUT_MS))) throw new Error('the footprint nodes did not see their peer');
    await sleep(IDLE_MS);
    f.weftdRssMB[0] = rssMB(weftd.pid);
    f.weftdTreeRssMB[0] = treeRssMB(weftd.pid);
    f.tailscaledRssMB[0] = rssMB(ts.proc.pid);
    log(`footprint, 1 peer: weftd ${f.weftdRssMB[0]?.toFixed(0)} MB (with wireguard-go ${f.weftdTreeRssMB[0]?.toFixed(0)}), tailscaled ${f.tailscaledRssMB[0]?.toFixed(0)} MB`);

    const reg = await lab.exec('a2', [process.execPath, '--import', 'tsx', join(REPO_ROOT, 'test', 'bench', 'register-fakes.ts'), ctl.hs.url, ctl.key, String(total - 3), join(lab.tmpDir, 'fakes')], { timeoutMs: 600_000 });
    if (reg.code !== 0) throw new Error(`registering ${total - 3} nodes failed: ${reg.stdout}${reg.stderr}`);
    if (!(await waitUntil(() => seen(total - 1), 120_000))) throw new Error(`the footprint nodes did not see ${total - 1} peers`);
    await sleep(IDLE_MS);
    f.weftdRssMB[1] = rssMB(weftd.pid);
    f.weftdTreeRssMB[1] = treeRssMB(weftd.pid);
    f.tailscaledRssMB[1] = rssMB(ts.proc.pid);
    log(`footprint, ${total} peers: weftd ${f.weftdRssMB[1]?.toFixed(0)} MB (with wireguard-go ${f.weftdTreeRssMB[1]?.toFixed(0)}), tailscaled ${f.tailscaledRssMB[1]?.toFixed(0)} MB`);
  } catch (e) {
    f.error = errText(e);
  } finally {
    await weftd?.kill('SIGTERM');
    await ts?.stop().catch(() => undefined);
    await peer.stop();
  }
  return f;
}

interface Ratio {
  label: string;
  ratio: number | null;
  value: number | null;
  reference: number | null;
  unit: string;
}

function ratio(label: string, value: number | null, reference: number | null, unit: string): Ratio {
  const r = value !== null && reference !== null && reference > 0 ? value / reference : null;
  return { label, ratio: r, value, reference, unit };
}

function fmtRatio(r: Ratio): string {
  const f = (x: number | null, d: number): string => (x === null ? 'n/a' : x.toFixed(d));
  const d = r.unit === 'Mbit/s' || r.unit === 'MB' ? 0 : 2;
  return `${r.label}: ${f(r.ratio, 2)} (${f(r.value, d)} ${r.unit} vs ${f(r.reference, d)} ${r.unit})`;
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error('bench: needs root (the lab uses network namespaces); run it with sudo');
  const started = now();
  const startedAt = new Date().toISOString();
  const machine = { nproc: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', loadavgAtStart: loadavg().map((x) => Number(x.toFixed(2))) };
  log(`machine: ${machine.nproc} cores, ${machine.cpu}, load ${machine.loadavgAtStart.join(' ')}`);

  // Interrupted runs: lab.ts kills its processes and deletes its namespaces; the reference devices' UAPI sockets are
  // files outside the lab, removed here first (registered before createLab so lab.ts's handler runs after this one).
  const onSignal = (): void => removeWgSockets();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const derper = opts.derp === 'embedded' ? null : derperIfBuilt();
  if (opts.derp === 'derper' && !derper) throw new Error('bench: --derp derper, but the derper binary is missing (bash test/setup/ensure-peers.sh tailscale)');
  let derpMode: 'derper' | 'embedded' = derper ? 'derper' : 'embedded';
  const notes: string[] = [];
  if (!derper && opts.derp === 'auto') notes.push('the derper binary is not built: every case uses headscale\'s embedded DERP over plain HTTP');

  const lab = await createLab();
  let ctl: Control | undefined;
  const throughput: Record<string, ThroughputCase> = {};
  const startup: Partial<Record<Kind, StartupResult>> = {};
  let footprint: Footprint | null = null;
  try {
    let hsPort = 8080;
    ctl = await startControl(lab, derpMode, hsPort, derper);
    log(`control ${ctl.hs.url}, DERP: ${ctl.derpUrl}`);

    // Each round measures every case once; odd rounds reverse the order, so each compared pair (weft-relay and
    // tailscaled-relay; wireguard-go and weft-direct; weft-direct and tailscaled-direct) runs in both orders.
    const rounds: Record<string, Round[]> = {};
    const keep = (name: string, r: Round): void => {
      (rounds[name] ??= []).push(r);
    };
    const ordered = <T>(xs: T[], round: number): T[] => (round % 2 === 1 ? xs : [...xs].reverse());
    if (opts.only.has('relay')) {
      await lab.setRouter('na', EDM);
      await lab.setRouter('nb', EDM);
      for (let round = 1; round <= opts.rounds; round++) {
        const kinds = ordered<Kind>(['weft', 'tailscaled'], round);
        for (const [i, kind] of kinds.entries()) {
          let r = await tunnelCase(lab, ctl, kind, 'relay', opts.seconds, round, i + 1);
          if (kind === 'weft' && round === 1 && r.error !== null && derpMode === 'derper' && opts.derp === 'auto') {
            notes.push(`Weft could not relay through the lab derper (${r.error.split('\n')[0]}); fell back to headscale's embedded DERP (plain HTTP) for both clients`);
            log(`falling back to the embedded DERP for every case`);
            await ctl.stop();
            derpMode = 'embedded';
            ctl = await startControl(lab, 'embedded', ++hsPort, null);
            r = await tunnelCase(lab, ctl, kind, 'relay', opts.seconds, round, i + 1);
          }
          keep(`${kind}-relay`, r);
        }
      }
    }

    await lab.setRouter('na', EIM);
    await lab.setRouter('nb', EIM);
    if (opts.only.has('direct')) {
      for (let round = 1; round <= opts.rounds; round++) {
        const cases = ordered<'wireguard-go' | 'wireguard-go+ct' | Kind>(['wireguard-go', 'wireguard-go+ct', 'weft', 'tailscaled'], round);
        for (const [i, c] of cases.entries()) {
          if (c === 'wireguard-go' || c === 'wireguard-go+ct') keep(c, await wireguardCase(lab, opts.seconds, round, i + 1, c === 'wireguard-go+ct'));
          else keep(`${c}-direct`, await tunnelCase(lab, ctl, c, 'direct', opts.seconds, round, i + 1));
        }
      }
    }
    for (const name of ['weft-relay', 'tailscaled-relay', 'wireguard-go', 'wireguard-go+ct', 'weft-direct', 'tailscaled-direct']) {
      const rs = rounds[name];
      if (rs) throughput[name] = throughputCase(name, rs);
    }
    if (opts.only.has('startup')) {
      await lab.setRouter('na', EIM);
      await lab.setRouter('nb', EIM);
      startup.weft = await startupCase(lab, ctl, 'weft', opts.runs);
      startup.tailscaled = await startupCase(lab, ctl, 'tailscaled', opts.runs);
    }
    if (opts.only.has('footprint')) {
      await lab.setRouter('na', EIM);
      await lab.setRouter('nb', EIM);
      footprint = await footprintCase(lab, ctl, 250);
    }
  } finally {
    await ctl?.stop().catch(() => undefined);
    await lab.destroy();
    removeWgSockets();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }

  const mb = (k: string): number | null => throughput[k]?.mbitPerS ?? null;
  const ratios: Ratio[] = [];
  if (opts.only.has('direct')) {
    ratios.push(ratio('weft-direct / wireguard-go', mb('weft-direct'), mb('wireguard-go'), 'Mbit/s'));
  }
  if (opts.only.has('relay')) {
    ratios.push(ratio('weft-relay / tailscaled-relay', mb('weft-relay'), mb('tailscaled-relay'), 'Mbit/s'));
  }
  if (opts.only.has('direct')) {
    ratios.push(ratio('weft-direct / tailscaled-direct', mb('weft-direct'), mb('tailscaled-direct'), 'Mbit/s'));
    const cpu = (k: string): number | null => throughput[k]?.cpuSPerGB ?? null;
    ratios.push(ratio('CPU s per GB, direct, weft / tailscaled', cpu('weft-direct'), cpu('tailscaled-direct'), 's/GB'));
    ratios.push(ratio('CPU s per GB, direct, weft / wireguard-go', cpu('weft-direct'), cpu('wireguard-go'), 's/GB'));
    // Diagnostics: what the kernel's connection tracking (which Weft's stateful ACL turns on) costs by itself.
    ratios.push(ratio('diagnostic: wireguard-go with conntrack / wireguard-go', mb('wireguard-go+ct'), mb('wireguard-go'), 'Mbit/s'));
    ratios.push(ratio('diagnostic: weft-direct / wireguard-go with conntrack', mb('weft-direct'), mb('wireguard-go+ct'), 'Mbit/s'));
  }
  if (opts.only.has('startup')) {
    const w = startup.weft;
    const t = startup.tailscaled;
    ratios.push(ratio(`start to first ping reply, weft / tailscaled (median of ${opts.runs})`, w?.medianFirstReplyS ?? null, t?.medianFirstReplyS ?? null, 's'));
    ratios.push(ratio(`start to direct path, weft / tailscaled (median of ${opts.runs})`, w?.medianDirectS ?? null, t?.medianDirectS ?? null, 's'));
  }
  if (footprint) {
    const fp = footprint;
    ratios.push(ratio('weftd RSS with 1 peer (with wireguard-go) / tailscaled', fp.weftdTreeRssMB[0], fp.tailscaledRssMB[0], 'MB'));
    ratios.push(ratio('weftd RSS with 250 peers (with wireguard-go) / tailscaled', fp.weftdTreeRssMB[1], fp.tailscaledRssMB[1], 'MB'));
    ratios.push(ratio('weftd start-up (spawn to local API) / tailscaled', fp.weftdStartS, fp.tailscaledStartS, 's'));
  }
  const elapsedS = (now() - started) / 1000;

  const result = {
    date: startedAt,
    elapsedS: Number(elapsedS.toFixed(1)),
    machine,
    settings: {
      iperfSeconds: opts.seconds,
      iperfOmitS: 1,
      rounds: opts.rounds,
      clockTicksPerS: clockTicks(),
      startupRuns: opts.runs,
      mtu: MTU,
      derp: derpMode,
      headscale: '0.29.2',
      tailscale: TAILSCALE_VERSION,
      direction: 'iperf3 TCP, client a1 -> server b1, one stream',
    },
    notes,
    ratios,
    throughput,
    startup,
    footprint,
  };
  mkdirSync(dirname(opts.out), { recursive: true });
  writeFileSync(opts.out, `${JSON.stringify(result, null, 2)}\n`);

  const lines = [
    '',
    `Weft bench, ${startedAt} (${machine.nproc} cores, ${machine.cpu}; load at start ${machine.loadavgAtStart.join(' ')})`,
    `iperf3 TCP a1 -> b1, ${opts.seconds} s (+1 s omitted), MTU ${MTU} on every tunnel; DERP: ${derpMode === 'derper' ? 'lab derper (TLS)' : "headscale's embedded DERP (plain HTTP)"}`,
    ...notes.map((n) => `note: ${n}`),
    '',
    ...ratios.map(fmtRatio),
  ];
  const f2 = (x: number | null | undefined): string => (x === null || x === undefined ? '-' : x.toFixed(2));
  const cpuLine = (c: ThroughputCase): string => {
    const roles = Object.entries(c.cpuSPerGBByRole);
    return `${f2(c.cpuSPerGB)}${roles.length > 1 ? ` (${roles.map(([k, v]) => `${k} ${f2(v)}`).join(' + ')})` : ''}`;
  };
  const direct = ['weft-direct', 'tailscaled-direct', 'wireguard-go', 'wireguard-go+ct'].flatMap((k) => (throughput[k] ? [throughput[k]] : []));
  if (direct.length > 0) {
    lines.push(`CPU s per GB carried, direct, both hosts (median of ${opts.rounds} rounds): ${direct.map((c) => `${c.name} ${cpuLine(c)}`).join('; ')}`);
  }
  const relay = ['weft-relay', 'tailscaled-relay'].flatMap((k) => (throughput[k] ? [throughput[k]] : []));
  if (relay.length > 0) {
    lines.push(`  (relayed, the DERP server not counted: ${relay.map((c) => `${c.name} ${cpuLine(c)}`).join('; ')})`);
  }
  lines.push(`  Mbit/s per round (position in the round): ${Object.values(throughput).map((c) => `${c.name} ${c.rounds.map((r) => `${r.mbitPerS?.toFixed(0) ?? 'failed'} (${r.position})`).join(', ')}`).join('; ')}`);
  for (const c of Object.values(throughput)) {
    for (const r of c.rounds) {
      if (r.error !== null) lines.push(`  ${c.name} round ${r.round}: failed: ${r.error.split('\n')[0]}`);
      if (r.cpuError !== null) lines.push(`  ${c.name} round ${r.round}: no CPU figure: ${r.cpuError}`);
    }
  }
  for (const s of Object.values(startup)) {
    const fmt = (r: StartupRun): string => `${r.upS?.toFixed(2) ?? '-'}/${r.firstReplyS?.toFixed(2) ?? '-'}/${r.directS?.toFixed(2) ?? '-'}`;
    lines.push(`  ${s.kind} start-up runs (up/first reply/direct, s): ${s.runs.map(fmt).join(', ')}${s.daemonStartS ? `; tailscaled daemon start before t0: ${s.daemonStartS.map((x) => x.toFixed(2)).join(', ')} s` : ''}`);
    for (const r of s.runs) if (r.error) lines.push(`    ${s.kind}: ${r.error.split('\n')[0]}`);
  }
  if (footprint) {
    const mbs = (x: number | null): string => (x === null ? '-' : x.toFixed(0));
    lines.push(`  footprint: weftd alone ${mbs(footprint.weftdRssMB[0])} / ${mbs(footprint.weftdRssMB[1])} MB (1 / 250 peers)${footprint.error ? `; failed: ${footprint.error.split('\n')[0]}` : ''}`);
  }
  lines.push('', `results: ${opts.out}`, `took ${elapsedS.toFixed(0)} s`, '');
  process.stdout.write(lines.join('\n'));
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
