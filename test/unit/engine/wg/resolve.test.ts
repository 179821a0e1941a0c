/**
 * Which wireguard-go the engine runs (src-main/engine/wg/resolve.ts): $WEFT_WIREGUARD_GO, then Weft's pinned build
 * (extra dirs, then resources/bin above the module), then PATH. The binaries here are small fake executables in temp
 * directories that print a `--version` line: this tests path resolution and version reporting, not WireGuard.
 */
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bundledCandidates,
  describeWireguardGo,
  parseWireguardGoVersion,
  resolveWireguardGo,
  WIREGUARD_GO_ENV,
  WIREGUARD_GO_PIN,
} from '../../../../src-main/engine/wg/resolve.ts';
import { repoRoot } from '../../../support/vectors.ts';

const PINNED = WIREGUARD_GO_PIN.version;
const DEBIAN = '0.0.20220316';

let top: string;

/** Writes an executable that prints `wireguard-go vVERSION` for --version (as the real one does), or fails. */
async function fakeWg(dir: string, version: string | null, name = 'wireguard-go', mode = 0o755): Promise<string> {
  await mkdir(dir, { recursive: true });
  const p = join(dir, name);
  const body = version === null ? 'exit 1' : `printf 'wireguard-go v%s\\n\\nUserspace WireGuard daemon for linux-amd64.\\n' '${version}'`;
  await writeFile(p, `#!/bin/sh\n${body}\n`);
  await chmod(p, mode);
  return p;
}

/** A layout like a dev checkout and an installed package, under a fresh directory. */
async function layout(name: string): Promise<{ root: string; moduleDir: string; pathDir: string; logs: string[]; logf: (l: string) => void }> {
  const root = join(top, name);
  const moduleDir = join(root, 'repo', 'src-main', 'engine', 'wg');
  const pathDir = join(root, 'usr-bin');
  await mkdir(moduleDir, { recursive: true });
  await mkdir(pathDir, { recursive: true });
  const logs: string[] = [];
  return { root, moduleDir, pathDir, logs, logf: (l) => logs.push(l) };
}

beforeAll(async () => {
  top = await mkdtemp(join(tmpdir(), 'weft-wgresolve-'));
});

afterAll(async () => {
  await rm(top, { recursive: true, force: true });
});

