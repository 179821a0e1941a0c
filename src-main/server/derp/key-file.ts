/**
 * The DERP server's private key on disk, so its public key (which clients learn from ServerKey frames and
 * that a DERP map may pin) survives restarts. The composition root chooses the path inside the data dir.
 *
 * Written as headscale writes its derp_server_private.key: one line `privkey:<64 hex>`, mode 0600. Read back
 * also from a derper config file (`{"PrivateKey":"privkey:<hex>"}`), so an existing derper key can be reused.
 */
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { generateKeyPair, keyText, parseKeyText } from '../../protocol/crypto/keys.ts';
import { ensurePrivateDir, writeFileAtomic } from '../../engine/io/atomic-file.ts';

/** Parses a key file's text (headscale's text form or derper's JSON); null when it holds no private key. */
export function parseServerKeyFile(text: string): Uint8Array | null {
  const t = text.trim();
  const direct = parseKeyText('privkey', t);
  if (direct) return direct;
  if (!t.startsWith('{')) return null;
  try {
    const v: unknown = JSON.parse(t);
    if (v && typeof v === 'object' && 'PrivateKey' in v && typeof v.PrivateKey === 'string') return parseKeyText('privkey', v.PrivateKey);
  } catch {
    // not JSON: fall through
  }
  return null;
}

/**
 * Returns the private key stored at `path`, creating the file (and its directory, 0700) with a fresh key when
 * it does not exist. Throws when the file exists but holds no key: a corrupt key file is never overwritten.
 */
export async function loadOrCreateDerpServerKey(path: string): Promise<Uint8Array> {
  let text: string | null = null;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (text !== null) {
    const key = parseServerKeyFile(text);
    if (!key) throw new Error(`derp: ${path} holds no privkey:<64 hex> key; move it away to generate a new one`);
    return key;
  }
  const { priv } = generateKeyPair();
  await ensurePrivateDir(dirname(path));
  await writeFileAtomic(path, `${keyText('privkey', priv)}\n`);
  return priv;
}
