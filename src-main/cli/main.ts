/**
 * `weft` CLI dispatcher: one subcommand per file under commands/, all on the same engine as the app.
 * Each command returns its exit code: 0 success, 1 failure at run time, 2 bad usage.
 */
import { netcheckCommand } from './commands/netcheck.ts';
import { daemonCommand } from './commands/daemon.ts';
import { logoutCommand } from './commands/logout.ts';
import { pingCommand } from './commands/ping.ts';
import { portmapCommand } from './commands/portmap.ts';
import { statusCommand } from './commands/status.ts';
import { upCommand } from './commands/up.ts';
import { stunServerCommand } from './commands/stun-server.ts';
import { CliError, type Command } from './command.ts';

const commands: Record<string, Command> = {
  up: upCommand,
  status: statusCommand,
  logout: logoutCommand,
  ping: pingCommand,
  daemon: daemonCommand,
  netcheck: netcheckCommand,
  portmap: portmapCommand,
  'stun-server': stunServerCommand,
  server: { summary: 'the headscale-compatible control server and its admin verbs', run: async (a) => (await import('./commands/server.ts')).serverCommand.run(a) },
  'dev-bridge': { summary: 'the app host with its UI in a browser', run: async (a) => (await import('./commands/dev-bridge.ts')).devBridgeCommand.run(a) },
};

const usage = `usage: weft <command> [flags]

commands:
  up            join the tailnet (headscale) and stay connected until interrupted
  daemon        weftd, the service that owns the engine (the app, the CLI and the dev bridge are its clients)
  status        show the connection and peers (of weftd, or of a foreground weft up)
  logout        log this device out
  ping          disco-ping a peer and show the path (direct address and latency)
  netcheck      probe the NAT: mapping, filtering, hairpinning, port mapping, DERP latency
  portmap       forward a public UDP port to this host (NAT-PMP / PCP) until interrupted
  stun-server   run a STUN server (RFC 5389, RFC 5780 with --alt, Tailscale-compatible)
  server        run a headscale-compatible control server (users, preauthkeys, nodes: its admin verbs)

Run 'weft <command> --help' for its flags.`;

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${usage}\n`);
    return name ? 0 : 2;
  }
  if (name === '--version' || name === 'version') {
    process.stdout.write('weft 0.1.0\n');
    return 0;
  }
  const cmd = commands[name];
  if (!cmd) {
    process.stderr.write(`weft: unknown command "${name}"\n\n${usage}\n`);
    return 2;
  }
  try {
    return await cmd.run(rest);
  } catch (err) {
    if (err instanceof CliError) {
      process.stderr.write(`weft ${name}: ${err.message}\n`);
      return err.exitCode;
    }
    process.stderr.write(`weft ${name}: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  }
}
