import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { generateKeyPair, keyText } from '../../../../src-main/protocol/crypto/keys.ts';
import { loadOrCreateDerpServerKey, parseServerKeyFile } from '../../../../src-main/server/derp/key-file.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'weft-derp-key-'));
  dirs.push(d);
  return d;
};

describe('DERP server key file', () => {
  it('creates a 0600 privkey file once and reads the same key back', async () => {
    const path = join(tmp(), 'sub', 'derp_server_private.key');
    const k1 = await loadOrCreateDerpServerKey(path);
    expect(k1).toHaveLength(32);
    expect(readFileSync(path, 'utf8')).toBe(`${keyText('privkey', k1)}\n`);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(await loadOrCreateDerpServerKey(path)).toEqual(k1);
  });

  it("reads derper's JSON config form", () => {
    const { priv } = generateKeyPair();
    expect(parseServerKeyFile(JSON.stringify({ PrivateKey: keyText('privkey', priv) }))).toEqual(priv);
    expect(parseServerKeyFile('{"PrivateKey":"nope"}')).toBeNull();
    expect(parseServerKeyFile('garbage')).toBeNull();
  });

  it('refuses (and keeps) a file that holds no key', async () => {
    const path = join(tmp(), 'bad.key');
    writeFileSync(path, 'not a key\n');
    await expect(loadOrCreateDerpServerKey(path)).rejects.toThrow(/holds no privkey/);
    expect(readFileSync(path, 'utf8')).toBe('not a key\n');
  });
});
