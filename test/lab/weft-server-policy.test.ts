/**
 * `weft server --policy` against real clients and a real headscale (issue 14):
 *  - the official tailscaled enforces the filter weft server compiles, and so does Weft: behind a policy that
 *    allows TCP 22 (and pings), each side accepts 22 and refuses 8080 from the other; and tailscaled resolves the
 *    Weft node by its MagicDNS name through weft server's DNSConfig (`tailscale dns query`);
 *  - the same policy file gives the same PacketFilter in weft server and headscale 0.29.2 for the same users and
 *    node names (three tailscaled nodes per server, one tagged; beta a subnet router for the policy's "lan" and an
 *    exit node, approved with each server's `nodes approve-routes`), as each tailscaled received it
 *    (`tailscale debug netmap`), normalised: node addresses become node names (the servers number nodes
 *    independently), and rule order and merging are ignored;
 *  - and each node's peers arrive with the same AllowedIPs, in the same order, and the same PrimaryRoutes: the
 *    approved exit and subnet routes reach peers exactly as headscale sends them.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IpSet, parseRange } from '../../src-main/server/policy/ipset.ts';
import type { ControlServer } from './control-server.ts';
import { startHeadscale } from './headscale.ts';
import { createLab, type HostName, type Lab, type LabProcess } from './lab.ts';
import { PeerKit, probeTcp, TCP_LISTENER_JS } from './peers.ts';
import { PLAIN_HTTP_DERP_ENV, startTailscaled, type Tailscaled } from './tailscaled.ts';
import { startWeftServer } from './weft-server.ts';
import { eventually } from '../support/eventually.ts';

describe('weft server --policy: enforced by tailscaled and by Weft', () => {
  let lab: Lab;
  const listeners: LabProcess[] = [];

  beforeAll(async () => {
    lab = await createLab();
  }, 60_000);
  afterAll(async () => {
    for (const l of listeners) await l.kill('SIGKILL').catch(() => undefined);
    await lab?.destroy();
  });

  it('behind a policy that allows TCP 22, tailscaled and Weft each accept 22 and refuse 8080 from the other; MagicDNS names resolve', async () => {
    await lab.setRouter('na', { mapping: 'eim', filtering: 'apdf' });
    await lab.setRouter('nb', { mapping: 'eim', filtering: 'apdf' });
    const policyPath = join(lab.tmpDir, 'policy-22.hujson');
    writeFileSync(
      policyPath,
      `{
  // TCP 22 for everyone; pings so the lab can see the tunnel is up
  "acls": [
    {"action": "accept", "proto": "icmp", "src": ["*"], "dst": ["*:*"]},
    {"action": "accept", "proto": "tcp", "src": ["*"], "dst": ["*:22"]},
  ],
}
`,
    );
    const server = await startWeftServer(lab, { policyFile: policyPath });
    const user = await server.createUser('lab');
    const authKey = await server.createPreauthKey(user, { reusable: true, expiration: '1h' });
    const kit = new PeerKit({ lab, loginServer: server.url, authKey, weftEnv: { WEFT_DEBUG_DERP_HTTP: '1' }, tsEnv: { ...PLAIN_HTTP_DERP_ENV } });
    for (const h of ['a1', 'b1'] as const) {
      const l = lab.spawn(h, ['node', '-e', TCP_LISTENER_JS, '22', '8080']);
      listeners.push(l);
      await l.waitForOutput(/LISTENING/, 10_000);
    }
    const probe = (from: HostName, ip: string, port: number): Promise<boolean> => probeTcp(lab, from, ip, port);

    const a = await kit.upWeft('a1');
    const b = await kit.upTailscaled('b1');
    try {
      await kit.expectTunnel(a, b);
      // tailscaled (b1) enforces weft server's filter on what Weft (a1) sends it…
      expect(await eventually('a1 → b1:22 open', 15_000, async () => ((await probe('a1', b.ip, 22)) ? true : undefined))).toBe(true);
      expect(await probe('a1', b.ip, 8080), 'a1 → tailscaled b1:8080 must be refused').toBe(false);
      // …and Weft (a1) enforces it on what tailscaled sends.
      expect(await eventually('b1 → a1:22 open', 15_000, async () => ((await probe('b1', a.ip, 22)) ? true : undefined))).toBe(true);
      expect(await probe('b1', a.ip, 8080), 'tailscaled b1 → Weft a1:8080 must be refused').toBe(false);
      // Without the tunnel both listeners answer on their LAN addresses: the refusals are the filter's.
      const netmap = JSON.parse((await b.ts.cli(['debug', 'netmap'])).stdout) as { PacketFilterRules?: { DstPorts: { Ports: { First: number } }[] }[] };
      expect(netmap.PacketFilterRules?.flatMap((r) => r.DstPorts.map((d) => d.Ports.First)).sort()).toEqual([0, 22]);

      // MagicDNS (on by default in weft server, base domain weft.internal): tailscaled's 100.100.100.100 answers the
      // Weft node's name from weft server's DNSConfig.
      const weftName = `${a.name.toLowerCase()}.weft.internal`;
      const q = await eventually(`tailscale dns query ${weftName}`, 20_000, async () => {
        const r = await b.ts.cli(['dns', 'query', weftName, 'A'], { timeoutMs: 10_000 });
        return r.stdout.includes(a.ip) ? r : undefined;
      });
      expect(q.stdout).toMatch(/NoError|RCodeSuccess|Success/i);
      const st = JSON.parse((await b.ts.cli(['status', '--json'])).stdout) as { MagicDNSSuffix?: string; Self?: { DNSName?: string } };
      expect(st.MagicDNSSuffix).toBe('weft.internal');
      expect(st.Self?.DNSName).toBe(`${b.name.toLowerCase()}.weft.internal.`);
    } finally {
      await b.stop();
      await a.stop();
      await server.stop();
    }
  }, 180_000);
});

/** The policy both servers get: groups, hosts, tags, ports, protocols, autogroups. */
const SHARED_POLICY = `{
  "groups": {"group:eng": ["alice@", "bob@"]},
  "hosts": {"lan": "192.168.50.0/24"},
  "tagOwners": {"tag:server": ["alice@"]},
  "acls": [
    {"action": "accept", "proto": "icmp", "src": ["*"], "dst": ["*:*"]},
    {"action": "accept", "src": ["alice@"], "dst": ["tag:server:22", "bob@:80,443"]},
    {"action": "accept", "proto": "tcp", "src": ["group:eng"], "dst": ["tag:server:8000-8100"]},
    {"action": "accept", "src": ["autogroup:member"], "dst": ["lan:*"]},
    {"action": "accept", "proto": "udp", "src": ["bob@"], "dst": ["alice@:*"]},
    {"action": "accept", "src": ["tag:server"], "dst": ["autogroup:member:5432"]},
  ],
}
`;

