/**
 * The browser half of test/lab/create-network.test.ts: runs in the app node's lab namespace (the dev bridge listens
 * on that namespace's loopback), opens the join screen in Chromium, clicks "Create a network on this computer",
 * waits for the panel with the URL, key and QR code, and screenshots it; then opens the access policy, checks a
 * policy naming an unknown user (the error with its line shows) and saves a valid one. Prints one line `E2E {json}` (the
 * result) and exits 0 when it worked. Every wait is bounded; Chromium carries `marker` on its command line.
 *
 *   node --import tsx test/lab/e2e/create-network-drive.ts '{"url":…,"outDir":…,"marker":…,"chromium":…,"homeDir":…}'
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { launchChromium } from './browser.ts';

export interface CreateNetworkConfig {
  url: string;
  outDir: string;
  marker: string;
  chromium: string;
  homeDir: string;
}

export interface CreateNetworkResult {
  ok: boolean;
  error: string | null;
  serverUrl: string | null;
  authKey: string | null;
  /** The QR image's natural width (0 when it did not load). */
  qrWidth: number;
  /** What "Check" showed for a policy naming an unknown user, and what "Save" showed for a valid one. */
  policyCheck: string | null;
  policySave: string | null;
  screenshots: string[];
  consoleErrors: string[];
}

const T = (id: string): string => `[data-testid="${id}"]`;

async function main(): Promise<number> {
  const cfg = JSON.parse(process.argv[2] ?? '') as CreateNetworkConfig;
  mkdirSync(cfg.outDir, { recursive: true });
  const r: CreateNetworkResult = { ok: false, error: null, serverUrl: null, authKey: null, qrWidth: 0, policyCheck: null, policySave: null, screenshots: [], consoleErrors: [] };
  let browser: Browser | null = null;
  try {
    browser = await launchChromium({ executablePath: cfg.chromium, homeDir: cfg.homeDir, marker: cfg.marker });
    const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    page.setDefaultTimeout(15_000);
    page.on('console', (m) => {
      if (m.type() === 'error') r.consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => r.consoleErrors.push(`pageerror: ${e.message}`));
    await page.goto(cfg.url, { waitUntil: 'load', timeout: 30_000 });
    await page.locator(T('create-network')).waitFor({ state: 'visible', timeout: 30_000 });
    const joinShot = join(cfg.outDir, 'join-screen.png');
    await page.screenshot({ path: joinShot, fullPage: true });
    r.screenshots.push(joinShot);
    await page.locator(T('create-network')).click();
    await page.locator(T('local-network')).waitFor({ state: 'visible', timeout: 60_000 });
    r.serverUrl = (await page.locator(T('local-network-url')).innerText()).trim();
    r.authKey = (await page.locator(T('local-network-key')).innerText()).trim();
    const qr = page.locator(T('join-qr'));
    await qr.waitFor({ state: 'visible' });
    r.qrWidth = await qr.evaluate((img) => (img as unknown as { naturalWidth: number }).naturalWidth);
    const shot = join(cfg.outDir, 'local-network.png');
    await page.screenshot({ path: shot, fullPage: true });
    r.screenshots.push(shot);
    // The access policy: a policy naming an unknown user is refused with its line; a valid one is saved.
    await page.locator(`${T('policy-editor')} summary`).click();
    await page.locator(T('policy-path')).filter({ hasText: 'policy.hujson' }).waitFor({ state: 'visible' });
    await page.locator(T('policy-text')).fill('{\n  "acls": [\n    {"action": "accept", "src": ["nobody@"], "dst": ["local@:22"]},\n  ],\n}\n');
    await page.locator(T('policy-check')).click();
    r.policyCheck = (await page.locator(T('policy-result')).innerText()).trim();
    const policyShot = join(cfg.outDir, 'policy-check.png');
    await page.screenshot({ path: policyShot, fullPage: true });
    r.screenshots.push(policyShot);
    await page.locator(T('policy-text')).fill('{\n  "acls": [\n    {"action": "accept", "src": ["local@"], "dst": ["local@:*"]},\n  ],\n}\n');
    await page.locator(T('policy-save')).click();
    await page.locator(T('policy-result')).filter({ hasText: 'Saved' }).waitFor({ state: 'visible' });
    r.policySave = (await page.locator(T('policy-result')).innerText()).trim();
    await page.locator(T('local-network-done')).click();
    await page.locator(T('mesh-view')).waitFor({ state: 'visible', timeout: 15_000 });
    r.ok = true;
  } catch (e) {
    r.error = e instanceof Error ? e.message : String(e);
  } finally {
    await browser?.close().catch(() => undefined);
  }
  process.stdout.write(`E2E ${JSON.stringify(r)}\n`);
  return r.ok ? 0 : 1;
}

process.exitCode = await main();