describe('resolveWireguardGo', () => {
  it("prefers Weft's pinned build in the checkout's resources/bin over PATH, and reports its version", async () => {
    const l = await layout('checkout');
    const bundled = await fakeWg(join(l.root, 'repo', 'resources', 'bin'), PINNED);
    await fakeWg(l.pathDir, DEBIAN);
    const b = await resolveWireguardGo({ env: { PATH: l.pathDir }, moduleDir: l.moduleDir, sbinDirs: [], logf: l.logf });
    expect(b).toEqual({ path: bundled, source: 'bundled', version: PINNED, pinned: true });
    expect(l.logs).toEqual([`wg: using wireguard-go v${PINNED} (Weft's build, pinned) at ${bundled}`]);
  });

  it('the environment variable wins over everything, used as given', async () => {
    const l = await layout('env');
    await fakeWg(join(l.root, 'repo', 'resources', 'bin'), PINNED);
    await fakeWg(l.pathDir, DEBIAN);
    const mine = await fakeWg(join(l.root, 'elsewhere'), '0.0.20990101');
    const b = await resolveWireguardGo({ env: { PATH: l.pathDir, [WIREGUARD_GO_ENV]: mine }, moduleDir: l.moduleDir, sbinDirs: [], logf: l.logf });
    expect(b).toEqual({ path: mine, source: 'env', version: '0.0.20990101', pinned: false });
    // Even a path that does not exist: an explicit choice is not second-guessed (spawning it then fails clearly).
    const missing = join(l.root, 'nope', 'wireguard-go');
    const m = await resolveWireguardGo({ env: { PATH: l.pathDir, [WIREGUARD_GO_ENV]: missing }, moduleDir: l.moduleDir, sbinDirs: [] });
    expect(m).toEqual({ path: missing, source: 'env', version: null, pinned: false });
  });

  it('an empty environment variable counts as unset', async () => {
    const l = await layout('env-empty');
    const bundled = await fakeWg(join(l.root, 'repo', 'resources', 'bin'), PINNED);
    const b = await resolveWireguardGo({ env: { PATH: l.pathDir, [WIREGUARD_GO_ENV]: '' }, moduleDir: l.moduleDir, sbinDirs: [] });
    expect(b.path).toBe(bundled);
  });

  it('warns when the override is not named wireguard-go (stale cleanup looks for that name)', async () => {
    const l = await layout('env-name');
    const odd = await fakeWg(join(l.root, 'elsewhere'), PINNED, 'wg-new');
    await resolveWireguardGo({ env: { [WIREGUARD_GO_ENV]: odd }, moduleDir: l.moduleDir, sbinDirs: [], logf: l.logf });
    expect(l.logs.some((x) => x.includes('is not named wireguard-go'))).toBe(true);
  });

  it('looks in the extra directories (process.resourcesPath/bin in the app) before resources/bin', async () => {
    const l = await layout('extra');
    await fakeWg(join(l.root, 'repo', 'resources', 'bin'), PINNED);
    const extra = join(l.root, 'app-resources', 'bin');
    const inExtra = await fakeWg(extra, PINNED);
    const b = await resolveWireguardGo({ env: { PATH: l.pathDir }, extraDirs: [join(l.root, 'missing-dir'), extra], moduleDir: l.moduleDir, sbinDirs: [] });
    expect(b).toMatchObject({ path: inExtra, source: 'bundled', pinned: true });
  });

  it("finds the installed package's resources/bin from its bundled weft.js (resources/app.asar/out/main)", async () => {
    const l = await layout('installed');
    const opt = join(l.root, 'opt', 'Weft');
    const moduleDir = join(opt, 'resources', 'app.asar', 'out', 'main');
    await mkdir(moduleDir, { recursive: true });
    const shipped = await fakeWg(join(opt, 'resources', 'bin'), PINNED);
    const b = await resolveWireguardGo({ env: { PATH: l.pathDir }, moduleDir, sbinDirs: [] });
    expect(b).toMatchObject({ path: shipped, source: 'bundled', pinned: true });
    expect(bundledCandidates(moduleDir)).toContain(shipped);
  });

  it('does not climb more than four levels', () => {
    const c = bundledCandidates('/a/b/c/d/e/f');
    expect(c).toEqual([
      '/a/b/c/d/e/f/resources/bin/wireguard-go',
      '/a/b/c/d/e/resources/bin/wireguard-go',
      '/a/b/c/d/resources/bin/wireguard-go',
      '/a/b/c/resources/bin/wireguard-go',
      '/a/b/resources/bin/wireguard-go',
    ]);
    expect(bundledCandidates('/x')).toEqual(['/x/resources/bin/wireguard-go', '/resources/bin/wireguard-go']);
  });

  it('skips a resources/bin/wireguard-go that is not executable, and a directory of that name', async () => {
    const l = await layout('not-exec');
    await fakeWg(join(l.root, 'repo', 'resources', 'bin'), PINNED, 'wireguard-go', 0o644);
    await mkdir(join(l.root, 'repo', 'src-main', 'resources', 'bin', 'wireguard-go'), { recursive: true });
    const debian = await fakeWg(l.pathDir, DEBIAN);
    const b = await resolveWireguardGo({ env: { PATH: l.pathDir }, moduleDir: l.moduleDir, sbinDirs: [] });
    expect(b.path).toBe(debian);
  });

  it("falls back to PATH (Debian's old build) and says so", async () => {
    const l = await layout('path');
    const other = join(l.root, 'empty-bin');
    await mkdir(other);
    const debian = await fakeWg(l.pathDir, DEBIAN);
    const b = await resolveWireguardGo({ env: { PATH: `relative/dir:${other}:${l.pathDir}` }, moduleDir: l.moduleDir, sbinDirs: [], logf: l.logf });
    expect(b).toEqual({ path: debian, source: 'path', version: DEBIAN, pinned: false });
    expect(l.logs).toHaveLength(1);
    expect(l.logs[0]).toContain(`wireguard-go v${DEBIAN} (from PATH, not the pinned v${PINNED}) at ${debian}`);
    expect(l.logs[0]).toContain('older, slower one runs');
    expect(l.logs[0]).toContain('scripts/build-wireguard-go.sh');
  });

  it('also searches the sbin directories after PATH', async () => {
    const l = await layout('sbin');
    const sbin = join(l.root, 'sbin');
    const there = await fakeWg(sbin, DEBIAN);
    const b = await resolveWireguardGo({ env: { PATH: l.pathDir }, moduleDir: l.moduleDir, sbinDirs: [sbin] });
    expect(b.path).toBe(there);
  });

  it('reports a binary that does not answer --version as version unknown', async () => {
    const l = await layout('broken');
    const bundled = await fakeWg(join(l.root, 'repo', 'resources', 'bin'), null);
    const b = await resolveWireguardGo({ env: { PATH: l.pathDir }, moduleDir: l.moduleDir, sbinDirs: [], logf: l.logf });
    expect(b).toEqual({ path: bundled, source: 'bundled', version: null, pinned: false });
    expect(describeWireguardGo(b)).toBe(`wireguard-go (version unknown) (Weft's build, not the pinned v${PINNED}) at ${bundled}`);
    expect(l.logs[0]).toContain('rebuild with scripts/build-wireguard-go.sh');
  });

  it('with nothing anywhere, answers the bare name (spawning it fails with ENOENT) and says how to build it', async () => {
    const l = await layout('nothing');
    const b = await resolveWireguardGo({ env: {}, moduleDir: l.moduleDir, sbinDirs: [], logf: l.logf });
    expect(b).toEqual({ path: 'wireguard-go', source: 'path', version: null, pinned: false });
    expect(l.logs[0]).toContain('no wireguard-go found');
  });

  it('runs --version as argv, once, with a bound', async () => {
    const l = await layout('argv');
    const bundled = await fakeWg(join(l.root, 'repo', 'resources', 'bin'), PINNED);
    const calls: { argv: readonly string[]; timeoutMs: number | undefined }[] = [];
    const b = await resolveWireguardGo({
      env: {},
      moduleDir: l.moduleDir,
      sbinDirs: [],
      runner: async (argv, opts) => {
        calls.push({ argv, timeoutMs: opts?.timeoutMs });
        return { code: 0, stdout: `wireguard-go v${PINNED}\n`, stderr: '' };
      },
    });
    expect(b.pinned).toBe(true);
    expect(calls).toEqual([{ argv: [bundled, '--version'], timeoutMs: 5000 }]);
  });
});

