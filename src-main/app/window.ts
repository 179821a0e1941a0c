/**
 * The one BrowserWindow and the session hardening around it. Security settings are constants in security.ts
 * (tested without Electron); this file only applies them:
 * - webPreferences = WEB_PREFERENCES + the preload;
 * - navigation locked: no navigation away, no redirects, no new windows, no <webview>; links never open;
 * - every permission request denied; the CSP header on the renderer's responses;
 * - the renderer is served from app://weft/ (never file://), so the header CSP applies to it too.
 */
import { readFile } from 'node:fs/promises';
import { BrowserWindow, protocol, session, type Session, type WebContents } from 'electron';
import { contentTypeOf, resolveRendererFile } from './renderer-files.ts';
import { ALLOWED_PERMISSIONS, CSP, RENDERER_ENTRY_URL, RENDERER_SCHEME, WEB_PREFERENCES, devCsp, isRendererUrl } from './security.ts';

/** Must run before app is ready: app:// is a standard, secure scheme (module scripts and fetch work on it). */
export function registerRendererScheme(): void {
  protocol.registerSchemesAsPrivileged([{ scheme: RENDERER_SCHEME, privileges: { standard: true, secure: true, supportFetchAPI: true, corsEnabled: true } }]);
}

/** Serves `root` (out/renderer) on app://weft/ with the CSP header. */
export function serveRenderer(root: string): void {
  protocol.handle(RENDERER_SCHEME, async (req) => {
    const file = resolveRendererFile(root, req.url);
    if (!file || req.method !== 'GET') return new Response('not found', { status: 404 });
    try {
      const body = await readFile(file);
      return new Response(body, {
        headers: { 'content-type': contentTypeOf(file), 'content-security-policy': CSP, 'x-content-type-options': 'nosniff', 'cache-control': 'no-cache' },
      });
    } catch {
      return new Response('not found', { status: 404 });
    }
  });
}

/** Denies every permission, and adds the CSP header to the dev server's responses. */
export function hardenSession(s: Session, devUrl: string | null): void {
  s.setPermissionRequestHandler((_wc, permission, cb) => cb(ALLOWED_PERMISSIONS.includes(permission)));
  s.setPermissionCheckHandler((_wc, permission) => ALLOWED_PERMISSIONS.includes(permission));
  if (devUrl) {
    const policy = devCsp(devUrl);
    s.webRequest.onHeadersReceived((details, cb) => {
      if (!isRendererUrl(details.url, devUrl)) return cb({});
      cb({ responseHeaders: { ...details.responseHeaders, 'Content-Security-Policy': [policy] } });
    });
  }
}

/** No navigation, redirect, pop-up or webview, whatever the page does. */
export function lockNavigation(wc: WebContents): void {
  wc.setWindowOpenHandler(() => ({ action: 'deny' }));
  wc.on('will-navigate', (e) => e.preventDefault());
  wc.on('will-frame-navigate', (e) => e.preventDefault());
  wc.on('will-redirect', (e) => e.preventDefault());
  wc.on('will-attach-webview', (e) => e.preventDefault());
}

export interface MainWindowOptions {
  preload: string;
  /** The dev server's URL in development, else null (app://weft/index.html). */
  devUrl: string | null;
  icon?: string;
}

export function createMainWindow(opts: MainWindowOptions): BrowserWindow {
  const win = new BrowserWindow({
    width: 1100,
    height: 760,
    minWidth: 720,
    minHeight: 480,
    show: false,
    title: 'Weft',
    ...(opts.icon ? { icon: opts.icon } : {}),
    webPreferences: { ...WEB_PREFERENCES, preload: opts.preload },
  });
  lockNavigation(win.webContents);
  win.once('ready-to-show', () => win.show());
  void win.loadURL(opts.devUrl ?? RENDERER_ENTRY_URL);
  return win;
}

export { session };
