/**
 * The browser half of the end-to-end test (test/lab/app-e2e.test.ts). Runs inside the lab namespace of the node
 * under test (loopback is per namespace, so the page can reach the dev bridge there), launches Debian's Chromium
 * with playwright-core, and drives the renderer through the join and the mesh checks.
 *
 *   node --import tsx test/lab/e2e/drive.ts '<DriveConfig as JSON>'
 *
 * Progress and results go to stdout as lines `E2E {json}`:
 *   {"step":"join-screen"}                         the join screen is up (screenshot taken)
 *   {"step":"joined","self":{...}}                 join-stage reached connected; the test starts traffic now
 *   {"step":"result", ...DriveResult}              last line; exit code 0 when ok
 * Every wait is bounded; Chromium is closed in `finally` (and carries `--weft-e2e=<marker>` on its command line so
 * the test can find and kill it by PID if this process dies first).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from './browser.ts';
import { bridgeCall } from './bridge-client.ts';
import type { MeshSnapshot } from '../../../src-shared/model/mesh.ts';
import type { NetcheckReport } from '../../../src-shared/model/netcheck.ts';

export interface DriveConfig {
  /** The page, e.g. http://127.0.0.1:PORT/?bridge=ws://127.0.0.1:PORT2 */
  url: string;
  bridgeUrl: string;
  /** What the join form gets. */
  serverUrl: string;
  authKey: string;
  /** Screenshots go here. */
  outDir: string;
  /** Peer names (data-peer) expected on a direct and on a relayed link. */
  directPeer: string;
  relayedPeer: string;
  /** Unique per run (an argument such as `--weft-e2e=<id>`); put on Chromium's command line. */
  marker: string;
  chromium: string;
  /** HOME / XDG dirs / TMPDIR for Chromium (natlab.md §7: it writes there even with --user-data-dir). */
  homeDir: string;
  joinTimeoutMs: number;
  linksTimeoutMs: number;
}

export interface LinkAttrs {
  peer: string | null;
  kind: string | null;
  region: string | null;
}

export interface DriveResult {
  ok: boolean;
  /** The first failure, when not ok. */
  error: string | null;
  /** data-stage values in the order they were seen. */
  stages: string[];
  /**
   * How the join was seen to complete: join-stage showed 'connected', or the UI went from the join stages straight
   * to the mesh view while the host reported control connected.
   */
  joinedVia: 'stage' | 'mesh-view' | null;
  links: LinkAttrs[];
  whyRelayed: string | null;
  /** The netcheck report the device page produced. */
  netcheck: NetcheckReport | null;
  screenshots: string[];
  consoleErrors: string[];
  consoleWarnings: string[];
  snapshot: MeshSnapshot | null;
  /** The relayed peer's DNS name as its detail shows it (data-testid peer-fqdn). */
  peerFqdn: string | null;
  /** The effective-access card: the port texts it lists, and its filter line. */
  accessPorts: string[];
  accessFilter: string | null;
  timings: Record<string, number>;
}

const T = (id: string): string => `[data-testid="${id}"]`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function out(step: string, data: object = {}): void {
  process.stdout.write(`E2E ${JSON.stringify({ step, ...data })}\n`);
}

async function visible(page: Page, selector: string): Promise<boolean> {
  return page.locator(selector).first().isVisible().catch(() => false);
}

async function readLinks(page: Page): Promise<LinkAttrs[]> {
  return page.locator(T('mesh-link')).evaluateAll((els) =>
    els.map((e) => ({ peer: e.getAttribute('data-peer'), kind: e.getAttribute('data-kind'), region: e.getAttribute('data-region') })),
  );
}

