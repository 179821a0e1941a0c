/**
 * NftDataPath (engine/datapath/nft.ts) with a recording CommandRunner: it checks with `nft -c -j` before it loads,
 * runs nothing when the validator refuses, and falls back to the proxy data path with a reason (removing any
 * table of its own) when nft is missing or refuses.
 */
import { describe, expect, it } from 'vitest';
import { dataPathRuleset, removeDataPathRuleset } from '../../../../src-main/engine/datapath/plan.ts';
import { nftCheckArgv, NftDataPath } from '../../../../src-main/engine/datapath/nft.ts';
import type { CommandOptions, CommandResult } from '../../../../src-main/engine/io/exec.ts';

const PORTS = { publicPort: 41641, discoPort: 41642 };
const OK: CommandResult = { code: 0, stdout: '', stderr: '' };

function rig(results: (CommandResult | Error)[] = [], iface = 'weft0') {
  const calls: (readonly string[])[] = [];
  const logs: string[] = [];
  const runner = async (argv: readonly string[], _opts?: CommandOptions): Promise<CommandResult> => {
    calls.push(argv);
    const r = results.shift() ?? OK;
    if (r instanceof Error) throw r;
    return r;
  };
  return { dp: new NftDataPath(runner, (l) => logs.push(l), iface), calls, logs };
}

const json = (doc: unknown): string => JSON.stringify(doc);
const load = json(dataPathRuleset({ table: 'weft_dp_weft0', ...PORTS }));
const removal = json(removeDataPathRuleset('weft_dp_weft0'));

