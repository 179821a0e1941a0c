/**
 * Subnet routes and exit nodes in weft server (server/routes/routes.ts, policy/approve.ts, and the route parts of
 * policy/compile.ts and control/mapper.ts), against what headscale 0.29.2 does (types/node.go SubnetRoutes,
 * ExitRoutes, TailNode; state/node_store.go electPrimaryRoutes; grpcv1.go SetApprovedRoutes; policy/v2
 * NodeCanApproveRoute, BuildPeerMap, CanAccessRoute; policyutil/reduce.go).
 */
import { describe, expect, it } from 'vitest';
import { approvalList, announcedRoutes, electPrimaries, exitRoutes, haNodes, parsePrefix, primariesByNode, sortPrefixes, subnetRoutes } from '../../../../src-main/server/routes/routes.ts';
import { autoApprove, policyApprovedRoutes } from '../../../../src-main/server/policy/approve.ts';
import { compilePolicy, worldOf, type PolicyNode } from '../../../../src-main/server/policy/compile.ts';
import { formatPolicyErrors, parsePolicy } from '../../../../src-main/server/policy/parse.ts';
import { fullMap, wireNode, type MapperConfig, type NodeView } from '../../../../src-main/server/control/mapper.ts';
import type { UserRecord } from '../../../../src-main/server/store/types.ts';
import { nodeRecord } from '../store/store-contract.ts';

const hi = (routes: string[]): string => JSON.stringify({ Hostname: 'x', RoutableIPs: routes });

const rec = nodeRecord;

function parsed(text: string) {
  const p = parsePolicy(text);
  if (p.kind !== 'ok') throw new Error(formatPolicyErrors(p.errors));
  return p;
}

describe('route sets', () => {
  it('parses masked prefixes only, canonically', () => {
    expect(parsePrefix('192.168.1.0/24')?.text).toBe('192.168.1.0/24');
    expect(parsePrefix('fd00:0:0:1::/64')?.text).toBe('fd00:0:0:1::/64');
    expect(parsePrefix('192.168.1.1/24')).toBeNull();
    expect(parsePrefix('192.168.1.0')).toBeNull();
    expect(parsePrefix('192.168.1.0/33')).toBeNull();
    expect(parsePrefix('nonsense/8')).toBeNull();
  });

  it('sorts as Go netip.Prefix.Compare: IPv4 first, then address, then length', () => {
    expect(sortPrefixes(['fd7a:115c:a1e0::3/128', '::/0', '192.168.1.0/24', '100.64.0.3/32', '0.0.0.0/0', '10.0.0.0/8', '10.0.0.0/16'])).toEqual([
      '0.0.0.0/0',
      '10.0.0.0/8',
      '10.0.0.0/16',
      '100.64.0.3/32',
      '192.168.1.0/24',
      '::/0',
      'fd7a:115c:a1e0::3/128',
    ]);
  });

  it('reads announced routes from Hostinfo, dropping bad and repeated entries', () => {
    expect(announcedRoutes(hi(['10.0.0.0/24', '10.0.0.1/24', 'x', '10.0.0.0/24', '::/0']))).toEqual(['10.0.0.0/24', '::/0']);
    expect(announcedRoutes('{"RoutableIPs": "10.0.0.0/24"}')).toEqual([]);
    expect(announcedRoutes('not json')).toEqual([]);
    expect(announcedRoutes(null)).toEqual([]);
  });

  it('serves announced ∩ approved, exactly; exit routes only when that /0 is both', () => {
    const n = { hostinfo: hi(['10.1.0.0/24', '10.2.0.0/24', '0.0.0.0/0', '::/0']), approvedRoutes: ['10.0.0.0/8', '10.2.0.0/24', '0.0.0.0/0', '172.16.0.0/12'] };
    expect(subnetRoutes(n)).toEqual(['10.2.0.0/24']); // 10.0.0.0/8 does not enable 10.1.0.0/24
    expect(exitRoutes(n)).toEqual(['0.0.0.0/0']);
    expect(exitRoutes({ ...n, approvedRoutes: ['0.0.0.0/0', '::/0'] })).toEqual(['0.0.0.0/0', '::/0']);
  });

  it('approve-routes: either /0 brings both, sorted, each once; bad input is refused; empty clears', () => {
    expect(approvalList(['192.168.1.0/24', '::/0', ' 10.0.0.0/8', '192.168.1.0/24'])).toEqual({ routes: ['0.0.0.0/0', '10.0.0.0/8', '192.168.1.0/24', '::/0'] });
    expect(approvalList([''])).toEqual({ routes: [] });
    expect(approvalList(['192.168.1.1/24'])).toEqual({ error: expect.stringMatching(/"192\.168\.1\.1\/24" is not a route/) as unknown });
  });
});

