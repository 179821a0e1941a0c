/**
 * The engine's persistent state: one JSON file in the state directory, written atomically (temp file, fsync,
 * rename) with mode 0600 in a 0700 directory, because it holds the machine and node private keys.
 * A file that fails to parse is an error, never silently replaced: losing the machine key would make
 * headscale see a new device.
 */
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { MeshError } from '../../../src-shared/errors.ts';
import { ensurePrivateDir, writeFileAtomic } from '../io/atomic-file.ts';

export const PersistedState = z.object({
  version: z.literal(1),
  machinePrivate: z.string().regex(/^privkey:[0-9a-f]{64}$/),
  nodePrivate: z.string().regex(/^privkey:[0-9a-f]{64}$/).nullable(),
  /** The node key that is registered (committed after a successful login). */
  loginServer: z.string().nullable(),
  hostname: z.string().nullable(),
});
export type PersistedState = z.infer<typeof PersistedState>;

/** Default state directory: $WEFT_STATE_DIR, else /var/lib/weft for root, else $XDG_STATE_HOME/weft or ~/.local/state/weft. */
export function defaultStateDir(): string {
  const env = process.env['WEFT_STATE_DIR'];
  if (env) return env;
  if (process.getuid?.() === 0) return '/var/lib/weft';
  return join(process.env['XDG_STATE_HOME'] ?? join(homedir(), '.local', 'state'), 'weft');
}

export const STATE_FILE = 'state.json';

export async function ensureStateDir(dir: string): Promise<void> {
  try {
    await ensurePrivateDir(dir);
  } catch (e) {
    throw new MeshError('state', `cannot use state directory ${dir}: ${(e as Error).message}`, false, { cause: e });
  }
}

export { writeFileAtomic };

export async function loadState(dir: string): Promise<PersistedState | null> {
  let text: string;
  try {
    text = await readFile(join(dir, STATE_FILE), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new MeshError('state', `cannot read ${join(dir, STATE_FILE)}: ${(e as Error).message}`, false, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new MeshError('state', `${join(dir, STATE_FILE)} is not valid JSON; fix or remove it (it holds this device's keys)`, false, { cause: e });
  }
  const parsed = PersistedState.safeParse(json);
  if (!parsed.success) throw new MeshError('state', `${join(dir, STATE_FILE)} is not a Weft state file: ${parsed.error.issues[0]?.message ?? ''}`, false);
  return parsed.data;
}

export async function saveState(dir: string, state: PersistedState): Promise<void> {
  await ensureStateDir(dir);
  await writeFileAtomic(join(dir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
}
