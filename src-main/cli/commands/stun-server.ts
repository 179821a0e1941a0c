/** `weft stun-server --listen IP:PORT [--alt IP:PORT]`: a standalone STUN server until SIGINT/SIGTERM. */
import { parseHostPort } from '../../protocol/wire/addr.ts';
import { startStunServer } from '../../server/stun/server.ts';
import { CliError, parseFlags, untilSignal, type Command } from '../command.ts';

const usage = `usage: weft stun-server --listen IP:PORT [--alt IP:PORT]

  --listen IP:PORT   primary address (default 0.0.0.0:3478)
  --alt IP:PORT      alternate address on another IP and port; enables RFC 5780 behaviour discovery`;

export const stunServerCommand: Command = {
  summary: 'run a STUN server',
  async run(argv) {
    const { values } = parseFlags(argv, { listen: { type: 'string' }, alt: { type: 'string' }, help: { type: 'boolean' } }, usage);
    if (values.help) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    const p = parseHostPort(values.listen ?? '0.0.0.0:3478');
    if (!p) throw new CliError(`--listen must be IP:PORT, got "${values.listen}"`);
    const alt = values.alt === undefined ? undefined : parseHostPort(values.alt);
    if (alt === null) throw new CliError(`--alt must be IP:PORT, got "${values.alt}"`);
    if (alt && (alt.host === p.host || alt.port === p.port)) throw new CliError('--alt must differ from --listen in both IP and port (RFC 5780)');
    const srv = await startStunServer({
      primary: { ip: p.host, port: p.port },
      ...(alt ? { alt: { ip: alt.host, port: alt.port } } : {}),
      logf: (l) => process.stderr.write(`${l}\n`),
    }).catch((e: unknown) => {
      throw new CliError((e as Error).message, 1);
    });
    process.stdout.write(`stun-server: ready ${JSON.stringify(srv.addrs)}\n`);
    await untilSignal();
    await srv.close();
    return 0;
  },
};
