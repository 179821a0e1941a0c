/**
 * End to end in Chromium (issue 6): the renderer, served by Vite with the dev bridge in front of a real engine,
 * driven by playwright-core in Debian's Chromium, in the NAT lab with real headscale 0.29.2 and a real derper.
 *
 *   a1 (behind na: EIM+APDF)   `weft dev-bridge`: host + engine (not joined), the bridge WebSocket, Vite; and
 *                              test/lab/e2e/drive.ts with Chromium, all in a1's namespace (loopback is per namespace)
 *   b1 (behind nb: EIM+APDF)   a Weft peer: a1 ↔ b1 goes direct
 *   c1 (behind nc: EDM, behind the CGN: EIM+APDF)   a Weft peer: EIM+APDF ↔ EDM cannot punch, so it relays (lab901)
 *
 * The page joins with a pre-auth key through `session:join`; then the mesh view must show exactly one direct and one
 * relayed link, the relayed peer's detail must explain the relay, the host's trayState() of the bridge's snapshot
 * must be 'some-relayed', and no page may log a console error. Screenshots (join screen, mesh view, peer detail) are
 * written to test/artifacts/e2e/.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trayState } from '../../src-main/host/tray-state.ts';
import { MeshSnapshot } from '../../src-shared/model/mesh.ts';
import { startDerper, type Derper } from './derper.ts';
import type { DriveConfig, DriveResult } from './e2e/drive.ts';
import { killMatching, pidsMatching, runMatcher } from './e2e/procs.ts';
import { derpMapYaml, startHeadscale, type DerpNodeSpec, type Headscale } from './headscale.ts';
import { createLab, REPO_ROOT, type Lab, type LabProcess, type RouterProfile } from './lab.ts';
import { PeerKit, type WeftPeer } from './peers.ts';
import { startBridge, startWeftd } from './weftd.ts';
import { startCoturn, STUN } from './services.ts';

const EIM_APDF: RouterProfile = { mapping: 'eim', filtering: 'apdf' };
const EDM: RouterProfile = { mapping: 'edm', filtering: 'apdf' };
const CHROMIUM = '/usr/bin/chromium';
export const ARTIFACTS = join(REPO_ROOT, 'test', 'artifacts', 'e2e');
const JOIN_TIMEOUT_MS = 60_000;
const E2E_DOMAIN = 'e2e.weft.test';
const E2E_POLICY = {
  acls: [
    { action: 'accept', proto: 'icmp', src: ['*'], dst: ['*:*'] },
    { action: 'accept', src: ['*'], dst: ['*:22', '*:8000-8100'] },
  ],
};
const LINKS_TIMEOUT_MS = 60_000;

let lab: Lab | undefined;
let derper: Derper;
let coturn: LabProcess | undefined;
let hs: Headscale;
let kit: PeerKit;
let authKey: string;
let marker = '';
let chromiumHome: string | null = null;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run bash test/setup/ensure-deps.sh (installs Debian's chromium)`);
  lab = await createLab();
  marker = `--weft-e2e=${lab.prefix}${Date.now().toString(36)}`;
  // Two STUN addresses in region 901 (derper on .12, coturn on .10 as a STUN-only node), as in any real DERP map:
  // with answers from two destination IPs each node can tell whether its NAT's mapping varies by destination, and
  // reports it (NetInfo) through control, which is what lets the UI name the relayed peer's NAT as the reason.
  coturn = await startCoturn(lab);
  derper = await startDerper(lab, { ip: '203.0.113.12' });
  const stunOnly: DerpNodeSpec = { regionId: derper.regionId, name: `${derper.regionId}s`, hostName: STUN.ip, ipv4: STUN.ip, stunPort: STUN.port, stunOnly: true };
  const mapPath = join(lab.tmpDir, 'derp-map.yaml');
  writeFileSync(mapPath, derpMapYaml([derper.node, stunOnly]));
  // A tailnet as people run one: MagicDNS on, and a policy whose ports the effective-access card must list.
  hs = await startHeadscale(lab, '0.29.2', { derpMapPath: mapPath, tailnet: { baseDomain: E2E_DOMAIN, policy: E2E_POLICY } });
  const user = await hs.createUser('e2e');
  authKey = await hs.createPreauthKey(user, { reusable: true, expiration: '1h' });
  kit = new PeerKit({ lab, loginServer: hs.url, authKey });
  await lab.setRouter('na', EIM_APDF);
  await lab.setRouter('nb', EIM_APDF);
  await lab.setRouter('cgn', EIM_APDF);
  await lab.setRouter('nc', EDM);
}, 120_000);

/** Chromium and its helpers of this run (by the marker argument and the per-run profile directory). */
const ours = (): ((argv: string[]) => boolean) => runMatcher(marker, chromiumHome);

