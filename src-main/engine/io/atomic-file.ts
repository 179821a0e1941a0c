/**
 * Private files written so that a crash never leaves a half-written one: a temp file in the same directory
 * (mode 0600, exclusive create), fsync, rename over the target, then fsync of the directory so the rename itself
 * survives a power cut. Temp files a crash left between create and rename are removed by ensurePrivateDir (at
 * every start). Directories holding keys are 0700. Shared by the engine's state, the app's settings and weft
 * server's key files.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** The temp-file names writeFileAtomic uses: `<name>.<12 hex>.tmp`. */
const TEMP_RE = /^.+\.[0-9a-f]{12}\.tmp$/;

async function syncDir(dir: string): Promise<void> {
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

/** Writes `data` to `file` atomically with mode 0600. */
export async function writeFileAtomic(file: string, data: string): Promise<void> {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  await syncDir(dirname(file));
}

/** Removes the temp files of writes a crash interrupted (never the files they were replacing). */
export async function removeLeftoverTemps(dir: string): Promise<string[]> {
  const gone: string[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!TEMP_RE.test(name)) continue;
    await unlink(join(dir, name)).then(
      () => gone.push(name),
      () => undefined,
    );
  }
  return gone;
}

/**
 * Creates `dir` (and parents) if needed, makes sure only its owner can enter it (0700), and removes the temp files
 * of interrupted writes.
 */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await stat(dir);
  if ((st.mode & 0o077) !== 0) await chmod(dir, 0o700);
  await removeLeftoverTemps(dir);
}

