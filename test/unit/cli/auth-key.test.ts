/** `weft up --auth-key`: the key itself, file:PATH, or - (standard input), so it need not sit in `ps`. */
import { describe, expect, it } from 'vitest';
import { resolveAuthKey } from '../../../src-main/cli/auth-key.ts';

describe('resolveAuthKey', () => {
  const files: Record<string, string> = { '/run/creds/key': 'tskey-abc123\n', '/empty': '\n\n', '/big': 'x'.repeat(5000) };
  const read = {
    file: async (p: string) => {
      const t = files[p];
      if (t === undefined) throw new Error('ENOENT: no such file');
      return t;
    },
    stdin: async () => '  hskey-from-stdin  \nignored\n',
  };

  it('takes the key as given, from a file, or from standard input (first line, trimmed)', async () => {
    expect(await resolveAuthKey(undefined, read)).toBeUndefined();
    expect(await resolveAuthKey('plain-key', read)).toBe('plain-key');
    expect(await resolveAuthKey('file:/run/creds/key', read)).toBe('tskey-abc123');
    expect(await resolveAuthKey('-', read)).toBe('hskey-from-stdin');
  });

  it('says clearly what is wrong', async () => {
    await expect(resolveAuthKey('file:/nope', read)).rejects.toThrow(/cannot read \/nope: ENOENT/);
    await expect(resolveAuthKey('file:/empty', read)).rejects.toThrow(/\/empty holds no key/);
    await expect(resolveAuthKey('file:/big', read)).rejects.toThrow(/longer than 4096 bytes/);
    await expect(resolveAuthKey('file:', read)).rejects.toThrow(/needs a path/);
  });
});
