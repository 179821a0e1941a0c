/**
 * Starting the privileged helper (`weft helper`, src-main/engine/wg/helper.ts) once, with a graphical
 * password prompt, and handing the engine WireGuard interfaces that live behind it.
 *
 *   ensureRunning():  socket live? ──yes──▶ done (a helper from an earlier run is reused: no prompt)
 *                        │ no
 *                        ▼
 *                     sudo runner (sudo-prompt: pkexec / macOS dialog) runs, as root,
 *                        mkdir -p -m 0755 <socketDir>  &&  <helperArgv…> helper --socket <dir>/helper-<uid>.sock --uid <uid>
 *                        │
 *                        ├─ socket becomes live ─────────▶ done
 *                        ├─ prompt cancelled / no agent ─▶ HostError 'helper-denied'
 *                        └─ helper exits, or times out ──▶ HostError 'internal' (with its stderr)
 *
 * The command is built only from an argv whose every element passes a strict character whitelist and is
 * single-quoted (sudo-prompt takes one shell string); nothing from the UI is ever part of it. The helper keeps
 * running after the app quits (like tailscaled), serving the next start without a prompt; each engine's
 * interface is destroyed through it when the engine stops.
 *
 * Everything environment-specific (the sudo runner, the socket client, liveness, time) is injected.
 */
import sudoPrompt from 'sudo-prompt';
import type { Clock } from '../engine/sys/clock.ts';
import { realClock } from '../engine/sys/clock.ts';
import type { Logf } from '../engine/sys/log.ts';
import { discardLogf } from '../engine/sys/log.ts';
import { HelperClient } from '../engine/wg/helper.ts';
import { HelperWgInterface } from '../engine/wg/helper-iface.ts';
import type { Helper } from '../engine/wg/helper-ops.ts';
import type { WgInterface } from '../engine/wg/iface.ts';
import { WgError } from '../engine/wg/iface.ts';
import { isSocketLive } from '../engine/wg/uapi-socket.ts';
import { HostError } from './dispatch.ts';

/** How the elevated command ended (it only ends when the helper exits, or when elevation failed). */
export type SudoOutcome =
  | { kind: 'denied'; message: string }
  | { kind: 'exited'; code: number | null; stdout: string; stderr: string }
  | { kind: 'failed'; message: string };

/** Runs one command string as root after a graphical prompt; resolves when the command ends. */
export type SudoRunner = (command: string, opts: { name: string }) => Promise<SudoOutcome>;

// sudo-prompt reports these two elevation failures by message only (its constants PERMISSION_DENIED and
// NO_POLKIT_AGENT); every other error comes from the command itself.
const SUDO_DENIED = 'User did not grant permission.';
const SUDO_NO_AGENT = 'No polkit authentication agent found.';

/** The real runner, over sudo-prompt (pkexec or kdesudo on Linux, a dialog on macOS, UAC on Windows). */
export const sudoPromptRunner: SudoRunner = (command, opts) =>
  new Promise((resolve) => {
    sudoPrompt.exec(command, { name: opts.name }, (error, stdout, stderr) => {
      const out = String(stdout ?? '');
      const err = String(stderr ?? '');
      if (!error) resolve({ kind: 'exited', code: 0, stdout: out, stderr: err });
      else if (error.message === SUDO_DENIED) resolve({ kind: 'denied', message: 'the password prompt was cancelled' });
      else if (error.message === SUDO_NO_AGENT) resolve({ kind: 'denied', message: 'no polkit authentication agent is running to ask for the password' });
      else {
        const code = (error as { code?: unknown }).code;
        if (typeof code === 'number') resolve({ kind: 'exited', code, stdout: out, stderr: err });
        else resolve({ kind: 'failed', message: error.message });
      }
    });
  });

/** Arguments may only contain these characters (plus spaces): no quotes, `$`, backticks, backslashes, newlines. */
const SAFE_ARG = /^[A-Za-z0-9_./:=@%+,~ -]+$/;

/**
 * One argv as a shell word list: each argument single-quoted. Refuses (throws) any argument outside the
 * whitelist, so the string means exactly this argv whichever shell layers sudo-prompt adds.
 */
export function quoteArgv(argv: readonly string[]): string {
  if (argv.length === 0) throw new HostError('internal', 'empty helper command', false);
  return argv
    .map((a) => {
      if (!SAFE_ARG.test(a)) throw new HostError('internal', `refusing to run the helper with the argument ${JSON.stringify(a)}`, false);
      return `'${a}'`;
    })
    .join(' ');
}

/** Several argvs run in order, each only if the previous succeeded. */
export function sudoCommand(steps: readonly (readonly string[])[]): string {
  return steps.map(quoteArgv).join(' && ');
}

export interface PrivilegedInit {
  /** The argv prefix that runs the `weft` CLI as root, e.g. ['/usr/bin/env', 'ELECTRON_RUN_AS_NODE=1', execPath, helperScript]. */
  helperArgv: readonly string[];
  /** The user allowed to use the helper (owner of the socket). */
  uid: number;
  /** A directory only root can write. @default '/var/run/weft' */
  socketDir?: string;
  /** The name the password prompt shows (letters, digits, spaces). @default 'Weft' */
  appName?: string;
  /** Give up waiting for the socket after this long (the user may be slow to type a password). @default 600000 */
  startTimeoutMs?: number;
  /** How often to look for the socket while the prompt is up. @default 100 */
  pollMs?: number;
}

