/**
 * `weft daemon`: weftd, the service (systemd runs it as root; resources/linux/weftd.service). It starts idle, or
 * reconnects the network joined last, and takes join and leave from its clients (the app, `weft`, the dev bridge)
 * over the local API in the run directory. Runs until SIGINT/SIGTERM, then takes the interface down.
 */
import { DEFAULT_OPERATOR_GROUP, DEFAULT_RUN_DIR } from '../../daemon/api-server.ts';
import { startWeftd } from '../../daemon/weftd.ts';
import { ensureStateDir } from '../../engine/state/store.ts';
import { CliError, parseFlags, untilSignal, type Command } from '../command.ts';
import { engineFlags } from '../daemon-call.ts';

const DEFAULT_DATA_DIR = '/var/lib/weft';

const usage = `usage: weft daemon [--state-dir DIR] [--socket-dir DIR] [--operator-group NAME] [--iface NAME] [--port N]

  --state-dir DIR        saved networks, preferences and keys (default: ${DEFAULT_DATA_DIR})
  --socket-dir DIR       the local API's sockets (default: $WEFT_RUN_DIR or ${DEFAULT_RUN_DIR})
  --operator-group NAME  members may join, leave and change preferences (default: ${DEFAULT_OPERATOR_GROUP})
  --operator USER        this user may too, through a socket of its own (repeatable; also $WEFT_OPERATORS,
                         comma-separated, which the app's one-time set-up writes in a systemd drop-in)
  --iface NAME           WireGuard interface, weft + 1-10 of [0-9a-z] (default: weft0)
  --port N               UDP port for WireGuard, disco and STUN (default: 41641; 0 = any)`;

const stamp = (): string => new Date().toISOString();

export const daemonCommand: Command = {
  summary: 'run weftd, the service that owns the engine',
  async run(argv) {
    const { values } = parseFlags(
      argv,
      {
        'state-dir': { type: 'string' },
        'socket-dir': { type: 'string' },
        'operator-group': { type: 'string' },
        operator: { type: 'string', multiple: true },
        iface: { type: 'string' },
        port: { type: 'string' },
        help: { type: 'boolean' },
      },
      usage,
    );
    if (values.help) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    const { iface, udpPort } = engineFlags(values);
    if (process.getuid?.() !== 0) process.stderr.write('weft daemon: not running as root; creating the WireGuard interface needs root or CAP_NET_ADMIN\n');
    const dataDir = values['state-dir'] ?? process.env['WEFT_STATE_DIR'] ?? DEFAULT_DATA_DIR;
    const log = (l: string): void => void process.stderr.write(`${stamp()} ${l}\n`);
    await ensureStateDir(dataDir).catch((e: unknown) => {
      throw new CliError((e as Error).message, 1);
    });
    const signal = untilSignal();
    const weftd = await startWeftd({
      dataDir,
      runDir: values['socket-dir'] ?? process.env['WEFT_RUN_DIR'] ?? DEFAULT_RUN_DIR,
      ...(values['operator-group'] ? { operatorGroup: values['operator-group'] } : {}),
      operatorUsers: [...(values.operator ?? []), ...(process.env['WEFT_OPERATORS'] ?? '').split(',').map((u) => u.trim()).filter((u) => u !== '')],
      iface,
      udpPort,
      autoConnect: true,
      logf: log,
    }).catch((e: unknown) => {
      throw new CliError((e as Error).message, 1);
    });
    process.stdout.write(`weftd: ready (pid ${process.pid})\n`);
    await signal;
    log('weftd: shutting down');
    await weftd.close();
    return 0;
  },
};
