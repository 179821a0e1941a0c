/** Private files written atomically (engine/io/atomic-file.ts): mode 0600, no half-written file, leftovers swept. */
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ensurePrivateDir, removeLeftoverTemps, writeFileAtomic } from '../../../../src-main/engine/io/atomic-file.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weft-atomic-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('atomic private files', () => {
  it('writes 0600 and leaves no temp file', async () => {
    await writeFileAtomic(join(dir, 'state.json'), '{"a":1}');
    await writeFileAtomic(join(dir, 'state.json'), '{"a":2}');
    expect(await readFile(join(dir, 'state.json'), 'utf8')).toBe('{"a":2}');
    expect((await stat(join(dir, 'state.json'))).mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual(['state.json']);
  });

  it('removes the temp files a crash left at the next start, and nothing else', async () => {
    await writeFile(join(dir, 'state.json'), 'good');
    await writeFile(join(dir, 'state.json.0123456789ab.tmp'), 'half');
    await writeFile(join(dir, 'settings.json.a1b2c3d4e5f6.tmp'), 'half');
    await writeFile(join(dir, 'notes.tmp'), 'a user file that only looks like one');
    await ensurePrivateDir(dir);
    expect((await readdir(dir)).sort()).toEqual(['notes.tmp', 'state.json']);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect(await removeLeftoverTemps(join(dir, 'missing'))).toEqual([]);
  });
});