describe('primary election', () => {
  it('keeps the current primary while it is a candidate, else takes the lowest id; a returning router does not take it back', () => {
    const P = '192.168.1.0/24';
    let m = electPrimaries(new Map(), [
      { id: 7, routes: [P] },
      { id: 3, routes: [P, '10.0.0.0/24'] },
    ]);
    expect([...m]).toEqual([
      ['10.0.0.0/24', 3],
      [P, 3],
    ]);
    m = electPrimaries(m, [{ id: 7, routes: [P] }]); // 3 went offline
    expect(m.get(P)).toBe(7);
    expect(m.has('10.0.0.0/24')).toBe(false);
    m = electPrimaries(m, [
      { id: 3, routes: [P] },
      { id: 7, routes: [P] },
    ]); // 3 is back: 7 stays
    expect(m.get(P)).toBe(7);
    expect([...primariesByNode(m)]).toEqual([[7, [P]]]);
  });

  it('with the HA prober: an unhealthy primary loses to the lowest healthy id; with all unhealthy the primary stays', () => {
    const P = '192.168.1.0/24';
    const Q = '10.0.0.0/24';
    const three = [
      { id: 3, routes: [P] },
      { id: 5, routes: [P, Q] },
      { id: 9, routes: [P] },
    ];
    let m = electPrimaries(new Map(), three);
    expect(m.get(P)).toBe(3);
    m = electPrimaries(m, three, new Set([3])); // 3 stopped answering
    expect(m.get(P)).toBe(5);
    m = electPrimaries(m, three, new Set([3, 9])); // the current one stays while healthy
    expect(m.get(P)).toBe(5);
    m = electPrimaries(m, three, new Set()); // 3 healthy again: no flap back
    expect(m.get(P)).toBe(5);
    m = electPrimaries(m, three, new Set([3, 5, 9])); // all unhealthy: the primary stays, a candidate still
    expect([m.get(P), m.get(Q)]).toEqual([5, 5]);
    // All unhealthy and the previous primary gone: nobody is elected.
    m = electPrimaries(m, [three[0]!, three[2]!], new Set([3, 9]));
    expect(m.has(P)).toBe(false);
    expect(m.has(Q)).toBe(false);
    expect(electPrimaries(new Map(), [{ id: 4, routes: [Q] }], new Set([4])).has(Q)).toBe(false);
  });

  it('HA nodes: those sharing a subnet prefix with another candidate', () => {
    expect(haNodes([{ id: 1, routes: ['10.0.0.0/24'] }])).toEqual([]);
    expect(
      haNodes([
        { id: 9, routes: ['192.168.1.0/24'] },
        { id: 1, routes: ['10.0.0.0/24'] },
        { id: 4, routes: ['192.168.1.0/24', '10.1.0.0/24'] },
        { id: 6, routes: ['10.1.0.0/24'] },
        { id: 7, routes: ['172.16.0.0/12'] },
      ]),
    ).toEqual([4, 6, 9]);
  });
});

