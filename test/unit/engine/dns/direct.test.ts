/**
 * DirectResolvConf and detectDnsMode (engine/dns/os.ts) on files in a temporary directory (never /etc): the backup,
 * a byte-for-byte restore, a symlinked resolv.conf, a foreign rewrite, and the clean-up after a crash.
 */
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CommandRunner } from '../../../../src-main/engine/io/exec.ts';
import {
  DirectResolvConf,
  RESOLVED_PING_ARGV,
  WEFT_MARKER,
  detectDnsMode,
  nsswitchPrefersResolved,
  parseResolvConf,
  resolvOwner,
} from '../../../../src-main/engine/dns/os.ts';
import type { OsDnsConfig } from '../../../../src-main/engine/dns/plan.ts';
import { HS_0292_OVERRIDE_OFF, dnsConfig, planOf } from './dns-helpers.ts';

const ORIGINAL = '# my own resolver settings\r\nnameserver 192.168.1.1\nnameserver 100.100.100.100\nsearch home.lan\noptions edns0 trust-ad\n';
const RESOLVED_STUB =
  '# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).\n# Do not edit.\n\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n';
const OS: OsDnsConfig = { nameservers: ['100.100.100.100', 'fd7a:115c:a1e0::53'], searchDomains: ['ts.example.com', 'home.lan'], matchDomains: [] };

let dir: string;
let path: string;
let backupPath: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weft-dns-'));
  path = join(dir, 'resolv.conf');
  backupPath = join(dir, 'resolv.pre-weft-backup.conf');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const direct = (): DirectResolvConf => new DirectResolvConf({ path, backupPath });

