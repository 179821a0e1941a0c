/**
 * Dependency-direction test: parses every import in the source tree and fails on a forbidden edge.
 * The TypeScript form of tailscale's deptest and VS Code's layering rule; see reference/style.md §1.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../support/vectors.ts';

/** Every npm package the sources may import, classified by where it can run. */
const PACKAGES: Record<string, 'isomorphic' | 'node' | 'electron' | 'dom'> = {
  zod: 'isomorphic',
  '@noble/hashes': 'isomorphic',
  '@noble/curves': 'isomorphic',
  '@noble/ciphers': 'isomorphic',
  fzstd: 'isomorphic',
  'tsx': 'node',
  electron: 'electron',
  react: 'dom',
  'react-dom': 'dom',
  zustand: 'dom',
  'd3-force': 'isomorphic',
  // The app's one-time weftd set-up behind a graphical password prompt (app/main.ts, host/service.ts).
  'sudo-prompt': 'node',
  ws: 'node',
  // weft server's database (server/store/sqlite.ts) and the admin CLI that shares it.
  'better-sqlite3': 'node',
  vite: 'node',
  // The QR code of "Create a network on this computer" (host/local-network.ts), as an SVG string.
  qrcode: 'isomorphic',
  '@vitejs/plugin-react': 'node',
  // MagicDNS's DNS wire format (engine/dns); it uses node's Buffer.
  'dns-packet': 'node',
  // weft server's policy files: JSON with comments and trailing commas (HuJSON), with offsets for errors.
  'jsonc-parser': 'isomorphic',
};

/** Files of the Electron shell that tests import, so they must not import electron (not even indirectly). */
const APP_ELECTRON_FREE = [/^src-main\/app\/(security|renderer-files|resources|weft-main)\.ts$/];

/**
 * What src-main/app may import from the project besides itself: the host, src-shared, the IPC channel names, and
 * weftd's API client (the app is a client of the service).
 */
