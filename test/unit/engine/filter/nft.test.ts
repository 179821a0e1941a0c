/**
 * NftFilter (engine/filter/nft.ts) with a scripted CommandRunner: what it hands to nft, and what it reports when
 * a load fails or a filter is refused (the last good filter stays, and nothing is ever left open).
 */
import { describe, expect, it } from 'vitest';
import { compileFilter, type CompiledFilter, type FilterTarget } from '../../../../src-main/engine/filter/compile.ts';
import { nftArgv, NftFilter } from '../../../../src-main/engine/filter/nft.ts';
import type { CommandOptions, CommandResult } from '../../../../src-main/engine/io/exec.ts';
import { FilterRule } from '../../../../src-main/protocol/control/tailcfg.ts';

const T: FilterTarget = { iface: 'weft0', table: 'weft_weft0', selfAddrs: ['100.64.0.3/32'] };
const ssh = FilterRule.parse({ SrcIPs: ['*'], DstPorts: [{ IP: '*', Ports: { First: 22, Last: 22 } }] });

function rig(results: (CommandResult | Error)[] = []) {
  const calls: { argv: readonly string[]; input: string | undefined }[] = [];
  /** The JSON of the last call, as nft reads it (its arguments after `--`, joined with spaces). */
  const lastJson = (): unknown => JSON.parse(calls.at(-1)!.argv.slice(3).join(' '));
  const logs: string[] = [];
  let now = Date.UTC(2026, 0, 2, 3, 4, 5);
  const runner = async (argv: readonly string[], opts?: CommandOptions): Promise<CommandResult> => {
    calls.push({ argv, input: opts?.input });
    const r = results.shift() ?? { code: 0, stdout: '', stderr: '' };
    if (r instanceof Error) throw r;
    return r;
  };
  const f = new NftFilter(runner, (l) => logs.push(l), () => now);
  return { f, calls, logs, lastJson, tick: (ms: number) => (now += ms) };
}

const tooLarge = (): CompiledFilter => ({ ...compileFilter(null, T), error: 'the filter is too large' });