async function drive(cfg: DriveConfig, r: DriveResult, page: Page): Promise<void> {
  const t0 = Date.now();
  const mark = (name: string): void => {
    r.timings[name] = Date.now() - t0;
  };
  const shot = async (name: string): Promise<void> => {
    const path = join(cfg.outDir, `${name}.png`);
    await page.screenshot({ path, fullPage: true, timeout: 15_000 });
    r.screenshots.push(path);
  };

  // Every join stage the page renders, however briefly (the UI may leave the join screen in the same render that
  // shows 'connected'): a MutationObserver installed before the page's own scripts (CDP, not subject to its CSP).
  // (A string, not a function: tsx's transform would add helpers such as __name that do not exist in the page.)
  await page.addInitScript({
    content: `(() => {
      const stages = (window.__weftStages = []);
      new MutationObserver(() => {
        for (const el of document.querySelectorAll('[data-testid="join-stage"]')) {
          const st = el.getAttribute('data-stage');
          if (st && stages[stages.length - 1] !== st) stages.push(st);
        }
      }).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-stage'] });
    })();`,
  });
  const stagesSeen = async (): Promise<string[]> => {
    const v: unknown = await page.evaluate('window.__weftStages || []').catch(() => []);
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  };

  // 1. The join screen.
  await page.goto(cfg.url, { waitUntil: 'load', timeout: 30_000 });
  await page.locator(T('join-screen')).waitFor({ state: 'visible', timeout: 30_000 });
  mark('join-screen');
  await shot('join-screen');
  out('join-screen');

  // 2. Join with the auth key.
  if (await visible(page, T('join-mode-authkey'))) await page.locator(T('join-mode-authkey')).click({ timeout: 5000 });
  await page.locator(T('join-server-url')).fill(cfg.serverUrl, { timeout: 5000 });
  await page.locator(T('join-auth-key')).fill(cfg.authKey, { timeout: 5000 });
  await page.locator(T('join-submit')).click({ timeout: 5000 });
  const deadline = Date.now() + cfg.joinTimeoutMs;
  let joined = false;
  while (Date.now() < deadline) {
    r.stages = await stagesSeen();
    const stage = r.stages[r.stages.length - 1] ?? null;
    if (r.stages.includes('connected')) {
      r.joinedVia = 'stage';
      joined = true;
      break;
    }
    if (stage === 'failed' || (await visible(page, T('join-error')))) {
      const why = await page.locator(T('join-error')).first().innerText({ timeout: 1000 }).catch(() => '(no join-error text)');
      throw new Error(`join failed at stage ${stage ?? '?'}: ${why}`);
    }
    // The UI may leave the join screen in the very render that would show 'connected' (it holds the screen only
    // until then): that counts when the host says control is connected.
    if (r.stages.length > 0 && !(await visible(page, T('join-screen'))) && (await visible(page, T('mesh-view')))) {
      const s = await bridgeCall(cfg.bridgeUrl, 'mesh:snapshot', {});
      if (s.ok && s.value.control?.state === 'connected') {
        r.joinedVia = 'mesh-view';
        joined = true;
        break;
      }
    }
    await sleep(150);
  }
  if (!joined) throw new Error(`join-stage did not reach connected within ${cfg.joinTimeoutMs} ms (stages seen: ${r.stages.join(' → ') || 'none'})`);
  mark('joined');
  const snap = await bridgeCall(cfg.bridgeUrl, 'mesh:snapshot', {});
  out('joined', { self: snap.ok ? snap.value.self : null });

  // 3. The mesh view: exactly one direct and one relayed link (the test makes traffic meanwhile).
  if (await visible(page, T('nav-mesh'))) await page.locator(T('nav-mesh')).click({ timeout: 5000 });
  await page.locator(T('mesh-view')).waitFor({ state: 'visible', timeout: 15_000 });
  const linksDeadline = Date.now() + cfg.linksTimeoutMs;
  let good = false;
  let last = '';
  while (Date.now() < linksDeadline) {
    r.links = await readLinks(page);
    const now = JSON.stringify(r.links);
    if (now !== last) out('links', { links: r.links });
    last = now;
    const direct = r.links.filter((l) => l.kind === 'direct');
    const relay = r.links.filter((l) => l.kind === 'relay');
    if (direct.length === 1 && relay.length === 1 && direct[0]!.peer === cfg.directPeer && relay[0]!.peer === cfg.relayedPeer) {
      good = true;
      break;
    }
    await sleep(500);
  }
  mark('links');
  await shot('mesh-view');
  if (!good) throw new Error(`the mesh view did not show ${cfg.directPeer} direct and ${cfg.relayedPeer} relayed within ${cfg.linksTimeoutMs} ms: ${last}`);

  // 4. A netcheck from the device page: this device's side of the NAT picture, for the explanation.
  await page.locator(T('nav-device')).click({ timeout: 5000 });
  await page.locator(T('device-card')).waitFor({ state: 'visible', timeout: 10_000 });
  await page.locator(T('run-netcheck')).click({ timeout: 5000 });
  const ncDeadline = Date.now() + 30_000;
  while (Date.now() < ncDeadline) {
    const s = await bridgeCall(cfg.bridgeUrl, 'mesh:snapshot', {});
    if (s.ok && s.value.netcheck) {
      r.netcheck = s.value.netcheck;
      break;
    }
    await sleep(500);
  }
  if (!r.netcheck) throw new Error('netcheck from the device page did not finish within 30 s');
  await sleep(500); // the page renders the report from its mesh:delta
  mark('netcheck');
  // Who can reach this device: the ACL's ports, computed from the filter the engine enforces.
  await page.locator(T('access-card')).waitFor({ state: 'visible', timeout: 10_000 });
  const accessDeadline = Date.now() + 20_000;
  while (Date.now() < accessDeadline) {
    r.accessPorts = (await page.locator(`${T('access-card')} ${T('access-port')}`).allInnerTexts()).map((t) => t.trim());
    if (r.accessPorts.length > 0) break;
    await sleep(500);
  }
  r.accessFilter = (await page.locator(T('access-filter')).first().innerText({ timeout: 5000 }).catch(() => '')).trim() || null;
  await page.locator(T('access-card')).scrollIntoViewIfNeeded({ timeout: 5000 }).catch(() => undefined);
  await shot('device');

  // 5. The relayed peer's detail explains why.
  const row = page.locator(`${T('peer-row')}[data-peer="${cfg.relayedPeer}"]`).first();
  if (!(await row.isVisible().catch(() => false)) && (await visible(page, T('nav-peers')))) await page.locator(T('nav-peers')).click({ timeout: 5000 });
  await row.click({ timeout: 15_000 });
  await page.locator(T('peer-detail')).waitFor({ state: 'visible', timeout: 10_000 });
  const why = page.locator(`${T('peer-detail')} ${T('why-relayed')}`).first();
  await why.waitFor({ state: 'visible', timeout: 10_000 });
  r.whyRelayed = (await why.innerText({ timeout: 5000 })).trim();
  r.peerFqdn = (await page.locator(`${T('peer-detail')} ${T('peer-fqdn')}`).first().innerText({ timeout: 5000 }).catch(() => '')).trim() || null;
  mark('peer-detail');
  await shot('peer-detail');

  // 6. The snapshot the tray state is computed from, through the bridge.
  const s = await bridgeCall(cfg.bridgeUrl, 'mesh:snapshot', {});
  if (!s.ok) throw new Error(`mesh:snapshot through the bridge failed: ${s.error.code} ${s.error.message}`);
  r.snapshot = s.value;
  // Let late console errors (e.g. from the last render) arrive before the verdict.
  await sleep(500);
}

