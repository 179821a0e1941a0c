// Kernel WireGuard, end to end, in a VM running Debian's kernel (test/vm/qemu.ts; the kernel comes from
// test/setup/ensure-vm.sh): this machine's own kernel has no WireGuard module, so the namespace lab cannot create a
// `type wireguard` link. Inside, two `weft up` nodes and the official tailscaled, each in a namespace, join a
// `weft server` (guest-kernel-wg.sh).
// The guest prints facts; this file asserts on them.
//
// The server's user and pre-auth key are made here, on the host, with `weft server`'s own CLI in a temporary data
// directory, which the guest copies (its root is this machine's, read-only under a tmpfs overlay).
// Run: npx vitest run --project lab test/vm/kernel-wg.test.ts   (root; qemu under software emulation, ~3 minutes)
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tailscaleBinaries } from '../lab/tailscaled.ts';
import { findVmKernel, guestFacts, runInVm, type VmKernel } from './qemu.ts';

const REPO = join(import.meta.dirname, '..', '..');
const WEFT = [process.execPath, join(REPO, 'src-main', 'cli', 'bin.mjs')];
/** The whole guest run: boot, a server, two nodes started twice under software emulation. */
const VM_TIMEOUT_MS = 600_000;

let dir: string;
let kernel: VmKernel;
let facts: Map<string, string>;
let consoleText: string;

function serverJson(args: string[]): Record<string, unknown> {
  const out = execFileSync(WEFT[0]!, [...WEFT.slice(1), 'server', ...args, '--data', join(dir, 'srv'), '-o', 'json'], { encoding: 'utf8', timeout: 30_000 });
  return JSON.parse(out) as Record<string, unknown>;
}

beforeAll(async () => {
  const k = findVmKernel();
  if (!k) throw new Error('no VM kernel: run test/setup/ensure-vm.sh (npm test runs it)');
  kernel = k;
  dir = mkdtempSync(join(tmpdir(), 'weft-vmtest-'));
  const user = serverJson(['users', 'create', 'vm']);
  const key = serverJson(['preauthkeys', 'create', '--user', String(user['id']), '--reusable', '--expiration', '1h'])['key'];
  if (typeof key !== 'string' || key === '') throw new Error('no pre-auth key');
  const script = join(dir, 'run.sh');
  writeFileSync(
    script,
    [
      `export WEFTVM_REPO=${JSON.stringify(REPO)}`,
      `export WEFTVM_SRV=${JSON.stringify(join(dir, 'srv'))}`,
      `export WEFTVM_KEY=${JSON.stringify(key)}`,
      `export WEFTVM_TAILSCALE=${JSON.stringify(dirname(tailscaleBinaries().tailscaled))}`,
      `exec bash ${JSON.stringify(join(REPO, 'test', 'vm', 'guest-kernel-wg.sh'))}`,
      '',
    ].join('\n'),
  );
  mkdirSync(join(REPO, 'test', 'artifacts'), { recursive: true });
  const run = await runInVm(kernel, script, { timeoutMs: VM_TIMEOUT_MS, consoleFile: join(REPO, 'test', 'artifacts', 'kernel-wg-vm-console.log') });
  consoleText = run.console;
  facts = guestFacts(run.console);
  expect(run.timedOut, `the VM did not finish in ${VM_TIMEOUT_MS} ms:\n${run.console.slice(-6000)}`).toBe(false);
}, VM_TIMEOUT_MS + 60_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const fact = (k: string): string | undefined => facts.get(k);
const why = (): string => consoleText.slice(-6000);
/** A missed ping: what the last failed try in namespace `ns` printed, and the console's tail. */
const pingWhy = (ns: string): string => `last failed ping from ${ns}: ${fact(`ping_err_${ns}`) ?? '(none)'}\n${why()}`;

describe(`kernel WireGuard in a VM (Debian's kernel)`, () => {
  it('the guest ran to the end on Debian kernel, with the server and both nodes up', () => {
    expect(fact('kernel'), why()).toBe(kernel.release);
    expect(fact('server'), why()).toBe('ready');
    expect(fact('connected_vma'), why()).toBe('yes');
    expect(fact('connected_vmb'), why()).toBe('yes');
    expect(fact('done'), why()).toBe('yes');
  });

  it('weftd picks kernel WireGuard: both interfaces are `type wireguard` links, and status says so', () => {
    expect(fact('device_log_vma')).toBe('WireGuard device: kernel');
    expect(fact('linktype_vma')).toBe('wireguard');
    expect(fact('linktype_vmb')).toBe('wireguard');
    const raw = fact('status_vma') ?? 'null';
    let st: { device: { kind: string; reason: string } | null; mode: string; path: string; rx: number } | null = null;
    try {
      st = JSON.parse(raw) as typeof st;
    } catch {
      st = null;
    }
    expect(st, `weft status gave: ${raw}; its stderr: ${fact('status_err_vma') ?? ''}\n${why()}`).not.toBeNull();
    expect(st!.device).toEqual({ kind: 'kernel', reason: 'the kernel has WireGuard' });
    expect(st!.mode).toBe('kernel');
    expect(st!.path).toBe('direct');
    expect(st!.rx).toBeGreaterThan(0);
  });

  it('the tunnel carries pings both ways, and each kernel WireGuard sends straight to the peer (no proxy)', () => {
    expect(Number(fact('ping_vma_to_vmb')), pingWhy('ha')).toBeGreaterThan(0);
    expect(Number(fact('ping_vmb_to_vma')), pingWhy('hb')).toBeGreaterThan(0);
    expect(fact('wg_endpoints_vma')).toMatch(/^10\.9\.2\.2:\d+,10\.9\.3\.2:\d+$/);
    expect(fact('wg_endpoints_vmb')).toMatch(/(^|,)10\.9\.1\.2:\d+(,|$)/);
    expect(Number(fact('wg_handshake_vma'))).toBeGreaterThan(0);
    expect(fact('dp_table_vma')).toBe('present');
  });

  it("reaches the official tailscaled directly: pings both ways, and tailscaled's path is Weft's address", () => {
    expect(fact('ts_up'), why()).toBe('0');
    expect(fact('ip_vmt')).toMatch(/^100\./);
    expect(Number(fact('ping_vma_to_vmt')), pingWhy('ha')).toBeGreaterThan(0);
    expect(Number(fact('ping_vmt_to_vma')), pingWhy('hc')).toBeGreaterThan(0);
    expect(fact('ts_path_vma')).toMatch(/^10\.9\.1\.2:\d+$/);
    expect(fact('exit_tailscaled')).toBe('0');
  });

  it('a clean stop deletes the link, its routes and the data-path rules', () => {
    expect(fact('exit_vma')).toBe('0');
    expect(fact('link_after_stop_vma')).toBe('absent');
    expect(fact('routes_after_stop_vma')).toBe('0');
    expect(fact('dp_after_stop_vma')).toBe('absent');
  });

  it('after SIGKILL the link stays with its owner alias, and the next start removes it and makes its own', () => {
    expect(fact('link_after_kill_vmb')).toBe('present');
    expect(fact('alias_vmb')).toBe('alias weft-owner');
    expect(fact('restarted_vmb'), why()).toBe('yes');
    expect(Number(fact('stale_removed_vmb'))).toBeGreaterThan(0);
    expect(fact('linktype_restart_vmb')).toBe('wireguard');
    expect(fact('exit_vmb')).toBe('0');
    expect(fact('link_after_stop_vmb')).toBe('absent');
    expect(fact('exit_server')).toBe('0');
  });
});
