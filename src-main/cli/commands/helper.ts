/**
 * `weft helper --socket PATH [--uid N]`: the narrow privileged helper as its own root process. At start it
 * removes what a crashed run left (stale wireguard-go devices and sockets named weft*), then serves the op
 * set of engine/wg/helper-ops.ts on a unix socket (mode 0600, owned by --uid: default the sudo-invoking
 * user, else the current one) until SIGINT/SIGTERM, when it destroys every interface it created.
 */
import { startHelperServer } from '../../engine/wg/helper.ts';
import { cleanupStaleInterfaces } from '../../engine/wg/stale.ts';
import { CliError, parseFlags, untilSignal, type Command } from '../command.ts';

const usage = `usage: weft helper --socket PATH [--uid N] [--verbose]

  --socket PATH   unix socket to listen on (mode 0600; put it in a directory only root can write)
  --uid N         user allowed to connect (owner of the socket); default $SUDO_UID, else the current user
  --verbose       log every refused or failed request to stderr`;

export const helperCommand: Command = {
  summary: 'run the privileged WireGuard helper (root)',
  async run(argv) {
    const { values } = parseFlags(argv, { socket: { type: 'string' }, uid: { type: 'string' }, verbose: { type: 'boolean' }, help: { type: 'boolean' } }, usage);
    if (values.help) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    if (!values.socket) throw new CliError(`--socket is required\n\n${usage}`);
    const uidText = values.uid ?? process.env['SUDO_UID'] ?? String(process.getuid?.() ?? 0);
    if (!/^[0-9]{1,10}$/.test(uidText)) throw new CliError('--uid must be a numeric user ID');
    if (process.getuid?.() !== 0) throw new CliError('the helper must run as root (it creates network interfaces)', 1);
    const logf = (line: string): void => {
      process.stderr.write(`${line}\n`);
    };
    const quiet = (): void => {};
    const stale = await cleanupStaleInterfaces('weft', {}, { logf });
    const n = stale.killed.length + stale.removedSockets.length + stale.removedLinks.length;
    if (n > 0) logf(`helper: removed ${n} stale item(s) from an earlier run`);
    const server = await startHelperServer(values.socket, Number(uidText), { logf: values.verbose ? logf : quiet });
    process.stdout.write(`helper listening on ${server.path} for uid ${uidText}\n`);
    await untilSignal();
    await server.close();
    return 0;
  },
};