function appMayImport(from: string, target: string): boolean {
  if (/^src-main\/(app|host)\//.test(target) || target.startsWith('src-shared/')) return true;
  if (target === 'src-main/preload/channels.ts') return true;
  if (/^src-main\/daemon\/api-(client|server)\.ts$/.test(target)) return true;
  // The CLI entry of the build (out/main/weft.js) runs the `weft` command itself.
  return from === 'src-main/app/weft-main.ts' && target === 'src-main/cli/main.ts';
}

/** Engine files allowed to touch node:* I/O modules; everything else under engine/ must stay pure. */
const ENGINE_IO = [
  /^src-main\/engine\/io\//,
  /^src-main\/engine\/netcheck\/prober\.ts$/,
  /^src-main\/engine\/portmap\/(portmapper|gateway|upnp|keeper)\.ts$/,
  /^src-main\/engine\/control\/(transport|client)\.ts$/,
  /^src-main\/engine\/state\/store\.ts$/,
  /^src-main\/engine\/engine\.ts$/,
  /^src-main\/engine\/magicsock\/conn\.ts$/,
  /^src-main\/engine\/relay\/client\.ts$/,
  /^src-main\/engine\/wg\/(wireguard-go|kernel|stale|uapi-socket|helper|exec|resolve)\.ts$/,
  /^src-main\/engine\/dns\/(server|os)\.ts$/,
  /^src-main\/engine\/system-linux\.ts$/,
];

interface Edge {
  from: string;
  spec: string;
  /** Repo-relative path for relative imports, else the bare specifier. */
  target: string;
  kind: 'local' | 'node' | 'package';
}

function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (/\.(ts|tsx|mts|mjs)$/.test(name) && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

function edges(): Edge[] {
  const out: Edge[] = [];
  const files = ['src-main', 'src-shared', 'src-renderer'].flatMap((d) => walk(resolve(repoRoot, d)));
  const re = /(?:^|[^\w.])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|require\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;
  for (const f of files) {
    const src = readFileSync(f, 'utf8');
    const from = relative(repoRoot, f);
    for (const m of src.matchAll(re)) {
      const spec = m[1] ?? m[2] ?? m[3] ?? m[4]!;
      if (spec.startsWith('.')) out.push({ from, spec, target: relative(repoRoot, resolve(dirname(f), spec)), kind: 'local' });
      else if (spec.startsWith('node:')) out.push({ from, spec, target: spec, kind: 'node' });
      else {
        const pkg = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
        out.push({ from, spec, target: pkg, kind: 'package' });
      }
    }
  }
  return out;
}

/** Returns a reason when the edge breaks a rule, else null. */
function violation(e: Edge): string | null {
  const f = e.from;
  const t = e.target;
  if (e.kind === 'package' && !PACKAGES[t]) return `unclassified npm package ${t} (add it to PACKAGES)`;
  const cls = e.kind === 'package' ? PACKAGES[t] : undefined;
  if (f.startsWith('src-shared/')) {
    if (e.kind === 'node') return 'src-shared must not import node:*';
    if (e.kind === 'package' && cls !== 'isomorphic') return `src-shared must only import isomorphic packages, not ${t}`;
    if (e.kind === 'local' && !t.startsWith('src-shared/')) return 'src-shared imports nothing from the rest of the project';
  }
  if (f.startsWith('src-main/protocol/')) {
    if (e.kind === 'node') return 'protocol codecs are pure: no node:*';
    if (e.kind === 'package' && cls !== 'isomorphic') return `protocol must only import isomorphic packages, not ${t}`;
    if (e.kind === 'local' && !t.startsWith('src-main/protocol/') && !t.startsWith('src-shared/')) return 'protocol imports only protocol and src-shared';
  }
  if (f.startsWith('src-main/engine/')) {
    if (cls === 'electron' || cls === 'dom') return `the engine never imports ${t}`;
    if (e.kind === 'local' && /^src-main\/(app|host|preload|cli|server|devbridge)\//.test(t)) return `the engine never imports ${t}`;
    if (e.kind === 'local' && t.startsWith('src-renderer/')) return 'the engine never imports the renderer';
    if (e.kind === 'node' && !ENGINE_IO.some((r) => r.test(f))) return `${f} is pure engine code and must not import ${t} (only the I/O adapters may)`;
  }
  if (f.startsWith('src-main/server/')) {
    if (cls === 'electron' || cls === 'dom') return `the server never imports ${t}`;
    if (e.kind === 'local' && /^src-main\/(app|preload|cli)\//.test(t)) return `the server never imports ${t}`;
    if (e.kind === 'local' && t.startsWith('src-main/engine/') && !/^src-main\/engine\/(io|sys)\//.test(t))
      return 'the server may share only the engine I/O adapters and sys/, never engine logic';
  }
  if (f.startsWith('src-main/host/')) {
    if (cls === 'electron' || cls === 'dom') return `the host is Electron-free and never imports ${t}`;
    // "Create a network on this computer": one host file composes the embedded server, as `weft server` does.
    const composesServer = f === 'src-main/host/local-network.ts' && t.startsWith('src-main/server/');
    if (e.kind === 'local' && !composesServer && /^src-main\/(app|preload|cli|server|devbridge)\//.test(t)) return `the host never imports ${t}`;
    if (e.kind === 'local' && t.startsWith('src-renderer/')) return 'the host never imports the renderer';
  }
  if (f.startsWith('src-main/app/')) {
    if (cls === 'dom') return `the Electron shell never imports ${t}`;
    if (cls === 'electron' && APP_ELECTRON_FREE.some((r) => r.test(f))) return `${f} must stay Electron-free (tests import it)`;
    if (e.kind === 'local' && !appMayImport(f, t)) return `the Electron shell reaches the engine only through src-main/host, not ${t}`;
  }
  if (f.startsWith('src-main/daemon/')) {
    if (cls === 'electron' || cls === 'dom') return `weftd never imports ${t}`;
    if (e.kind === 'local' && /^src-main\/(app|preload|cli|devbridge|server)\//.test(t)) return `weftd never imports ${t}`;
    if (e.kind === 'local' && t.startsWith('src-renderer/')) return 'weftd never imports the renderer';
  }
  if (f.startsWith('src-main/host/') && e.kind === 'local' && t.startsWith('src-main/daemon/')) return 'the host is composed by weftd and never imports it (the app passes a DaemonLink)';
  if (f.startsWith('src-main/cli/') && (cls === 'electron' || cls === 'dom' || /^src-main\/(app|preload)\//.test(t))) return 'the CLI runs without Electron';
  if (f.startsWith('src-main/preload/')) {
    if (e.kind === 'node') return 'the sandboxed preload cannot use node:*';
    if (e.kind === 'local' && !t.startsWith('src-shared/') && !t.startsWith('src-main/preload/')) return 'preload imports only src-shared';
    if (e.kind === 'package' && cls !== 'electron' && cls !== 'isomorphic') return `preload must not import ${t}`;
  }
  if (f.startsWith('src-renderer/')) {
    if (e.kind === 'node' || cls === 'electron' || cls === 'node') return `the renderer must not import ${t}`;
    if (e.kind === 'local' && !t.startsWith('src-renderer/') && !t.startsWith('src-shared/')) return 'the renderer imports only its own files and src-shared';
  }
  if (!f.startsWith('src-main/app/') && !f.startsWith('src-main/preload/') && cls === 'electron') return 'only src-main/app and the preload may import electron';
  return null;
}

describe('dependency direction', () => {
  const all = edges();

  it('finds the imports it checks (guards against a broken scanner)', () => {
    expect(all.some((e) => e.from.startsWith('src-main/engine/') && e.kind === 'local')).toBe(true);
    expect(all.some((e) => e.target === 'zod')).toBe(true);
  });

  it('has no forbidden edge', () => {
    const bad = all.map((e) => ({ e, why: violation(e) })).filter((x) => x.why !== null);
    expect(bad.map((x) => `${x.e.from} → ${x.e.spec}: ${x.why}`)).toEqual([]);
  });

  it.each([
    [{ from: 'src-main/app/main.ts', spec: '../host/host.ts', target: 'src-main/host/host.ts', kind: 'local' }],
    [{ from: 'src-main/app/ipc-server.ts', spec: '../preload/channels.ts', target: 'src-main/preload/channels.ts', kind: 'local' }],
    [{ from: 'src-main/app/weft-main.ts', spec: '../cli/main.ts', target: 'src-main/cli/main.ts', kind: 'local' }],
    [{ from: 'src-main/app/main.ts', spec: 'sudo-prompt', target: 'sudo-prompt', kind: 'package' }],
    [{ from: 'src-main/app/main.ts', spec: '../daemon/api-client.ts', target: 'src-main/daemon/api-client.ts', kind: 'local' }],
    [{ from: 'src-main/daemon/weftd.ts', spec: '../host/host.ts', target: 'src-main/host/host.ts', kind: 'local' }],
    [{ from: 'src-main/devbridge/daemon-backend.ts', spec: '../daemon/api-client.ts', target: 'src-main/daemon/api-client.ts', kind: 'local' }],
    [{ from: 'src-main/server/store/sqlite.ts', spec: 'better-sqlite3', target: 'better-sqlite3', kind: 'package' }],
    [{ from: 'src-main/host/local-network.ts', spec: '../server/server.ts', target: 'src-main/server/server.ts', kind: 'local' }],
    [{ from: 'src-main/cli/commands/server-admin.ts', spec: '../../server/store/sqlite.ts', target: 'src-main/server/store/sqlite.ts', kind: 'local' }],
  ] as const)('allows %o', (edge) => {
    expect(violation(edge)).toBeNull();
  });

  it.each([
    [{ from: 'src-main/engine/netcheck/report.ts', spec: 'electron', target: 'electron', kind: 'package' }, /never imports electron/],
    [{ from: 'src-main/engine/netcheck/report.ts', spec: 'node:dgram', target: 'node:dgram', kind: 'node' }, /pure engine code/],
    [{ from: 'src-main/engine/x.ts', spec: '../app/main.ts', target: 'src-main/app/main.ts', kind: 'local' }, /never imports/],
    [{ from: 'src-shared/model/x.ts', spec: 'node:fs', target: 'node:fs', kind: 'node' }, /src-shared/],
    [{ from: 'src-main/protocol/wire/x.ts', spec: '../../engine/io/udp.ts', target: 'src-main/engine/io/udp.ts', kind: 'local' }, /protocol imports only/],
    [{ from: 'src-renderer/src/App.tsx', spec: '../../src-main/engine/x.ts', target: 'src-main/engine/x.ts', kind: 'local' }, /renderer imports only/],
    [{ from: 'src-renderer/src/App.tsx', spec: 'better-sqlite3', target: 'better-sqlite3', kind: 'package' }, /renderer must not import/],
    [{ from: 'src-main/server/x.ts', spec: '../engine/netcheck/report.ts', target: 'src-main/engine/netcheck/report.ts', kind: 'local' }, /never engine logic/],
    [{ from: 'src-main/engine/x.ts', spec: 'left-pad', target: 'left-pad', kind: 'package' }, /unclassified/],
    [{ from: 'src-main/host/host.ts', spec: 'electron', target: 'electron', kind: 'package' }, /host is Electron-free/],
    [{ from: 'src-main/host/host.ts', spec: '../app/tray.ts', target: 'src-main/app/tray.ts', kind: 'local' }, /host never imports/],
    [{ from: 'src-main/host/host.ts', spec: '../server/server.ts', target: 'src-main/server/server.ts', kind: 'local' }, /host never imports/],
    [{ from: 'src-main/engine/engine.ts', spec: '../host/host.ts', target: 'src-main/host/host.ts', kind: 'local' }, /engine never imports/],
    [{ from: 'src-main/app/main.ts', spec: '../engine/engine.ts', target: 'src-main/engine/engine.ts', kind: 'local' }, /only through src-main\/host/],
    [{ from: 'src-main/app/security.ts', spec: 'electron', target: 'electron', kind: 'package' }, /must stay Electron-free/],
    [{ from: 'src-main/app/tray.ts', spec: 'react', target: 'react', kind: 'package' }, /never imports react/],
    [{ from: 'src-main/app/main.ts', spec: '../cli/main.ts', target: 'src-main/cli/main.ts', kind: 'local' }, /only through src-main\/host/],
    [{ from: 'src-main/app/main.ts', spec: '../daemon/weftd.ts', target: 'src-main/daemon/weftd.ts', kind: 'local' }, /only through src-main\/host/],
    [{ from: 'src-main/daemon/weftd.ts', spec: 'electron', target: 'electron', kind: 'package' }, /weftd never imports electron/],
    [{ from: 'src-main/daemon/weftd.ts', spec: '../cli/main.ts', target: 'src-main/cli/main.ts', kind: 'local' }, /weftd never imports/],
    [{ from: 'src-main/host/host.ts', spec: '../daemon/api-client.ts', target: 'src-main/daemon/api-client.ts', kind: 'local' }, /never imports it/],
    [{ from: 'src-main/preload/index.ts', spec: '../host/host.ts', target: 'src-main/host/host.ts', kind: 'local' }, /preload imports only/],
  ] as const)('rejects %o', (edge, why) => {
    expect(violation(edge)).toMatch(why);
  });
});
