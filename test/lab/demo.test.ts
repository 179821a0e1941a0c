/**
 * `npm run demo` (scripts/demo.ts) as a user runs it: start it as a child process, wait for the URL it prints
 * (< 60 s), open it in Chromium on this machine's loopback (the demo's only way into the lab), check the mesh
 * view shows the three nodes with one direct and one relayed link, save a screenshot to test/artifacts/demo/, then
 * SIGTERM the demo and check it left nothing: no namespace with its prefix, no process that ran in them, no
 * listener on the UI ports.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { launchChromium } from './e2e/browser.ts';
import { WebSocket } from 'ws';
import { afterAll, describe, expect, it } from 'vitest';
import { killMatching, pidsMatching, runMatcher } from './e2e/procs.ts';
import { listNamespaces, pidAlive, REPO_ROOT, sweepStale } from './lab.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(REPO_ROOT, 'test', 'artifacts', 'demo');
const URL_LIMIT_MS = 60_000;
const LINKS_TIMEOUT_MS = 60_000;
const T = (id: string): string => `[data-testid="${id}"]`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let demo: ChildProcess | null = null;
let output = '';
let browser: Browser | null = null;
const marker = `--weft-demo-test=${process.pid.toString(36)}${Date.now().toString(36)}`;
let home: string | null = null;

function waitFor(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = (): void => {
      const m = output.match(re);
      if (m) return resolve(m);
      if (demo?.exitCode !== null || Date.now() - started > timeoutMs) {
        return reject(new Error(`demo: no ${String(re)} (${demo?.exitCode !== null ? `exited ${String(demo?.exitCode)}` : 'timeout'}):\n${output.slice(-4000)}`));
      }
      setTimeout(tick, 100);
    };
    tick();
  });
}

function exited(p: ChildProcess, timeoutMs: number): Promise<number | null | 'timeout'> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve(p.exitCode);
  return Promise.race([new Promise<number | null>((r) => p.once('exit', (code) => r(code))), sleep(timeoutMs).then(() => 'timeout' as const)]);
}

/** PIDs of every process in the network namespaces whose names start with `prefix`. */
function pidsInNamespaces(prefix: string): number[] {
  const pids: number[] = [];
  for (const ns of listNamespaces().filter((n) => n.startsWith(prefix))) {
    const r = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 5000 });
    for (const l of r.stdout.split('\n')) if (/^\d+$/.test(l.trim())) pids.push(Number(l.trim()));
  }
  return pids;
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.setTimeout(2000);
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
    s.once('timeout', () => (s.destroy(), resolve(false)));
  });
}