describe('DirectResolvConf', () => {
  it('keeps the original as the backup, writes its own 0644 file, and restores the original byte for byte', async () => {
    await writeFile(path, ORIGINAL);
    const d = direct();
    await d.apply(OS);
    const text = await readFile(path, 'utf8');
    expect(text.split('\n')[0]).toBe(WEFT_MARKER);
    expect(parseResolvConf(text)).toEqual({ nameservers: ['100.100.100.100', 'fd7a:115c:a1e0::53'], searchDomains: ['ts.example.com', 'home.lan'] });
    expect((await stat(path)).mode & 0o777).toBe(0o644);
    expect(await readFile(backupPath, 'utf8')).toBe(ORIGINAL);
    expect(await d.isOwn()).toBe(true);

    expect(await d.restore()).toBe('restored');
    expect(await readFile(path, 'utf8')).toBe(ORIGINAL);
    expect(await readdir(dir)).toEqual(['resolv.conf']);
    expect(await d.restore()).toBe('nothing-to-do');
  });

  it('reads the pre-Weft config from the backup while its own file is in place, without quad-100', async () => {
    await writeFile(path, ORIGINAL);
    const d = direct();
    const before = await d.readBase();
    await d.apply(OS);
    expect(await d.readBase()).toEqual(before);
    expect(before).toEqual({ nameservers: ['192.168.1.1'], searchDomains: ['home.lan'] });
  });

  it('never overwrites the backup with its own file on a second apply', async () => {
    await writeFile(path, ORIGINAL);
    const d = direct();
    await d.apply(OS);
    await d.apply({ ...OS, searchDomains: ['other.example'] });
    expect(await readFile(backupPath, 'utf8')).toBe(ORIGINAL);
    expect(await readFile(path, 'utf8')).toContain('search other.example');
    await d.restore();
    expect(await readFile(path, 'utf8')).toBe(ORIGINAL);
  });

  it('keeps a symlinked resolv.conf as the same symlink', async () => {
    await mkdir(join(dir, 'run'));
    await writeFile(join(dir, 'run', 'stub-resolv.conf'), RESOLVED_STUB);
    await symlink('run/stub-resolv.conf', path);
    const d = direct();
    await d.apply(OS);
    expect((await lstat(path)).isSymbolicLink()).toBe(false);
    expect((await lstat(backupPath)).isSymbolicLink()).toBe(true);
    // The target was not written through the link.
    expect(await readFile(join(dir, 'run', 'stub-resolv.conf'), 'utf8')).toBe(RESOLVED_STUB);
    expect(await d.readBase()).toEqual({ nameservers: ['127.0.0.53'], searchDomains: [] });

    expect(await d.restore()).toBe('restored');
    expect((await lstat(path)).isSymbolicLink()).toBe(true);
    expect(await readlink(path)).toBe('run/stub-resolv.conf');
    expect(await readFile(path, 'utf8')).toBe(RESOLVED_STUB);
  });

  it('leaves a file someone else wrote since, and drops the stale backup', async () => {
    await writeFile(path, ORIGINAL);
    const d = direct();
    await d.apply(OS);
    await writeFile(path, 'nameserver 10.0.0.1\n'); // e.g. a DHCP client rewrote it
    expect(await d.isOwn()).toBe(false);
    expect(await d.restore()).toBe('kept-foreign');
    expect(await readFile(path, 'utf8')).toBe('nameserver 10.0.0.1\n');
    expect(await readdir(dir)).toEqual(['resolv.conf']);
  });

  it('takes the new foreign file as the backup when applying again after a rewrite', async () => {
    await writeFile(path, ORIGINAL);
    const d = direct();
    await d.apply(OS);
    await writeFile(path, 'nameserver 10.0.0.1\n');
    await d.apply(OS);
    expect(await readFile(backupPath, 'utf8')).toBe('nameserver 10.0.0.1\n');
    await d.restore();
    expect(await readFile(path, 'utf8')).toBe('nameserver 10.0.0.1\n');
  });

  it('removes its file when there was none before', async () => {
    const d = direct();
    await d.apply(OS);
    expect(await readdir(dir)).toEqual(['resolv.conf']);
    expect(await d.restore()).toBe('removed');
    expect(await readdir(dir)).toEqual([]);
  });

  it('cleans up at start after a crash: the original comes back and interrupted temp files go', async () => {
    await writeFile(path, ORIGINAL);
    await direct().apply(OS);
    // The process was SIGKILLed in the middle of a later write.
    await writeFile(join(dir, '.resolv.conf.weft-0123456789ab.tmp'), 'half');
    await writeFile(join(dir, 'resolv.conf.dpkg-old'), 'not ours');
    const fresh = direct();
    expect(await fresh.cleanupAtStart()).toBe('restored');
    expect(await readFile(path, 'utf8')).toBe(ORIGINAL);
    expect((await readdir(dir)).sort()).toEqual(['resolv.conf', 'resolv.conf.dpkg-old']);
    expect(await fresh.cleanupAtStart()).toBe('nothing-to-do');
  });

  it('puts the backup back when resolv.conf went missing', async () => {
    await writeFile(path, ORIGINAL);
    const d = direct();
    await d.apply(OS);
    await rm(path);
    expect(await d.restore()).toBe('restored');
    expect(await readFile(path, 'utf8')).toBe(ORIGINAL);
  });

  it("never touches tailscaled's backup or its file", async () => {
    const tsBackup = join(dir, 'resolv.pre-tailscale-backup.conf');
    await writeFile(tsBackup, 'nameserver 192.168.1.1\n');
    const tsFile = '# resolv.conf(5) file generated by tailscale\n# For more info, see https://tailscale.com/s/resolvconf-overwrite\n# DO NOT EDIT THIS FILE BY HAND -- CHANGES WILL BE OVERWRITTEN\n\nnameserver 100.100.100.100\n';
    await writeFile(path, tsFile);
    const d = direct();
    expect(await d.isOwn()).toBe(false);
    await d.apply(OS);
    await d.restore();
    expect(await readFile(path, 'utf8')).toBe(tsFile);
    expect(await readFile(tsBackup, 'utf8')).toBe('nameserver 192.168.1.1\n');
  });

  it('writes what the plan gives in direct mode (override off: quad-100 plus the old search domains)', async () => {
    await writeFile(path, ORIGINAL);
    const d = direct();
    const plan = planOf({ dnsConfig: dnsConfig(HS_0292_OVERRIDE_OFF), osBase: await d.readBase() });
    expect(plan.routes.get('.')).toEqual(['192.168.1.1:53']);
    await d.apply(plan.os!);
    expect(parseResolvConf(await readFile(path, 'utf8'))).toEqual({
      nameservers: ['100.100.100.100', 'fd7a:115c:a1e0::53'],
      searchDomains: ['ts.example.com', 'home.lan'],
    });
  });
});

