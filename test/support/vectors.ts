/**
 * Loads the known-answer vectors in test/fixtures/vectors (one `name=hex` per line, `#` comments).
 * The vectors were produced by Tailscale's own code; tests must reproduce them byte for byte.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const vectorsDir = resolve(repoRoot, 'test/fixtures/vectors');

export function loadVectors(file: string): Map<string, string> {
  const text = readFileSync(resolve(vectorsDir, file), 'utf8');
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (!t || t.startsWith('#')) continue;
    const eq = t.indexOf('=');
    if (eq > 0) out.set(t.slice(0, eq), t.slice(eq + 1));
  }
  return out;
}

/** Returns a vector's value, failing loudly when it is missing (a missing vector must not pass a test). */
export function vec(v: Map<string, string>, name: string): string {
  const x = v.get(name);
  if (x === undefined) throw new Error(`vector ${name} missing`);
  return x;
}