afterAll(async () => {
  await browser?.close().catch(() => undefined);
  killMatching(runMatcher(marker, home));
  if (demo && demo.exitCode === null && demo.pid !== undefined) {
    try {
      process.kill(-demo.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    await exited(demo, 5000);
  }
  // A demo killed hard leaves its namespaces: the lab's sweep removes those of dead creators.
  sweepStale();
  if (home) rmSync(home, { recursive: true, force: true });
});

describe('npm run demo', () => {
  it('prints the URL within 60 s; the UI shows three nodes, one direct and one relayed link; SIGTERM leaves nothing behind', async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run bash test/setup/ensure-deps.sh`);
    mkdirSync(ARTIFACTS, { recursive: true });
    rmSync(join(ARTIFACTS, 'mesh.png'), { force: true });

    const t0 = Date.now();
    const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'scripts', 'demo.ts')], {
      cwd: REPO_ROOT,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    demo = child;
    child.stdout!.on('data', (d: Buffer) => void (output += d.toString('utf8')));
    child.stderr!.on('data', (d: Buffer) => void (output += d.toString('utf8')));

    const prefix = (await waitFor(/weft demo: lab prefix (\S+)/, 30_000))[1]!;
    const m = await waitFor(/weft demo: open (http:\/\/127\.0\.0\.1:(\d+)\/\?bridge=ws:\/\/127\.0\.0\.1:(\d+)\/\?token=[\w-]{43})/, 90_000);
    const toUrl = Date.now() - t0;
    const url = m[1]!;
    const ports = [Number(m[2]), Number(m[3])];
    console.log(`demo: URL after ${toUrl} ms: ${url}\n${output.split('\n').filter((l) => l.includes('timings')).join('\n')}`);
    expect(toUrl).toBeLessThan(URL_LIMIT_MS);

    // Chromium here, in this machine's namespace: the URL is on this loopback.
    home = mkdtempSync(join(tmpdir(), 'weft-demo-chromium-'));
    browser = await launchChromium({ executablePath: CHROMIUM, homeDir: home, marker });
    const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
    const consoleErrors: string[] = [];
    page.on('console', (msg) => {
      if (msg.type() === 'error') consoleErrors.push(msg.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
    // Without the token the bridge refuses the page's WebSocket: only the printed URL gets in.
    const bare = await new Promise<number | null>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${ports[1]}/`, { headers: { Host: `127.0.0.1:${ports[1]}` } });
      ws.once('unexpected-response', (_q, r) => resolve(r.statusCode ?? null));
      ws.once('open', () => {
        ws.terminate();
        resolve(101);
      });
      ws.once('error', () => resolve(null));
    });
    expect(bare).toBe(403);
    await page.goto(url, { waitUntil: 'load', timeout: 30_000 });
    await page.locator(T('mesh-view')).waitFor({ state: 'visible', timeout: 30_000 });

    // Three nodes (this device and two peers), a1 ↔ b1 direct and a1 ↔ c1 relayed.
    let links: { peer: string | null; kind: string | null }[] = [];
    let nodes = 0;
    const deadline = Date.now() + LINKS_TIMEOUT_MS;
    while (Date.now() < deadline) {
      nodes = (await page.locator(T('self-node')).count()) + (await page.locator(T('mesh-node')).count());
      links = await page.locator(T('mesh-link')).evaluateAll((els) => els.map((e) => ({ peer: e.getAttribute('data-peer'), kind: e.getAttribute('data-kind') })));
      const kinds = links.map((l) => `${String(l.peer)}:${String(l.kind)}`).sort();
      if (nodes === 3 && kinds.join(',') === 'direct-b1:direct,relayed-c1:relay') break;
      await sleep(500);
    }
    const shot = join(ARTIFACTS, 'mesh.png');
    await page.screenshot({ path: shot, fullPage: true, timeout: 15_000 });
    console.log(`demo: screenshot ${shot}; links ${JSON.stringify(links)}; ready to links ${Date.now() - t0} ms`);
    expect(nodes, output.slice(-3000)).toBe(3);
    expect(links.map((l) => `${String(l.peer)}:${String(l.kind)}`).sort(), output.slice(-3000)).toEqual(['direct-b1:direct', 'relayed-c1:relay']);
    expect(existsSync(shot)).toBe(true);
    expect(consoleErrors).toEqual([]);
    await browser.close();
    browser = null;

    // SIGTERM: the demo exits 0 and leaves no namespace, no process from them, no listener on the UI ports.
    const inLab = pidsInNamespaces(prefix);
    expect(inLab.length).toBeGreaterThan(0);
    process.kill(child.pid!, 'SIGTERM');
    const code = await exited(child, 30_000);
    expect(code, output.slice(-3000)).toBe(0);
    expect(output).toMatch(/weft demo: stopped; lab removed/);
    expect(listNamespaces().filter((n) => n.startsWith(prefix))).toEqual([]);
    await sleep(200);
    expect(inLab.filter((pid) => pidAlive(pid))).toEqual([]);
    expect(pidsMatching((argv) => argv.some((a) => a.includes(`weft-lab-${prefix}`)))).toEqual([]);
    for (const p of ports) expect(await portOpen(p), `port ${p} still listening`).toBe(false);
  }, 240_000);
});
