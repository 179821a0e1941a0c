/**
 * `weft logout [--socket-dir DIR | --state-dir DIR]`: expires this node's key on the server. When an engine runs
 * (weftd, or `weft up`, which then exits) it does it; otherwise, with --state-dir, the stored keys are used directly.
 */
import { MeshError } from '../../../src-shared/errors.ts';
import { connectDaemon, DaemonUnavailable } from '../../daemon/api-client.ts';
import { ControlClient } from '../../engine/control/client.ts';
import { parseServerUrl } from '../../engine/control/transport.ts';
import { defaultStateDir, loadState } from '../../engine/state/store.ts';
import { CliError, parseFlags, type Command } from '../command.ts';
import { RUN_DIR_FLAGS, RUN_DIR_USAGE, runDirOf } from '../daemon-call.ts';

const usage = `usage: weft logout [--socket-dir DIR | --state-dir DIR]

${RUN_DIR_USAGE}`;

export const logoutCommand: Command = {
  summary: 'log this device out',
  async run(argv) {
    const { values } = parseFlags(argv, { ...RUN_DIR_FLAGS, help: { type: 'boolean' } }, usage);
    if (values.help) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    const daemon = await connectDaemon(runDirOf(values)).catch((e: unknown) => {
      if (e instanceof DaemonUnavailable) return null;
      throw new CliError((e as Error).message, 1);
    });
    if (daemon) {
      try {
        const r = await daemon.invoke('session:logout', {}, 30_000);
        if (!r.ok) throw new CliError(`logout failed: ${r.error.message}`, 1);
      } finally {
        daemon.close();
      }
      process.stdout.write('logged out\n');
      return 0;
    }
    const stateDir = values['state-dir'] ?? defaultStateDir();
    const st = await loadState(stateDir).catch((e: unknown) => {
      throw new CliError((e as Error).message, 1);
    });
    if (!st?.loginServer || !st.nodePrivate) throw new CliError('this device is not logged in', 1);
    const client = new ControlClient({ server: parseServerUrl(st.loginServer), stateDir });
    try {
      await client.loadOnly();
      await client.logout();
    } catch (e) {
      throw new CliError(e instanceof MeshError ? e.message : String(e), 1);
    } finally {
      await client.stop();
    }
    process.stdout.write('logged out\n');
    return 0;
  },
};
