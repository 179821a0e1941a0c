import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'electron-vite';
import type { Plugin } from 'vite';

const __dirname = dirname(fileURLToPath(import.meta.url));

// Explicit entries for the three Electron targets. The renderer root is src-renderer.
export default defineConfig({
  main: {
    build: {
      outDir: 'out/main',
      // weft.js: the `weft` command, bundled (weftd runs it as `weft daemon` with ELECTRON_RUN_AS_NODE=1 from
      // /usr/bin/weft, resources/linux/weft; `npm run build:cli` makes the same bundle for plain Node).
      rollupOptions: { input: { main: resolve(__dirname, 'src-main/app/main.ts'), weft: resolve(__dirname, 'src-main/app/weft-main.ts') } },
    },
  },
  preload: {
    build: {
      outDir: 'out/preload',
      // A sandboxed preload cannot be an ES module, so it is emitted as CommonJS, and it can require only
      // 'electron': its dependencies (zod, for the contract checks) are bundled in.
      externalizeDeps: false,
      rollupOptions: {
        input: { index: resolve(__dirname, 'src-main/preload/index.ts') },
        output: { format: 'cjs', entryFileNames: '[name].cjs' },
      },
    },
  },
  renderer: {
    root: resolve(__dirname, 'src-renderer'),
    plugins: [react(), cspSafeReactPreamble()],
    build: {
      outDir: 'out/renderer',
      rollupOptions: { input: { index: resolve(__dirname, 'src-renderer/index.html') } },
    },
  },
});

/**
 * In dev (serve) mode @vitejs/plugin-react injects its Fast Refresh preamble as an inline <script type="module">,
 * which the renderer's CSP (script-src 'self', no 'unsafe-inline') refuses: a console error and "can't detect
 * preamble" in every component. This moves the same code into a same-origin module the page loads by URL, in the
 * same place, so the policy stays strict. Builds have no preamble; the plugin does nothing there.
 */
function cspSafeReactPreamble(): Plugin {
  const url = '/@weft/react-preamble.js';
  const inline = /<script type="module">\s*(import \{ injectIntoGlobalHook \}[\s\S]*?)<\/script>/;
  let code: string | null = null;
  return {
    name: 'weft:csp-safe-react-preamble',
    apply: 'serve',
    resolveId(id) {
      return id === url ? url : null;
    },
    load(id) {
      return id === url ? (code ?? '') : null;
    },
    transformIndexHtml: {
      order: 'post',
      handler(html) {
        const m = inline.exec(html);
        if (!m) return html;
        code = m[1] ?? '';
        return html.replace(m[0], `<script type="module" src="${url}"></script>`);
      },
    },
  };
}
