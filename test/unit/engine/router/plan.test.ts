/** Routes by kind (router/plan.ts): the shapes headscale 0.26.1 and 0.29.2 put into a peer's AllowedIPs. */
import { describe, expect, it } from 'vitest';
import { connectedPrefixes, planRoutes, prefixContains } from '../../../../src-main/engine/router/plan.ts';
import { parseIpPrefix } from '../../../../src-main/engine/wg/ip-prefix.ts';
import type { Node } from '../../../../src-main/protocol/control/tailcfg.ts';

function node(id: string, name: string, addrs: string[], allowed: string[], extra: Partial<Node> = {}): Node {
  return { ID: id, Name: `${name}.tailnet.example.com.`, Addresses: addrs, AllowedIPs: allowed, PrimaryRoutes: [], Expired: false, ...extra } as unknown as Node;
}

const nas = node('2', 'nas', ['100.64.0.2/32', 'fd7a:115c:a1e0::2/128'], ['100.64.0.2/32', 'fd7a:115c:a1e0::2/128', '10.9.0.0/16', '192.168.1.0/24']);
const exit = node('3', 'exit', ['100.64.0.3/32', 'fd7a:115c:a1e0::3/128'], ['0.0.0.0/0', '100.64.0.3/32', '::/0', 'fd7a:115c:a1e0::3/128']);
const lan = [{ iface: 'eth0', prefix: '192.168.1.0/24' }];

describe('planRoutes', () => {
  it('routes peers’ own addresses always, exit routes never, subnet routes only when accepted', () => {
    const off = planRoutes({ peers: [nas, exit], acceptRoutes: false, lan, ipv6: true });
    expect(off.routes.map((r) => r.prefix).sort()).toEqual(['100.64.0.2/32', '100.64.0.3/32', 'fd7a:115c:a1e0::2/128', 'fd7a:115c:a1e0::3/128']);
    expect(off.allowedIPs.get('3')).toEqual(['100.64.0.3/32', 'fd7a:115c:a1e0::3/128']);
    expect(off.skipped.filter((k) => k.reason === 'exit-route')).toHaveLength(1);
    expect(off.skipped.filter((k) => k.reason === 'accept-routes-off').map((k) => k.prefix)).toEqual(['10.9.0.0/16', '192.168.1.0/24']);
    expect(off.throws).toEqual([]);

    const on = planRoutes({ peers: [nas, exit], acceptRoutes: true, lan, ipv6: true });
    expect(on.routes).toContainEqual({ prefix: '10.9.0.0/16', peer: 'nas' });
    expect(on.allowedIPs.get('2')).toEqual(['100.64.0.2/32', 'fd7a:115c:a1e0::2/128', '10.9.0.0/16']);
    const overlap = on.skipped.find((k) => k.reason === 'lan-overlap');
    expect(overlap?.note).toBe('route 192.168.1.0/24 from nas overlaps your LAN (eth0 192.168.1.0/24); your LAN wins');
  });

  it('installs a route that covers the LAN with a throw for the LAN', () => {
    const wide = node('4', 'hq', ['100.64.0.4/32'], ['100.64.0.4/32', '192.168.0.0/16']);
    const p = planRoutes({ peers: [wide], acceptRoutes: true, lan, ipv6: true });
    expect(p.routes.map((r) => r.prefix)).toContain('192.168.0.0/16');
    expect(p.throws).toEqual(['192.168.1.0/24']);
    expect(p.skipped[0]?.note).toMatch(/covers your LAN \(eth0 192\.168\.1\.0\/24\); your LAN wins there/);
  });

  it('skips malformed, too wide, duplicate and IPv6 prefixes on an IPv4-only host, and expired peers', () => {
    const bad = node('5', 'bad', ['100.64.0.5/32'], ['100.64.0.5/32', 'garbage', '10.0.0.0/4', '10.9.0.0/16']);
    const dup = node('6', 'dup', ['100.64.0.6/32'], ['100.64.0.6/32', '10.9.0.0/16']);
    const gone = node('7', 'gone', ['100.64.0.7/32'], ['100.64.0.7/32'], { Expired: true });
    const p = planRoutes({ peers: [dup, bad, gone, nas], acceptRoutes: true, lan: [], ipv6: false });
    expect(p.skipped.map((k) => k.reason)).toEqual(expect.arrayContaining(['malformed', 'too-wide']));
    // 10.9.0.0/16 belongs to the lowest node ID that offers it (one prefix, one WireGuard peer).
    expect(p.routes.filter((r) => r.prefix === '10.9.0.0/16')).toEqual([{ prefix: '10.9.0.0/16', peer: 'nas' }]);
    expect(p.routes.some((r) => r.prefix.includes(':'))).toBe(false);
    expect(p.allowedIPs.has('7')).toBe(false);
  });
});

describe('connectedPrefixes and prefixContains', () => {
  it('lists LAN networks, not loopback, Weft, link-local, tailnet or host addresses', () => {
    const out = connectedPrefixes(
      {
        lo: [{ address: '127.0.0.1', cidr: '127.0.0.1/8', internal: true }],
        eth0: [
          { address: '192.168.1.2', cidr: '192.168.1.2/24', internal: false },
          { address: 'fe80::1', cidr: 'fe80::1/64', internal: false },
          { address: '2001:db8::5', cidr: '2001:db8::5/64', internal: false },
        ],
        weft0: [{ address: '100.64.0.1', cidr: '100.64.0.1/32', internal: false }],
        tun9: [{ address: '100.100.100.100', cidr: '100.100.100.100/32', internal: false }],
        wg1: [{ address: '10.1.1.1', cidr: '10.1.1.1/32', internal: false }],
      },
      (n) => n.startsWith('weft'),
    );
    expect(out).toEqual([
      { iface: 'eth0', prefix: '192.168.1.0/24' },
      { iface: 'eth0', prefix: '2001:db8::/64' },
    ]);
    expect(prefixContains(parseIpPrefix('10.0.0.0/8')!, parseIpPrefix('10.9.0.0/16')!)).toBe(true);
    expect(prefixContains(parseIpPrefix('10.9.0.0/16')!, parseIpPrefix('10.0.0.0/8')!)).toBe(false);
  });
});
