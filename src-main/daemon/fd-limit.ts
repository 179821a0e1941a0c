/**
 * weftd's open-file limit. Every relayed peer holds a loopback socket (its WireGuard proxy), and with the proxy
 * data path every peer does; a tailnet of a thousand peers passes the usual 1024 (issue 13 measured EMFILE at
 * 1,100 peers). Node raises the soft limit to the hard one at start; this raises the hard one as well, as root,
 * with util-linux `prlimit --pid` (argv only). systemd units can set LimitNOFILE= instead; then this does nothing.
 */
import { readFile } from 'node:fs/promises';
import type { CommandRunner } from '../engine/io/exec.ts';
import type { Logf } from '../engine/sys/log.ts';

/** What weftd asks for: room for tens of thousands of peers' sockets. */
export const WEFTD_NOFILE = 65_536;

/** The soft and hard "Max open files" of a /proc/PID/limits text (null when absent or malformed; "unlimited" is Infinity). */
export function parseNofile(limits: string): { soft: number; hard: number } | null {
  const line = limits.split('\n').find((l) => l.startsWith('Max open files'));
  const m = line?.match(/^Max open files\s+(\S+)\s+(\S+)/);
  if (!m) return null;
  const n = (s: string): number => (s === 'unlimited' ? Infinity : /^\d+$/.test(s) ? Number(s) : NaN);
  const soft = n(m[1]!);
  const hard = n(m[2]!);
  return Number.isNaN(soft) || Number.isNaN(hard) ? null : { soft, hard };
}

/**
 * Raises this process's open-file limit to at least `want` (soft and hard) when it is lower. Never throws: a
 * refusal (not root, prlimit missing) is logged and the daemon runs with what it has. Resolves with the soft
 * limit in force afterwards (null when it cannot be read).
 */
export async function raiseFdLimit(run: CommandRunner, logf: Logf, want = WEFTD_NOFILE, pid = process.pid): Promise<number | null> {
  const read = async (): Promise<{ soft: number; hard: number } | null> => parseNofile(await readFile(`/proc/${pid}/limits`, 'utf8').catch(() => ''));
  const before = await read();
  if (!before) return null;
  if (before.soft >= want) return before.soft;
  const hard = Math.max(want, before.hard);
  let r = await run(['prlimit', `--pid=${pid}`, `--nofile=${want}:${hard === Infinity ? 'unlimited' : hard}`], { timeoutMs: 5000 });
  // Raising the hard limit needs CAP_SYS_RESOURCE; without it, the soft limit can still go up to the hard one.
  const why = r.code === 0 ? '' : r.stderr.trim() || `exit ${String(r.code)}`;
  if (r.code !== 0 && before.hard > before.soft && before.hard !== Infinity) r = await run(['prlimit', `--pid=${pid}`, `--nofile=${before.hard}:${before.hard}`], { timeoutMs: 5000 });
  const after = (await read()) ?? before;
  if (after.soft < want) {
    logf(`weftd: open-file limit ${after.soft > before.soft ? `raised from ${before.soft} to ${after.soft} only` : `stays ${before.soft}`} (prlimit: ${why || r.stderr.trim() || `exit ${String(r.code)}`}); a tailnet with more relayed peers than that may run out of sockets`);
    return after.soft;
  }
  logf(`weftd: open-file limit raised from ${before.soft} to ${after.soft}`);
  return after.soft;
}