export interface PrivilegedComponents {
  sudo: SudoRunner;
  connect: (path: string) => Promise<Helper>;
  isLive: (path: string) => Promise<boolean>;
  clock: Clock;
  logf: Logf;
}

export function helperSocketPath(dir: string, uid: number): string {
  return `${dir.replace(/\/+$/, '')}/helper-${uid}.sock`;
}

/** The exact argvs run as root: create the socket directory, then the helper. */
export function helperLaunchSteps(init: PrivilegedInit): string[][] {
  if (!Number.isInteger(init.uid) || init.uid < 0) throw new HostError('internal', `bad uid ${init.uid}`, false);
  const dir = init.socketDir ?? '/var/run/weft';
  return [
    ['mkdir', '-p', '-m', '0755', dir],
    [...init.helperArgv, 'helper', '--socket', helperSocketPath(dir, init.uid), '--uid', String(init.uid)],
  ];
}

export class PrivilegedHelper {
  readonly socketPath: string;
  private readonly c: PrivilegedComponents;
  // Owned here: the one start in progress (so concurrent callers share one prompt).
  private starting: Promise<void> | null = null;

  constructor(
    private readonly init: PrivilegedInit,
    components: Partial<PrivilegedComponents> = {},
  ) {
    this.socketPath = helperSocketPath(init.socketDir ?? '/var/run/weft', init.uid);
    this.c = {
      sudo: components.sudo ?? sudoPromptRunner,
      connect: components.connect ?? ((p) => HelperClient.connect(p)),
      isLive: components.isLive ?? isSocketLive,
      clock: components.clock ?? realClock,
      logf: components.logf ?? discardLogf,
    };
  }

  /** Makes sure a helper serves our socket, prompting for the password at most once at a time. */
  ensureRunning(): Promise<void> {
    this.starting ??= this.start().finally(() => {
      this.starting = null;
    });
    return this.starting;
  }

  private async start(): Promise<void> {
    if (await this.c.isLive(this.socketPath)) return;
    const command = sudoCommand(helperLaunchSteps(this.init));
    this.c.logf(`privileged: starting the helper as root: ${command}`);
    const { clock } = this.c;
    const timeoutMs = this.init.startTimeoutMs ?? 600_000;
    const pollMs = this.init.pollMs ?? 100;
    const started = clock.now();
    let ended: SudoOutcome | null = null;
    void this.c
      .sudo(command, { name: this.init.appName ?? 'Weft' })
      .catch((e: unknown): SudoOutcome => ({ kind: 'failed', message: e instanceof Error ? e.message : String(e) }))
      .then((o) => {
        ended = o;
        if (o.kind === 'exited') this.c.logf(`privileged: the helper exited (code ${o.code})${o.stderr ? `: ${o.stderr.trim().slice(-500)}` : ''}`);
      });
    for (;;) {
      if (await this.c.isLive(this.socketPath)) {
        this.c.logf(`privileged: helper listening on ${this.socketPath}`);
        return;
      }
      const o: SudoOutcome | null = ended;
      if (o) throw outcomeError(o);
      if (clock.now() - started >= timeoutMs) throw new HostError('internal', `the privileged helper did not start within ${Math.round(timeoutMs / 1000)} s`, true);
      await new Promise<void>((r) => clock.setTimeout(r, pollMs));
    }
  }

  /**
   * A WireGuard interface created by the helper, on its own connection (closed with the interface). An
   * interface of the same name left by an earlier app run is destroyed first.
   */
  async createInterface(name: string): Promise<WgInterface> {
    await this.ensureRunning();
    const client = await this.c.connect(this.socketPath);
    try {
      let iface: HelperWgInterface;
      try {
        iface = await HelperWgInterface.create(client, name);
      } catch (e) {
        if (!(e instanceof WgError) || e.code !== 'exists') throw e;
        this.c.logf(`privileged: ${name} left from an earlier run; recreating it`);
        await client.call({ op: 'destroy-interface', name });
        iface = await HelperWgInterface.create(client, name);
      }
      return closingWith(iface, client);
    } catch (e) {
      await client.close();
      throw e;
    }
  }
}

function outcomeError(o: SudoOutcome): HostError {
  switch (o.kind) {
    case 'denied':
      return new HostError('helper-denied', `Weft needs administrator rights to create its network interface, and ${o.message}.`, true);
    case 'exited':
      return new HostError('internal', `the privileged helper exited (code ${o.code ?? 'none'})${o.stderr.trim() ? `: ${o.stderr.trim().slice(-300)}` : ''}`, true);
    case 'failed':
      return new HostError('internal', `could not start the privileged helper: ${o.message}`, true);
    default: {
      const never: never = o;
      return never;
    }
  }
}

/** `iface`, whose close() also closes the helper connection it uses. */
function closingWith(iface: WgInterface, client: Helper): WgInterface {
  return {
    name: iface.name,
    up: (o) => iface.up(o),
    set: (cfg) => iface.set(cfg),
    routes: (p) => iface.routes(p),
    stats: () => iface.stats(),
    close: () => iface.close().finally(() => client.close()),
  };
}
