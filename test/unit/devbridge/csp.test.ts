import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { BASELINE_CSP, bridgeCsp, inlineScriptHashes, metaCsp, parseCsp, withMetaCsp } from '../../../src-main/devbridge/csp.ts';

const PAGE = `<!doctype html>
<html lang="en">
  <head>
    <script type="module">import { injectIntoGlobalHook } from "/@react-refresh";
injectIntoGlobalHook(window);</script>
    <script type="module" src="/@vite/client"></script>
    <meta charset="UTF-8" />
    <meta http-equiv="Content-Security-Policy" content="default-src 'self'; script-src 'self'; img-src 'self' data:" />
  </head>
  <body><div id="root"></div><script type="module" src="./src/main.tsx"></script></body>
</html>`;

describe('dev bridge CSP', () => {
  it('reads the page policy and its inline scripts', () => {
    expect(metaCsp(PAGE)).toBe("default-src 'self'; script-src 'self'; img-src 'self' data:");
    expect(metaCsp('<html></html>')).toBeNull();
    const body = 'import { injectIntoGlobalHook } from "/@react-refresh";\ninjectIntoGlobalHook(window);';
    expect(inlineScriptHashes(PAGE)).toEqual([`'sha256-${createHash('sha256').update(body).digest('base64')}'`]);
  });

  it('adds the bridge to connect-src and hashes to script-src, never unsafe-inline scripts or eval', () => {
    const d = parseCsp(bridgeCsp(PAGE, { devServer: true }));
    expect(d.get('connect-src')).toEqual(["'self'", 'ws://127.0.0.1:*']);
    expect(d.get('script-src')).toEqual(["'self'", inlineScriptHashes(PAGE)[0]]);
    expect(d.get('style-src')).toEqual(["'self'", "'unsafe-inline'"]);
    expect(d.get('default-src')).toEqual(["'self'"]);
    expect(d.get('img-src')).toEqual(["'self'", 'data:']);
    expect(bridgeCsp(PAGE, { devServer: true })).not.toMatch(/unsafe-eval|script-src[^;]*unsafe-inline/);
  });

  it('keeps an explicit connect-src and uses the baseline when the page has no policy', () => {
    const page = `<head><meta http-equiv="Content-Security-Policy" content="default-src 'none'; connect-src https://x.example"></head>`;
    expect(parseCsp(bridgeCsp(page, { devServer: false })).get('connect-src')).toEqual(['https://x.example', "'self'", 'ws://127.0.0.1:*']);
    const none = parseCsp(bridgeCsp('<head></head>', { devServer: false }));
    expect(none.get('script-src')).toEqual(parseCsp(BASELINE_CSP).get('script-src'));
    expect(none.get('connect-src')).toEqual(["'self'", 'ws://127.0.0.1:*']);
  });

  it('writes the policy into the meta tag (replacing or adding it)', () => {
    const p = bridgeCsp(PAGE, { devServer: true });
    expect(metaCsp(withMetaCsp(PAGE, p))).toBe(p);
    expect(metaCsp(withMetaCsp('<html><head><title>x</title></head></html>', p))).toBe(p);
  });
});