describe('NftDataPath', () => {
  it('checks, then loads, the JSON as nft arguments; the status reads kernel', async () => {
    const { dp, calls } = rig();
    expect(dp.table).toBe('weft_dp_weft0');
    expect(dp.status()).toEqual({ mode: 'proxy', reason: 'not applied yet' });
    expect(await dp.apply(PORTS)).toEqual({ mode: 'kernel' });
    expect(calls).toEqual([
      ['nft', '-c', '-j', '--', load],
      ['nft', '-j', '--', load],
    ]);
    expect(dp.status()).toEqual({ mode: 'kernel' });
    expect(nftCheckArgv(dataPathRuleset({ table: 'weft_dp_weft0', ...PORTS }))).toEqual(calls[0]);
  });

  it('runs nothing when the validator refuses', async () => {
    const bad = rig([], 'eth0');
    expect(await bad.dp.apply(PORTS)).toEqual({ mode: 'proxy', reason: 'refused: interface "eth0" is not a Weft interface' });
    expect(await bad.dp.cleanupAtStart()).toEqual({ ok: false, error: 'refused: interface "eth0" is not a Weft interface' });
    expect(await bad.dp.remove()).toMatchObject({ ok: false });
    expect(bad.calls).toEqual([]);

    const same = rig();
    expect(await same.dp.apply({ publicPort: 41641, discoPort: 41641 })).toEqual({ mode: 'proxy', reason: 'refused: the public and disco ports must differ (both 41641)' });
    expect(await same.dp.apply({ publicPort: 41641, discoPort: 0 })).toMatchObject({ mode: 'proxy', reason: expect.stringMatching(/^refused: ports must be integers/) as unknown });
    expect(same.calls).toEqual([]);
  });

  it('never loads what the check refused', async () => {
    const { dp, calls, logs } = rig([{ code: 1, stdout: '', stderr: 'Error: Could not process rule: No such file or directory\n' }]);
    expect(await dp.apply(PORTS)).toEqual({ mode: 'proxy', reason: 'nft -c -j (code 1): Error: Could not process rule: No such file or directory' });
    expect(calls).toEqual([['nft', '-c', '-j', '--', load]]);
    expect(logs).toEqual(['datapath: proxy data path: nft -c -j (code 1): Error: Could not process rule: No such file or directory']);
  });

  it('reports a missing nft as "nft not found", and a throwing runner like any failure', async () => {
    const missing = rig([{ code: null, stdout: '', stderr: 'nft: spawn nft ENOENT' }]);
    expect(await missing.dp.apply(PORTS)).toEqual({ mode: 'proxy', reason: 'nft not found' });
    const throws = rig([new Error('spawn blew up')]);
    expect(await throws.dp.apply(PORTS)).toEqual({ mode: 'proxy', reason: 'nft -c -j: spawn blew up' });
  });

  it('a failed apply after a good one removes the old table (the proxy data path needs the port untouched)', async () => {
    const { dp, calls } = rig([OK, OK, OK, { code: 1, stdout: '', stderr: 'Error: boom' }]);
    expect(await dp.apply(PORTS)).toEqual({ mode: 'kernel' });
    expect(await dp.apply({ publicPort: 41641, discoPort: 41643 })).toEqual({ mode: 'proxy', reason: 'nft -j (code 1): Error: boom' });
    expect(calls.slice(2).map((a) => a.slice(0, 3))).toEqual([
      ['nft', '-c', '-j'],
      ['nft', '-j', '--'],
      ['nft', '-j', '--'],
    ]);
    expect(calls[4]).toEqual(['nft', '-j', '--', removal]);
    // A refused apply after a good one also removes it.
    const r2 = rig();
    await r2.dp.apply(PORTS);
    expect(await r2.dp.apply({ publicPort: 1, discoPort: 1 })).toMatchObject({ mode: 'proxy' });
    expect(r2.calls.at(-1)).toEqual(['nft', '-j', '--', removal]);
    expect(r2.calls).toHaveLength(3);
  });

  it('remove and cleanupAtStart delete the table (no error when it is absent)', async () => {
    const { dp, calls } = rig();
    expect(await dp.cleanupAtStart()).toEqual({ ok: true });
    expect(dp.status()).toEqual({ mode: 'proxy', reason: 'not applied yet' });
    await dp.apply(PORTS);
    expect(await dp.remove()).toEqual({ ok: true });
    expect(dp.status()).toEqual({ mode: 'proxy', reason: 'removed' });
    expect(calls[0]).toEqual(['nft', '-j', '--', removal]);
    expect(calls.at(-1)).toEqual(['nft', '-j', '--', removal]);
  });

  it('a failed removal keeps the kernel status and says why', async () => {
    const { dp, logs } = rig([OK, OK, { code: 1, stdout: '', stderr: 'Error: busy' }]);
    await dp.apply(PORTS);
    expect(await dp.remove()).toEqual({ ok: false, error: 'nft -j (code 1): Error: busy' });
    expect(dp.status()).toEqual({ mode: 'kernel' });
    expect(logs.at(-1)).toBe('datapath: removing table inet weft_dp_weft0 failed: nft -j (code 1): Error: busy');
  });

  it('serialises calls: a second apply waits for the first', async () => {
    const order: string[] = [];
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    let first = true;
    const runner = async (argv: readonly string[]): Promise<CommandResult> => {
      order.push(argv.includes('-c') ? 'check' : 'load');
      if (first) {
        first = false;
        await gate;
      }
      return OK;
    };
    const dp = new NftDataPath(runner, () => undefined, 'weft0');
    const a = dp.apply(PORTS);
    const b = dp.remove();
    await Promise.resolve();
    expect(order).toEqual(['check']);
    release();
    expect(await a).toEqual({ mode: 'kernel' });
    expect(await b).toEqual({ ok: true });
    expect(order).toEqual(['check', 'load', 'load']);
  });

  it('check(): a table still there costs one listing; a removed one is loaded again, a bounded number of times', async () => {
    const GONE: CommandResult = { code: 1, stdout: '', stderr: 'Error: No such file or directory' };
    const { dp, calls, logs } = rig([OK, OK, OK, GONE, OK]);
    await dp.apply(PORTS);
    expect(await dp.check()).toEqual({ mode: 'kernel' });
    expect(calls[2]).toEqual(['nft', '-j', 'list', 'table', 'inet', 'weft_dp_weft0']);
    expect(await dp.check()).toEqual({ mode: 'kernel' });
    expect(calls.slice(3)).toEqual([['nft', '-j', 'list', 'table', 'inet', 'weft_dp_weft0'], ['nft', '-j', '--', load]]);
    expect(logs.join('\n')).toMatch(/was gone .*loaded again/);
    // Something keeps deleting it: after DATAPATH_MAX_RELOADS reloads, status says so instead of looping.
    const again = rig([OK, OK, ...Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? GONE : OK))]);
    await again.dp.apply(PORTS);
    let last = await again.dp.check();
    for (let i = 0; i < 20 && last.mode === 'kernel'; i++) last = await again.dp.check();
    expect(last).toMatchObject({ mode: 'proxy', reason: expect.stringMatching(/keeps disappearing \(reloaded 10 times\)/) as unknown });
    // Not applied (proxy mode): nothing to check, nothing run.
    const idle = rig();
    expect(await idle.dp.check()).toEqual({ mode: 'proxy', reason: 'not applied yet' });
    expect(idle.calls).toEqual([]);
  });
});
