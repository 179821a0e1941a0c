/**
 * A user's clone has nothing beside it: no test, script or source file may read the team's shared folder
 * next to the checkout. The known-answer vectors live in test/fixtures/vectors instead.
 *
 * Two checks: a scan of every tracked text file for a path that leaves the project for that folder, and a run of
 * the vector tests from a copy of the tracked tree in a fresh temporary directory, which has no such folder.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../support/vectors.ts';

// Built from parts so this file does not match its own scan.
const SHARED = 'shared';
const FORBIDDEN = [new RegExp(`\\.\\./${SHARED}\\b`), new RegExp(`/work/${SHARED}\\b`), new RegExp(`${SHARED}/vectors`)];

function trackedFiles(): string[] {
  const r = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: repoRoot, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`git ls-files failed: ${r.stderr}`);
  return r.stdout.split('\0').filter((f) => f !== '' && existsSync(join(repoRoot, f)));
}

const VECTOR_FILES = ['derp.txt', 'disco.txt', 'stun.txt', 'ts2021-noise-v1.txt', 'ts2021-noise-v130.txt'];

describe('the clone is self-contained', () => {
  const files = trackedFiles();

  it('scans the source, tests and scripts (guards against an empty listing)', () => {
    expect(files.some((f) => f.startsWith('test/unit/'))).toBe(true);
    expect(files.some((f) => f.startsWith('src-main/'))).toBe(true);
  });

  it('keeps the known-answer vectors in test/fixtures/vectors', () => {
    for (const v of VECTOR_FILES) {
      const text = readFileSync(resolve(repoRoot, 'test/fixtures/vectors', v), 'utf8');
      expect(text.split('\n').filter((l) => /^[\w[\]. -]+=/.test(l)).length, v).toBeGreaterThan(3);
    }
  });

  it('no file reads the shared folder beside the checkout', () => {
    const roots = /^(src-main|src-shared|src-renderer|test|scripts|resources|\.ci)\/|^[^/]+\.(ts|js|mjs|json|yml)$/;
    const bad: string[] = [];
    for (const f of files) {
      if (!roots.test(f) || /\.(png|ico|icns|zst|sqlite)$/.test(f) || f.startsWith('test/fixtures/vectors/')) continue;
      const text = readFileSync(join(repoRoot, f), 'utf8');
      for (const re of FORBIDDEN) if (re.test(text)) bad.push(`${f}: ${re.source}`);
    }
    expect(bad).toEqual([]);
  });

  it('the vector tests pass from a copy with nothing beside it', () => {
    const top = mkdtempSync(join(tmpdir(), 'weft-clone-'));
    try {
      const dst = join(top, 'weft');
      for (const f of files) {
        mkdirSync(dirname(join(dst, f)), { recursive: true });
        cpSync(join(repoRoot, f), join(dst, f));
      }
      symlinkSync(join(repoRoot, 'node_modules'), join(dst, 'node_modules'), 'dir');
      expect(existsSync(join(top, SHARED))).toBe(false);
      const tests = [
        'test/unit/protocol/crypto/noise.test.ts',
        'test/unit/protocol/wire/derp.test.ts',
        'test/unit/protocol/wire/disco.test.ts',
        'test/unit/protocol/wire/stun.test.ts',
      ];
      const r = spawnSync(process.execPath, [join(dst, 'node_modules/vitest/vitest.mjs'), 'run', '--project', 'unit', '--testTimeout', '60000', ...tests], {
        cwd: dst,
        encoding: 'utf8',
        timeout: 90_000,
        env: { ...process.env, CI: 'true', NO_COLOR: '1', FORCE_COLOR: '0' },
      });
      expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
      // eslint-disable-next-line no-control-regex
      expect(r.stdout.replace(/\x1b\[[0-9;]*m/g, '')).toMatch(/Test Files\s+4 passed/);
    } finally {
      rmSync(top, { recursive: true, force: true });
    }
  }, 120_000);
});
