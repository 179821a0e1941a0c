import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CommandRunner } from '../../../../src-main/engine/io/exec.ts';
import { chooseWgBackend, detectKernelWireguard, startKernelWireguard } from '../../../../src-main/engine/wg/kernel.ts';
import { linkOwner, listLinks, listWireguardGo, ownerAlive, ownerToken } from '../../../../src-main/engine/wg/stale.ts';
import { startWireguardGo } from '../../../../src-main/engine/wg/wireguard-go.ts';

function fakeRunner(answer: (argv: readonly string[]) => { code: number; stdout?: string }): { runner: CommandRunner; calls: string[][] } {
  const calls: string[][] = [];
  const runner: CommandRunner = async (argv) => {
    calls.push([...argv]);
    const a = answer(argv);
    return { code: a.code, stdout: a.stdout ?? '', stderr: '' };
  };
  return { runner, calls };
}

describe('kernel WireGuard detection and the backend choice', () => {
  it('falls back to wireguard-go when ip link add type wireguard fails (this machine)', async () => {
    const { runner, calls } = fakeRunner(() => ({ code: 2 }));
    expect(await detectKernelWireguard(runner, 'weftprobe0')).toBe(false);
    expect(calls).toEqual([
      ['ip', 'link', 'del', 'dev', 'weftprobe0'], // a probe left by a crash goes first
      ['ip', 'link', 'add', 'dev', 'weftprobe0', 'type', 'wireguard'],
    ]);
    expect(await chooseWgBackend(runner, {})).toEqual({ kind: 'wireguard-go', reason: 'the kernel has no WireGuard support (ip link add type wireguard failed)' });
  });

  it('picks the kernel when the probe link can be made (and removes it) and wg runs', async () => {
    const { runner, calls } = fakeRunner(() => ({ code: 0 }));
    expect(await chooseWgBackend(runner, {})).toEqual({ kind: 'kernel', reason: 'the kernel has WireGuard' });
    expect(calls[1]!.slice(0, 4)).toEqual(['ip', 'link', 'add', 'dev']);
    expect(calls[1]![4]).toMatch(/^weftp[0-9a-z]+$/);
    expect(calls[2]).toEqual(['ip', 'link', 'del', 'dev', calls[1]![4]]);
    expect(calls[3]).toEqual(['wg', '--version']);
  });

  it('stays on wireguard-go without wg, or when WEFT_WG_BACKEND=wireguard-go (then nothing is probed)', async () => {
    const noWg = fakeRunner((argv) => ({ code: argv[0] === 'wg' ? 127 : 0 }));
    expect(await chooseWgBackend(noWg.runner, {})).toMatchObject({ kind: 'wireguard-go', reason: expect.stringMatching(/wireguard-tools/) });
    const off = fakeRunner(() => ({ code: 0 }));
    expect(await chooseWgBackend(off.runner, { WEFT_WG_BACKEND: 'wireguard-go' })).toEqual({ kind: 'wireguard-go', reason: 'WEFT_WG_BACKEND=wireguard-go' });
    expect(off.calls).toEqual([]);
  });
});

describe('startKernelWireguard', () => {
  it('creates the link and marks it with its owner; refuses foreign names and existing links', async () => {
    const { runner, calls } = fakeRunner(() => ({ code: 0, stdout: '' }));
    await startKernelWireguard('weftk1', { runner });
    expect(calls.slice(1)).toEqual([
      ['ip', 'link', 'add', 'dev', 'weftk1', 'type', 'wireguard'],
      ['ip', 'link', 'set', 'dev', 'weftk1', 'alias', `weft-owner=${await ownerToken()}`],
    ]);
    await expect(startKernelWireguard('eth0', { runner })).rejects.toMatchObject({ code: 'invalid' });
    const taken = fakeRunner(() => ({ code: 0, stdout: '7: weftk1: <POINTOPOINT,NOARP,UP> mtu 1280 qdisc noop\n' }));
    await expect(startKernelWireguard('weftk1', { runner: taken.runner })).rejects.toMatchObject({ code: 'exists' });
  });

  it('reads a link owner back from ip -o link show (kernel links have no process to carry it)', async () => {
    const line = '2: weftz1: <POINTOPOINT,NOARP> mtu 1420 qdisc noop state DOWN mode DEFAULT group default qlen 1000\\    link/none \\    alias weft-owner=123:456';
    expect(await linkOwner(fakeRunner(() => ({ code: 0, stdout: line })).runner, 'weftz1')).toBe('123:456');
    expect(await linkOwner(fakeRunner(() => ({ code: 0, stdout: line.replace(/alias.*/, 'alias something-else') })).runner, 'weftz1')).toBeNull();
    expect(await linkOwner(fakeRunner(() => ({ code: 1 })).runner, 'weftz1')).toBeNull();
  });
});