afterAll(async () => {
  // Chromium runs in its own process group (playwright starts it detached) and its crash handlers in sessions of
  // their own: kill whatever of them outlived the driver, by PID.
  if (marker) killMatching(ours());
  await coturn?.kill();
  await lab?.destroy();
  if (marker) {
    await sleep(200);
    expect(pidsMatching(ours()), 'no Chromium process left behind').toEqual([]);
  }
});

/** The last `E2E {json}` line of `step` in the driver's output, parsed. */
function driverLine(p: LabProcess, step: string): Record<string, unknown> | null {
  let found: Record<string, unknown> | null = null;
  for (const line of p.output().split('\n')) {
    if (!line.startsWith('E2E ')) continue;
    try {
      const o = JSON.parse(line.slice(4)) as Record<string, unknown>;
      if (o['step'] === step) found = o;
    } catch {
      /* a partial line */
    }
  }
  return found;
}

/** Pings both ways between a1 and each peer until `stop()` (bounded per round), so paths form and stay. */
function traffic(l: Lab, selfIp: string, peers: WeftPeer[]): { stop: () => Promise<void> } {
  let stopped = false;
  const loop = (async () => {
    for (let round = 0; round < 60 && !stopped; round++) {
      await Promise.all(
        peers.flatMap((p) => [
          l.exec('a1', ['ping', '-c', '4', '-i', '0.5', '-W', '2', p.ip], { timeoutMs: 15_000 }),
          l.exec(p.host, ['ping', '-c', '4', '-i', '0.5', '-W', '2', selfIp], { timeoutMs: 15_000 }),
        ]),
      );
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

describe('End to end in Chromium', () => {
  it('joins with an auth key; the mesh view shows one direct and one relayed link, the detail explains the relay, the tray says some-relayed', async () => {
    const l = lab!;
    const t0 = Date.now();
    mkdirSync(ARTIFACTS, { recursive: true });
    for (const f of readdirSync(ARTIFACTS)) if (f.endsWith('.png')) rmSync(join(ARTIFACTS, f), { force: true });

    const direct = await kit.upWeft('b1');
    const relayed = await kit.upWeft('c1');
    const iface = `weft${l.prefix.replace(/[^0-9a-z]/g, '').slice(-5)}ui`;
    // The app's engine is weftd; the page reaches it through the dev bridge, a client of weftd like the app.
    const daemon = await startWeftd(l, 'a1', { name: 'app-a1', iface });
    const b = await startBridge(l, 'a1', daemon, { viteCache: join(l.tmpDir, 'vite-cache') }).catch(async (e: unknown) => {
      await daemon.proc.kill('SIGTERM');
      throw e;
    });
    const bridge = b.proc;
    let driver: LabProcess | undefined;
    let flow: { stop: () => Promise<void> } | undefined;
    try {
      const home = join(l.tmpDir, 'chromium-home');
      mkdirSync(home, { recursive: true });
      chromiumHome = home;
      const cfg: DriveConfig = {
        url: b.url,
        bridgeUrl: b.bridgeUrl,
        serverUrl: hs.url,
        authKey,
        outDir: ARTIFACTS,
        directPeer: direct.name,
        relayedPeer: relayed.name,
        marker,
        chromium: CHROMIUM,
        homeDir: home,
        joinTimeoutMs: JOIN_TIMEOUT_MS,
        linksTimeoutMs: LINKS_TIMEOUT_MS,
      };
      driver = l.spawn('a1', [process.execPath, '--import', 'tsx', join(REPO_ROOT, 'test', 'lab', 'e2e', 'drive.ts'), JSON.stringify(cfg)]);
      const d = driver;
      // Once joined, make traffic both ways so the direct path to b1 forms (and c1 is known to be unreachable directly).
      const joined = await Promise.race([
        d.waitForOutput(/^E2E \{"step":"joined".*$/m, JOIN_TIMEOUT_MS + 60_000).then(() => driverLine(d, 'joined')),
        d.exited.then(() => null),
      ]);
      const selfIp = ((joined?.['self'] as { addresses?: string[] } | null)?.addresses ?? []).find((a) => a.startsWith('100.'));
      if (selfIp) flow = traffic(l, selfIp, [direct, relayed]);
      const code = await Promise.race([d.exited, sleep(LINKS_TIMEOUT_MS + 90_000).then(() => 'timeout' as const)]);
      await flow?.stop();
      const r = driverLine(d, 'result') as DriveResult | null;
      const diag = `driver exit ${String(code)}\n--- driver\n${d.output().slice(-6000)}\n--- dev bridge\n${bridge.output().slice(-6000)}\n${kit.logs(direct, relayed)}`;
      expect(r, diag).not.toBeNull();
      const res = r!;
      console.log(`e2e: artifacts:\n${res.screenshots.map((s) => `  ${s}`).join('\n')}`);
      console.log(`e2e: join stages ${res.stages.join(' → ')} (joined via ${String(res.joinedVia)}); timings ${JSON.stringify(res.timings)}; total ${Date.now() - t0} ms`);
      expect(res.error, diag).toBeNull();
      expect(res.ok).toBe(true);
      // Joined: join-stage showed 'connected', or the UI went from the join stages to the mesh view with control connected.
      expect(res.stages.length, 'join stages were shown').toBeGreaterThan(0);
      // The join screen shows every stage up to "connected" (it holds that for a moment before the mesh view).
      expect(res.joinedVia).toBe('stage');
      expect(res.stages).toEqual(expect.arrayContaining(['reaching-server', 'connected']));

      // One direct and one relayed link, to the right peers.
      const kinds = res.links.map((x) => `${x.peer}:${x.kind}`).sort();
      expect(kinds).toEqual([`${direct.name}:direct`, `${relayed.name}:relay`].sort());
      expect(res.links.find((x) => x.kind === 'relay')?.region ?? '', 'the relayed link names its region').not.toBe('');

      // After a netcheck from the UI, the detail explains the relayed link by the NAT situation: the peer's NAT
      // changes its port per destination (EDM), which this device's endpoint-independent NAT cannot get through.
      const why = res.whyRelayed ?? '';
      console.log(`e2e: why relayed: ${why.replace(/\s+/g, ' ')}`);
      expect(res.netcheck, 'netcheck ran from the UI').not.toBeNull();
      expect(why).toMatch(/\bNAT\b/);
      expect(why).toMatch(/symmetric|per destination/i);

      // The peer detail names the peer by its MagicDNS name; the access card lists the policy's ports.
      expect(res.peerFqdn).toBe(`${relayed.name}.${E2E_DOMAIN}`);
      expect(res.accessPorts).toEqual(expect.arrayContaining(['22', '8000-8100']));
      expect(res.accessFilter ?? '').toMatch(/ACL applied/i);

      // The tray state from the same snapshot.
      const snap = MeshSnapshot.parse(res.snapshot);
      const rp = snap.peers.find((p) => p.name === relayed.name);
      console.log(`e2e: relayed peer netInfo ${JSON.stringify(rp?.netInfo)} disco ${JSON.stringify(rp?.disco)}; this device: mapping ${String(snap.netcheck?.mapping)}, NAT ${String(snap.netcheck?.natType)}`);
      expect(snap.peers.find((p) => p.name === relayed.name)?.path.kind).toBe('relay');
      expect(snap.peers.find((p) => p.name === direct.name)?.path.kind).toBe('direct');
      expect(trayState(snap)).toBe('some-relayed');

      // Screenshots saved; no console errors on any page.
      for (const name of ['join-screen', 'mesh-view', 'device', 'peer-detail']) expect(existsSync(join(ARTIFACTS, `${name}.png`)), name).toBe(true);
      expect(res.consoleErrors, 'console errors on the page').toEqual([]);
    } finally {
      await flow?.stop();
      await driver?.kill();
      killMatching(ours());
      await bridge.kill('SIGTERM');
      await daemon.proc.kill('SIGTERM');
      await relayed.stop();
      await direct.stop();
    }
    // The bridge closed cleanly, and weftd took its interface down: none left in a1.
    expect(await bridge.exited).toBe(0);
    expect(await daemon.proc.exited).toBe(0);
    const links = await l.exec('a1', ['ip', '-o', 'link', 'show']);
    expect(links.stdout).not.toContain(iface);
  }, 330_000);
});
