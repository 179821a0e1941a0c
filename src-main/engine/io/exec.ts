/**
 * CommandRunner: the one way engine code runs a system tool (`ip`, `wg`). Commands are argv arrays handed to
 * `spawn` without a shell, so no argument is ever parsed by `sh`; interface names and prefixes reach the tool
 * as single arguments even if they contained spaces or metacharacters (they are validated before anyway).
 *
 * The runner never rejects: a non-zero exit gives its code and stderr; a timeout (SIGKILL) or a program that
 * cannot be started (ENOENT) gives code null with the reason in stderr, so a missing tool reads like any other
 * failure and the caller decides.
 */
import { spawn } from 'node:child_process';

export interface CommandResult {
  /** Exit code; null when killed (timeout) or when the program could not be started. */
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CommandOptions {
  /** Written to stdin, then stdin is closed. */
  input?: string;
  /** Kill (SIGKILL) after this long. @default 15000 */
  timeoutMs?: number;
}

export type CommandRunner = (argv: readonly string[], opts?: CommandOptions) => Promise<CommandResult>;

const OUTPUT_CAP = 4 * 1024 * 1024;

/** The sbin directories root tools live in; appended to PATH because a user's PATH often lacks them. */
const SBIN_PATH = '/usr/local/sbin:/usr/sbin:/sbin';

/** Runs argv[0] with argv[1..] (no shell) and collects its output. */
export const execRunner: CommandRunner = (argv, opts = {}) => {
  const [cmd, ...args] = argv;
  if (cmd === undefined) return Promise.resolve({ code: null, stdout: '', stderr: 'empty argv' });
  return new Promise((resolve) => {
    const env = { ...process.env, PATH: `${process.env['PATH'] ?? '/usr/bin:/bin'}:${SBIN_PATH}` };
    // spawn's own timeout kills the child (no engine timer needed).
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env, shell: false, timeout: opts.timeoutMs ?? 15_000, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    let settled = false;
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      if (stdout.length < OUTPUT_CAP) stdout += d;
    });
    child.stderr.on('data', (d: string) => {
      if (stderr.length < OUTPUT_CAP) stderr += d;
    });
    child.stdin.on('error', () => undefined);
    const done = (code: number | null, extra = ''): void => {
      if (settled) return;
      settled = true;
      resolve({ code, stdout, stderr: stderr + extra });
    };
    child.on('error', (err) => done(null, `${stderr ? '\n' : ''}${cmd}: ${err.message}`));
    child.on('close', (code) => done(code));
    child.stdin.end(opts.input ?? '');
  });
};

/**
 * Formats a failed command for an error message: `ip link set ... (code 2): Error: ...`. `secretStdout`: never
 * quote stdout (it may hold a key, as `wg show … dump` does).
 */
export function describeFailure(argv: readonly string[], r: CommandResult, secretStdout = false): string {
  const err = r.stderr.trim() || (secretStdout ? '' : r.stdout.trim()) || 'no output';
  return `${argv.join(' ')} (code ${r.code === null ? 'none' : String(r.code)}): ${err}`;
}

/** Runs argv and returns its stdout; a non-zero exit becomes `fail(describeFailure(…))`, thrown. */
export async function runChecked(
  runner: CommandRunner,
  argv: readonly string[],
  fail: (message: string) => Error,
  opts: { secretStdout?: boolean } = {},
): Promise<string> {
  const r = await runner(argv);
  if (r.code !== 0) throw fail(describeFailure(argv, r, opts.secretStdout));
  return r.stdout;
}
