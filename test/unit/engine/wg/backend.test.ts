import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CommandRunner } from '../../../../src-main/engine/io/exec.ts';
import { listLinks, listWireguardGo, ownerAlive, ownerToken } from '../../../../src-main/engine/wg/stale.ts';
import { chooseWgBackend, detectKernelWireguard, startWireguardGo } from '../../../../src-main/engine/wg/wireguard-go.ts';

function fakeRunner(answer: (argv: readonly string[]) => { code: number; stdout?: string }): { runner: CommandRunner; calls: string[][] } {
  const calls: string[][] = [];
  const runner: CommandRunner = async (argv) => {
    calls.push([...argv]);
    const a = answer(argv);
    return { code: a.code, stdout: a.stdout ?? '', stderr: '' };
  };
  return { runner, calls };
}

describe('kernel WireGuard detection', () => {
  it('falls back to wireguard-go when ip link add type wireguard fails (this machine)', async () => {
    const { runner, calls } = fakeRunner(() => ({ code: 2 }));
    expect(await detectKernelWireguard(runner)).toBe(false);
    expect(calls).toEqual([['ip', 'link', 'add', 'dev', 'weftprobe0', 'type', 'wireguard']]);
    expect(await chooseWgBackend(runner)).toMatchObject({ kind: 'wireguard-go', kernelAvailable: false });
  });

  it('detects it (and removes the probe link) when the kernel has it; still uses wireguard-go', async () => {
    const { runner, calls } = fakeRunner(() => ({ code: 0 }));
    expect(await detectKernelWireguard(runner)).toBe(true);
    expect(calls[1]).toEqual(['ip', 'link', 'del', 'dev', 'weftprobe0']);
    expect(await chooseWgBackend(runner)).toMatchObject({ kind: 'wireguard-go', kernelAvailable: true });
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