describe('startWireguardGo', () => {
  it('refuses names outside the Weft pattern before running anything', async () => {
    const { runner, calls } = fakeRunner(() => ({ code: 0 }));
    await expect(startWireguardGo({ name: 'eth0' }, { runner })).rejects.toMatchObject({ code: 'invalid' });
    expect(calls).toEqual([]);
  });

  it('refuses an existing link of the same name', async () => {
    const { runner } = fakeRunner(() => ({ code: 0, stdout: '7: weftzz9: <POINTOPOINT,NOARP,UP> mtu 1280 qdisc noop\n' }));
    await expect(startWireguardGo({ name: 'weftzz9', socketDir: tmpdir() }, { runner })).rejects.toMatchObject({ code: 'exists' });
  });
});

describe('stale-cleanup building blocks', () => {
  let proc: string;
  beforeAll(async () => {
    proc = await mkdtemp(join(tmpdir(), 'weft-proc-'));
    const fakeProc = async (pid: number, comm: string, state: string, start: number, cmdline: string[], environ: string[]): Promise<void> => {
      await mkdir(join(proc, String(pid)));
      // Fields 3.. after "(comm)": state is field 3, starttime field 22.
      const rest = [state, ...Array.from({ length: 18 }, () => '0'), String(start), '0'];
      await writeFile(join(proc, String(pid), 'stat'), `${pid} (${comm}) ${rest.join(' ')}\n`);
      await writeFile(join(proc, String(pid), 'cmdline'), cmdline.map((a) => `${a}\0`).join(''));
      await writeFile(join(proc, String(pid), 'environ'), environ.map((a) => `${a}\0`).join(''));
    };
    await fakeProc(100, 'node (weft) x', 'S', 5000, ['node', 'weft'], []);
    await fakeProc(200, 'wireguard-go', 'S', 6000, ['/usr/bin/wireguard-go', '-f', 'weftab1'], ['PATH=/bin', 'WEFT_OWNER=100:5000']);
    await fakeProc(201, 'wireguard-go', 'S', 6001, ['wireguard-go', '-f', 'weftab2'], ['WEFT_OWNER=150:1']);
    await fakeProc(202, 'wireguard-go', 'S', 6002, ['wireguard-go', 'wg0'], []); // daemonized, not ours
    await fakeProc(203, 'wireguard-go', 'Z', 6003, ['wireguard-go', '-f', 'weftab3'], []); // zombie
    await fakeProc(300, 'bash', 'S', 7000, ['bash'], []);
  });
  afterAll(async () => {
    await rm(proc, { recursive: true, force: true });
  });

  it('finds running wireguard-go -f processes with their owner marker', async () => {
    const found = await listWireguardGo(proc);
    expect(found.sort((a, b) => a.pid - b.pid)).toEqual([
      { pid: 200, name: 'weftab1', owner: '100:5000' },
      { pid: 201, name: 'weftab2', owner: '150:1' },
    ]);
  });

  it('an owner is alive only with the same start time (a recycled PID is not the owner)', async () => {
    expect(await ownerToken(100, proc)).toBe('100:5000');
    expect(await ownerAlive('100:5000', proc)).toBe(true);
    expect(await ownerAlive('100:4999', proc)).toBe(false);
    expect(await ownerAlive('150:1', proc)).toBe(false);
    expect(await ownerAlive('garbage', proc)).toBe(false);
  });

  it('parses link names from ip -o link show', async () => {
    const { runner } = fakeRunner(() => ({
      code: 0,
      stdout: '1: lo: <LOOPBACK,UP> mtu 65536\n2: eth0@if5: <BROADCAST> mtu 1500\n9: weft0: <POINTOPOINT> mtu 1280\n',
    }));
    expect(await listLinks(runner)).toEqual(['lo', 'eth0', 'weft0']);
  });
});
