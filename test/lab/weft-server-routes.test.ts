/**
 * Subnet routes through `weft server` with official tailscaled routers and a Weft client (issue 14):
 *  - two tailscaled subnet routers for the same LAN (192.168.1.0/24, behind na): a1 approved with
 *    `weft server nodes approve-routes`, a2 by the policy's autoApprovers at registration; an exit node (c1)
 *    approved by autoApprovers.exitNode, as a real tailnet has one;
 *  - Weft (b1, --accept-routes) routes the LAN through the primary (a1) and reaches the LAN's gateway 192.168.1.1;
 *  - a1's tailscaled freezes (SIGSTOP: its control connection stays open, nothing answers): the HA prober's next
 *    PingRequest goes unanswered, and within headscale 0.29.2's time (a 10 s cycle plus the 5 s timeout, then
 *    the next batch) a2 becomes the primary, Weft moves the route, and the LAN answers through a2. a1 thaws and
 *    answers the prober again, and a2 keeps the routes (no flapping back);
 *  - a2's tailscaled stops: within headscale's time (its poll.go waits 10 s for a reconnect, then the election
 *    and the next batch, 0.5 + 0.8 s) a1 is the primary again; `nodes list-routes` shows who serves what.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, type Lab } from './lab.ts';
import { PeerKit, type TsPeerNode, type WeftPeer } from './peers.ts';
import { PLAIN_HTTP_DERP_ENV } from './tailscaled.ts';
import { startWeftServer, type WeftServer } from './weft-server.ts';
import { eventually } from '../support/eventually.ts';

const LAN = '192.168.1.0/24';
const LAN_GATEWAY = '192.168.1.1';
/** headscale 0.29.2's failover after a router's stream ends: 10 s grace, ≤ 0.5 s node-store batch, ≤ 0.8 s batcher tick. */
const HEADSCALE_FAILOVER_MS = 11_300;
/**
 * …and after a router stops answering while connected: the HA prober's next cycle (≤ 10 s, node.routes.ha
 * probe_interval) plus its timeout (5 s, probe_timeout), then the same 0.5 + 0.8 s.
 */
const HEADSCALE_HA_FAILOVER_MS = 16_300;
/** What the test itself adds to a measured failover: polling `weft status` (one exec per 250 ms, ~0.3 s each). */
const POLL_SLACK_MS = 1_500;

const POLICY = `{
  // Routers of the ops user are approved by the policy; everyone may reach everything.
  "autoApprovers": {"routes": {"192.168.0.0/16": ["ops@"]}, "exitNode": ["ops@"]},
  "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}],
}
`;

interface RouteRow {
  id: number;
  givenName: string;
  approvedRoutes: string[];
  availableRoutes: string[];
  servingRoutes: string[];
}

