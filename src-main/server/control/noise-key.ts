/**
 * The server's long-lived Noise static key (control-protocol §2.1 "Server Noise key"), kept in the data
 * directory as `noise_private.key` holding `privkey:<64 hex>`. Clients pin its public half from /key, so it
 * must survive restarts: it is written once, atomically (temp file, fsync, rename) with mode 0600 in a 0700
 * directory, and a file that does not parse is an error, never silently replaced.
 */
import { chmod, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ensurePrivateDir, writeFileAtomic } from '../../engine/io/atomic-file.ts';
import { generateKeyPair, keyText, parseKeyText } from '../../protocol/crypto/keys.ts';

export const NOISE_KEY_FILE = 'noise_private.key';

/** The data directory: created if needed, 0700 (tightened if others can read it). */
export async function ensureDataDir(dir: string): Promise<void> {
  await ensurePrivateDir(dir);
}

/** Loads the server's Noise private key from `dataDir`, creating it on first start. */
export async function loadOrCreateNoiseKey(dataDir: string): Promise<Uint8Array> {
  await ensureDataDir(dataDir);
  const file = join(dataDir, NOISE_KEY_FILE);
  let text: string | null = null;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (text !== null) {
    const k = parseKeyText('privkey', text.trim());
    if (!k) throw new Error(`${file} does not hold a "privkey:<64 hex>" key; refusing to replace it (clients pin the server key)`);
    const st = await stat(file);
    if ((st.mode & 0o077) !== 0) await chmod(file, 0o600);
    return k;
  }
  const kp = generateKeyPair();
  await writeFileAtomic(file, `${keyText('privkey', kp.priv)}\n`);
  return kp.priv;
}