describe('autoApprovers', () => {
  const doc = parsed(`{
    "groups": {"group:ops": ["ops@"]},
    "tagOwners": {"tag:router": ["ops@"]},
    "autoApprovers": {"routes": {"10.0.0.0/8": ["group:ops"], "192.168.1.0/24": ["tag:router"], "172.16.0.0/16": ["lab@"]}, "exitNode": ["tag:router"]},
    "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]
  }`).doc;
  const node = (user: string, tags: string[] = []): PolicyNode => ({ id: 1, ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0::1', user, tags });

  it('approves routes inside an entry for its approvers; exit routes only through exitNode', () => {
    const announced = ['10.1.0.0/24', '192.168.1.0/24', '172.16.0.0/12', '172.16.5.0/24', '0.0.0.0/0', '::/0'];
    expect(policyApprovedRoutes(doc, node('ops'), announced)).toEqual(['10.1.0.0/24']);
    expect(policyApprovedRoutes(doc, node('lab'), announced)).toEqual(['172.16.5.0/24']); // not the wider /12
    expect(policyApprovedRoutes(doc, node('ops', ['tag:router']), announced)).toEqual(['192.168.1.0/24', '0.0.0.0/0', '::/0']); // a tagged node is not its user's
  });

  it('only adds to what is approved, and says when nothing changes', () => {
    expect(autoApprove(doc, node('ops'), ['10.1.0.0/24'], ['100.100.0.0/16'])).toEqual(['10.1.0.0/24', '100.100.0.0/16']);
    expect(autoApprove(doc, node('ops'), ['10.1.0.0/24'], ['10.1.0.0/24'])).toBeNull();
    expect(autoApprove(doc, node('nobody'), ['10.1.0.0/24'], [])).toBeNull();
  });
});

describe('routes in the compiled policy', () => {
  // 1 alice, 2 bob, 3 router (ops) serving 192.168.1.0/24, 4 exit node (ops).
  const users = [
    { id: 1, name: 'alice' },
    { id: 2, name: 'bob' },
    { id: 3, name: 'ops' },
  ];
  const nodes = [
    rec(1, { userId: 1 }),
    rec(2, { userId: 2 }),
    rec(3, { userId: 3, hostinfo: hi(['192.168.1.0/24']), approvedRoutes: ['192.168.1.0/24'] }),
    rec(4, { userId: 3, hostinfo: hi(['0.0.0.0/0', '::/0']), approvedRoutes: ['0.0.0.0/0', '::/0'] }),
  ];
  const world = worldOf(users, nodes);

  it('"*" as a source covers every served subnet; a router gets its subnet entries; an exit node the internet ones', () => {
    const c = compilePolicy(parsed(`{"acls": [
      {"action": "accept", "src": ["*"], "dst": ["192.168.1.0/24:22"]},
      {"action": "accept", "src": ["alice@"], "dst": ["autogroup:internet:*"]}
    ]}`), world);
    if (c.kind !== 'ok') throw new Error('compile');
    const p = c.compiled;
    expect(p.rules![0]!.SrcIPs).toEqual(['100.64.0.0-100.115.91.255', '100.115.94.0-100.127.255.255', 'fd7a:115c:a1e0::/48', '192.168.1.0/24']);
    expect(p.filterFor(3).map((r) => r.DstPorts.map((d) => d.IP))).toEqual([['192.168.1.0/24']]);
    expect(p.filterFor(4)).toHaveLength(1);
    expect(p.filterFor(4)[0]!.DstPorts.length).toBeGreaterThan(40); // TheInternet's prefixes
    expect(p.filterFor(1)).toEqual([]);
    // Visibility through routes: everyone reaches the router's subnet, alice reaches the exit node's internet.
    expect(p.canSee(2, 3)).toBe(true);
    expect(p.canSee(1, 4)).toBe(true);
    expect(p.canSee(2, 4)).toBe(false);
    expect(p.canSee(1, 2)).toBe(false);
    // Which routes each viewer gets.
    expect(p.routeVisible(2, '192.168.1.0/24')).toBe(true);
    expect(p.routeVisible(1, '0.0.0.0/0')).toBe(true);
    // As in headscale, a /0 passes for anyone who may reach any IPv4 destination (here bob, through the subnet
    // rule); it does not matter, since bob does not see the exit node at all.
    expect(p.routeVisible(2, '0.0.0.0/0')).toBe(true);
    expect(p.routeVisible(2, '::/0')).toBe(false);
    expect(p.routeVisible(1, '10.9.0.0/16')).toBe(false);
  });

  it('a peer gets the routes it may use in AllowedIPs (sorted), the primary its PrimaryRoutes; a standby serves nothing', () => {
    const cfg: MapperConfig = { domain: 'x', baseDomain: null, derpMap: { Regions: {} } };
    const c = compilePolicy(parsed(`{"acls": [
      {"action": "accept", "src": ["alice@"], "dst": ["192.168.1.0/24:22", "autogroup:internet:*"]},
      {"action": "accept", "src": ["bob@"], "dst": ["alice@:*"]}
    ]}`), world);
    if (c.kind !== 'ok') throw new Error('compile');
    const u = new Map<number, UserRecord>(users.map((x) => [x.id, { ...x, createdAt: 0 }]));
    const views: NodeView[] = nodes.map((record) => ({ record, online: true, primaries: record.id === 3 ? ['192.168.1.0/24'] : [] }));
    const alice = fullMap({ nodes: views, users: u }, 1, cfg, 130, 0, c.compiled)!.msg;
    const router = alice.Peers!.find((p) => p.ID === 3)!;
    expect(router.AllowedIPs).toEqual(['100.64.0.3/32', '192.168.1.0/24', 'fd7a:115c:a1e0::3/128']);
    expect(router.PrimaryRoutes).toEqual(['192.168.1.0/24']);
    const exit = alice.Peers!.find((p) => p.ID === 4)!;
    expect(exit.AllowedIPs).toEqual(['0.0.0.0/0', '100.64.0.4/32', '::/0', 'fd7a:115c:a1e0::4/128']);
    expect(exit).not.toHaveProperty('PrimaryRoutes');
    // bob may reach neither the subnet nor the internet: he does not see the routers at all.
    const bob = fullMap({ nodes: views, users: u }, 2, cfg, 130, 0, c.compiled)!.msg;
    expect(bob.Peers!.map((p) => p.ID)).toEqual([1]);
    // Without a policy, everyone gets every route; a standby (no primaries) has only its addresses.
    const standby = wireNode({ record: rec(5, { hostinfo: hi(['192.168.1.0/24']), approvedRoutes: ['192.168.1.0/24'] }), online: true }, cfg, 130, 0);
    expect(standby.AllowedIPs).toEqual(['100.64.0.5/32', 'fd7a:115c:a1e0::5/128']);
    const open = fullMap({ nodes: views, users: u }, 2, cfg, 130, 0)!.msg;
    expect(open.Peers!.find((p) => p.ID === 3)!.AllowedIPs).toContain('192.168.1.0/24');
  });
});