async function main(): Promise<number> {
  const cfg = JSON.parse(process.argv[2] ?? '') as DriveConfig;
  mkdirSync(cfg.outDir, { recursive: true });
  const r: DriveResult = { ok: false, error: null, stages: [], joinedVia: null, links: [], whyRelayed: null, netcheck: null, screenshots: [], consoleErrors: [], consoleWarnings: [], snapshot: null, peerFqdn: null, accessPorts: [], accessFilter: null, timings: {} };
  let browser: Browser | null = null;
  let page: Page | null = null;
  try {
    browser = await launchChromium({ executablePath: cfg.chromium, homeDir: cfg.homeDir, marker: cfg.marker });
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    page = await context.newPage();
    page.setDefaultTimeout(15_000);
    page.on('console', (m) => {
      const loc = m.location();
      const text = `${m.text()}${loc.url ? ` (${loc.url}:${loc.lineNumber})` : ''}`;
      if (m.type() === 'error') r.consoleErrors.push(text);
      else if (m.type() === 'warning') r.consoleWarnings.push(text);
    });
    page.on('pageerror', (e) => r.consoleErrors.push(`pageerror: ${e.message}`));
    await drive(cfg, r, page);
    r.ok = true;
  } catch (e) {
    r.error = e instanceof Error ? e.message : String(e);
    if (page) {
      const path = join(cfg.outDir, 'failure.png');
      await page.screenshot({ path, fullPage: true, timeout: 10_000 }).then(() => r.screenshots.push(path)).catch(() => undefined);
    }
  } finally {
    await browser?.close().catch(() => undefined);
  }
  out('result', r);
  return r.ok ? 0 : 1;
}

process.exitCode = await main();
