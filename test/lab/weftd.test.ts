/**
 * weftd (issue 11) in the NAT lab, against real headscale 0.29.2 in a tailnet set up as people run one (MagicDNS on,
 * a policy file, an official tailscaled exit node approved), with a Weft peer behind another NAT:
 *  - the app's host (test/lab/e2e/app-host.ts, what the Electron shell runs) joins through weftd with an auth key;
 *    `weft status` and `weft ping` show and use that join; the tunnel stays up after the app's process exits, and a
 *    new app process finds it connected;
 *  - the first interface creation fails (an injected fault): weftd retries and comes up without a restart;
 *  - as `nobody` (not an operator) every write on the local API and on the dev bridge is refused with a clear error
 *    and reads work; as an operator (the operator group) writes work; the bridge refuses a page without its token;
 *  - SIGKILL of weftd, then a restart: no stale interface, route or rule, and the same node identity;
 *  - leave through the app's host, then SIGTERM: nothing of Weft's is left.
 */
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WRITE_METHODS } from '../../src-shared/ipc/contract.ts';
import { WIREGUARD_GO_PIN } from '../../src-main/engine/wg/resolve.ts';
import { StatusReport } from '../../src-shared/model/status.ts';
import { startHeadscale, type Headscale } from './headscale.ts';
import { createLab, REPO_ROOT, type Lab, type LabProcess } from './lab.ts';
import { PeerKit, WEFT, type WeftPeer } from './peers.ts';
import { PLAIN_HTTP_DERP_ENV } from './tailscaled.ts';
import type { Weftd } from './weftd.ts';
import { eventually } from '../support/eventually.ts';

let lab: Lab;
let hs: Headscale;
let kit: PeerKit;
let key: string;
let runDir: string;
const procs: LabProcess[] = [];

/** Operators in this test are members of an existing group (nothing is added to the host's /etc/group). */
const OPERATOR_GROUP = 'users';
const APP_HOST = [process.execPath, '--import', 'tsx', join(REPO_ROOT, 'test', 'lab', 'e2e', 'app-host.ts')];
const ENV = { WEFT_DEBUG_DERP_HTTP: '1' };

beforeAll(async () => {
  lab = await createLab();
  await lab.setRouter('na', { mapping: 'eim', filtering: 'apdf' });
  await lab.setRouter('nb', { mapping: 'eim', filtering: 'apdf' });
  hs = await startHeadscale(lab, '0.29.2', {
    embeddedDerp: true,
    tailnet: { baseDomain: 'tailnet.weft.test', policy: { acls: [{ action: 'accept', src: ['*'], dst: ['*:*'] }] } },
  });
  const user = await hs.createUser('weftd');
  key = await hs.createPreauthKey(user, { reusable: true, expiration: '1h' });
  kit = new PeerKit({ lab, loginServer: hs.url, authKey: key, weftEnv: ENV, tsEnv: { ...PLAIN_HTTP_DERP_ENV } });
  // The API's run directory where `nobody` can reach the read-only socket: outside the lab's private temp dir.
  runDir = mkdtempSync(join('/tmp', `${lab.prefix}weftd-`));
  chmodSync(runDir, 0o755);
}, 120_000);

afterAll(async () => {
  for (const p of procs) await p.kill('SIGTERM').catch(() => undefined);
  await lab?.destroy();
  if (runDir) rmSync(runDir, { recursive: true, force: true });
});

interface AppHostOut {
  access?: string;
  snapshot?: { control: { state: string } | null; self: { name: string; nodeKey: string; addresses: string[] } | null; peers: { name: string }[] };
  answers?: Record<string, string>;
  joined?: boolean;
  left?: { ok: boolean };
}

