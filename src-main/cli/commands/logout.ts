/**
 * `weft logout [--state-dir DIR]`: expires this node's key on the server. If `weft up` is running it does it
 * and exits; otherwise the stored keys are used directly.
 */
import { join } from 'node:path';
import { MeshError } from '../../../src-shared/errors.ts';
import { ControlClient } from '../../engine/control/client.ts';
import { parseServerUrl } from '../../engine/control/transport.ts';
import { STATUS_SOCKET, defaultStateDir, loadState } from '../../engine/state/store.ts';
import { callLocalApi } from '../../engine/io/local-api.ts';
import { CliError, parseFlags, type Command } from '../command.ts';

const usage = `usage: weft logout [--state-dir DIR]`;

export const logoutCommand: Command = {
  summary: 'log this device out',
  async run(argv) {
    const { values } = parseFlags(argv, { 'state-dir': { type: 'string' }, help: { type: 'boolean' } }, usage);
    if (values.help) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    const stateDir = values['state-dir'] ?? defaultStateDir();
    const running = await callLocalApi(join(stateDir, STATUS_SOCKET), { cmd: 'logout' }).catch(() => null);
    if (running !== null) {
      const err = (running as { error?: string }).error;
      if (err) throw new CliError(`logout failed: ${err}`, 1);
      process.stdout.write('logged out\n');
      return 0;
    }
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
