/**
 * `weft up --login-server URL [--auth-key KEY|file:PATH|-] [--hostname NAME] [--state-dir DIR]`: joins and runs the
 * engine in the foreground until SIGINT/SIGTERM, for servers and scripts. It is weftd (src-main/daemon/weftd.ts)
 * with one network: the same engine, the same local API (status, ping, logout and the app talk to it as to the
 * service), and the join made through the same validated dispatcher a client would use.
 *
 * Prints the AuthURL when a browser login is needed and "weft: connected as NAME [ADDRS]" once connected. Exits
 * non-zero with a clear message when the first connection fails, and exits 0 after a logout or disconnect through
 * the API, or on a signal.
 */
import { parseServerUrl } from '../../engine/control/transport.ts';
import { defaultStateDir, ensureStateDir } from '../../engine/state/store.ts';
import { DEFAULT_RUN_DIR } from '../../daemon/api-server.ts';
import { startWeftd } from '../../daemon/weftd.ts';
import { resolveAuthKey } from '../auth-key.ts';
import { CliError, parseFlags, untilSignal, type Command } from '../command.ts';
import { engineFlags } from '../daemon-call.ts';

const usage = `usage: weft up --login-server URL [--auth-key KEY] [--hostname NAME] [--accept-routes[=BOOL]] [--accept-dns[=BOOL]]
               [--state-dir DIR] [--socket-dir DIR] [--iface NAME] [--port N]

  --login-server URL   headscale (or weft server) URL, e.g. https://hs.example.com or http://10.0.0.1:8080
  --auth-key KEY       pre-auth key; file:PATH reads it from a file, - from standard input (keeps it out of ps);
                       without it, weft prints a URL to approve this device
  --hostname NAME      name to register (default: this machine's hostname)
  --accept-routes      use the subnet routes peers offer (default: false, as Tailscale on Linux)
  --accept-dns=false   do not point this machine's DNS at MagicDNS (default: true)
  --state-dir DIR      where keys and settings live (default: ${defaultStateDir()})
  --socket-dir DIR     where the local API's sockets go (default: the --state-dir given, else $WEFT_RUN_DIR or
                       ${DEFAULT_RUN_DIR}, where weftd serves: then \`weft status\` finds this run)
  --iface NAME         WireGuard interface name, weft + 1-10 of [0-9a-z] (default: weft0)
  --port N             UDP port for WireGuard, disco and STUN (default: 41641; 0 = any)`;

const stamp = (): string => new Date().toISOString();

/** Lets boolean flags stand alone or take a value, as Tailscale's do: `--accept-routes`, `--accept-dns=false`. */
function boolFlags(argv: string[], names: string[]): string[] {
  return argv.map((a) => (names.some((n) => a === `--${n}`) ? `${a}=true` : a));
}

function boolValue(name: string, v: string | undefined, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new CliError(`--${name} takes true or false, got "${v.slice(0, 20)}"`);
}

