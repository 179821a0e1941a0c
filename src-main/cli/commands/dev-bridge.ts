/**
 * `weft dev-bridge`: the IPC contract of the desktop app served over a WebSocket on 127.0.0.1
 * (src-main/devbridge/server.ts), with the renderer served by Vite's dev server (src-main/devbridge/renderer.ts), so
 * the UI runs in any browser against a real engine. The bridge is a client of weftd (or of a foreground `weft up`)
 * like the app: it holds no engine, and a page may do exactly what the bridge's user may do on weftd's local API.
 * A page connects only with the random per-run token in the printed URL.
 *
 * With `--login-server` (and `--auth-key`), the bridge joins through weftd right away (`npm run demo`).
 * Runs until SIGINT/SIGTERM. Prints one line with the page to open:
 *   weft dev bridge: http://127.0.0.1:PORT/?bridge=ws://127.0.0.1:PORT2/?token=TOKEN
 */
import { CliError, parseFlags, untilSignal, type Command } from '../command.ts';
import { RUN_DIR_FLAGS, RUN_DIR_USAGE, runDirOf } from '../daemon-call.ts';
import { createDaemonBackend, type DaemonBackend } from '../../devbridge/daemon-backend.ts';
import { newBridgeToken, startDevBridge } from '../../devbridge/server.ts';
import { startRendererServer, type RendererServer } from '../../devbridge/renderer.ts';
import { DaemonUnavailable } from '../../daemon/api-client.ts';

const usage = `usage: weft dev-bridge [--socket-dir DIR | --state-dir DIR] [--listen 127.0.0.1:PORT] [--ui-port N] [--no-ui] [--no-hmr] [--vite-cache DIR]
                       [--login-server URL [--auth-key KEY] [--hostname NAME]]

${RUN_DIR_USAGE}
  --listen ADDR:PORT  the bridge's WebSocket, 127.0.0.1 only (default: 127.0.0.1:0 = any free port)
  --ui-port N         the Vite dev server's port on 127.0.0.1 (default: 0 = any free port)
  --no-ui             serve only the bridge (point a renderer elsewhere at it with ?bridge=ws://...)
  --no-hmr            no hot module replacement (no second WebSocket to Vite)
  --vite-cache DIR    Vite's dependency cache (default: node_modules/.vite/weft-dev-bridge)
  --login-server URL  join this network at start (session:join on weftd, as the page would);
                      prints "weft dev bridge: joined" or "weft dev bridge: join failed: ..."
  --auth-key KEY      pre-auth key for --login-server (without it the login URL is in the page and the log)
  --hostname NAME     the name to register with --login-server (default: the OS hostname)`;

const stamp = (): string => new Date().toISOString();

/** 127.0.0.1 only: the page's CSP allows the bridge as ws://127.0.0.1:* (devbridge/csp.ts). */
function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:127\.0\.0\.1:)?(\d{1,5})$/.exec(s);
  const port = m ? Number(m[1]) : NaN;
  if (!m || port > 65535) throw new CliError(`--listen must be 127.0.0.1:PORT (or PORT), got "${s}"`);
  return { host: '127.0.0.1', port };
}

function parsePort(name: string, s: string | undefined, dflt: number): number {
  if (s === undefined) return dflt;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new CliError(`--${name} must be 0-65535, got "${s}"`);
  return n;
}

export const devBridgeCommand: Command = {
  summary: 'run the app host with the UI in a browser (dev bridge over WebSocket + Vite)',
  async run(argv) {
    const { values } = parseFlags(
      argv,
      {
        ...RUN_DIR_FLAGS,
        listen: { type: 'string' },
        'ui-port': { type: 'string' },
        'no-ui': { type: 'boolean' },
        'no-hmr': { type: 'boolean' },
        'vite-cache': { type: 'string' },
        'login-server': { type: 'string' },
        'auth-key': { type: 'string' },
        hostname: { type: 'string' },
        help: { type: 'boolean' },
      },
      usage,
    );
    if (values.help) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    const uiPort = parsePort('ui-port', values['ui-port'], 0);
    const listen = parseListen(values.listen ?? '127.0.0.1:0');
    if ((values['auth-key'] !== undefined || values.hostname !== undefined) && values['login-server'] === undefined) {
      throw new CliError('--auth-key and --hostname need --login-server');
    }
    const log = (l: string): void => void process.stderr.write(`${stamp()} ${l}\n`);

    const signal = untilSignal();
    let backend: DaemonBackend;
    try {
      backend = await createDaemonBackend(runDirOf(values), log);
    } catch (e) {
      if (e instanceof DaemonUnavailable) throw new CliError(`${e.message}: start weftd (weft daemon) or weft up first`, 1);
      throw new CliError(`cannot reach weftd: ${(e as Error).message}`, 1);
    }
    log(`dev bridge: connected to weftd with ${backend.access === 'write' ? 'operator (read and write)' : 'read-only'} access`);
    // Auto-join: through weftd's validated dispatcher, exactly as the page's session:join (bad input is a clear error).
    let joining: Promise<void> = Promise.resolve();
    if (values['login-server'] !== undefined) {
      const req = {
        serverUrl: values['login-server'],
        ...(values['auth-key'] !== undefined ? { authKey: values['auth-key'] } : {}),
        ...(values.hostname !== undefined ? { hostname: values.hostname } : {}),
      };
      joining = backend.dispatch('session:join', req).then((r) => {
        process.stdout.write(r.ok ? `weft dev bridge: joined ${req.serverUrl}\n` : `weft dev bridge: join failed: ${r.error.code}: ${r.error.message}\n`);
      });
    }
    let ui: RendererServer | null = null;
    const origins = new Set<string>();
    const bridge = await startDevBridge({
      backend,
      token: newBridgeToken(),
      host: listen.host,
      port: listen.port,
      allowOrigin: (o) => origins.has(o),
      logf: log,
    }).catch(async (e: unknown) => {
      backend.close();
      throw new CliError(`cannot start the bridge on ${values.listen ?? '127.0.0.1:0'}: ${(e as Error).message}`, 1);
    });
    try {
      if (!values['no-ui']) {
        ui = await startRendererServer({ bridgeUrl: bridge.url, port: uiPort, hmr: !values['no-hmr'], ...(values['vite-cache'] ? { cacheDir: values['vite-cache'] } : {}), logf: log });
        origins.add(ui.origin);
        origins.add(`http://localhost:${ui.port}`);
        process.stdout.write(`weft dev bridge: ${ui.origin}/?bridge=${bridge.url}\n`);
      } else {
        process.stdout.write(`weft dev bridge: ${bridge.url}\n`);
      }
    } catch (e) {
      await bridge.close();
      backend.close();
      throw new CliError(`cannot start the renderer's dev server: ${(e as Error).message}`, 1);
    }

    await signal;
    log('shutting down');
    await Promise.race([joining, new Promise((r) => setTimeout(r, 2000))]);
    await ui?.close().catch((e: unknown) => log(`vite close: ${(e as Error).message}`));
    await bridge.close();
    backend.close();
    return 0;
  },
};
