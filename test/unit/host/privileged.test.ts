import { exec } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Helper, HelperOp, HelperRequestOf, HelperResult } from '../../../src-main/engine/wg/helper-ops.ts';
import { WgError } from '../../../src-main/engine/wg/iface.ts';
import { HostError } from '../../../src-main/host/dispatch.ts';
import { helperLaunchSteps, PrivilegedHelper, quoteArgv, sudoCommand, type SudoOutcome, type SudoRunner } from '../../../src-main/host/privileged.ts';
import { FakeClock } from '../../sim/fake-clock.ts';
import { advance } from './fake-engine.ts';

const INIT = { helperArgv: ['/usr/bin/env', 'ELECTRON_RUN_AS_NODE=1', '/opt/Weft/weft-desktop', '/opt/Weft/resources/app.asar/out/main/helper.js'], uid: 1000 };

class FakeHelper implements Helper {
  readonly ops: string[] = [];
  existing = new Set<string>();
  closed = 0;
  async call<O extends HelperOp>(req: HelperRequestOf<O>): Promise<HelperResult<O>> {
    this.ops.push(req.op);
    if (req.op === 'create-interface') {
      const name = (req as HelperRequestOf<'create-interface'>).name;
      if (this.existing.has(name)) throw new WgError('exists', `${name} already exists`);
      this.existing.add(name);
      return { name, pid: 1 } as HelperResult<O>;
    }
    if (req.op === 'destroy-interface') this.existing.delete((req as HelperRequestOf<'destroy-interface'>).name);
    return {} as HelperResult<O>;
  }
  async close(): Promise<void> {
    this.closed++;
  }
}

function setup(opts: { live?: boolean; outcome?: SudoOutcome | 'start' } = {}) {
  const clock = new FakeClock();
  let live = opts.live ?? false;
  const commands: string[] = [];
  let finish: ((o: SudoOutcome) => void) | null = null;
  const sudo: SudoRunner = (command, o) => {
    commands.push(command);
    expect(o.name).toBe('Weft');
    if (opts.outcome === 'start') {
      live = true; // the helper came up and keeps running: the runner resolves only when it exits
      return new Promise((r) => (finish = r));
    }
    return Promise.resolve(opts.outcome ?? { kind: 'denied', message: 'the password prompt was cancelled' });
  };
  const helper = new FakeHelper();
  const p = new PrivilegedHelper(INIT, { sudo, clock, isLive: async () => live, connect: async () => helper });
  return { p, clock, commands, helper, finish: (o: SudoOutcome) => finish?.(o) };
}

describe('the helper command', () => {
  it('is exactly: mkdir the socket directory, then weft helper on a per-user socket', () => {
    expect(helperLaunchSteps(INIT)).toEqual([
      ['mkdir', '-p', '-m', '0755', '/var/run/weft'],
      [...INIT.helperArgv, 'helper', '--socket', '/var/run/weft/helper-1000.sock', '--uid', '1000'],
    ]);
    expect(sudoCommand(helperLaunchSteps(INIT))).toBe(
      "'mkdir' '-p' '-m' '0755' '/var/run/weft' && '/usr/bin/env' 'ELECTRON_RUN_AS_NODE=1' '/opt/Weft/weft-desktop' '/opt/Weft/resources/app.asar/out/main/helper.js' 'helper' '--socket' '/var/run/weft/helper-1000.sock' '--uid' '1000'",
    );
  });

  it.each([["it's"], ['a"b'], ['$(reboot)'], ['`id`'], ['a\\b'], ['a\nb'], ['a;b'], ['a|b'], ['a&b'], ['']])('refuses the argument %j', (bad) => {
    expect(() => quoteArgv(['/bin/x', bad])).toThrow(HostError);
  });

  it('allows paths with spaces (quoted)', () => {
    expect(quoteArgv(['/home/me/My Apps/weft'])).toBe("'/home/me/My Apps/weft'");
  });

  it('means exactly its argv after the shell layers sudo-prompt adds (sh -c, then bash -c "…")', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weft-argv-'));
    try {
      const script = join(dir, 'argv.cjs');
      await writeFile(script, 'process.stdout.write(JSON.stringify(process.argv.slice(2)))');
      const argv = [process.execPath, script, 'helper', '--socket', '/var/run/weft/helper-1000.sock', 'My Apps/x=1,y@2', '~user', '50%'];
      // sudo-prompt (Linux): child_process.exec('… /bin/bash -c "echo SUDOPROMPT; ' + command with " escaped + '"')
      const wrapped = `/bin/bash -c "echo SUDOPROMPT; ${quoteArgv(argv).replace(/"/g, '\\"')}"`;
      const out = await new Promise<string>((resolve, reject) => exec(wrapped, (err, stdout) => (err ? reject(err) : resolve(stdout))));
      expect(out).toBe(`SUDOPROMPT\n${JSON.stringify(argv.slice(2))}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a bad uid', () => {
    expect(() => helperLaunchSteps({ ...INIT, uid: -1 })).toThrow(HostError);
  });
});

describe('PrivilegedHelper', () => {
  it('does not prompt when a helper already serves the socket', async () => {
    const t = setup({ live: true });
    await t.p.ensureRunning();
    expect(t.commands).toEqual([]);
  });

  it('prompts once and waits for the socket', async () => {
    const t = setup({ outcome: 'start' });
    await Promise.all([t.p.ensureRunning(), t.p.ensureRunning()]);
    expect(t.commands).toHaveLength(1);
    expect(t.commands[0]).toContain("'helper' '--socket' '/var/run/weft/helper-1000.sock' '--uid' '1000'");
  });

  it('a cancelled prompt is helper-denied', async () => {
    const t = setup({ outcome: { kind: 'denied', message: 'the password prompt was cancelled' } });
    const caught = t.p.ensureRunning().catch((e: unknown) => e);
    await advance(t.clock, 200);
    expect(await caught).toMatchObject({ code: 'helper-denied', retryable: true, message: expect.stringContaining('cancelled') });
  });

  it('a helper that exits at once is an internal error carrying its stderr', async () => {
    const t = setup({ outcome: { kind: 'exited', code: 1, stdout: '', stderr: 'weft helper: the helper must run as root\n' } });
    const caught = t.p.ensureRunning().catch((e: unknown) => e);
    await advance(t.clock, 200);
    expect(await caught).toMatchObject({ code: 'internal', message: expect.stringContaining('must run as root') });
  });

  it('gives up after the start timeout', async () => {
    const clock = new FakeClock();
    const p = new PrivilegedHelper({ ...INIT, startTimeoutMs: 1000 }, { sudo: () => new Promise(() => undefined), clock, isLive: async () => false, connect: async () => new FakeHelper() });
    const caught = p.ensureRunning().catch((e: unknown) => e);
    await advance(clock, 1200, 50);
    expect(await caught).toMatchObject({ code: 'internal', message: expect.stringContaining('did not start') });
  });

  it('creates the interface on its own connection, closed with it; recreates one left by an earlier run', async () => {
    const t = setup({ live: true });
    t.helper.existing.add('weft0');
    const iface = await t.p.createInterface('weft0');
    expect(iface.name).toBe('weft0');
    expect(t.helper.ops).toEqual(['create-interface', 'destroy-interface', 'create-interface']);
    await iface.close();
    expect(t.helper.ops.at(-1)).toBe('destroy-interface');
    expect(t.helper.closed).toBe(1);
  });
});
