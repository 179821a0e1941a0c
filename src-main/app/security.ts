/**
 * The window's security settings as plain constants (no electron import), so tests check exactly what
 * window.ts passes to BrowserWindow and what the renderer is served with.
 *
 * - webPreferences: sandboxed renderer, context isolation, no Node anywhere (workers, subframes), web security
 *   on, no insecure content, no experimental or extra Blink features, no <webview>, no drag-and-drop navigation,
 *   middle-click (auxclick) off (Electron security checklist; Electronegativity's checks).
 * - CSP: only our own scripts and styles; nothing inline, no eval, no frames, no plugins, no forms, no network
 *   except our own origin. Served as a response header by the app:// protocol (protocol.ts) and, in
 *   development, on the dev server's responses.
 * - Which URLs count as our renderer: app://weft/… in production, the dev server's origin in development.
 */

/** The renderer is served from this privileged custom scheme (standard, secure), never file://. */
export const RENDERER_SCHEME = 'app';
export const RENDERER_HOST = 'weft';
export const RENDERER_ORIGIN = `${RENDERER_SCHEME}://${RENDERER_HOST}`;
export const RENDERER_ENTRY_URL = `${RENDERER_ORIGIN}/index.html`;

export const WEB_PREFERENCES = Object.freeze({
  sandbox: true,
  contextIsolation: true,
  nodeIntegration: false,
  nodeIntegrationInWorker: false,
  nodeIntegrationInSubFrames: false,
  webSecurity: true,
  allowRunningInsecureContent: false,
  experimentalFeatures: false,
  webviewTag: false,
  navigateOnDragDrop: false,
  safeDialogs: true,
  spellcheck: false,
  disableBlinkFeatures: 'Auxclick',
} as const);

/** The production policy, directive by directive. */
export const CSP_DIRECTIVES: Readonly<Record<string, readonly string[]>> = Object.freeze({
  'default-src': ["'none'"],
  'script-src': ["'self'"],
  'style-src': ["'self'"],
  'img-src': ["'self'", 'data:'],
  'font-src': ["'self'"],
  'connect-src': ["'self'"],
  'object-src': ["'none'"],
  'base-uri': ["'none'"],
  'form-action': ["'none'"],
  'frame-src': ["'none'"],
  'frame-ancestors': ["'none'"],
  'worker-src': ["'none'"],
  'manifest-src': ["'none'"],
});

export function formatCsp(d: Readonly<Record<string, readonly string[]>>): string {
  return Object.entries(d)
    .map(([k, v]) => [k, ...v].join(' '))
    .join('; ');
}

export const CSP = formatCsp(CSP_DIRECTIVES);

/**
 * The development policy (only with an unpackaged app and ELECTRON_RENDERER_URL set): Vite's dev server needs its
 * HMR WebSocket and injects CSS as <style> elements. Scripts stay 'self' only (electron.vite.config.ts serves the
 * React Fast Refresh preamble as a module, not inline). Never used for a packaged app.
 */
export function devCsp(devUrl: string): string {
  const u = new URL(devUrl);
  const ws = `${u.protocol === 'https:' ? 'wss:' : 'ws:'}//${u.host}`;
  return formatCsp({
    ...CSP_DIRECTIVES,
    'style-src': ["'self'", "'unsafe-inline'"],
    'connect-src': ["'self'", ws],
  });
}

/** Reports whether `url` belongs to our renderer: app://weft/… or, in development, the dev server's origin. */
export function isRendererUrl(url: string, devUrl: string | null): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  if (u.protocol === `${RENDERER_SCHEME}:` && u.host === RENDERER_HOST && !u.username && !u.password) return true;
  if (devUrl) {
    try {
      return u.origin === new URL(devUrl).origin;
    } catch {
      return false;
    }
  }
  return false;
}

/** Permissions the renderer may be granted (none: the UI needs no camera, notifications API, clipboard read…). */
export const ALLOWED_PERMISSIONS: readonly string[] = Object.freeze([]);
