/**
 * The Linux router against the real kernel, in a network namespace of its own (per-run name, deleted in afterAll):
 * Weft's table and rules, route replacement and removal, throw routes, rules put back after someone deleted
 * them, and cleanup leaving nothing.
 */
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execRunner, type CommandRunner } from '../../../../src-main/engine/io/exec.ts';
import { LinuxRouter } from '../../../../src-main/engine/router/linux.ts';

const NS = `weftr${process.pid.toString(36)}`;
const IFACE = 'weftr0';
const inNs: CommandRunner = (argv, opts) => execRunner(['ip', 'netns', 'exec', NS, ...argv], opts);
const sh = (argv: string[]): string => {
  const r = spawnSync('ip', ['netns', 'exec', NS, ...argv], { encoding: 'utf8', timeout: 10_000 });
  return `${r.stdout}${r.stderr}`;
};

const isRoot = process.getuid?.() === 0;

beforeAll(() => {
  if (!isRoot) return;
  spawnSync('ip', ['netns', 'add', NS]);
  for (const a of [
    ['ip', 'link', 'set', 'lo', 'up'],
    ['ip', 'tuntap', 'add', 'dev', IFACE, 'mode', 'tun'],
    ['ip', 'addr', 'add', '100.64.0.1/32', 'dev', IFACE],
    ['ip', '-6', 'addr', 'add', 'fd7a:115c:a1e0::1/128', 'dev', IFACE],
    ['ip', 'link', 'set', IFACE, 'up'],
  ])
    spawnSync('ip', ['netns', 'exec', NS, ...a]);
});

afterAll(() => {
  if (isRoot) spawnSync('ip', ['netns', 'del', NS]);
});

describe.runIf(isRoot)('LinuxRouter (real kernel, own namespace)', () => {
  it('keeps its table exactly as asked, with its rules, and cleans up', async () => {
    const r = new LinuxRouter({ iface: IFACE, table: 7070, pref: 5300, runner: inNs, logf: () => undefined });
    await r.set({ routes: ['100.64.0.2/32', '10.9.0.0/16', 'fd7a:115c:a1e0::2/128'], throws: ['192.168.1.0/24'], src4: '100.64.0.1', src6: 'fd7a:115c:a1e0::1' });
    let t4 = sh(['ip', '-4', 'route', 'show', 'table', '7070']);
    expect(t4).toContain(`100.64.0.2 dev ${IFACE} scope link src 100.64.0.1`);
    expect(t4).toContain(`10.9.0.0/16 dev ${IFACE} scope link src 100.64.0.1`);
    expect(t4).toContain('throw 192.168.1.0/24');
    expect(sh(['ip', '-6', 'route', 'show', 'table', '7070'])).toContain(`fd7a:115c:a1e0::2 dev ${IFACE} src fd7a:115c:a1e0::1`);
    expect(sh(['ip', '-4', 'rule', 'show'])).toMatch(/^5300:\s+from all lookup 7070/m);
    expect(sh(['ip', '-6', 'rule', 'show'])).toMatch(/^5300:\s+from all lookup 7070/m);
    expect(sh(['ip', 'route', 'get', '10.9.1.1'])).toContain(`dev ${IFACE}`);
    // Nothing in main.
    expect(sh(['ip', 'route', 'show', 'table', 'main'])).not.toContain('10.9.0.0');

    // A route withdrawn goes; a rule deleted by someone else comes back; the same set twice changes nothing.
    sh(['ip', '-4', 'rule', 'del', 'pref', '5300']);
    await r.set({ routes: ['100.64.0.2/32'], throws: [], src4: '100.64.0.1', src6: 'fd7a:115c:a1e0::1' });
    await r.set({ routes: ['100.64.0.2/32'], throws: [], src4: '100.64.0.1', src6: 'fd7a:115c:a1e0::1' });
    t4 = sh(['ip', '-4', 'route', 'show', 'table', '7070']);
    expect(t4.trim().split('\n')).toHaveLength(1);
    expect(t4).not.toContain('throw');
    expect(sh(['ip', '-6', 'route', 'show', 'table', '7070']).trim()).toBe('');
    expect(sh(['ip', '-4', 'rule', 'show']).match(/lookup 7070/g)).toHaveLength(1);

    await r.cleanup();
    expect(sh(['ip', 'rule', 'show'])).not.toContain('7070');
    expect(sh(['ip', '-6', 'rule', 'show'])).not.toContain('7070');
    expect(sh(['ip', '-4', 'route', 'show', 'table', '7070']).trim()).toMatch(/^$|does not exist/);
    // Cleanup again (a start after a clean exit) is harmless.
    await r.cleanup();
  });

  it('reports what the kernel refuses', async () => {
    const r = new LinuxRouter({ iface: 'weftnone9', table: 7071, pref: 5301, runner: inNs, logf: () => undefined });
    await expect(r.set({ routes: ['100.64.0.9/32'], throws: [], src4: null, src6: null })).rejects.toThrow(/ip -batch -.*(Cannot find device|No such device)/s);
    await r.cleanup();
  });
});
