/**
 * Debian's Chromium for the UI tests, launched the same way everywhere: headless, no sandbox (tests run as root),
 * its profile and caches in a per-run home directory, and a per-run marker argument so that leftovers (crash
 * handlers run in sessions of their own) can be found and killed by PID.
 */
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

export async function launchChromium(o: { executablePath: string; homeDir: string; marker: string }): Promise<Browser> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  Object.assign(env, { HOME: o.homeDir, XDG_CONFIG_HOME: join(o.homeDir, '.config'), XDG_CACHE_HOME: join(o.homeDir, '.cache'), TMPDIR: o.homeDir });
  return chromium.launch({
    executablePath: o.executablePath,
    headless: true,
    timeout: 30_000,
    env,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-dev-shm-usage', '--disable-background-networking', '--disable-crash-reporter', o.marker],
  });
}