describe('resolv.conf parsing', () => {
  it('reads nameservers and the last search/domain line, ignoring comments', () => {
    const text = '; comment\n# comment\nnameserver 1.1.1.1 # trailing\nnameserver  2001:db8::1\nsearch a.example b.example.\ndomain c.example\noptions ndots:2\n';
    expect(parseResolvConf(text)).toEqual({ nameservers: ['1.1.1.1', '2001:db8::1'], searchDomains: ['c.example'] });
  });

  it.each([
    [RESOLVED_STUB, 'systemd-resolved'],
    ['# Generated by NetworkManager\nnameserver 192.168.1.1\n', 'NetworkManager'],
    ['# Dynamic resolv.conf(5) file for glibc resolver(3) generated by resolvconf(8)\nnameserver 192.168.1.1\n', 'resolvconf'],
    ['# Generated by resolvconf\nnameserver 192.168.1.1\n', 'resolvconf'],
    ['# resolv.conf(5) file generated by tailscale\nnameserver 100.100.100.100\n', 'tailscale'],
    [`${WEFT_MARKER}\nnameserver 100.100.100.100\n`, 'weft'],
    ['nameserver 1.1.1.1\n# systemd-resolved\n', 'unknown'],
  ])('owner of %j is %s', (text, owner) => {
    expect(resolvOwner(text)).toBe(owner);
  });

  it.each([
    ['hosts: files mymachines resolve [!UNAVAIL=return] dns myhostname', true],
    ['hosts:          files dns', false],
    ['hosts: files dns resolve', false],
    ['hosts: files resolve', true],
    ['# hosts: resolve\npasswd: files', false],
  ])('nsswitch %j prefers resolved: %s', (text, want) => {
    expect(nsswitchPrefersResolved(text)).toBe(want);
  });
});

describe('detectDnsMode', () => {
  const runner =
    (resolvedUp: boolean, calls: string[][] = []): CommandRunner =>
    async (argv) => {
      calls.push([...argv]);
      return resolvedUp ? { code: 0, stdout: '', stderr: '' } : { code: 1, stdout: '', stderr: 'Failed to connect to bus' };
    };
  const detect = async (resolv: string | null, nsswitch: string, up: boolean) => {
    if (resolv !== null) await writeFile(path, resolv);
    await writeFile(join(dir, 'nsswitch.conf'), nsswitch);
    return detectDnsMode({ runner: runner(up), resolvConfPath: path, nsswitchPath: join(dir, 'nsswitch.conf'), backupPath });
  };

  it('pings resolved over D-Bus with busctl', async () => {
    const calls: string[][] = [];
    await detectDnsMode({ runner: runner(true, calls), resolvConfPath: path, nsswitchPath: join(dir, 'none') });
    expect(calls).toEqual([[...RESOLVED_PING_ARGV]]);
    expect(calls[0]).toEqual(['busctl', 'call', 'org.freedesktop.resolve1', '/org/freedesktop/resolve1', 'org.freedesktop.DBus.Peer', 'Ping']);
  });

  it('uses resolved when its stub is the resolv.conf and it answers', async () => {
    expect(await detect(RESOLVED_STUB, 'hosts: files dns', true)).toMatchObject({ mode: 'resolved', owner: 'systemd-resolved', warning: null });
  });

  it('writes directly when resolved does not answer', async () => {
    expect(await detect(RESOLVED_STUB, 'hosts: files dns', false)).toMatchObject({ mode: 'direct', reason: expect.stringMatching(/D-Bus/) });
  });

  it("uses resolved for its uplink-servers file only when nsswitch goes through nss-resolve first", async () => {
    const uplink = '# This is /run/systemd/resolve/resolv.conf managed by man:systemd-resolved(8).\nnameserver 192.168.1.1\n';
    expect((await detect(uplink, 'hosts: files dns', true)).mode).toBe('direct');
    expect((await detect(uplink, 'hosts: files resolve [!UNAVAIL=return] dns', true)).mode).toBe('resolved');
  });

  it('uses resolved behind NetworkManager only when the file points at the stub', async () => {
    expect((await detect('# Generated by NetworkManager\nnameserver 127.0.0.53\n', '', true)).mode).toBe('resolved');
    expect((await detect('# Generated by NetworkManager\nnameserver 192.168.1.1\n', '', true)).mode).toBe('direct');
  });

  it('writes directly, with a warning, over resolvconf and tailscaled', async () => {
    expect(await detect('# Generated by resolvconf\nnameserver 192.168.1.1\n', '', true)).toMatchObject({ mode: 'direct', warning: expect.stringMatching(/resolvconf/) });
    expect(await detect('# resolv.conf(5) file generated by tailscale\nnameserver 100.100.100.100\n', '', true)).toMatchObject({
      mode: 'direct',
      warning: expect.stringMatching(/tailscaled/),
    });
  });

  it('writes directly when there is no resolv.conf, or a plain one', async () => {
    expect(await detect(null, '', true)).toMatchObject({ mode: 'direct', owner: 'none' });
    expect(await detect('nameserver 127.0.0.53\n', '', true)).toMatchObject({ mode: 'direct', owner: 'unknown' });
  });

  it("looks at the backup when resolv.conf is Weft's own (left by a crash)", async () => {
    await writeFile(backupPath, RESOLVED_STUB);
    expect((await detect(`${WEFT_MARKER}\nnameserver 100.100.100.100\n`, '', true)).mode).toBe('resolved');
  });
});
