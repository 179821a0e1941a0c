/**
 * "Create a network on this computer" end to end (issue 7): the app's host in a1 (`weft dev-bridge`, not joined),
 * Chromium in a1 clicks the action on the join screen; the host starts the embedded server (0.0.0.0:8080 in a1,
 * URL from a1's LAN address) and joins a1 to it; the page shows the URL, the key and the QR code. Then another
 * device on the same LAN (a2) joins with exactly what the page showed, and the two reach each other. On the way,
 * the panel's access policy editor checks a bad policy (its line shows) and saves a good one, which the server
 * applies.
 * Screenshots go to test/artifacts/create-network/.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CreateNetworkConfig, CreateNetworkResult } from './e2e/create-network-drive.ts';
import { killMatching, runMatcher } from './e2e/procs.ts';
import { createLab, REPO_ROOT, type Lab, type LabProcess } from './lab.ts';
import { WEFT } from './peers.ts';
import { startBridge, startWeftd } from './weftd.ts';
import { eventually } from '../support/eventually.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(REPO_ROOT, 'test', 'artifacts', 'create-network');
/** The embedded DERP is plain HTTP (no TLS); Weft uses it only with this set. */
const ENV = { WEFT_DEBUG_DERP_HTTP: '1' };

let lab: Lab | undefined;
let marker = '';
let home: string | null = null;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run bash test/setup/ensure-deps.sh`);
  lab = await createLab();
  marker = `--weft-create-network=${lab.prefix}${Date.now().toString(36)}`;
});

afterAll(async () => {
  if (marker) killMatching(runMatcher(marker, home));
  await lab?.destroy();
});

describe('Create a network on this computer', () => {
  it('starts the server in the app, joins this device, shows URL, key and QR; another device joins with them', async () => {
    const l = lab!;
    mkdirSync(ARTIFACTS, { recursive: true });
    const tag = l.prefix.replace(/[^0-9a-z]/g, '').slice(-5);
    const daemon = await startWeftd(l, 'a1', { name: 'app-a1', iface: `weft${tag}ui`, env: ENV });
    const b = await startBridge(l, 'a1', daemon, { viteCache: join(l.tmpDir, 'vite-cache'), env: ENV }).catch(async (e: unknown) => {
      await daemon.proc.kill('SIGTERM');
      throw e;
    });
    const bridge = b.proc;
    let other: LabProcess | undefined;
    try {
      home = join(l.tmpDir, 'chromium-home');
      mkdirSync(home, { recursive: true });
      const cfg: CreateNetworkConfig = { url: b.url, outDir: ARTIFACTS, marker, chromium: CHROMIUM, homeDir: home };
      const r = await l.exec('a1', [process.execPath, '--import', 'tsx', join(REPO_ROOT, 'test', 'lab', 'e2e', 'create-network-drive.ts'), JSON.stringify(cfg)], { timeoutMs: 150_000 });
      const line = r.stdout.split('\n').find((x) => x.startsWith('E2E '));
      const diag = `--- driver\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}\n--- dev bridge\n${bridge.output().slice(-3000)}\n--- weftd\n${daemon.proc.output().slice(-4000)}`;
      expect(line, diag).toBeDefined();
      const res = JSON.parse(line!.slice(4)) as CreateNetworkResult;
      console.log(`create-network: ${JSON.stringify({ ...res, authKey: res.authKey ? `${res.authKey.slice(0, 8)}…` : null })}`);
      expect(res.error, diag).toBeNull();
      expect(res.serverUrl).toBe(`http://${l.addr.a1}:8080`);
      expect(res.authKey).toMatch(/^[0-9a-f]{48}$/);
      expect(res.qrWidth, 'the QR image loaded').toBeGreaterThan(0);
      // The access policy editor: "Check" shows the server's error with its line; "Save" writes a valid policy, which
      // the server applies (the other device, also the local user's, still reaches this one below).
      expect(res.policyCheck).toMatch(/The policy is not valid:\s*line 3, column \d+: unknown user "nobody@" \(users: local\)/);
      expect(res.policySave).toBe('Saved. The network applies it within a second.');
      await eventually('the server applied the saved policy', 10_000, async () => (/policy: reloaded/.test(daemon.proc.output()) ? true : undefined));
      expect(res.consoleErrors).toEqual([]);

      // Another device on the same LAN joins with what the page showed, and reaches this one over the tunnel.
      other = l.spawn('a2', [...WEFT, 'up', '--login-server', res.serverUrl!, '--auth-key', res.authKey!, '--hostname', 'other-a2', '--state-dir', join(l.tmpDir, 'a2'), '--iface', `weft${tag}a2`], { env: ENV });
      await other.waitForOutput(/weft: connected as /, 40_000);
      const st = await l.exec('a2', [...WEFT, 'status', '--json', '--state-dir', join(l.tmpDir, 'a2')], { timeoutMs: 15_000 });
      const peers = (JSON.parse(st.stdout) as { peers: { name: string; addresses: string[] }[] }).peers;
      const app = peers.find((p) => p.addresses.some((a) => a.startsWith('100.')));
      expect(app, st.stdout).toBeDefined();
      // Up to three rounds: a first handshake lost right after joining costs WireGuard's 5 s retry.
      let ping = { stdout: '' };
      for (let round = 0; round < 3 && !/[1-9]\d* received/.test(ping.stdout); round++) {
        ping = await l.exec('a2', ['ping', '-c', '5', '-i', '0.5', '-W', '2', app!.addresses.find((a) => a.startsWith('100.'))!], { timeoutMs: 20_000 });
      }
      expect(ping.stdout, `${ping.stdout}\n${other.output().slice(-2000)}\n${bridge.output().slice(-3000)}`).toMatch(/[1-9]\d* received/);
    } finally {
      await other?.kill('SIGTERM');
      killMatching(runMatcher(marker, home));
      await bridge.kill('SIGTERM');
      await daemon.proc.kill('SIGTERM');
    }
    expect(await bridge.exited).toBe(0);
    expect(await daemon.proc.exited).toBe(0);
  }, 240_000);
});
