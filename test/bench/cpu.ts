// CPU time of process trees for the bench (test/bench/run.ts), from /proc/PID/stat: utime + stime (all threads of
// the process) in clock ticks, converted with `getconf CLK_TCK`. A meter takes its roots (the lab processes: `weft up`,
// tailscaled, wireguard-go), finds their live descendants at the start (wireguard-go is a child of `weft up`), and
// at the end reports each process's CPU seconds in between, plus the CPU time of children that exited and were
// reaped by a tracked process meanwhile (cutime + cstime). Reads /proc only; starts nothing but one getconf.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let ticks: number | null = null;

/** Clock ticks per second (`getconf CLK_TCK`, asked once; 100 when getconf does not answer). */
export function clockTicks(): number {
  if (ticks !== null) return ticks;
  let t = 100;
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5_000 }).trim());
    if (Number.isInteger(n) && n > 0) t = n;
  } catch {
    /* keep 100 */
  }
  ticks = t;
  return t;
}

interface Stat {
  comm: string;
  ppid: number;
  /** utime + stime, ticks. */
  own: number;
  /** cutime + cstime (reaped children), ticks. */
  reaped: number;
}

/** Parses /proc/PID/stat; null when the process is gone. The comm field may hold spaces and parentheses. */
function readStat(pid: number): Stat | null {
  let s: string;
  try {
    s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const open = s.indexOf('(');
  const close = s.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  // Fields after the comm, numbered from 3 (state): ppid is 4, utime 14, stime 15, cutime 16, cstime 17.
  const f = s.slice(close + 2).trim().split(/\s+/);
  const at = (field: number): number => Number(f[field - 3]);
  const own = at(14) + at(15);
  const reaped = at(16) + at(17);
  if (!Number.isFinite(own) || !Number.isFinite(reaped)) return null;
  return { comm: s.slice(open + 1, close), ppid: at(4), own, reaped };
}

/** Every live process's parent, from one pass over /proc (bounded by the number of processes). */
function parents(): Map<number, number> {
  const m = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = readStat(Number(d));
    if (st) m.set(Number(d), st.ppid);
  }
  return m;
}

/** Live descendants of `root` (not `root` itself), breadth first; the depth is bounded. */
export function descendants(root: number): number[] {
  const pp = parents();
  const out: number[] = [];
  let level = [root];
  for (let depth = 0; depth < 8 && level.length > 0; depth++) {
    const next: number[] = [];
    for (const [pid, ppid] of pp) if (level.includes(ppid)) next.push(pid);
    out.push(...next);
    level = next;
  }
  return out;
}

export interface CpuRoot {
  /** What the root is, e.g. "weft up", "tailscaled", "wireguard-go". */
  label: string;
  host: string;
  pid: number;
}

export interface ProcCpu {
  host: string;
  /** The root's label for a root; the process's comm for a descendant. */
  label: string;
  comm: string;
  pid: number;
  /** pid of the root this process belongs to (its own pid for a root). */
  root: number;
  /** utime + stime during the window, s. */
  cpuS: number;
  /** cutime + cstime gained during the window (children that exited and were reaped), s. */
  reapedS: number;
}

export interface CpuWindow {
  seconds: number;
  processes: ProcCpu[];
  totalS: number;
}

interface Tracked {
  host: string;
  label: string;
  root: number;
  pid: number;
  start: Stat;
}

/** Snapshots the roots and their live descendants now; `stop()` reports the CPU time since. */
export function startCpuMeter(roots: readonly CpuRoot[]): { stop(): CpuWindow } {
  const t0 = process.hrtime.bigint();
  const tracked: Tracked[] = [];
  for (const r of roots) {
    for (const pid of [r.pid, ...descendants(r.pid)]) {
      const start = readStat(pid);
      if (!start) {
        if (pid === r.pid) throw new Error(`cpu: ${r.label} (pid ${pid}) in ${r.host} is not running`);
        continue;
      }
      tracked.push({ host: r.host, label: pid === r.pid ? r.label : start.comm, root: r.pid, pid, start });
    }
  }
  return {
    stop(): CpuWindow {
      const hz = clockTicks();
      const processes: ProcCpu[] = [];
      for (const t of tracked) {
        const end = readStat(t.pid);
        if (!end || end.comm !== t.start.comm) throw new Error(`cpu: ${t.label} (pid ${t.pid}) in ${t.host} exited during the window`);
        processes.push({ host: t.host, label: t.label, comm: t.start.comm, pid: t.pid, root: t.root, cpuS: (end.own - t.start.own) / hz, reapedS: (end.reaped - t.start.reaped) / hz });
      }
      const totalS = processes.reduce((a, p) => a + p.cpuS + p.reapedS, 0);
      return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, processes, totalS };
    },
  };
}
