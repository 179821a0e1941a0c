/**
 * Serves the renderer (src-renderer) with Vite's dev server on 127.0.0.1 for a browser that talks to the dev
 * bridge. The renderer section of electron.vite.config.ts is reused (aliases, defines, plugins), the React plugin
 * is added when that config has none, and the page is served with the bridge's CSP (csp.ts) as a response header
 * and in its meta tag. The bridge URL reaches the page as `import.meta.env.VITE_WEFT_BRIDGE` (and the printed URL
 * carries it as `?bridge=`).
 *
 * vite and @vitejs/plugin-react are dev dependencies, loaded only when this runs.
 */
import { readFile } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { InlineConfig, Plugin, PluginOption, UserConfig, ViteDevServer } from 'vite';
import { bridgeCsp, withMetaCsp } from './csp.ts';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface RendererServerOptions {
  /** The dev bridge's ws:// URL. */
  bridgeUrl: string;
  /** @default '127.0.0.1' */
  host?: string;
  /** 0 picks a free port. @default 0 */
  port?: number;
  /** Renderer root. @default <repo>/src-renderer */
  root?: string;
  /** Vite's dependency cache. @default <repo>/node_modules/.vite/weft-dev-bridge */
  cacheDir?: string;
  /** Hot module replacement (a second WebSocket, to Vite itself). @default true */
  hmr?: boolean;
  logf?: (line: string) => void;
}

export interface RendererServer {
  /** http://127.0.0.1:PORT */
  readonly origin: string;
  readonly port: number;
  close(): Promise<void>;
}

type Fn = (env: { command: 'serve'; mode: string }) => unknown;

/** The renderer section of electron.vite.config.ts (without its build options), or {} when there is none. */
async function electronViteRendererConfig(logf: (l: string) => void): Promise<UserConfig> {
  try {
    const mod = (await import(pathToFileURL(join(REPO_ROOT, 'electron.vite.config.ts')).href)) as { default?: unknown };
    let cfg: unknown = mod.default;
    if (typeof cfg === 'function') cfg = await (cfg as Fn)({ command: 'serve', mode: 'development' });
    const renderer = (cfg as { renderer?: unknown } | undefined)?.renderer;
    if (typeof renderer !== 'object' || renderer === null) return {};
    const { build: _build, root: _root, ...rest } = renderer as UserConfig;
    return rest;
  } catch (e) {
    logf(`dev bridge: electron.vite.config.ts not used (${(e as Error).message})`);
    return {};
  }
}

function pluginNames(p: PluginOption | undefined, out: string[] = []): string[] {
  if (Array.isArray(p)) for (const x of p) pluginNames(x as PluginOption, out);
  else if (p && typeof p === 'object' && 'name' in p) out.push(String((p as Plugin).name));
  return out;
}

function pathOf(url: string | undefined): string {
  try {
    return new URL(url ?? '/', 'http://x').pathname;
  } catch {
    return '';
  }
}

/** Serves index.html itself (transformed by Vite) so the CSP header can cover Vite's inline scripts. */
function cspPlugin(root: string): Plugin {
  return {
    name: 'weft:dev-bridge-csp',
    configureServer(server: ViteDevServer) {
      server.middlewares.use((req: IncomingMessage & { originalUrl?: string }, res: ServerResponse, next: (err?: unknown) => void) => {
        const path = pathOf(req.url);
        if ((req.method === 'GET' || req.method === 'HEAD') && path === '/favicon.ico') {
          // The app icon: without one, the browser's favicon request 404s, which it logs as a console error.
          void readFile(join(REPO_ROOT, 'resources', 'icon.png')).then(
            (png) => {
              res.statusCode = 200;
              res.setHeader('Content-Type', 'image/png');
              res.end(req.method === 'HEAD' ? undefined : png);
            },
            () => {
              res.statusCode = 204;
              res.end();
            },
          );
          return;
        }
        if ((req.method !== 'GET' && req.method !== 'HEAD') || (path !== '/' && path !== '/index.html')) return next();
        void (async () => {
          const raw = await readFile(join(root, 'index.html'), 'utf8');
          // The page's path without its query (as Vite's own index middleware does): relative imports resolve against it.
          const html = await server.transformIndexHtml(path, raw, req.originalUrl);
          const policy = bridgeCsp(html, { devServer: true });
          const body = withMetaCsp(html, policy);
          res.statusCode = 200;
          res.setHeader('Content-Type', 'text/html; charset=utf-8');
          res.setHeader('Content-Security-Policy', policy);
          res.setHeader('Cache-Control', 'no-store');
          res.setHeader('X-Content-Type-Options', 'nosniff');
          res.end(req.method === 'HEAD' ? undefined : body);
        })().catch((e: unknown) => next(e));
      });
    },
  };
}

export async function startRendererServer(o: RendererServerOptions): Promise<RendererServer> {
  const logf = o.logf ?? (() => undefined);
  const host = o.host ?? '127.0.0.1';
  const root = o.root ?? join(REPO_ROOT, 'src-renderer');
  const { createServer, mergeConfig } = await import('vite');
  const base = await electronViteRendererConfig(logf);
  const plugins: PluginOption[] = [cspPlugin(root)];
  if (!pluginNames(base.plugins).some((n) => n.startsWith('vite:react'))) {
    const react = (await import('@vitejs/plugin-react')).default;
    plugins.push(react());
  }
  // Vite reads VITE_* from the environment: the page's default bridge URL, without its token. Vite serves the
  // page's modules to any local process, so the token travels only in the printed URL (?bridge=…?token=…).
  process.env['VITE_WEFT_BRIDGE'] = o.bridgeUrl.replace(/\/?\?.*$/, '');
  // Middleware mode on our own HTTP server: Vite's standalone server would exit the process on SIGTERM (and when
  // stdin ends) before the engine could stop and remove its interface.
  const http = createHttpServer();
  const mine: InlineConfig = {
    configFile: false,
    root,
    mode: 'development',
    appType: 'spa',
    cacheDir: o.cacheDir ?? join(REPO_ROOT, 'node_modules', '.vite', 'weft-dev-bridge'),
    clearScreen: false,
    logLevel: 'warn',
    plugins,
    server: {
      middlewareMode: true,
      hmr: o.hmr === false ? false : { server: http },
      fs: { strict: true, allow: [REPO_ROOT] },
      // A page on another origin must not read the dev server's modules.
      cors: false,
    },
  };
  const vite = await createServer(mergeConfig(base, mine) as InlineConfig);
  http.on('request', vite.middlewares);
  http.on('clientError', (_e, socket) => socket.destroy());
  try {
    await new Promise<void>((res, rej) => {
      http.once('error', rej);
      http.listen(o.port ?? 0, host, () => {
        http.off('error', rej);
        res();
      });
    });
  } catch (e) {
    await vite.close();
    throw e;
  }
  const port = (http.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    origin: `http://${host}:${port}`,
    port,
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((r) => http.close(() => r()));
        await vite.close();
        http.closeAllConnections();
        await stopped;
      })();
      return closing;
    },
  };
}
