/**
 * The Content-Security-Policy the dev bridge serves the renderer with (pure). It starts from the policy in the
 * renderer's index.html (`<meta http-equiv="Content-Security-Policy">`) and changes only what a browser talking to
 * the bridge needs:
 *  - connect-src also allows ws://127.0.0.1:* (the bridge, and Vite's HMR socket);
 *  - script-src also allows each inline script of the served page by its sha256 hash (Vite dev mode injects one:
 *    the React Fast Refresh preamble), never 'unsafe-inline' or 'unsafe-eval';
 *  - in Vite dev mode, style-src allows 'unsafe-inline' (Vite injects CSS with <style> elements).
 * The result goes into the response header and replaces the page's meta policy, so both say the same.
 */
import { createHash } from 'node:crypto';

/** What index.html declares today; used when the page carries no policy of its own. */
export const BASELINE_CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:";
export const BRIDGE_CONNECT_SRC = 'ws://127.0.0.1:*';

const META_RE = /<meta\b[^>]*http-equiv\s*=\s*["']?content-security-policy["']?[^>]*>/i;
const CONTENT_RE = /\bcontent\s*=\s*(?:"([^"]*)"|'([^']*)')/i;
const SCRIPT_RE = /<script\b([^>]*)>([\s\S]*?)<\/script>/gi;

/** Parses a policy into ordered directives (names lower-cased; the first occurrence wins, as in browsers). */
export function parseCsp(policy: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const part of policy.split(';')) {
    const [name, ...values] = part.trim().split(/\s+/).filter((x) => x !== '');
    if (!name) continue;
    const key = name.toLowerCase();
    if (!out.has(key)) out.set(key, values);
  }
  return out;
}

export function formatCsp(d: ReadonlyMap<string, readonly string[]>): string {
  return [...d.entries()].map(([k, v]) => [k, ...v].join(' ')).join('; ');
}

/** The page's own policy from its meta tag, or null. */
export function metaCsp(html: string): string | null {
  const m = META_RE.exec(html);
  if (!m) return null;
  const c = CONTENT_RE.exec(m[0]);
  return c ? (c[1] ?? c[2] ?? '').replace(/&#39;|&apos;/g, "'").replace(/&quot;/g, '"').replace(/&amp;/g, '&') : null;
}

/** sha256 source expressions for every inline <script> (no src attribute) in the page. */
export function inlineScriptHashes(html: string): string[] {
  const out: string[] = [];
  for (const m of html.matchAll(SCRIPT_RE)) {
    const attrs = m[1] ?? '';
    const body = m[2] ?? '';
    if (/\bsrc\s*=/i.test(attrs) || body === '') continue;
    out.push(`'sha256-${createHash('sha256').update(body, 'utf8').digest('base64')}'`);
  }
  return [...new Set(out)];
}

function add(list: string[], ...values: string[]): string[] {
  const out = list.filter((v) => v !== "'none'");
  for (const v of values) if (!out.includes(v)) out.push(v);
  return out;
}

/** The policy for serving `html` through the dev bridge (see the file comment). */
export function bridgeCsp(html: string, opts: { devServer: boolean }): string {
  const d = parseCsp(metaCsp(html) ?? BASELINE_CSP);
  const fallback = d.get('default-src') ?? ["'self'"];
  d.set('connect-src', add(d.get('connect-src') ?? [...fallback], "'self'", BRIDGE_CONNECT_SRC));
  const hashes = inlineScriptHashes(html);
  if (hashes.length > 0) d.set('script-src', add(d.get('script-src') ?? [...fallback], ...hashes));
  if (opts.devServer) d.set('style-src', add(d.get('style-src') ?? [...fallback], "'unsafe-inline'"));
  return formatCsp(d);
}

/** Puts `policy` into the page's meta tag (adding one at the top of <head> if there is none). */
export function withMetaCsp(html: string, policy: string): string {
  const tag = `<meta http-equiv="Content-Security-Policy" content="${policy.replace(/&/g, '&amp;').replace(/"/g, '&quot;')}" />`;
  if (META_RE.test(html)) return html.replace(META_RE, () => tag);
  return /<head\b[^>]*>/i.test(html) ? html.replace(/<head\b[^>]*>/i, (h) => `${h}\n    ${tag}`) : `${tag}\n${html}`;
}
