/**
 * Stale cleanup: removes what a crashed Weft run left behind. Called once at start (helper, CLI), before any
 * interface is created.
 *
 * Every wireguard-go that Weft spawns carries WEFT_OWNER=<pid>:<starttime> in its environment (starttime is
 * field 22 of /proc/<pid>/stat, so a recycled PID does not look like the old owner). A run that dies by
 * SIGKILL leaves one of three things:
 *
 *   leftover                                     how it is found                         what is done
 *   wireguard-go still running, owner dead       /proc/<pid>/cmdline + environ           SIGTERM (SIGKILL after a bound);
 *                                                                                         it removes its TUN and socket
 *   /var/run/wireguard/<name>.sock, no listener  connect() refused                       unlink
 *   TUN link <name> with no wireguard-go         `ip -o link show` in this namespace     ip link del
 *   kernel WireGuard link, owner dead            its alias weft-owner=<pid>:<start>      ip link del
 *
 * Only names matching WEFT_IFACE_RE and the given prefix are considered, a wireguard-go without a
 * WEFT_OWNER marker (started by someone else) is never killed, and a live owner's devices are never touched.
 * UAPI sockets and processes are machine-wide, links only per network namespace: links left in another
 * namespace vanish with their process (a non-persistent TUN dies with its last fd) or with the namespace.
 */
import { readdir, readFile, unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { WG_START_POLL_MS, WG_STOP_TIMEOUT_MS } from '../constants.ts';
import type { CommandRunner } from '../io/exec.ts';
import { execRunner } from '../io/exec.ts';
import type { Clock } from '../sys/clock.ts';
import { realClock, sleep } from '../sys/clock.ts';
import type { Logf } from '../sys/log.ts';
import { discardLogf } from '../sys/log.ts';
import { WEFT_IFACE_PREFIX_RE, WEFT_IFACE_RE, WgError } from './iface.ts';
import { isSocketLive, UAPI_SOCKET_DIR, uapiSocketPath } from './uapi-socket.ts';

export const OWNER_ENV = 'WEFT_OWNER';

export interface StaleReport {
  /** Orphaned wireguard-go processes that were stopped. */
  killed: { name: string; pid: number }[];
  /** UAPI socket paths without a listener that were unlinked. */
  removedSockets: string[];
  /** Links in this namespace without a device process that were deleted. */
  removedLinks: string[];
}

export interface StaleCleanupInit {
  /** @default '/var/run/wireguard' */
  socketDir?: string;
  /** @default '/proc' */
  procDir?: string;
  /** @default WG_STOP_TIMEOUT_MS */
  stopTimeoutMs?: number;
}

export interface StaleCleanupComponents {
  runner: CommandRunner;
  clock: Clock;
  logf: Logf;
}

export interface WgProcess {
  pid: number;
  name: string;
  /** The WEFT_OWNER marker, or null when absent (not started by Weft). */
  owner: string | null;
}

/** Reads /proc/<pid>/stat: the state letter and start time (clock ticks since boot); null when gone. */
async function procStat(pid: number, procDir: string): Promise<{ state: string; start: string } | null> {
  try {
    const s = await readFile(join(procDir, String(pid), 'stat'), 'utf8');
    // "pid (comm) state ppid ..." — comm may contain spaces and parentheses, so split after the last ')'.
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    const state = f[0];
    const start = f[19];
    return state && start ? { state, start } : null;
  } catch {
    return null;
  }
}

/** This process's owner marker, "<pid>:<starttime>". */
export async function ownerToken(pid: number = process.pid, procDir = '/proc'): Promise<string> {
  const st = await procStat(pid, procDir);
  return `${pid}:${st?.start ?? '0'}`;
}

/** Reports whether a process exists and is not a zombie. */
export async function processRunning(pid: number, procDir = '/proc'): Promise<boolean> {
  const st = await procStat(pid, procDir);
  return st !== null && st.state !== 'Z' && st.state !== 'X';
}

/** Reports whether the owner named by a WEFT_OWNER marker is still the same running process. */
export async function ownerAlive(token: string, procDir = '/proc'): Promise<boolean> {
  const m = /^([0-9]{1,10}):([0-9]{1,20})$/.exec(token);
  if (!m) return false;
  const st = await procStat(Number(m[1]), procDir);
  return st !== null && st.state !== 'Z' && st.state !== 'X' && st.start === m[2];
}

/** Every running `wireguard-go -f <name>` on the machine (all namespaces share the PID space here). */
export async function listWireguardGo(procDir = '/proc'): Promise<WgProcess[]> {
  const out: WgProcess[] = [];
  let entries: string[];
  try {
    entries = await readdir(procDir);
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^[0-9]+$/.test(e)) continue;
    try {
      const argv = (await readFile(join(procDir, e, 'cmdline'), 'utf8')).split('\0').filter((a) => a !== '');
      if (argv.length < 2 || basename(argv[0]!) !== 'wireguard-go') continue;
      if (!argv.includes('-f') && !argv.includes('--foreground')) continue;
      const pid = Number(e);
      if (!(await processRunning(pid, procDir))) continue;
      const env = (await readFile(join(procDir, e, 'environ'), 'utf8')).split('\0');
      const owner = env.find((v) => v.startsWith(`${OWNER_ENV}=`))?.slice(OWNER_ENV.length + 1) ?? null;
      out.push({ pid, name: argv[argv.length - 1]!, owner });
    } catch {
      /* exited while we looked */
    }
  }
  return out;
}

