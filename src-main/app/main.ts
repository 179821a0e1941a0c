/**
 * Electron main process entry: the thin shell around the remote host (src-main/host/remote-host.ts, Electron-free),
 * which talks to weftd, the service that owns the engine.
 *
 *   single-instance lock ─▶ app:// scheme + session hardening ─▶ remote host ─▶ weftd's local API
 *     ├─ ipc-server: window ⇄ dispatcher/events          ├─ tray: state icon + menu
 *     ├─ notifications: host notices → desktop             └─ login item from settings
 *
 * The app never needs root. When weftd is missing (a dev checkout, a binary copied by hand), it says so and runs the
 * one-time set-up (host/service.ts) behind one password prompt. Closing the window hides it; Quit closes only the
 * app: the tunnel stays up in weftd, as with Tailscale and NetBird. A second launch shows the existing window.
 */
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { app, BrowserWindow, session, shell } from 'electron';
import sudoPrompt from 'sudo-prompt';
import type { Settings } from '../../src-shared/ipc/contract.ts';
import { connectDaemon, DaemonUnavailable } from '../daemon/api-client.ts';
import { DEFAULT_RUN_DIR } from '../daemon/api-server.ts';
import { setLinuxAutostart } from '../host/autostart.ts';
import { createRemoteHost } from '../host/remote-host.ts';
import { createSettingsStore, SETTINGS_FILE } from '../host/settings.ts';
import { operatorDropIn, serviceSetupScript, unsafeForRoot, weftdUnit, WEFTD_UNIT, type PathStat } from '../host/service.ts';
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

/** Installs (when needed) and starts weftd behind one password prompt; resolves with what went wrong, or null. */
async function setUpService(log: (line: string) => void): Promise<string | null> {
  const installed = ['/lib/systemd/system', '/usr/lib/systemd/system', '/etc/systemd/system'].some((d) => existsSync(join(d, WEFTD_UNIT)));
  const dir = await mkdtemp(join(tmpdir(), 'weft-setup-'));
  const user = userInfo().username;
  const dropInFile = join(dir, 'operators.conf');
  await writeFile(dropInFile, operatorDropIn(user), { mode: 0o600 });
  let unitFile: string | undefined;
  if (!installed) {
    // An unpacked build in a root-owned place (e.g. /opt): the service runs this Electron binary as Node on the
    // bundled CLI. Never from a place another user (or this one) can write: that would hand out root.
    const execStart = [process.execPath, join(here, 'weft.js')];
    const stat = (p: string): PathStat | null => {
      try {
        const st = statSync(p);
        return { uid: st.uid, mode: st.mode };
      } catch {
        return null;
      }
    };
    const unsafe = execStart.map((f) => unsafeForRoot(f, stat)).find((x) => x !== null);
    if (unsafe) return `weftd cannot run from here (${unsafe}); install the deb or rpm package, which sets it up`;
    unitFile = join(dir, WEFTD_UNIT);
    await writeFile(unitFile, weftdUnit(execStart, { ELECTRON_RUN_AS_NODE: '1' }), { mode: 0o600 });
  }
  const script = serviceSetupScript({ installed, user, dropInFile, ...(unitFile ? { unitFile } : {}) });
  log(`weftd is not running: ${installed ? 'starting' : 'installing and starting'} it (one password prompt)`);
  return new Promise((resolve) => {
    sudoPrompt.exec(script, { name: 'Weft' }, (error) => resolve(error ? error.message : null));
  });
}

async function main(): Promise<void> {
  let win: BrowserWindow | null = null;
  let quitting = false;
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
    if (!app.isPackaged) process.stderr.write(`${line}\n`);
  };
  const runDir = process.env['WEFT_RUN_DIR'] ?? DEFAULT_RUN_DIR;
  const h = createRemoteHost({
    connect: () => connectDaemon(runDir),
    local: createSettingsStore(join(app.getPath('userData'), SETTINGS_FILE)),
    openExternal: (url) => shell.openExternal(url),
    logf: log,
  });
  const dispatch = h.dispatch;
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

  let stopping: Promise<void> | null = null;
  let stopped = false;
  app.on('before-quit', (e) => {
    quitting = true;
    if (stopped) return;
    e.preventDefault();
    // Only the link to weftd closes: the tunnel stays up with the app closed.
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
  if (!h.link().connected) {
    const probe = await connectDaemon(runDir).then(
      (c) => (c.close(), null),
      (e: unknown) => e,
    );
    if (probe instanceof DaemonUnavailable && process.platform === 'linux') {
      const failed = await setUpService(log);
      if (failed) log(`weftd set-up failed: ${failed}`);
    }
  }
  h.onSettings(applySettings);
  applySettings(h.settings());
  if (!h.settings().startMinimised) showWindow();
}
