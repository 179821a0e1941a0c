/**
 * `weft` CLI dispatcher: one subcommand per file under commands/, all on the same engine as the app.
 * Each command returns its exit code: 0 success, 1 failure at run time, 2 bad usage.
 */
import { CliError, type Command } from './command.ts';

/**
 * Each command's module is loaded only when it runs: `weft status` then loads the local API client and not the
 * engine, the server and the rest (importing them all took 1.26 s under tsx here, status alone 0.41 s).
 */
const commands: Record<string, () => Promise<Command>> = {
  up: async () => (await import('./commands/up.ts')).upCommand,
  status: async () => (await import('./commands/status.ts')).statusCommand,
  logout: async () => (await import('./commands/logout.ts')).logoutCommand,
  ping: async () => (await import('./commands/ping.ts')).pingCommand,
  daemon: async () => (await import('./commands/daemon.ts')).daemonCommand,
  netcheck: async () => (await import('./commands/netcheck.ts')).netcheckCommand,
  portmap: async () => (await import('./commands/portmap.ts')).portmapCommand,
  'stun-server': async () => (await import('./commands/stun-server.ts')).stunServerCommand,
  server: async () => (await import('./commands/server.ts')).serverCommand,
  'dev-bridge': async () => (await import('./commands/dev-bridge.ts')).devBridgeCommand,
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
  const load = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!load) {
    process.stderr.write(`weft: unknown command "${name}"\n\n${usage}\n`);
    return 2;
  }
  try {
    return await (await load()).run(rest);
  } catch (err) {
    if (err instanceof CliError) {
      process.stderr.write(`weft ${name}: ${err.message}\n`);
      return err.exitCode;
    }
    process.stderr.write(`weft ${name}: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  }
}
