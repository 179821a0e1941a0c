/**
 * Which wireguard-go binary the engine runs, and what it is. In order:
 *
 *   1. $WEFT_WIREGUARD_GO, when set (used as given, even if it does not run: an explicit choice is never second-guessed)
 *   2. Weft's pinned build: `wireguard-go` in each of `extraDirs` (the caller's; under Electron,
 *      process.resourcesPath/bin), then `resources/bin/wireguard-go` in this module's directory or one of its
 *      ancestors (at most MAX_UP levels up): the dev checkout's resources/bin (src-main/engine/wg -> 3 up, out/main
 *      -> 2 up) and the installed package's /opt/Weft/resources/bin (resources/app.asar/out/main -> 4 up), where
 *      electron-builder's extraResources puts it (electron-builder.yml)
 *   3. `wireguard-go` on PATH (Debian's 0.0.20220316 build on the test machines), with a log line saying that an
 *      older, slower build is in use
 *
 * scripts/build-wireguard-go.sh builds the pinned version (`npm ci` runs it when Go is installed). The version is
 * asked once (`<bin> --version`, argv only, bounded) so logs and status can say which build runs.
 */
import { constants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import { basename, delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CommandRunner } from '../io/exec.ts';
import { execRunner } from '../io/exec.ts';
import type { Logf } from '../sys/log.ts';
import { discardLogf } from '../sys/log.ts';

/** The pinned build; scripts/build-wireguard-go.sh holds the same values (a unit test keeps them equal). */
export const WIREGUARD_GO_PIN = {
  module: 'golang.zx2c4.com/wireguard',
  moduleVersion: 'v0.0.0-20260522210424-ecfc5a8d5446',
  /** What that commit's `wireguard-go --version` prints (its version.go). */
  version: '0.0.20250522',
} as const;

export const WIREGUARD_GO_ENV = 'WEFT_WIREGUARD_GO';
const BIN = 'wireguard-go';
/** How far up from this module's directory to look for resources/bin. */
const MAX_UP = 4;
const VERSION_TIMEOUT_MS = 5_000;
/** The sbin directories, as execRunner appends them to PATH. */
const SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

export type WireguardGoSource = 'env' | 'bundled' | 'path';

export interface WireguardGoBinary {
  /** Absolute path, or the bare name when nothing was found on PATH (spawning it then fails with ENOENT). */
  path: string;
  /** env: $WEFT_WIREGUARD_GO; bundled: Weft's own build (resources/bin); path: found on PATH. */
  source: WireguardGoSource;
  /** What `--version` printed ("0.0.20250522"), null when it did not answer. */
  version: string | null;
  /** The version is the pinned one. */
  pinned: boolean;
}

export interface ResolveWireguardGoOptions {
  /** @default process.env */
  env?: Readonly<Record<string, string | undefined>>;
  /** Directories holding `wireguard-go`, searched before this module's own resources/bin (packaged apps). */
  extraDirs?: readonly string[];
  /** Where the ancestor search starts. @default this module's directory */
  moduleDir?: string;
  /** Searched after PATH, as execRunner does. @default /usr/local/sbin, /usr/sbin, /sbin */
  sbinDirs?: readonly string[];
  /** Runs `--version`. @default execRunner */
  runner?: CommandRunner;
  logf?: Logf;
}

async function isExecutableFile(p: string): Promise<boolean> {
  try {
    if (!(await stat(p)).isFile()) return false;
    await access(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The places Weft's own build may be, in order. */
export function bundledCandidates(moduleDir: string, extraDirs: readonly string[] = []): string[] {
  const out = extraDirs.filter((d) => d !== '').map((d) => join(d, BIN));
  let d = resolve(moduleDir);
  for (let i = 0; i <= MAX_UP; i++) {
    out.push(join(d, 'resources', 'bin', BIN));
    const up = dirname(d);
    if (up === d) break;
    d = up;
  }
  return [...new Set(out)];
}

async function onPath(env: Readonly<Record<string, string | undefined>>, sbinDirs: readonly string[]): Promise<string | null> {
  const dirs = [...(env['PATH'] ?? '').split(delimiter), ...sbinDirs].filter((d) => d !== '' && isAbsolute(d));
  for (const d of new Set(dirs)) {
    const p = join(d, BIN);
    if (await isExecutableFile(p)) return p;
  }
  return null;
}

/** Parses the first line of `wireguard-go --version` ("wireguard-go v0.0.20250522"). */
export function parseWireguardGoVersion(stdout: string): string | null {
  const m = /^wireguard-go v([0-9A-Za-z.+-]{1,64})\s*$/m.exec(stdout.split('\n', 1)[0] ?? '');
  return m ? m[1]! : null;
}

async function probeVersion(path: string, runner: CommandRunner): Promise<string | null> {
  const r = await runner([path, '--version'], { timeoutMs: VERSION_TIMEOUT_MS });
  return r.code === 0 ? parseWireguardGoVersion(r.stdout) : null;
}

/** One line for logs and status: "wireguard-go v0.0.20250522 (Weft's pinned build) at /…/resources/bin/wireguard-go". */
export function describeWireguardGo(b: WireguardGoBinary): string {
  const what = b.source === 'env' ? `$${WIREGUARD_GO_ENV}` : b.source === 'bundled' ? "Weft's build" : 'from PATH';
  const pin = b.pinned ? 'pinned' : `not the pinned v${WIREGUARD_GO_PIN.version}`;
  return `wireguard-go ${b.version === null ? '(version unknown)' : `v${b.version}`} (${what}, ${pin}) at ${b.path}`;
}

/** Picks the wireguard-go binary (see the file comment) and asks it for its version once. */
export async function resolveWireguardGo(o: ResolveWireguardGoOptions = {}): Promise<WireguardGoBinary> {
  const env = o.env ?? process.env;
  const runner = o.runner ?? execRunner;
  const logf = o.logf ?? discardLogf;
  const finish = async (path: string, source: WireguardGoSource, probe = true): Promise<WireguardGoBinary> => {
    const version = probe ? await probeVersion(path, runner) : null;
    return { path, source, version, pinned: version === WIREGUARD_GO_PIN.version };
  };

  const fromEnv = env[WIREGUARD_GO_ENV];
  if (fromEnv !== undefined && fromEnv !== '') {
    const b = await finish(fromEnv, 'env');
    logf(`wg: using ${describeWireguardGo(b)}`);
    if (basename(fromEnv) !== BIN) logf(`wg: ${WIREGUARD_GO_ENV} is not named ${BIN}: stale-process cleanup after a crash recognises only that name`);
    return b;
  }

  for (const p of bundledCandidates(o.moduleDir ?? dirname(fileURLToPath(import.meta.url)), o.extraDirs)) {
    if (!(await isExecutableFile(p))) continue;
    const b = await finish(p, 'bundled');
    if (b.pinned) {
      logf(`wg: using ${describeWireguardGo(b)}`);
    } else {
      const stamp = (await readFile(`${p}.version`, 'utf8').catch(() => '')).trim();
      logf(`wg: using ${describeWireguardGo(b)}${stamp ? ` built from ${stamp}` : ''}; rebuild with scripts/build-wireguard-go.sh`);
    }
    return b;
  }

  const found = await onPath(env, o.sbinDirs ?? SBIN_DIRS);
  if (found === null) {
    logf(`wg: no ${BIN} found (not in Weft's resources/bin, not on PATH); build it with scripts/build-wireguard-go.sh (needs Go)`);
    return finish(BIN, 'path', false);
  }
  const b = await finish(found, 'path');
  logf(
    b.pinned
      ? `wg: using ${describeWireguardGo(b)}`
      : `wg: using ${describeWireguardGo(b)}: Weft's pinned build was not found, so this older, slower one runs (no TUN/UDP offloads); build it with scripts/build-wireguard-go.sh (needs Go)`,
  );
  return b;
}

let cached: Promise<WireguardGoBinary> | undefined;

/**
 * The process-wide choice with default options (the first caller's logf hears the log line), resolved once:
 * what startWireguardGo runs when it is given no binary.
 */
export function defaultWireguardGo(logf?: Logf): Promise<WireguardGoBinary> {
  cached ??= resolveWireguardGo({ extraDirs: electronResourceDirs(), ...(logf ? { logf } : {}) });
  return cached;
}

/**
 * `bin` in Electron's process.resourcesPath when this runs inside Electron (the packaged app's resources directory,
 * where extraResources puts wireguard-go); none under plain Node. Read from `process`, so the engine imports
 * nothing from electron.
 */
export function electronResourceDirs(): string[] {
  const rp = (process as { resourcesPath?: unknown }).resourcesPath;
  return typeof rp === 'string' && rp !== '' ? [join(rp, 'bin')] : [];
}
