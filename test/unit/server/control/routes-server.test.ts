/**
 * Subnet routes and exit nodes through `weft server`, end to end with Weft's control client announcing
 * Hostinfo.RoutableIPs: approval (as `nodes approve-routes` writes it, and by the policy's autoApprovers at
 * registration, on a new announcement and on a policy reload), primary election and failover after the offline
 * grace, the HA prober's pings answered by Weft over plain HTTP (the prober's verdicts: ha-prober.test.ts), and
 * what peers get in AllowedIPs and PrimaryRoutes.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ControlClient } from '../../../../src-main/engine/control/client.ts';
import { keyText } from '../../../../src-main/protocol/crypto/keys.ts';
import type { NodeRecord } from '../../../../src-main/server/store/types.ts';
import { parseNodeId, type NodeId } from '../../../../src-shared/model/ids.ts';
import { eventually, Harness } from './harness.ts';

const LAN = '192.168.1.0/24';
let h: Harness;
let dir: string;
let logs: string[];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'weft-routes-'));
  logs = [];
});
afterEach(async () => {
  await h?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const recOf = (c: ControlClient): NodeRecord => h.store.nodeByNodeKey(keyText('nodekey', c.nodePublic))!;
/** The peer id under which a client's netmap lists node `c`. */
const idOf = (c: ControlClient): NodeId => parseNodeId(recOf(c).id)!;
/** The AllowedIPs routes (not addresses) and PrimaryRoutes `viewer` has for peer `peer`, as "allowed|primary". */
function routesSeen(viewer: ControlClient, peer: ControlClient): string | undefined {
  const p = viewer.netmap.peers.get(idOf(peer));
  if (!p) return undefined;
  const routes = p.AllowedIPs.filter((a) => !p.Addresses.includes(a));
  return `${routes.join(',')}|${(p.PrimaryRoutes ?? []).join(',')}`;
}

async function router(name: string, routes: string[], authKey?: string): Promise<ControlClient> {
  const c = await h.client(name, authKey ? { authKey } : {});
  c.setRoutableIPs(routes);
  await c.start();
  return c;
}