interface WireRule {
  SrcIPs?: string[];
  DstPorts?: { IP: string; Ports: { First: number; Last: number } }[];
  IPProto?: number[];
}

const STAR_STRINGS = new Set(['100.64.0.0-100.115.91.255', '100.115.94.0-100.127.255.255', 'fd7a:115c:a1e0::/48', '*']);

/** Address strings as tokens: node addresses as "name/4" and "name/6", the rest as canonical strings. */
function tokens(texts: readonly string[], nodes: readonly { name: string; ips: string[] }[]): string[] {
  const out = new Set<string>();
  for (const t of texts) {
    if (STAR_STRINGS.has(t)) {
      out.add(t);
      continue;
    }
    const r = parseRange(t, { allowHostBits: true });
    if (!r) {
      out.add(`?${t}`);
      continue;
    }
    let rest = IpSet.of([r]);
    for (const n of nodes) {
      for (const ip of n.ips) {
        if (rest.has(ip)) {
          out.add(`${n.name}/${ip.includes(':') ? 6 : 4}`);
          rest = rest.minus(IpSet.of([parseRange(ip)!]));
        }
      }
    }
    for (const s of rest.toStrings()) out.add(s);
  }
  return [...out].sort();
}

interface WirePeer {
  Addresses?: string[];
  AllowedIPs?: string[] | null;
  PrimaryRoutes?: string[] | null;
}

/** Each peer's AllowedIPs in order (node addresses as "name/4", "name/6") and its PrimaryRoutes, one line per peer. */
function peerRoutes(peers: readonly WirePeer[], nodes: readonly { name: string; ips: string[] }[]): string[] {
  const name = (prefix: string): string => {
    const ip = prefix.replace(/\/(32|128)$/, '');
    const n = nodes.find((x) => x.ips.includes(ip));
    return n ? `${n.name}/${ip.includes(':') ? 6 : 4}` : prefix;
  };
  return peers
    .map((p) => {
      const who = name((p.Addresses ?? [])[0] ?? '?').replace(/\/[46]$/, '');
      return `peer ${who} allowed ${(p.AllowedIPs ?? []).map(name).join(' ')} primary ${[...(p.PrimaryRoutes ?? [])].sort().join(' ')}`;
    })
    .sort();
}

/** A filter as a sorted list of rules, each with node names for addresses. */
function normalise(rules: readonly WireRule[], nodes: readonly { name: string; ips: string[] }[]): string[] {
  return rules
    .map((r) => {
      const dst = new Set<string>();
      for (const d of r.DstPorts ?? []) for (const tok of tokens([d.IP], nodes)) dst.add(`${tok}:${d.Ports.First}-${d.Ports.Last}`);
      return JSON.stringify({ src: tokens(r.SrcIPs ?? [], nodes), dst: [...dst].sort(), proto: [...(r.IPProto ?? [])].sort((x, y) => x - y) });
    })
    .sort();
}