async function appHost(args: string[], asUser?: { user: string; group?: string }): Promise<{ code: number | null; out: AppHostOut | null; text: string }> {
  const argv = [...APP_HOST, runDir, ...args];
  const cmd = asUser ? ['runuser', '-u', asUser.user, ...(asUser.group ? ['-g', asUser.group] : []), '--', ...argv] : argv;
  const r = await lab.exec('a1', cmd, { timeoutMs: 60_000 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('APPHOST '));
  return { code: r.code, out: line ? (JSON.parse(line.slice(8)) as AppHostOut) : null, text: `${r.stdout}\n${r.stderr}` };
}

async function cli(args: string[], asUser?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const argv = [...WEFT, ...args, '--socket-dir', runDir];
  return lab.exec('a1', asUser ? ['runuser', '-u', asUser, '--', ...argv] : argv, { timeoutMs: 40_000 });
}

async function status(): Promise<StatusReport> {
  const r = await cli(['status', '--json']);
  if (r.code !== 0) throw new Error(`weft status: ${r.stderr}`);
  return StatusReport.parse(JSON.parse(r.stdout));
}


const weftLinks = async (): Promise<string[]> =>
  (await lab.exec('a1', ['ip', '-o', 'link', 'show'])).stdout
    .split('\n')
    .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1] ?? '')
    .filter((n) => n.startsWith('weft'));

