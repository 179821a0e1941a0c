/**
 * Where `--auth-key` comes from, so the key need not sit in `ps` or the shell history:
 *   KEY          the key itself
 *   file:PATH    the first line of a file (e.g. a systemd credential or a 0600 file)
 *   -            the first line of standard input
 */
import { readFile } from 'node:fs/promises';
import { CliError } from './command.ts';

const MAX_KEY_FILE = 4096;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of process.stdin) {
    const b = Buffer.isBuffer(c) ? c : Buffer.from(String(c));
    size += b.length;
    if (size > MAX_KEY_FILE) throw new CliError(`--auth-key -: standard input is longer than ${MAX_KEY_FILE} bytes`, 2);
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function firstLine(text: string, where: string): string {
  const key = (text.split('\n')[0] ?? '').trim();
  if (key === '') throw new CliError(`--auth-key: ${where} holds no key`, 2);
  return key;
}

export async function resolveAuthKey(value: string | undefined, read: { file?: (p: string) => Promise<string>; stdin?: () => Promise<string> } = {}): Promise<string | undefined> {
  if (value === undefined) return undefined;
  if (value === '-') return firstLine(await (read.stdin ?? readStdin)(), 'standard input');
  if (value.startsWith('file:')) {
    const path = value.slice('file:'.length);
    if (path === '') throw new CliError('--auth-key file:PATH needs a path', 2);
    let text: string;
    try {
      text = await (read.file ?? ((p: string) => readFile(p, 'utf8')))(path);
    } catch (e) {
      throw new CliError(`--auth-key: cannot read ${path}: ${(e as Error).message}`, 1);
    }
    if (text.length > MAX_KEY_FILE) throw new CliError(`--auth-key: ${path} is longer than ${MAX_KEY_FILE} bytes; it should hold one key`, 2);
    return firstLine(text, path);
  }
  return value;
}
