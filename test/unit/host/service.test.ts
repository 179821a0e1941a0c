/**
 * weftd's systemd unit (host/service.ts, resources/linux/weftd.service) checked by systemd's own tools, and the
 * one-time set-up the app runs behind a password prompt.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { operatorDropIn, PACKAGED_UNIT, quoteArgv, serviceSetupCommands, serviceSetupScript, unsafeForRoot, weftdUnit } from '../../../src-main/host/service.ts';
import { repoRoot } from '../../support/vectors.ts';

const dir = mkdtempSync(join(tmpdir(), 'weftd-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The packaged unit with ExecStart pointing at an executable that exists here (verify checks that it does). */
function unitHere(): string {
  const bin = join(dir, 'weft');
  writeFileSync(bin, '#!/bin/sh\nexit 0\n');
  chmodSync(bin, 0o755);
  const path = join(dir, 'weftd.service');
  writeFileSync(path, PACKAGED_UNIT.replace('/usr/bin/weft', bin));
  return path;
}

describe('weftd.service', () => {
  it('is the file the packages install', () => {
    expect(readFileSync(join(repoRoot, 'resources/linux/weftd.service'), 'utf8')).toBe(PACKAGED_UNIT);
    expect(PACKAGED_UNIT).toMatch(/^ExecStart=\/usr\/bin\/weft daemon --state-dir \/var\/lib\/weft --socket-dir \/run\/weft --operator-group weft$/m);
  });

  it('passes systemd-analyze verify', () => {
    const r = spawnSync('systemd-analyze', ['verify', unitHere()], { encoding: 'utf8', timeout: 30_000 });
    expect(r.error ?? null).toBeNull();
    expect(`${r.stdout}${r.stderr}`.trim()).toBe('');
    expect(r.status).toBe(0);
  });

  it('is hardened: systemd-analyze security rates its exposure below 4 (OK)', () => {
    const r = spawnSync('systemd-analyze', ['security', '--offline=yes', unitHere()], { encoding: 'utf8', timeout: 30_000 });
    const m = /Overall exposure level for weftd\.service: ([\d.]+) (\w+)/.exec(r.stdout);
    expect(m, r.stdout + r.stderr).not.toBeNull();
    expect(Number(m![1])).toBeLessThan(4);
    for (const k of ['ProtectSystem=strict', 'CapabilityBoundingSet=CAP_NET_ADMIN', 'DeviceAllow=/dev/net/tun rw', 'NoNewPrivileges=yes']) expect(PACKAGED_UNIT).toContain(k);
  });

  it('refuses unsafe ExecStart arguments', () => {
    expect(() => weftdUnit(['/opt/My App/weft'])).toThrow(/unsafe/);
    expect(() => weftdUnit(['weft'])).toThrow(/absolute/);
    expect(weftdUnit(['/opt/weft/electron', '/opt/weft/weft.js'], { ELECTRON_RUN_AS_NODE: '1' })).toMatch(/^Environment=ELECTRON_RUN_AS_NODE=1\nExecStart=\/opt\/weft\/electron \/opt\/weft\/weft.js daemon /m);
  });
});

describe('the one-time set-up', () => {
  it('installs the unit when missing, names the user an operator, and starts weftd', () => {
    const cmds = serviceSetupCommands({ installed: false, unitFile: '/tmp/weft-setup-x/weftd.service', dropInFile: '/tmp/weft-setup-x/operators.conf', user: 'alice' });
    expect(cmds).toEqual([
      ['install', '-m', '0644', '-o', 'root', '-g', 'root', '/tmp/weft-setup-x/weftd.service', '/etc/systemd/system/weftd.service'],
      ['install', '-D', '-m', '0644', '-o', 'root', '-g', 'root', '/tmp/weft-setup-x/operators.conf', '/etc/systemd/system/weftd.service.d/operators.conf'],
      ['systemctl', 'daemon-reload'],
      ['groupadd', '-f', '--system', 'weft'],
      ['usermod', '-a', '-G', 'weft', 'alice'],
      ['systemctl', 'enable', 'weftd.service'],
      ['systemctl', 'restart', 'weftd.service'],
    ]);
    expect(serviceSetupCommands({ installed: true, dropInFile: '/tmp/d/operators.conf', user: 'alice' })[0]![0]).toBe('install');
    expect(serviceSetupScript({ installed: true, dropInFile: '/tmp/d/operators.conf', user: 'alice' })).toMatch(/^'install' '-D' .* && 'systemctl' 'restart' 'weftd.service'$/);
    expect(operatorDropIn('alice')).toBe('[Service]\nEnvironment=WEFT_OPERATORS=alice\n');
  });

  it('never builds a command from unsafe words', () => {
    expect(() => serviceSetupCommands({ installed: true, dropInFile: '/tmp/d', user: 'x; rm -rf /' })).toThrow(/not a user name/);
    expect(() => operatorDropIn('a\nExecStartPre=/bin/sh')).toThrow(/not a user name/);
    for (const bad of ["it's", 'a$b', 'a`b`', 'a\nb', 'a\\b', 'a"b']) expect(() => quoteArgv(['echo', bad])).toThrow(/refusing/);
    expect(quoteArgv(['systemctl', 'enable', 'weftd.service'])).toBe("'systemctl' 'enable' 'weftd.service'");
  });
});

describe('where root may run weftd from', () => {
  const tree: Record<string, { uid: number; mode: number }> = {
    '/': { uid: 0, mode: 0o40755 },
    '/opt': { uid: 0, mode: 0o40755 },
    '/opt/Weft': { uid: 0, mode: 0o40755 },
    '/opt/Weft/weft-desktop': { uid: 0, mode: 0o100755 },
    '/home': { uid: 0, mode: 0o40755 },
    '/home/alice': { uid: 1000, mode: 0o40750 },
    '/home/alice/weft/node': { uid: 1000, mode: 0o100755 },
    '/opt/shared': { uid: 0, mode: 0o40777 },
    '/opt/shared/weft': { uid: 0, mode: 0o100755 },
    '/tmp': { uid: 0, mode: 0o41777 },
    '/tmp/weft': { uid: 0, mode: 0o100755 },
  };
  const stat = (p: string) => tree[p] ?? null;

  it('allows only root-owned paths nobody else can write', () => {
    expect(unsafeForRoot('/opt/Weft/weft-desktop', stat)).toBeNull();
    expect(unsafeForRoot('/home/alice/weft/node', stat)).toMatch(/belongs to uid 1000/);
    expect(unsafeForRoot('/opt/shared/weft', stat)).toMatch(/\/opt\/shared is writable by users other than root/);
    expect(unsafeForRoot('/opt/Weft/missing', stat)).toMatch(/does not exist/);
    expect(unsafeForRoot('relative/weft', stat)).toMatch(/not an absolute path/);
    expect(unsafeForRoot('/tmp/weft', stat)).toBeNull();
  });
});
