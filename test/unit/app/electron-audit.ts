/**
 * An Electron security audit over plain data, in the spirit of Electronegativity's checks (which need the Electron
 * sources or a running app, neither available here): window webPreferences, the CSP, and the main-process source
 * text of src-main/app. Each finding has a severity; the app must have no high ones.
 */
export type Severity = 'high' | 'medium' | 'low';
export interface Finding {
  id: string;
  severity: Severity;
  detail: string;
}

type Prefs = Readonly<Record<string, unknown>>;

/** Checks a BrowserWindow's webPreferences. */
export function auditWebPreferences(p: Prefs): Finding[] {
  const out: Finding[] = [];
  const want = (id: string, severity: Severity, ok: boolean, detail: string): void => {
    if (!ok) out.push({ id, severity, detail });
  };
  want('NODE_INTEGRATION', 'high', p['nodeIntegration'] === false, 'nodeIntegration must be false');
  want('NODE_INTEGRATION_IN_WORKER', 'high', p['nodeIntegrationInWorker'] !== true, 'nodeIntegrationInWorker must not be true');
  want('NODE_INTEGRATION_IN_SUBFRAMES', 'high', p['nodeIntegrationInSubFrames'] !== true, 'nodeIntegrationInSubFrames must not be true');
  want('CONTEXT_ISOLATION', 'high', p['contextIsolation'] === true, 'contextIsolation must be true');
  want('SANDBOX', 'high', p['sandbox'] === true, 'sandbox must be true');
  want('WEB_SECURITY', 'high', p['webSecurity'] !== false, 'webSecurity must not be disabled');
  want('INSECURE_CONTENT', 'high', p['allowRunningInsecureContent'] !== true, 'allowRunningInsecureContent must not be true');
  want('WEBVIEW_TAG', 'high', p['webviewTag'] !== true, '<webview> must stay disabled');
  want('EXPERIMENTAL_FEATURES', 'medium', p['experimentalFeatures'] !== true, 'experimentalFeatures must not be enabled');
  want('BLINK_FEATURES', 'medium', p['enableBlinkFeatures'] === undefined, 'enableBlinkFeatures must not be set');
  want('AUXCLICK', 'low', typeof p['disableBlinkFeatures'] === 'string' && p['disableBlinkFeatures'].split(',').includes('Auxclick'), 'middle-click should be disabled (disableBlinkFeatures: Auxclick)');
  want('PRELOAD_SET_BY_WINDOW', 'low', p['preload'] === undefined, 'the shared constant should not fix the preload path');
  return out;
}

/** Parses a policy into directives (first occurrence wins). */
export function cspDirectives(policy: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const part of policy.split(';')) {
    const [name, ...values] = part.trim().split(/\s+/).filter(Boolean);
    if (name && !out.has(name.toLowerCase())) out.set(name.toLowerCase(), values);
  }
  return out;
}

/** Checks a Content-Security-Policy (as served to the renderer). */
export function auditCsp(policy: string | null): Finding[] {
  if (!policy) return [{ id: 'CSP_MISSING', severity: 'high', detail: 'no Content-Security-Policy' }];
  const d = cspDirectives(policy);
  const out: Finding[] = [];
  const src = (name: string): string[] | undefined => d.get(name) ?? d.get('default-src');
  const script = src('script-src');
  if (!d.has('default-src')) out.push({ id: 'CSP_NO_DEFAULT', severity: 'medium', detail: 'no default-src' });
  if (!script) out.push({ id: 'CSP_NO_SCRIPT_SRC', severity: 'high', detail: 'scripts are not restricted' });
  for (const v of script ?? []) {
    if (v === "'unsafe-eval'" || v === "'wasm-unsafe-eval'") out.push({ id: 'CSP_UNSAFE_EVAL', severity: 'high', detail: `script-src allows ${v}` });
    if (v === "'unsafe-inline'") out.push({ id: 'CSP_UNSAFE_INLINE_SCRIPT', severity: 'high', detail: "script-src allows 'unsafe-inline'" });
    if (v === '*' || /^(https?|data|blob|ws|wss|file):?$/.test(v)) out.push({ id: 'CSP_SCRIPT_WILDCARD', severity: 'high', detail: `script-src allows ${v}` });
  }
  for (const [name, values] of d) if (values.includes('*')) out.push({ id: 'CSP_WILDCARD', severity: 'medium', detail: `${name} allows *` });
  if (src('object-src')?.join(' ') !== "'none'") out.push({ id: 'CSP_OBJECT_SRC', severity: 'medium', detail: "object-src should be 'none'" });
  if (!d.has('base-uri')) out.push({ id: 'CSP_BASE_URI', severity: 'medium', detail: 'base-uri is not restricted' });
  if (d.get('frame-ancestors')?.join(' ') !== "'none'") out.push({ id: 'CSP_FRAME_ANCESTORS', severity: 'low', detail: "frame-ancestors should be 'none'" });
  if (src('style-src')?.includes("'unsafe-inline'")) out.push({ id: 'CSP_UNSAFE_INLINE_STYLE', severity: 'low', detail: "style-src allows 'unsafe-inline'" });
  return out;
}