describe('parseWireguardGoVersion', () => {
  it("reads the real binaries' first line", () => {
    expect(parseWireguardGoVersion('wireguard-go v0.0.20250522\n\nUserspace WireGuard daemon for linux-amd64.\n')).toBe('0.0.20250522');
    expect(parseWireguardGoVersion('wireguard-go v0.0.20220316\n\nUserspace WireGuard daemon for linux-amd64.\n')).toBe('0.0.20220316');
  });

  it('refuses anything else', () => {
    expect(parseWireguardGoVersion('')).toBeNull();
    expect(parseWireguardGoVersion('Usage: wireguard-go [-f/--foreground] INTERFACE-NAME\n')).toBeNull();
    expect(parseWireguardGoVersion('\nwireguard-go v1\n')).toBeNull();
  });
});

describe('the pin', () => {
  it('is the same in the engine and in scripts/build-wireguard-go.sh', async () => {
    const script = await readFile(join(repoRoot, 'scripts', 'build-wireguard-go.sh'), 'utf8');
    const value = (name: string): string | undefined => new RegExp(`^${name}=(\\S+)`, 'm').exec(script)?.[1];
    expect(value('WG_MODULE')).toBe(WIREGUARD_GO_PIN.module);
    expect(value('WG_MODULE_VERSION')).toBe(WIREGUARD_GO_PIN.moduleVersion);
    expect(value('WG_REPORTED_VERSION')).toBe(WIREGUARD_GO_PIN.version);
  });

  it.skipIf(!existsSync(join(repoRoot, 'resources', 'bin', 'wireguard-go')))('finds the checkout’s own build from the engine’s directory (when it was built)', async () => {
    const b = await resolveWireguardGo({ env: {} });
    expect(b).toMatchObject({ path: join(repoRoot, 'resources', 'bin', 'wireguard-go'), source: 'bundled', version: PINNED, pinned: true });
  });
});