/** SIGTERM, then SIGKILL after `boundMs`; resolves when the process is gone (or the second bound passed). */
export async function stopProcess(pid: number, boundMs: number, clock: Clock, procDir = '/proc'): Promise<void> {
  const signal = (s: NodeJS.Signals): void => {
    try {
      process.kill(pid, s);
    } catch {
      /* already gone */
    }
  };
  for (const s of ['SIGTERM', 'SIGKILL'] as const) {
    signal(s);
    const deadline = clock.now() + boundMs;
    while (clock.now() < deadline) {
      if (!(await processRunning(pid, procDir))) return;
      await sleep(clock, WG_START_POLL_MS);
    }
  }
}

function matches(name: string, prefix: string): boolean {
  return name.startsWith(prefix) && WEFT_IFACE_RE.test(name);
}

/** Names of links in the current network namespace (`ip -o link show`). */
export async function listLinks(runner: CommandRunner): Promise<string[]> {
  const r = await runner(['ip', '-o', 'link', 'show']);
  if (r.code !== 0) return [];
  const names: string[] = [];
  for (const line of r.stdout.split('\n')) {
    const m = /^[0-9]+: ([^:@ ]+)[@:]/.exec(line);
    if (m) names.push(m[1]!);
  }
  return names;
}

/** The alias that marks a kernel WireGuard link as Weft's (kernel.ts sets it): `weft-owner=<pid>:<starttime>`. */
export const OWNER_ALIAS_PREFIX = 'weft-owner=';

/** The owner token in link `name`'s alias; null when it has none (or no such link). */
export async function linkOwner(runner: CommandRunner, name: string): Promise<string | null> {
  const r = await runner(['ip', '-o', 'link', 'show', 'dev', name]);
  if (r.code !== 0) return null;
  const m = /\balias weft-owner=([0-9]{1,10}:[0-9]{1,20})\b/.exec(r.stdout);
  return m ? m[1]! : null;
}

/** Removes Weft interfaces, sockets and device processes whose owner is gone (see the module header). */
export async function cleanupStaleInterfaces(
  prefix: string,
  init: StaleCleanupInit = {},
  components: Partial<StaleCleanupComponents> = {},
): Promise<StaleReport> {
  if (!WEFT_IFACE_PREFIX_RE.test(prefix)) throw new WgError('invalid', `stale-cleanup prefix must match ${String(WEFT_IFACE_PREFIX_RE)}: ${JSON.stringify(prefix)}`);
  const runner = components.runner ?? execRunner;
  const clock = components.clock ?? realClock;
  const logf = components.logf ?? discardLogf;
  const socketDir = init.socketDir ?? UAPI_SOCKET_DIR;
  const procDir = init.procDir ?? '/proc';
  const report: StaleReport = { killed: [], removedSockets: [], removedLinks: [] };

  // 1. Orphaned device processes.
  for (const p of await listWireguardGo(procDir)) {
    if (!matches(p.name, prefix) || p.owner === null || (await ownerAlive(p.owner, procDir))) continue;
    logf(`stale: stopping wireguard-go pid=${p.pid} if=${p.name} owner=${p.owner} (owner gone)`);
    await stopProcess(p.pid, init.stopTimeoutMs ?? WG_STOP_TIMEOUT_MS, clock, procDir);
    report.killed.push({ name: p.name, pid: p.pid });
  }

  // 2. Sockets nobody listens on (a SIGKILLed wireguard-go cannot unlink its own).
  let files: string[] = [];
  try {
    files = await readdir(socketDir);
  } catch {
    /* no directory: nothing to clean */
  }
  for (const f of files) {
    if (!f.endsWith('.sock') || !matches(f.slice(0, -'.sock'.length), prefix)) continue;
    const path = join(socketDir, f);
    if (await isSocketLive(path)) continue;
    try {
      await unlink(path);
      logf(`stale: removed socket ${path}`);
      report.removedSockets.push(path);
    } catch {
      /* removed concurrently */
    }
  }

  // 3. Links in this namespace with no device process (re-listed now, so a device starting meanwhile is kept).
  const links = (await listLinks(runner)).filter((n) => matches(n, prefix));
  if (links.length > 0) {
    const running = new Set((await listWireguardGo(procDir)).map((p) => p.name));
    for (const name of links) {
      if (running.has(name) || (await isSocketLive(uapiSocketPath(name, socketDir)))) continue;
      // A kernel WireGuard link (kernel.ts) has no device process: its alias names its owner, kept while alive.
      const owner = await linkOwner(runner, name);
      if (owner !== null && (await ownerAlive(owner, procDir))) continue;
      const r = await runner(['ip', 'link', 'del', 'dev', name]);
      if (r.code === 0) {
        logf(`stale: deleted link ${name}`);
        report.removedLinks.push(name);
      }
    }
  }
  return report;
}