export const upCommand: Command = {
  summary: 'connect to the tailnet and stay connected',
  async run(argv) {
    const { values, positionals } = parseFlags(
      boolFlags(argv, ['accept-routes', 'accept-dns']),
      {
        'login-server': { type: 'string' },
        'auth-key': { type: 'string' },
        hostname: { type: 'string' },
        'accept-routes': { type: 'string' },
        'accept-dns': { type: 'string' },
        'state-dir': { type: 'string' },
        'socket-dir': { type: 'string' },
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
    // A stray word is a mistake, not something to ignore: `--accept-dns false` must not leave MagicDNS on.
    if (positionals.length > 0) throw new CliError(`unexpected argument "${positionals[0]!.slice(0, 40)}" (boolean flags take =true or =false, e.g. --accept-dns=false)\n\n${usage}`);
    if (!values['login-server']) throw new CliError(`--login-server is required\n\n${usage}`);
    let server: URL;
    try {
      server = parseServerUrl(values['login-server']);
    } catch (e) {
      throw new CliError((e as Error).message);
    }
    const stateDir = values['state-dir'] ?? defaultStateDir();
    const { iface, udpPort } = engineFlags(values);
    if (values.hostname !== undefined && !/^[A-Za-z0-9-]{1,63}$/.test(values.hostname)) throw new CliError(`--hostname must be 1-63 of [A-Za-z0-9-], got "${values.hostname}"`);
    const acceptRoutes = boolValue('accept-routes', values['accept-routes'], false);
    const acceptDns = boolValue('accept-dns', values['accept-dns'], true);
    const authKey = await resolveAuthKey(values['auth-key']);
    const log = (l: string): void => void process.stderr.write(`${stamp()} ${l}\n`);
    const watchdog = Number(process.env['WEFT_DEBUG_MAP_WATCHDOG_MS'] ?? 0);

    await ensureStateDir(stateDir).catch((e: unknown) => {
      throw new CliError((e as Error).message, 1);
    });
    const signal = untilSignal();
    // A logout or disconnect through the API ends a foreground run, as it did before weftd.
    let left: () => void = () => undefined;
    const leaving = new Promise<'left'>((resolve) => (left = () => resolve('left')));
    let weftd;
    try {
      weftd = await startWeftd({
        dataDir: stateDir,
        // With no --state-dir, the same place weftd serves (so `weft status` finds either, and a second engine is
        // refused); with one, that directory (several foreground runs side by side, as the lab tests run them).
        runDir: values['socket-dir'] ?? (values['state-dir'] !== undefined ? stateDir : (process.env['WEFT_RUN_DIR'] ?? DEFAULT_RUN_DIR)),
        stateDirFor: () => stateDir,
        iface,
        udpPort,
        autoConnect: false,
        afterCall: (m) => {
          if (m === 'session:logout' || m === 'session:disconnect') left();
        },
        logf: log,
        // Debug knob for tests: a shorter map-stream watchdog than Tailscale's 120 s.
        ...(watchdog > 0 ? { mapWatchdogMs: watchdog } : {}),
      });
    } catch (e) {
      throw new CliError((e as Error).message, 1);
    }
    const { host } = weftd;
    let shownAuthUrl = '';
    let connected = false;
    host.on('session:progress', (p) => {
      if (p.authUrl && p.authUrl !== shownAuthUrl) {
        shownAuthUrl = p.authUrl;
        process.stdout.write(`\nTo authenticate, visit:\n\n\t${p.authUrl}\n\n`);
      }
      if (p.stage === 'connected' && !connected) {
        connected = true;
        void weftd.dispatch('engine:status', {}).then((r) => {
          const self = r.ok && 'self' in (r.value as object) ? (r.value as { self: { name: string; addresses: string[] } | null }).self : null;
          const addrs = (self?.addresses ?? []).map((a) => (a.includes(':') ? `${a}/128` : `${a}/32`));
          process.stdout.write(`weft: connected as ${self?.name ?? '?'} ${JSON.stringify(addrs)}\n`);
        });
      }
    });

    // `weft up` is declarative, like `tailscale up`: the preferences are what its flags say (defaults when absent).
    const prefs = await weftd.dispatch('settings:set', { acceptRoutes, acceptDns });
    if (!prefs.ok) {
      await weftd.close();
      throw new CliError(prefs.error.message, 1);
    }
    const joined = await Promise.race([
      weftd.dispatch('session:join', { serverUrl: server.href, ...(authKey ? { authKey } : {}), ...(values.hostname ? { hostname: values.hostname } : {}) }),
      signal.then(() => null),
    ]);
    if (joined === null) {
      await weftd.close();
      return 0;
    }
    if (!joined.ok) {
      await weftd.close();
      throw new CliError(joined.error.message, 1);
    }
    const why = await Promise.race([signal, leaving]);
    log(why === 'left' ? 'logged out or disconnected through the local API; shutting down' : 'shutting down');
    await weftd.close();
    return 0;
  },
};