describe('weft server routes: HA subnet routers and an exit node, used by Weft', () => {
  let lab: Lab;
  let server: WeftServer;
  let kit: PeerKit;
  let opsKey: string;
  const peers: { stop(): Promise<void> }[] = [];

  beforeAll(async () => {
    lab = await createLab();
    const policyPath = join(lab.tmpDir, 'routes-policy.hujson');
    writeFileSync(policyPath, POLICY);
    server = await startWeftServer(lab, { policyFile: policyPath });
    const labUser = await server.createUser('lab');
    const ops = await server.createUser('ops');
    const key = await server.createPreauthKey(labUser, { reusable: true, expiration: '1h' });
    opsKey = await server.createPreauthKey(ops, { reusable: true, expiration: '1h' });
    kit = new PeerKit({ lab, loginServer: server.url, authKey: key, weftEnv: { WEFT_DEBUG_DERP_HTTP: '1' }, tsEnv: { ...PLAIN_HTTP_DERP_ENV } });
    // The routers forward, with SNAT onto their LAN (the lab's tailscaled runs without its own netfilter rules).
    for (const h of ['a1', 'a2', 'c1'] as const) {
      const r = await lab.exec(h, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
      expect(r.code, r.stderr).toBe(0);
      const snat = await lab.exec(h, ['nft', '-f', '-'], { input: 'table ip labsnat {\n chain post {\n  type nat hook postrouting priority 100;\n  oifname "eth0" masquerade\n }\n}\n' });
      expect(snat.code, snat.stderr).toBe(0);
    }
  }, 90_000);

  afterAll(async () => {
    for (const p of peers.reverse()) await p.stop().catch(() => undefined);
    await server?.stop().catch(() => undefined);
    await lab?.destroy();
  });

  const listRoutes = async (): Promise<RouteRow[]> => {
    const r = await server.cli(['nodes', 'list-routes', '-o', 'json']);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as RouteRow[];
  };
  const row = (rows: RouteRow[], p: { name: string }): RouteRow | undefined => rows.find((x) => x.givenName === p.name.toLowerCase());

  it('approved by the CLI and by autoApprovers, used through the primary, failed over to the standby within headscale’s time', async () => {
    // a1 first (the lower node id, so the first primary), approved by hand; a2 (ops) by the policy.
    const a1 = await kit.upTailscaled('a1', { extraArgs: [`--advertise-routes=${LAN}`] });
    peers.push(a1);
    const a1Node = await eventually('a1 listed', 20_000, async () => (await server.listNodes()).find((n) => n.name === a1.name));
    expect(row(await listRoutes(), a1)).toMatchObject({ approvedRoutes: [], availableRoutes: [LAN], servingRoutes: [] });
    const approve = await server.cli(['nodes', 'approve-routes', '-i', String(a1Node.id), '-r', LAN]);
    expect(approve.code, approve.stderr).toBe(0);
    const a2: TsPeerNode = await kit.upTailscaled('a2', { extraArgs: [`--advertise-routes=${LAN}`], authKey: opsKey });
    peers.push(a2);
    const c1: TsPeerNode = await kit.upTailscaled('c1', { extraArgs: ['--advertise-exit-node'], authKey: opsKey });
    peers.push(c1);
    const b1: WeftPeer = await kit.upWeft('b1', { extraArgs: ['--accept-routes'] });
    peers.push(b1);

    // list-routes: a1 serves the LAN, a2 is approved (by the policy) and waits, c1 serves both /0s.
    const rows = await eventually('a1 serving, a2 approved', 20_000, async () => {
      const r = await listRoutes();
      return row(r, a1)?.servingRoutes.includes(LAN) && row(r, a2)?.approvedRoutes.includes(LAN) && row(r, c1)?.servingRoutes.length === 2 ? r : undefined;
    });
    expect(row(rows, a2)).toMatchObject({ approvedRoutes: [LAN], availableRoutes: [LAN], servingRoutes: [] });
    expect(row(rows, c1)).toMatchObject({ approvedRoutes: ['0.0.0.0/0', '::/0'], servingRoutes: ['0.0.0.0/0', '::/0'] });

    // Weft installs the LAN through a1 (the primary) and reaches its gateway; the exit node is offered, not used.
    const via = async (): Promise<string | undefined> => {
      const st = await kit.weftStatus(b1);
      return st.peers.find((p) => p.allowedIPs.includes(LAN))?.name;
    };
    await eventually('b1 routes the LAN via a1', 30_000, async () => ((await via()) === a1.name ? true : undefined));
    const c1Seen = (await kit.weftStatus(b1)).peers.find((p) => p.name === c1.name);
    expect(c1Seen?.allowedIPs).toEqual(expect.arrayContaining(['0.0.0.0/0', '::/0']));
    await kit.settle(b1, a1);
    const pingLan = async (count: number): Promise<boolean> => {
      const r = await lab.exec('b1', ['ping', '-c', String(count), '-i', '0.5', '-W', '2', LAN_GATEWAY], { timeoutMs: 30_000 });
      return /[1-9]\d* received/.test(r.stdout);
    };
    expect(await eventually('b1 reaches the LAN through a1', 30_000, async () => ((await pingLan(4)) ? true : undefined))).toBe(true);
    const table = (await lab.exec('b1', ['ip', 'route', 'show', 'table', '7070'])).stdout;
    expect(table).toContain(`${LAN} dev ${b1.iface}`);

    // The primary freezes: its stream stays open, but the prober's PingRequest goes unanswered. a2 takes over within
    // headscale's time, and the LAN answers through it.
    const frozenAt = Date.now();
    process.kill(a1.ts.proc.pid, 'SIGSTOP');
    try {
      await eventually('b1 routes the LAN via a2', 40_000, async () => ((await via()) === a2.name ? true : undefined), 250);
      const tookMs = Date.now() - frozenAt;
      expect(tookMs, `HA failover took ${tookMs} ms`).toBeLessThanOrEqual(HEADSCALE_HA_FAILOVER_MS + POLL_SLACK_MS);
      expect(tookMs, 'not before an unanswered probe timed out (5 s)').toBeGreaterThan(4_500);
      expect(row(await listRoutes(), a2)?.servingRoutes).toEqual([LAN]);
      expect(server.proc.output()).toMatch(new RegExp(`routes: node ${a1Node.id} did not answer the HA probe within 5 s`));
      expect(server.proc.output()).toMatch(new RegExp(`routes: 192\\.168\\.1\\.0/24 is served by node \\d+ \\(was node ${a1Node.id}, now not answering the HA probe\\)`));
      expect(await eventually('b1 reaches the LAN through a2', 30_000, async () => ((await pingLan(4)) ? true : undefined))).toBe(true);
    } finally {
      process.kill(a1.ts.proc.pid, 'SIGCONT');
    }
    // a1 thaws and answers the prober again; a2 keeps the routes.
    await eventually('a1 answers the HA probe again', 40_000, async () => (new RegExp(`routes: node ${a1Node.id} answers the HA probe again`).test(server.proc.output()) ? true : undefined), 500);
    expect(await via()).toBe(a2.name);
    expect(row(await listRoutes(), a1)).toMatchObject({ approvedRoutes: [LAN], servingRoutes: [] });

    // The primary goes away: a1 takes over after the offline grace, within headscale's time.
    const a2Node = (await server.listNodes()).find((n) => n.name === a2.name)!;
    const stoppedAt = Date.now();
    await a2.stop();
    peers.splice(peers.indexOf(a2), 1);
    await eventually('b1 routes the LAN via a1', 30_000, async () => ((await via()) === a1.name ? true : undefined), 250);
    const tookMs = Date.now() - stoppedAt;
    expect(tookMs, `failover took ${tookMs} ms`).toBeLessThanOrEqual(HEADSCALE_FAILOVER_MS + POLL_SLACK_MS);
    expect(tookMs, 'not before the offline grace: a quick reconnect must not move routes').toBeGreaterThan(9_000);
    expect(row(await listRoutes(), a1)?.servingRoutes).toEqual([LAN]);
    expect(await eventually('b1 reaches the LAN through a1 again', 30_000, async () => ((await pingLan(4)) ? true : undefined))).toBe(true);
    expect(server.proc.output()).toMatch(new RegExp(`routes: 192\\.168\\.1\\.0/24 is served by node ${a1Node.id} \\(was node ${a2Node.id}, now offline`));
  }, 240_000);
});