describe('NftFilter', () => {
  it('loads the JSON through nft -j (as arguments) and reports what is enforced', async () => {
    const { f, calls } = rig();
    expect(f.status()).toEqual({ state: 'none', ruleCount: 0, nftRuleCount: 0, appliedAt: null, error: null, skipped: [] });
    const c = compileFilter([ssh], T);
    expect(await f.apply(c)).toEqual({ ok: true });
    expect(calls).toEqual([{ argv: ['nft', '-j', '--', JSON.stringify(c.ruleset)], input: undefined }]);
    expect(f.status()).toEqual({ state: 'applied', ruleCount: 1, nftRuleCount: 3, appliedAt: '2026-01-02T03:04:05.000Z', error: null, skipped: [] });
  });

  it('a failed load keeps reporting the last good filter, with the error', async () => {
    const { f, tick } = rig([
      { code: 0, stdout: '', stderr: '' },
      { code: 1, stdout: '', stderr: 'Error: Could not process rule: Operation not supported\n' },
      new Error('spawn blew up'),
    ]);
    await f.apply(compileFilter([ssh], T));
    tick(60_000);
    const r = await f.apply(compileFilter([ssh, ssh], T));
    expect(r).toEqual({ ok: false, error: 'nft -j (code 1): Error: Could not process rule: Operation not supported' });
    expect(f.status()).toMatchObject({ state: 'error', ruleCount: 1, nftRuleCount: 3, appliedAt: '2026-01-02T03:04:05.000Z', error: r.ok ? null : r.error });
    // A runner that throws is a failure like any other.
    expect(await f.apply(compileFilter([ssh], T))).toEqual({ ok: false, error: 'nft -j: spawn blew up' });
    // The next good load clears the error.
    tick(1000);
    expect(await f.apply(compileFilter([], T))).toEqual({ ok: true });
    expect(f.status()).toEqual({ state: 'applied', ruleCount: 0, nftRuleCount: 0, appliedAt: '2026-01-02T03:05:06.000Z', error: null, skipped: [] });
  });

  it('a refused filter is not loaded when a good one is in place', async () => {
    const { f, calls } = rig();
    await f.apply(compileFilter([ssh], T));
    expect(await f.apply(tooLarge())).toEqual({ ok: false, error: 'the filter is too large' });
    expect(calls).toHaveLength(1);
    expect(f.status()).toMatchObject({ state: 'error', ruleCount: 1, error: 'the filter is too large' });
  });

  it('a refused first filter loads the closed fallback: never open', async () => {
    const { f, calls } = rig();
    const bad = tooLarge();
    expect(await f.apply(bad)).toEqual({ ok: false, error: 'the filter is too large' });
    expect(calls).toEqual([{ argv: ['nft', '-j', '--', JSON.stringify(bad.ruleset)], input: undefined }]);
    expect(f.status()).toMatchObject({ state: 'error', ruleCount: 0, appliedAt: null, error: 'the filter is too large' });
    expect(f.fallbackSince()).toBe('2026-01-02T03:04:05.000Z');
  });

  it('remove deletes the table idempotently and resets the status', async () => {
    const { f, lastJson } = rig([{ code: 0, stdout: '', stderr: '' }, { code: 1, stdout: '', stderr: 'Error: no permission' }]);
    await f.apply(compileFilter([ssh], T));
    expect(await f.remove('weft_weft0')).toMatchObject({ ok: false });
    expect(f.status().state).toBe('applied');
    expect(await f.remove('weft_weft0')).toEqual({ ok: true });
    expect(lastJson()).toEqual({
      nftables: [{ add: { table: { family: 'inet', name: 'weft_weft0' } } }, { delete: { table: { family: 'inet', name: 'weft_weft0' } } }],
    });
    expect(f.status()).toEqual({ state: 'none', ruleCount: 0, nftRuleCount: 0, appliedAt: null, error: null, skipped: [] });
  });

  it('serialises loads: the last one applied is the last one asked for', async () => {
    const order: string[] = [];
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const runner = async (argv: readonly string[]): Promise<CommandResult> => {
      const n = (JSON.parse(argv.slice(3).join(' ')) as { nftables: unknown[] }).nftables.length;
      order.push(`start ${n}`);
      if (order.length === 1) await gate;
      order.push(`end ${n}`);
      return { code: 0, stdout: '', stderr: '' };
    };
    const f = new NftFilter(runner, () => undefined, () => 0);
    const a = f.apply(compileFilter([ssh], T));
    const b = f.apply(compileFilter([], T));
    await new Promise((r) => setTimeout(r, 20));
    release();
    await Promise.all([a, b]);
    expect(order).toEqual(['start 21', 'end 21', 'start 18', 'end 18']);
    expect(f.status().ruleCount).toBe(0);
  });

  it('cuts big JSON into arguments below the kernel limit, only between tokens', () => {
    const comment = 'a, "quoted", \\ and, commas'.repeat(2000);
    const rs = {
      nftables: [
        { add: { table: { family: 'inet', name: 't' } } },
        ...Array.from({ length: 20 }, (_, i) => ({ add: { rule: { family: 'inet', table: 't', chain: 'input', comment: `${i}${comment}`, expr: [{ accept: null }] } } })),
      ],
    };
    const argv = nftArgv(rs);
    expect(argv.slice(0, 3)).toEqual(['nft', '-j', '--']);
    const parts = argv.slice(3);
    expect(parts.length).toBeGreaterThan(5);
    for (const p of parts) expect(p.length).toBeLessThan(131072);
    // nft joins its arguments with single spaces: whitespace between tokens, so the same document.
    expect(JSON.parse(parts.join(' '))).toEqual(rs);
    expect(parts.slice(0, -1).every((p) => p.endsWith(','))).toBe(true);
  });
});
