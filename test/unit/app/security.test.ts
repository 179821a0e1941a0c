import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ALLOWED_PERMISSIONS, CSP, CSP_DIRECTIVES, devCsp, isRendererUrl, RENDERER_ENTRY_URL, WEB_PREFERENCES } from '../../../src-main/app/security.ts';
import { repoRoot } from '../../support/vectors.ts';
import { auditCsp, auditMainSource, auditWebPreferences, type Finding } from './electron-audit.ts';

const high = (f: Finding[]): Finding[] => f.filter((x) => x.severity === 'high');

describe('Electron security audit (no Electron binary needed)', () => {
  const appDir = join(repoRoot, 'src-main/app');
  const sources = new Map(readdirSync(appDir).filter((f) => f.endsWith('.ts')).map((f) => [f, readFileSync(join(appDir, f), 'utf8')]));

  it('the window webPreferences have no finding at all', () => {
    expect(auditWebPreferences(WEB_PREFERENCES)).toEqual([]);
  });

  it('the production CSP has no finding at all', () => {
    expect(CSP).toBe(
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-src 'none'; frame-ancestors 'none'; worker-src 'none'; manifest-src 'none'",
    );
    expect(auditCsp(CSP)).toEqual([]);
  });

  it('the development CSP adds only the dev server socket and inline styles (no high finding)', () => {
    const dev = devCsp('http://localhost:5173');
    expect(dev).toContain("connect-src 'self' ws://localhost:5173");
    expect(dev).toContain("script-src 'self';");
    expect(high(auditCsp(dev))).toEqual([]);
  });

  it('the main-process code has no high finding', () => {
    const findings = auditMainSource(sources);
    expect(high(findings)).toEqual([]);
    expect(findings).toEqual([]);
  });

  it('the audit catches what it claims to (guards against a checker that passes everything)', () => {
    const bad = auditWebPreferences({ nodeIntegration: true, contextIsolation: false, sandbox: false, webSecurity: false, allowRunningInsecureContent: true, webviewTag: true, enableBlinkFeatures: 'X' });
    expect(high(bad).map((f) => f.id)).toEqual(['NODE_INTEGRATION', 'CONTEXT_ISOLATION', 'SANDBOX', 'WEB_SECURITY', 'INSECURE_CONTENT', 'WEBVIEW_TAG']);
    expect(high(auditCsp("default-src *; script-src 'self' 'unsafe-eval' 'unsafe-inline' https:")).map((f) => f.id)).toEqual(['CSP_UNSAFE_EVAL', 'CSP_UNSAFE_INLINE_SCRIPT', 'CSP_SCRIPT_WILDCARD']);
    expect(high(auditCsp(null)).map((f) => f.id)).toEqual(['CSP_MISSING']);
    const src = new Map([['w.ts', "new BrowserWindow({ webPreferences: { nodeIntegration: true } }); win.loadFile('x'); shell.openExternal(req.url)"]]);
    expect(high(auditMainSource(src)).map((f) => f.id)).toEqual(
      expect.arrayContaining(['NODE_INTEGRATION_LITERAL', 'OPEN_EXTERNAL_RAW', 'WINDOW_OPEN_HANDLER', 'NAVIGATION_LOCK', 'SENDER_CHECK', 'PRELOAD_PREFS', 'CSP_HEADER']),
    );
  });

  it('the constants are frozen, and no permission is granted', () => {
    expect(Object.isFrozen(WEB_PREFERENCES)).toBe(true);
    expect(Object.isFrozen(CSP_DIRECTIVES)).toBe(true);
    expect(ALLOWED_PERMISSIONS).toEqual([]);
  });

  it('security.ts and the preload constants load without electron', () => {
    expect(sources.get('security.ts')).not.toMatch(/from 'electron'/);
    expect(sources.get('renderer-files.ts')).not.toMatch(/from 'electron'/);
    expect(sources.get('resources.ts')).not.toMatch(/from 'electron'/);
  });
});

describe('isRendererUrl', () => {
  it.each([
    [RENDERER_ENTRY_URL, null, true],
    ['app://weft/assets/index.js', null, true],
    ['app://other/index.html', null, false],
    ['app://user:pw@weft/index.html', null, false],
    ['file:///opt/weft/index.html', null, false],
    ['https://evil.example/', null, false],
    ['http://localhost:5173/', null, false],
    ['http://localhost:5173/src/main.ts', 'http://localhost:5173', true],
    ['http://localhost:5174/', 'http://localhost:5173', false],
    ['not a url', 'http://localhost:5173', false],
  ])('%s (dev %s) → %s', (url, dev, want) => {
    expect(isRendererUrl(url, dev)).toBe(want);
  });
});
