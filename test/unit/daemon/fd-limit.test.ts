import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { parseNofile, raiseFdLimit } from '../../../src-main/daemon/fd-limit.ts';
import { execRunner, type CommandRunner } from '../../../src-main/engine/io/exec.ts';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 4096                 files
Max locked memory         8388608              8388608              bytes
`;

describe('parseNofile', () => {
  it('reads soft and hard open-file limits, unlimited as Infinity, and refuses anything else', () => {
    expect(parseNofile(LIMITS)).toEqual({ soft: 1024, hard: 4096 });
    expect(parseNofile('Max open files            unlimited            unlimited            files')).toEqual({ soft: Infinity, hard: Infinity });
    expect(parseNofile('Max open files  lots  4096 files')).toBeNull();
    expect(parseNofile('')).toBeNull();
  });
});

describe('raiseFdLimit', () => {
  const isRoot = process.getuid?.() === 0;
  // CAP_SYS_RESOURCE (bit 24) in this process's effective set: needed to raise a hard limit.
  const capEff = /CapEff:\s*([0-9a-f]+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0';
  const canRaiseHard = (BigInt(`0x${capEff}`) & (1n << 24n)) !== 0n;

  it.runIf(isRoot)('raises a low limit (1024/2048) of a real process to the wanted one with prlimit', async () => {
    const child = spawn('prlimit', ['--nofile=1024:2048', 'sleep', '20'], { stdio: 'ignore' });
    try {
      // prlimit execs sleep in the same process once the limit is set.
      let before = null;
      for (let i = 0; i < 50 && !before?.hard; i++) {
        await new Promise((r) => setTimeout(r, 20));
        const lim = parseNofile(await readFile(`/proc/${child.pid}/limits`, 'utf8').catch(() => ''));
        if (lim?.hard === 2048) before = lim;
      }
      expect(before).toEqual({ soft: 1024, hard: 2048 });
      const logs: string[] = [];
      const soft = await raiseFdLimit(execRunner, (m) => logs.push(m), 8192, child.pid!);
      const after = parseNofile(await readFile(`/proc/${child.pid}/limits`, 'utf8'));
      if (canRaiseHard) {
        expect(soft).toBe(8192);
        expect(after).toEqual({ soft: 8192, hard: 8192 });
        expect(logs.join('\n')).toMatch(/raised from 1024 to 8192/);
      } else {
        // Without CAP_SYS_RESOURCE (a container), the soft limit still goes up to the hard one, and the log says so.
        expect(soft).toBe(2048);
        expect(after).toEqual({ soft: 2048, hard: 2048 });
        expect(logs.join('\n')).toMatch(/raised from 1024 to 2048 only .*not permitted/);
      }
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('does nothing when the limit is already high enough, and says so when prlimit refuses', async () => {
    const calls: (readonly string[])[] = [];
    const refuse: CommandRunner = async (argv) => {
      calls.push(argv);
      return { code: 1, stdout: '', stderr: 'prlimit: failed to set the NOFILE resource limit: Operation not permitted' };
    };
    const own = parseNofile(await readFile('/proc/self/limits', 'utf8'))!;
    expect(await raiseFdLimit(refuse, () => {}, Math.min(own.soft, 64))).toBe(own.soft);
    expect(calls).toEqual([]);
    const logs: string[] = [];
    expect(await raiseFdLimit(refuse, (m) => logs.push(m), own.soft + 1)).toBe(own.soft);
    expect(calls[0]).toEqual(['prlimit', `--pid=${process.pid}`, `--nofile=${own.soft + 1}:${Math.max(own.soft + 1, own.hard)}`]);
    expect(logs.join('\n')).toMatch(/stays .*Operation not permitted/);
  });
});
