/**
 * `weft up --login-server URL [--auth-key KEY] [--hostname NAME] [--state-dir DIR]`: runs the engine in the
 * foreground until SIGINT/SIGTERM. Prints the AuthURL when a browser login is needed. Serves `weft status`
 * on the state directory's socket. Exits non-zero with a clear message when the first connection fails.
 */
import { join } from 'node:path';
import { MeshError } from '../../../src-shared/errors.ts';
import { parseServerUrl } from '../../engine/control/transport.ts';
import { Engine } from '../../engine/engine.ts';
import { isWeftInterfaceName } from '../../engine/wg/iface.ts';
import { cleanupStaleInterfaces } from '../../engine/wg/stale.ts';
import { startWireguardGo } from '../../engine/wg/wireguard-go.ts';
import { serveLocalApi, type LocalApiServer } from '../../engine/io/local-api.ts';
import { STATUS_SOCKET, defaultStateDir, ensureStateDir } from '../../engine/state/store.ts';
import { CliError, parseFlags, untilSignal, type Command } from '../command.ts';

const usage = `usage: weft up --login-server URL [--auth-key KEY] [--hostname NAME] [--state-dir DIR] [--iface NAME] [--port N]

  --login-server URL   headscale (or weft server) URL, e.g. https://hs.example.com or http://10.0.0.1:8080
  --auth-key KEY       pre-auth key; without it, weft prints a URL to approve this device
  --hostname NAME      name to register (default: this machine's hostname)
  --state-dir DIR      where keys and the status socket live (default: ${defaultStateDir()})
  --iface NAME         WireGuard interface name, weft + 1-10 of [0-9a-z] (default: weft0)
  --port N             UDP port for WireGuard, disco and STUN (default: 41641; 0 = any)`;

const stamp = (): string => new Date().toISOString();

export const upCommand: Command = {
  summary: 'connect to the tailnet and stay connected',
  async run(argv) {
    const { values } = parseFlags(
      argv,
      {
        'login-server': { type: 'string' },
        'auth-key': { type: 'string' },
        hostname: { type: 'string' },
        'state-dir': { type: 'string' },
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
    if (!values['login-server']) throw new CliError(`--login-server is required\n\n${usage}`);
    let server: URL;
    try {
      server = parseServerUrl(values['login-server']);
    } catch (e) {
      throw new CliError((e as Error).message);
    }
    const stateDir = values['state-dir'] ?? defaultStateDir();
    const iface = values.iface ?? 'weft0';
    if (!isWeftInterfaceName(iface)) throw new CliError(`--iface must be "weft" followed by 1-10 of [0-9a-z], got "${iface}"`);
    const udpPort = values.port === undefined ? 41641 : Number(values.port);
    if (!Number.isInteger(udpPort) || udpPort < 0 || udpPort > 65535) throw new CliError(`--port must be 0-65535, got "${values.port}"`);
    const log = (l: string): void => void process.stderr.write(`${stamp()} ${l}\n`);
    // A crashed earlier run may have left its interface behind: remove Weft devices whose owner is gone.
    await cleanupStaleInterfaces('weft', {}, { logf: log }).catch((e: unknown) => log(`stale cleanup failed: ${(e as Error).message}`));
    const client = new Engine({
      udpPort,
      createInterface: () => startWireguardGo({ name: iface }, { logf: log }),
      server,
      stateDir,
      ...(values['auth-key'] ? { authKey: values['auth-key'] } : {}),
      ...(values.hostname ? { hostname: values.hostname } : {}),
      logf: log,
      // Debug knob for tests: a shorter map-stream watchdog than Tailscale's 120 s.
      ...(process.env['WEFT_DEBUG_MAP_WATCHDOG_MS'] ? { mapWatchdogMs: Number(process.env['WEFT_DEBUG_MAP_WATCHDOG_MS']) } : {}),
    });
    let lastState = '';
    client.control.on('status', (s) => {
      if (s.state === 'needs-login' && s.authUrl) process.stdout.write(`\nTo authenticate, visit:\n\n\t${s.authUrl}\n\n`);
      if (s.state !== lastState) log(`control: ${s.state}${s.error ? ` (${s.error.message})` : ''}`);
      lastState = s.state;
    });

    await ensureStateDir(stateDir).catch((e: unknown) => {
      throw new CliError((e as Error).message, 1);
    });
    let api: LocalApiServer;
    try {
      api = await serveLocalApi(join(stateDir, STATUS_SOCKET), async (req) => {
        const cmd = (req as { cmd?: unknown }).cmd;
        if (cmd === 'status') return client.status();
        if (cmd === 'derp-map') return client.derpMap;
        if (cmd === 'ping') {
          const r = req as { peer?: unknown; timeoutMs?: unknown };
          if (typeof r.peer !== 'string') return { error: 'ping needs a peer' };
          const timeoutMs = typeof r.timeoutMs === 'number' && r.timeoutMs > 0 && r.timeoutMs <= 30_000 ? r.timeoutMs : 5000;
          return client.ping(r.peer, timeoutMs);
        }
        if (cmd === 'logout') {
          await client.control.logout();
          setImmediate(() => process.kill(process.pid, 'SIGTERM'));
          return { ok: true };
        }
        return { error: `unknown command ${String(cmd)}` };
      });
    } catch (e) {
      throw new CliError((e as Error).message, 1);
    }

    const signal = untilSignal();
    try {
      const started = client.start();
      const first = await Promise.race([started.then(() => 'started' as const), signal]);
      if (first !== 'started') {
        await client.stop();
        return 0;
      }
    } catch (e) {
      await client.stop();
      await api.close();
      const msg = e instanceof MeshError ? e.message : `unexpected error: ${(e as Error).stack ?? String(e)}`;
      throw new CliError(msg, 1);
    }
    const self = client.control.netmap.self;
    process.stdout.write(`weft: connected as ${self?.Name ?? '?'} ${JSON.stringify(self?.Addresses ?? [])}\n`);
    await signal;
    log('shutting down');
    await client.stop();
    await api.close();
    return 0;
  },
};