describe('weft server routes', () => {
  it('an approved route is served by one primary; the standby takes over after the offline grace, and the first does not take it back', async () => {
    h = new Harness();
    await h.start({ logf: (l) => void logs.push(l) });
    const r1 = await router('r1', [LAN]);
    const r2 = await router('r2', [LAN]);
    const v = await h.client('viewer');
    await v.start();
    // Announced, not approved yet: nobody serves it.
    await eventually('viewer sees both routers', () => (routesSeen(v, r1) === '|' && routesSeen(v, r2) === '|' ? true : undefined));
    // As `weft server nodes approve-routes` writes it (another process, noticed through the change counter here).
    h.store.updateNode(recOf(r1).id, { approvedRoutes: [LAN] });
    h.store.updateNode(recOf(r2).id, { approvedRoutes: [LAN] });
    h.server.control.changed();
    await eventually('r1 serves the LAN', () => (routesSeen(v, r1) === `${LAN}|${LAN}` && routesSeen(v, r2) === '|' ? true : undefined));
    expect(recOf(r1).primaryRoutes).toEqual([LAN]);
    expect(recOf(r2).primaryRoutes).toEqual([]);
    expect(v.netmap.peers.get(idOf(r1))!.AllowedIPs).toEqual([`${recOf(r1).ipv4}/32`, LAN, `${recOf(r1).ipv6}/128`]);
    // Its own node says it is primary; the standby's does not.
    await eventually('self nodes', () => (r1.netmap.self?.PrimaryRoutes?.join() === LAN && (r2.netmap.self?.PrimaryRoutes ?? []).length === 0 ? true : undefined));

    // r1 goes away: after the grace (100 ms in the harness) r2 serves the LAN.
    const stoppedAt = Date.now();
    await r1.stop();
    await eventually('r2 took over', () => (routesSeen(v, r2) === `${LAN}|${LAN}` && routesSeen(v, r1) === '|' ? true : undefined));
    expect(Date.now() - stoppedAt).toBeLessThan(3000);
    expect(recOf(r2).primaryRoutes).toEqual([LAN]);
    expect(logs.join('\n')).toMatch(new RegExp(`routes: ${LAN.replace(/\./g, '\\.')} is served by node ${recOf(r2).id} \\(was node ${recOf(r1).id}`));

    // r1 comes back: r2 stays primary (no flapping back).
    const again = await router('r1-again', [LAN]);
    h.store.updateNode(recOf(again).id, { approvedRoutes: [LAN] });
    h.server.control.changed();
    await eventually('r1-again is a standby', () => (routesSeen(v, again) === '|' ? true : undefined));
    expect(routesSeen(v, r2)).toBe(`${LAN}|${LAN}`);
  }, 20_000);

  it('the HA prober pings both routers of a prefix; Weft answers over plain HTTP, so nobody is passed over', async () => {
    h = new Harness();
    await h.start({ logf: (l) => void logs.push(l), control: { haProbeIntervalMs: 1000, haProbeTimeoutMs: 900 } });
    const r1 = await router('r1', [LAN]);
    const r2 = await router('r2', [LAN]);
    const v = await h.client('viewer');
    await v.start();
    for (const r of [r1, r2]) h.store.updateNode(recOf(r).id, { approvedRoutes: [LAN] });
    h.server.control.changed();
    await eventually('r1 serves the LAN', () => (routesSeen(v, r1) === `${LAN}|${LAN}` ? true : undefined));
    // Each router's client answers the pings: after several cycles nobody was judged unhealthy, and r1 still serves.
    await eventually('four pings answered', () => (h.server.control.haProbeCounts.answered >= 4 ? true : undefined), 10_000);
    expect(h.server.control.haProbeCounts.timedOut).toBe(0);
    expect(h.server.control.unhealthyNodes).toEqual([]);
    expect(logs.join('\n')).not.toMatch(/did not answer/);
    expect(routesSeen(v, r1)).toBe(`${LAN}|${LAN}`);
    expect(recOf(r1).primaryRoutes).toEqual([LAN]);

    // The answer URL as headscale 0.29 serves it: HEAD only, an id needed, an unknown id refused.
    const at = (q: string): string => `${h.url.origin}/machine/ping-response${q}`;
    expect((await fetch(at('?id=0123456789abcdef'), { method: 'HEAD' })).status).toBe(404);
    expect((await fetch(at(''), { method: 'HEAD' })).status).toBe(400);
    expect((await fetch(at('?id=0123456789abcdef'))).status).toBe(405);
  }, 20_000);

  it('an approved exit node reaches every peer with both /0s and no PrimaryRoutes', async () => {
    h = new Harness();
    await h.start();
    const exit = await router('exit', ['0.0.0.0/0', '::/0']);
    const v = await h.client('viewer');
    await v.start();
    h.store.updateNode(recOf(exit).id, { approvedRoutes: ['0.0.0.0/0', '::/0'] });
    h.server.control.changed();
    await eventually('viewer gets the exit routes', () => (routesSeen(v, exit) === '0.0.0.0/0,::/0|' ? true : undefined));
    const p = v.netmap.peers.get(idOf(exit))!;
    expect(p.AllowedIPs).toEqual(['0.0.0.0/0', `${recOf(exit).ipv4}/32`, '::/0', `${recOf(exit).ipv6}/128`]);
    // Its own node lists them too (headscale puts a node's exit routes in its self AllowedIPs).
    await eventually('self AllowedIPs', () => (exit.netmap.self?.AllowedIPs.includes('::/0') ? true : undefined));
  });

  it('autoApprovers approve at registration, on a new announcement and on a policy reload; the policy decides who gets the route', async () => {
    const path = join(dir, 'policy.hujson');
    const policy = (approvers: string): string => `{
  "tagOwners": {"tag:router": ["alice@"]},
  "autoApprovers": {"routes": {"192.168.0.0/16": [${approvers}]}, "exitNode": ["alice@"]},
  "acls": [
    {"action": "accept", "src": ["alice@"], "dst": ["192.168.1.0/24:*", "autogroup:internet:*", "alice@:*"]},
    {"action": "accept", "src": ["bob@"], "dst": ["alice@:22"]},
  ],
}`;
    writeFileSync(path, policy('"alice@"'));
    h = new Harness();
    h.userId = h.store.createUser('alice', Date.now()).id;
    h.key = h.store.createPreAuthKey({ userId: h.userId, reusable: true, ephemeral: false, expiresAt: null }, Date.now()).key;
    const bobId = h.store.createUser('bob', Date.now()).id;
    const bobKey = h.store.createPreAuthKey({ userId: bobId, reusable: true, ephemeral: false, expiresAt: null }, Date.now()).key;
    await h.start({ policyFile: path, logf: (l) => void logs.push(l) });

    // Registration: alice's router announcing LAN and an exit node is approved for both at once.
    const r1 = await router('r1', [LAN, '0.0.0.0/0', '::/0']);
    expect(recOf(r1).approvedRoutes).toEqual(['0.0.0.0/0', LAN, '::/0']);
    expect(logs.join('\n')).toMatch(/autoApprovers approved 0\.0\.0\.0\/0, 192\.168\.1\.0\/24, ::\/0 \(it registered\)/);
    // A route outside every autoApprovers entry is not approved.
    const r2 = await router('r2', ['10.9.0.0/16']);
    expect(recOf(r2).approvedRoutes).toEqual([]);
    // A new announcement inside the entry is approved on the map request that carries it.
    r2.setRoutableIPs(['10.9.0.0/16', '192.168.7.0/24']);
    await r2.pushLiteUpdate();
    await eventually('r2 auto-approved', () => (recOf(r2).approvedRoutes.join() === '192.168.7.0/24' ? true : undefined));

    // alice's viewer gets r1's LAN and exit routes. bob may reach alice's nodes on port 22 only: he sees r1 (alice's)
    // without its LAN; the /0s pass for him as in headscale (any IPv4 and IPv6 destination matches a /0).
    const alice = await h.client('alice-laptop');
    await alice.start();
    const bob = await h.client('bob-laptop', { authKey: bobKey });
    await bob.start();
    await eventually('alice gets the routes', () => (routesSeen(alice, r1) === `0.0.0.0/0,${LAN},::/0|${LAN}` ? true : undefined));
    await eventually('bob sees r1 without its LAN', () => (bob.netmap.peers.has(idOf(alice)) && routesSeen(bob, r1) === '0.0.0.0/0,::/0|' ? true : undefined));
    expect(bob.netmap.peers.has(idOf(r2))).toBe(true);
    // r1's filter covers its subnet for alice (a router is a destination for its routes).
    await eventually("r1's filter has the LAN", () => (JSON.stringify(r1.netmap.packetFilter).includes('"192.168.1.0/24"') ? true : undefined));

    // A tagged router is not alice's any more: a policy naming tag:router approves its announcement on reload.
    const r3 = await router('r3', ['192.168.9.0/24']);
    expect(recOf(r3).approvedRoutes).toEqual(['192.168.9.0/24']);
    h.store.updateNode(recOf(r3).id, { tags: ['tag:router'], approvedRoutes: [] });
    writeFileSync(path, policy('"alice@", "tag:router"'));
    await eventually('r3 approved again by the reloaded policy', () => (recOf(r3).approvedRoutes.join() === '192.168.9.0/24' ? true : undefined), 8000);
    expect(logs.join('\n')).toMatch(/autoApprovers approved 192\.168\.9\.0\/24 \(the policy changed\)/);
  }, 30_000);
});