/** Checks the main process's Electron code (src-main/app/*.ts) as text. */
export function auditMainSource(files: ReadonlyMap<string, string>): Finding[] {
  const all = [...files.values()].join('\n');
  const out: Finding[] = [];
  const need = (id: string, severity: Severity, re: RegExp, detail: string): void => {
    if (!re.test(all)) out.push({ id, severity, detail });
  };
  const forbid = (id: string, severity: Severity, re: RegExp, detail: string): void => {
    for (const [name, text] of files) if (re.test(text)) out.push({ id, severity, detail: `${name}: ${detail}` });
  };
  forbid('NODE_INTEGRATION_LITERAL', 'high', /nodeIntegration\w*\s*:\s*true/, 'enables nodeIntegration');
  forbid('CONTEXT_ISOLATION_LITERAL', 'high', /contextIsolation\s*:\s*false/, 'disables contextIsolation');
  forbid('SANDBOX_LITERAL', 'high', /sandbox\s*:\s*false/, 'disables the sandbox');
  forbid('WEB_SECURITY_LITERAL', 'high', /webSecurity\s*:\s*false/, 'disables webSecurity');
  forbid('INSECURE_CONTENT_LITERAL', 'high', /allowRunningInsecureContent\s*:\s*true/, 'allows insecure content');
  forbid('LOAD_FILE', 'medium', /\.loadFile\(/, 'loads the renderer from file:// (the header CSP does not apply there)');
  forbid('EXECUTE_JS', 'medium', /executeJavaScript\(/, 'runs code in the renderer');
  forbid('REMOTE_MODULE', 'high', /@electron\/remote|enableRemoteModule/, 'uses the remote module');
  forbid('IGNORE_CERTS', 'high', /certificate-error|setCertificateVerifyProc|ignore-certificate-errors/, 'weakens TLS checks');
  forbid('OPEN_EXTERNAL_RAW', 'high', /openExternal\((?!url\))/, 'passes something other than the host-checked url to shell.openExternal');
  need('WINDOW_OPEN_HANDLER', 'high', /setWindowOpenHandler\(\(\) => \(\{ action: 'deny' \}\)\)/, 'new windows are not denied');
  need('NAVIGATION_LOCK', 'high', /'will-navigate', \(e\) => e\.preventDefault\(\)/, 'navigation is not locked');
  need('WEBVIEW_ATTACH_LOCK', 'medium', /'will-attach-webview', \(e\) => e\.preventDefault\(\)/, '<webview> attach is not prevented');
  need('PERMISSION_HANDLER', 'medium', /setPermissionRequestHandler\(/, 'permission requests are not handled');
  need('SENDER_CHECK', 'high', /senderFrame/, 'IPC does not check the sender frame');
  need('SINGLE_INSTANCE', 'low', /requestSingleInstanceLock\(\)/, 'no single-instance lock');
  need('PRELOAD_PREFS', 'high', /webPreferences: \{ \.\.\.WEB_PREFERENCES, preload: /, 'the window does not use WEB_PREFERENCES');
  need('CSP_HEADER', 'high', /'content-security-policy': CSP/, 'the renderer is not served with the CSP header');
  return out;
}