describe('weftd', () => {
  it('serves the app, the CLI and the dev bridge; survives its clients, a fault and SIGKILL', async () => {
    const iface = `weft${lab.prefix.replace(/[^0-9a-z]/g, '').slice(-5)}d`;
    const rulesBefore = (await lab.exec('a1', ['ip', 'rule', 'show'])).stdout;
    const routesBefore = (await lab.exec('a1', ['ip', 'route', 'show', 'table', 'all'])).stdout;
    expect(await weftLinks()).toEqual([]);

    // The tailnet around it: a Weft peer behind nb, and an official tailscaled exit node, approved.
    const b = await kit.upWeft('b1');
    const exit = await kit.upTailscaled('c1', { extraArgs: ['--advertise-exit-node'] });
    const exitNode = await eventually('the exit node is listed', 20_000, async () => (await hs.listNodes()).find((n) => n.name === exit.name));
    await hs.approveRoutes(exitNode.id, ['0.0.0.0/0', '::/0']);

    // weftd whose first interface creation fails (injected): it must retry by itself.
    let d = await startWeftdIn(iface, { ...ENV, WEFT_DEBUG_FAIL_IFACE: '1' });
    const firstPid = d.proc.pid;
    // It says which wireguard-go it runs: Weft's pinned build from the checkout's resources/bin.
    expect(d.proc.output()).toContain(
      `wg: using wireguard-go v${WIREGUARD_GO_PIN.version} (Weft's build, pinned) at ${join(REPO_ROOT, 'resources', 'bin', 'wireguard-go')}`,
    );

    // 1. The app's host joins with an auth key.
    const joined = await appHost(['join', hs.url, key, 'app-a1']);
    expect(joined.code, joined.text).toBe(0);
    expect(joined.out?.access).toBe('write');
    expect(joined.out?.snapshot?.control?.state, `${joined.text}\n${d.proc.output().slice(-3000)}`).toBe('connected');
    const self = joined.out!.snapshot!.self!;
    expect(self.name).toBe('app-a1');
    await d.proc.waitForOutput(/injected fault: interface creation 1 of 1 fails/, 5_000);
    await d.proc.waitForOutput(/creating the WireGuard interface failed: .*retry 1 in 1 s/, 5_000);
    await eventually('the interface after the retry', 20_000, async () => ((await weftLinks()).includes(iface) ? true : undefined));
    expect(d.proc.pid).toBe(firstPid);
    expect(await Promise.race([d.proc.exited.then(() => 'exited'), Promise.resolve('running')])).toBe('running');

    // 2. The CLI sees the join the app made, and pings through the same engine.
    const st = await eventually('status lists both peers', 30_000, async () => {
      const s = await status();
      // The exit node's approved /0s are in its AllowedIPs as headscale sends them (what once cut Weft off).
      return s.peers.some((p) => p.name === b.name && p.discoKey) && s.peers.find((p) => p.name === exit.name)?.allowedIPs.includes('0.0.0.0/0') ? s : undefined;
    });
    expect(st.control.state).toBe('connected');
    expect(st.self?.name).toBe('app-a1');
    expect(st.self?.nodeKey).toBe(self.nodeKey);
    expect(st.dataPath?.wireguardGo).toEqual({ path: join(REPO_ROOT, 'resources', 'bin', 'wireguard-go'), version: WIREGUARD_GO_PIN.version, pinned: true });
    expect((await cli(['status'])).stdout).toContain(`wg:      wireguard-go v${WIREGUARD_GO_PIN.version} ${join(REPO_ROOT, 'resources', 'bin', 'wireguard-go')}`);
    // This node as the peer kit sees Weft nodes (its status comes from weftd through the run directory).
    const appPeer: WeftPeer = {
      kind: 'weft',
      name: 'app-a1',
      host: 'a1',
      ip: self.addresses.find((a) => a.startsWith('100.'))!,
      dir: runDir,
      iface,
      proc: d.proc,
      linkTo: async () => ({ kind: 'none' }),
      stop: async () => undefined,
    };
    await kit.expectTunnel(appPeer, b);
    const ping = await cli(['ping', b.name, '--count', '5']);
    expect(ping.stdout, ping.stderr).toMatch(/pong from \S+ via \S+ in [\d.]+ms/);
    // The approved exit node did not take over this machine: Weft added no default route anywhere.
    const routes = (await lab.exec('a1', ['ip', 'route', 'show', 'table', 'all'])).stdout;
    expect(routes).not.toMatch(new RegExp(`^default .*dev ${iface}`, 'm'));
    expect(routes).not.toMatch(new RegExp(`^(0\\.0\\.0\\.0|128\\.0\\.0\\.0)/1 .*dev ${iface}`, 'm'));

    // 3. The app's process has exited; the tunnel is still up, and a new app process finds it connected.
    const again = await kit.tunnelPing(appPeer, b, 4);
    expect(again).toEqual([true, true]);
    const shown = await appHost(['show']);
    expect(shown.out?.snapshot?.control?.state).toBe('connected');
    expect(shown.out?.snapshot?.self?.nodeKey).toBe(self.nodeKey);
    expect(shown.out?.snapshot?.peers.map((p) => p.name)).toEqual(expect.arrayContaining([b.name, exit.name]));

    // 4. As nobody (not an operator): reads work, every write is refused with a clear error.
    expect((await lab.exec('a1', ['runuser', '-u', 'nobody', '--', 'test', '-r', join(REPO_ROOT, 'package.json')])).code, 'nobody can read the checkout').toBe(0);
    const ro = await appHost(['probe'], { user: 'nobody' });
    expect(ro.code, ro.text).toBe(0);
    expect(ro.out?.access).toBe('read');
    for (const m of WRITE_METHODS) {
      // The app opens the login URL itself (never weftd), and only the control server's.
      if (m === 'session:open-auth-url') expect(ro.out!.answers![m]).toMatch(/^invalid-payload: only the login server/);
      else expect(ro.out!.answers![m], m).toMatch(/^permission-denied: .*needs root or membership in the "users" group/);
    }
    for (const m of ['mesh:snapshot', 'settings:get', 'logs:get', 'engine:status', 'engine:derp-map']) expect(ro.out!.answers![m], m).toBe('ok');
    expect(ro.out!.answers!['engine:ping']).toMatch(/^state: no peer named nobody-here/);
    const roStatus = await cli(['status', '--json'], 'nobody');
    expect(roStatus.code, roStatus.stderr).toBe(0);
    expect(StatusReport.parse(JSON.parse(roStatus.stdout)).self?.name).toBe('app-a1');
    const roLogout = await cli(['logout'], 'nobody');
    expect(roLogout.code).toBe(1);
    expect(roLogout.stderr).toMatch(/logout failed: session:logout changes the Weft service, which needs root or membership/);

    // The dev bridge run by nobody: a page gets in only with the token, and can then only read.
    const bridge = lab.spawn('a1', ['runuser', '-u', 'nobody', '--', ...WEFT, 'dev-bridge', '--socket-dir', runDir, '--no-ui']);
    procs.push(bridge);
    const bm = await bridge.waitForOutput(/weft dev bridge: (ws:\/\/127\.0\.0\.1:\d+\/\?token=[\w-]{43})/, 30_000);
    expect(bridge.output()).toMatch(/connected to weftd with read-only access/);
    const viaBridge = await appHost(['bridge', bm[1]!]);
    expect(viaBridge.code, viaBridge.text).toBe(0);
    for (const m of WRITE_METHODS) expect(viaBridge.out!.answers![m], m).toMatch(/^permission-denied: /);
    expect(viaBridge.out!.answers!['engine:status']).toBe('ok');
    const noToken = await appHost(['bridge', bm[1]!.replace(/\?token=.*$/, '')]);
    expect(noToken.code).toBe(1);
    expect(noToken.text).toMatch(/bridge refused: HTTP 403/);
    await bridge.kill('SIGTERM');

    // As an operator (a member of the operator group), writes work.
    const op = await appHost(['probe', 'safe'], { user: 'nobody', group: OPERATOR_GROUP });
    expect(op.code, op.text).toBe(0);
    expect(op.out?.access).toBe('write');
    expect(op.out!.answers!['settings:set']).toBe('ok');
    expect((await status()).control.state).toBe('connected');

    // 5. SIGKILL: wireguard-go dies with weftd (pdeathsig), so its interface and routes go; nothing else was added.
    process.kill(d.proc.pid, 'SIGKILL');
    await d.proc.exited;
    await eventually('the interface is gone after SIGKILL', 10_000, async () => ((await weftLinks()).length === 0 ? true : undefined));
    // What stays until the next start is the fail-closed state: Weft's policy rule (its table is empty now) and its
    // nftables table; the restart replaces both.
    const rulesAfterKill = (await lab.exec('a1', ['ip', 'rule', 'show'])).stdout;
    expect(rulesAfterKill.split('\n').filter((l) => !/lookup 7070\b/.test(l)).join('\n')).toBe(rulesBefore);
    expect((await lab.exec('a1', ['nft', 'list', 'tables'])).stdout).toContain(iface);
    expect((await lab.exec('a1', ['ip', 'route', 'show', 'table', 'all'])).stdout).toBe(routesBefore);
    // The restart reconnects the saved network with the same identity, and cleans the dead run's sockets.
    d = await startWeftdIn(iface, ENV);
    const back = await eventually('connected again after the restart', 40_000, async () => {
      const s = await status();
      return s.control.state === 'connected' && s.peers.some((p) => p.name === b.name) ? s : undefined;
    });
    expect(back.self?.nodeKey).toBe(self.nodeKey);
    expect(back.self?.addresses).toEqual(st.self?.addresses);
    await eventually('one interface after the restart', 20_000, async () => ((await weftLinks()).join() === iface ? true : undefined));
    await kit.expectTunnel(appPeer, b);

    // 6. Leave through the app's host, then stop weftd: nothing of Weft's is left.
    const left = await appHost(['leave']);
    expect(left.out?.left?.ok, left.text).toBe(true);
    await eventually('the interface is gone after leaving', 10_000, async () => ((await weftLinks()).length === 0 ? true : undefined));
    const idle = await cli(['status']);
    expect(idle.code).toBe(1);
    expect(idle.stderr).toMatch(/not connected to any network/);
    await d.proc.kill('SIGTERM');
    expect(await d.proc.exited).toBe(0);
    for (const f of ['weftd.sock', 'weftd-op.sock']) expect(existsSync(join(runDir, f)), f).toBe(false);
    expect((await lab.exec('a1', ['ip', 'rule', 'show'])).stdout).toBe(rulesBefore);
    expect((await lab.exec('a1', ['ip', 'route', 'show', 'table', 'all'])).stdout).toBe(routesBefore);
    await b.stop();
    await exit.stop();
  }, 300_000);
});

/** weftd serving from the test's world-traversable run directory (state in the lab's private temp dir). */
async function startWeftdIn(iface: string, env: Record<string, string>): Promise<Weftd> {
  const stateDir = join(lab.tmpDir, 'weftd-a1-data');
  const proc = lab.spawn('a1', [...WEFT, 'daemon', '--state-dir', stateDir, '--socket-dir', runDir, '--iface', iface, '--operator-group', OPERATOR_GROUP], { env });
  procs.push(proc);
  await proc.waitForOutput(/weftd: ready/, 30_000);
  return { proc, stateDir, runDir, iface };
}