describe('weft server and headscale 0.29.2 compile the same policy to the same filters', () => {
  let lab: Lab;
  const daemons: Tailscaled[] = [];

  beforeAll(async () => {
    lab = await createLab();
  }, 60_000);
  afterAll(async () => {
    for (const d of daemons) await d.stop().catch(() => undefined);
    await lab?.destroy();
  });

  /** Joins alpha (alice), beta (bob) and gamma (alice, then tagged tag:server) to `server`; each node's filter. */
  async function filtersFrom(server: ControlServer, portBase: number): Promise<Record<string, string[]>> {
    const alice = await server.createUser('alice');
    const bob = await server.createUser('bob');
    const keyA = await server.createPreauthKey(alice, { reusable: true, expiration: '1h' });
    const keyB = await server.createPreauthKey(bob, { reusable: true, expiration: '1h' });
    const specs: { name: string; host: HostName; key: string; extraArgs?: string[] }[] = [
      { name: 'alpha', host: 'a1', key: keyA },
      { name: 'beta', host: 'b1', key: keyB, extraArgs: ['--advertise-routes=192.168.50.0/24', '--advertise-exit-node'] },
      { name: 'gamma', host: 'a2', key: keyA },
    ];
    const mine: Tailscaled[] = [];
    try {
      for (const [i, s] of specs.entries()) {
        const ts = await startTailscaled(lab, s.host, { port: portBase + i, tunName: `${lab.prefix.replace(/[^0-9a-z]/g, '').slice(-6)}p${portBase % 100}${i}`, env: { ...PLAIN_HTTP_DERP_ENV } });
        daemons.push(ts);
        mine.push(ts);
        await ts.up({ loginServer: server.url, authKey: s.key, hostname: s.name, ...(s.extraArgs ? { extraArgs: s.extraArgs } : {}) });
      }
      const gamma = await eventually('gamma listed', 20_000, async () => (await server.listNodes()).find((n) => n.name === 'gamma'));
      const tag = await server.cli(['nodes', 'tag', '-i', String(gamma.id), '-t', 'tag:server']);
      expect(tag.code, `${server.label} nodes tag: ${tag.stdout}${tag.stderr}`).toBe(0);
      const beta = (await server.listNodes()).find((n) => n.name === 'beta')!;
      await server.approveRoutes(beta.id, ['192.168.50.0/24', '0.0.0.0/0']);
      const nodes = (await server.listNodes()).map((n) => ({ name: n.name, ips: n.ipAddresses }));
      expect(nodes.map((n) => n.name).sort()).toEqual(['alpha', 'beta', 'gamma']);
      const read = async (ts: Tailscaled): Promise<string[]> => {
        const r = await ts.cli(['debug', 'netmap'], { timeoutMs: 15_000 });
        const nm = JSON.parse(r.stdout) as { PacketFilterRules?: WireRule[] | null; Peers?: WirePeer[] | null };
        return [...normalise(nm.PacketFilterRules ?? [], nodes), ...peerRoutes(nm.Peers ?? [], nodes)];
      };
      // The tag reaches every node's filter (gamma becomes a destination of alice's port 22), and beta's routes
      // reach alpha.
      await eventually(`${server.label}: gamma's filter has the tag rules, alpha has beta's routes`, 30_000, async () =>
        (await read(mine[2]!)).some((r) => r.includes('gamma/4:22-22')) && (await read(mine[0]!)).some((r) => r.includes('192.168.50.0/24') && r.startsWith('peer beta')) ? true : undefined,
      );
      await new Promise((r) => setTimeout(r, 1500)); // let every node take the same map version
      const out: Record<string, string[]> = {};
      for (const [i, s] of specs.entries()) out[s.name] = await read(mine[i]!);
      return out;
    } finally {
      for (const ts of mine) await ts.stop().catch(() => undefined);
    }
  }

  it('for every node, the normalised PacketFilter is the same', async () => {
    const policyPath = join(lab.tmpDir, 'shared-policy.hujson');
    writeFileSync(policyPath, SHARED_POLICY);
    // headscale reads JSON (HuJSON too): the same bytes for both.
    const hs = await startHeadscale(lab, '0.29.2', { embeddedDerp: true, tailnet: { baseDomain: 'cmp.weft.test', policy: JSON.parse(SHARED_POLICY.replace(/,(\s*[}\]])/g, '$1')) as unknown } });
    const fromHeadscale = await filtersFrom(hs, 41800);
    await hs.stop();
    const weft = await startWeftServer(lab, { listenIp: '203.0.113.13', stunPort: null, policyFile: policyPath });
    const fromWeft = await filtersFrom(weft, 41810);
    await weft.stop();

    // Not trivially equal: each node got rules, and they differ between nodes.
    expect(fromHeadscale['gamma']!.length).toBeGreaterThan(1);
    expect(fromHeadscale['alpha']).not.toEqual(fromHeadscale['gamma']);
    // beta's routes as headscale sends them to alpha: both /0s and the subnet in AllowedIPs, the subnet primary.
    expect(fromHeadscale['alpha']).toContain('peer beta allowed 0.0.0.0/0 beta/4 192.168.50.0/24 ::/0 beta/6 primary 192.168.50.0/24');
    expect(fromWeft).toEqual(fromHeadscale);
  }, 300_000);
});
