/**
 * Electron main process entry: the thin shell around the host (src-main/host, Electron-free).
 *
 *   single-instance lock ─▶ app:// scheme + session hardening ─▶ host (engine, settings, IPC handlers)
 *     ├─ ipc-server: window ⇄ dispatcher/events          ├─ tray: state icon + menu
 *     ├─ notifications: host notices → desktop             └─ login item from settings
 *
 * Closing the window hides it (the tray keeps Weft running); Quit stops the engine (its interface is removed)
 * before the process exits. A second launch shows the existing window.
 */
import { join } from 'node:path';
import { app, BrowserWindow, session, shell } from 'electron';
import type { Settings } from '../../src-shared/ipc/contract.ts';
import { setLinuxAutostart } from '../host/autostart.ts';
import { createDispatcher, HostError } from '../host/dispatch.ts';
import { createHost, wireguardGoInterfaces, type Host } from '../host/host.ts';
import { PrivilegedHelper } from '../host/privileged.ts';
import type { TrayAction } from '../host/tray-state.ts';
import { serveIpc } from './ipc-server.ts';
import { showNotices } from './notifications.ts';
import { resourcesDir } from './resources.ts';
import { createTray } from './tray.ts';
import { createMainWindow, hardenSession, registerRendererScheme, serveRenderer } from './window.ts';

const here = import.meta.dirname;
const devUrl = !app.isPackaged && process.env['ELECTRON_RENDERER_URL'] ? process.env['ELECTRON_RENDERER_URL'] : null;

registerRendererScheme();

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  void main().catch((e: unknown) => {
    process.stderr.write(`weft: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    app.exit(1);
  });
}

async function main(): Promise<void> {
  let win: BrowserWindow | null = null;
  let quitting = false;
  let host: Host | null = null;
  let res = '';

  const showWindow = (): void => {
    if (!app.isReady()) return;
    if (win && !win.isDestroyed()) {
      if (win.isMinimized()) win.restore();
      win.show();
      win.focus();
      return;
    }
    const w = createMainWindow({ preload: join(here, '../preload/index.cjs'), devUrl, icon: join(res, 'icon.png') });
    w.on('close', (e) => {
      if (quitting) return;
      e.preventDefault();
      w.hide();
    });
    w.on('closed', () => {
      if (win === w) win = null;
    });
    win = w;
  };

  app.on('second-instance', showWindow);
  app.on('activate', showWindow);
  // The tray keeps Weft running with no window open; Quit is in the tray menu.
  app.on('window-all-closed', () => undefined);

  await app.whenReady();
  res = resourcesDir(app.getAppPath());
  hardenSession(session.defaultSession, devUrl);
  serveRenderer(join(here, '../renderer'));

  const log = (line: string): void => {
    if (host) host.log('info', line);
    if (!app.isPackaged) process.stderr.write(`${line}\n`);
  };
  const uid = process.getuid?.() ?? null;
  const priv =
    uid !== null && uid !== 0
      ? new PrivilegedHelper({ helperArgv: ['/usr/bin/env', 'ELECTRON_RUN_AS_NODE=1', process.execPath, join(here, 'helper.js')], uid, appName: 'Weft' }, { logf: log })
      : null;
  const createInterface = priv
    ? (name: string) => priv.createInterface(name)
    : uid === 0
      ? wireguardGoInterfaces(log)
      : () => Promise.reject(new HostError('internal', 'creating the WireGuard interface is not supported on this platform yet', false));

  const h = createHost({
    dataDir: app.getPath('userData'),
    createInterface,
    ...(priv ? { prepareInterface: () => priv.ensureRunning() } : {}),
    openExternal: (url) => shell.openExternal(url),
    ...(app.isPackaged ? {} : { logf: (l: string) => void process.stderr.write(`${l}\n`) }),
  });
  host = h;
  const dispatch = createDispatcher(h.handlers, { logf: (l) => h.log('error', l) });
  const stopIpc = serveIpc({ dispatch, host: h, window: () => win, devUrl, logf: (l) => h.log('warn', l) });

  const call = async (method: 'session:connect' | 'session:disconnect'): Promise<void> => {
    const r = await dispatch(method, {});
    if (r.ok) return;
    h.log('warn', `tray: ${method} failed: ${r.error.message}`);
    showWindow();
  };
  const onAction = (a: TrayAction): void => {
    switch (a) {
      case 'open':
        showWindow();
        return;
      case 'quit':
        app.quit();
        return;
      case 'connect':
        if (h.settings().activeProfile) void call('session:connect');
        else showWindow();
        return;
      case 'disconnect':
        void call('session:disconnect');
        return;
      case 'login': {
        const url = h.snapshot().control?.authUrl;
        if (url) void dispatch('session:open-auth-url', { url });
        else showWindow();
        return;
      }
      default: {
        const never: never = a;
        return never;
      }
    }
  };

  let autoStart: boolean | null = null;
  const applySettings = (s: Settings): void => {
    if (s.autoStart === autoStart) return;
    autoStart = s.autoStart;
    if (process.platform === 'linux') {
      const argv = app.isPackaged ? [process.env['APPIMAGE'] ?? process.execPath] : [process.execPath, app.getAppPath()];
      void setLinuxAutostart(s.autoStart, argv).catch((e: unknown) => h.log('warn', `autostart: ${e instanceof Error ? e.message : String(e)}`));
    } else {
      app.setLoginItemSettings({ openAtLogin: s.autoStart });
    }
  };

  const tray = createTray({ host: h, resourcesDir: res, onAction });
  const stopNotices = showNotices(h, { icon: join(res, 'icon.png'), onClick: showWindow });
  h.onSettings(applySettings);

  let stopping: Promise<void> | null = null;
  let stopped = false;
  app.on('before-quit', (e) => {
    quitting = true;
    if (stopped) return;
    e.preventDefault();
    stopping ??= h
      .stop()
      .catch((err: unknown) => log(`stopping: ${err instanceof Error ? err.message : String(err)}`))
      .finally(() => {
        stopIpc();
        stopNotices();
        tray.destroy();
        stopped = true;
        app.quit();
      });
  });

  await h.start();
  applySettings(h.settings());
  if (!h.settings().startMinimised) showWindow();
}
