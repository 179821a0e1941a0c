/**
 * Finds processes by their command line (/proc/PID/cmdline), so the end-to-end test can kill a Chromium that
 * outlived its driver by PID, never by name: playwright starts the browser in its own process group, and Chromium's
 * crash handlers run in sessions of their own (they carry the per-run profile directory in `--database=`).
 */
import { readdirSync, readFileSync } from 'node:fs';

/** PIDs (other than this process) whose argv satisfies `match`. */
export function pidsMatching(match: (argv: string[]) => boolean): number[] {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (match(argv)) out.push(Number(e));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

/** The processes of one e2e run: carrying `marker` as an argument, or naming a path under `dir` in any argument. */
export function runMatcher(marker: string, dir: string | null): (argv: string[]) => boolean {
  return (argv) => argv.includes(marker) || (dir !== null && dir !== '' && argv.some((a) => a.includes(dir)));
}

/** The process group of `pid` (/proc/PID/stat field 5), or null. */
function pgrpOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces; the fields after its closing parenthesis are plain.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const pgrp = Number(rest[2]);
    return Number.isInteger(pgrp) ? pgrp : null;
  } catch {
    return null;
  }
}

/**
 * SIGKILLs every matching process, and the whole process group of those that lead one (Chromium's zygote and
 * renderers stay in the browser's group). Returns how many matched.
 */
export function killMatching(match: (argv: string[]) => boolean): number {
  const pids = pidsMatching(match);
  for (const pid of pids) {
    try {
      if (pgrpOf(pid) === pid) process.kill(-pid, 'SIGKILL');
      else process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  return pids.length;
}
