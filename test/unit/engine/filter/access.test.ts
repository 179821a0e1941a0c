/**
 * The effective access shown for this device (engine/filter/access.ts), from the filters headscale 0.26.1 and
 * 0.29.2 send.
 */
import { describe, expect, it } from 'vitest';
import { effectiveAccess, MAX_GRANTS } from '../../../../src-main/engine/filter/access.ts';
import { FilterRule } from '../../../../src-main/protocol/control/tailcfg.ts';

const SELF = ['100.64.0.3', 'fd7a:115c:a1e0::3'];
const PEERS = [
  { name: 'nas', addresses: ['100.64.0.5/32', 'fd7a:115c:a1e0::5/128'] },
  { name: 'laptop', addresses: ['100.64.0.4', 'fd7a:115c:a1e0::4'] },
  { name: 'phone', addresses: ['100.64.0.9'] },
  { name: 'v6only', addresses: ['fd7a:115c:a1e0::7'] },
  { name: 'chromebook', addresses: ['100.115.92.10'] },
];
const access = (rules: unknown[], self: string[] = SELF) =>
  effectiveAccess(
    rules.map((r) => FilterRule.parse(r)),
    self,
    PEERS,
  );
const CGNAT_029 = ['100.64.0.0-100.115.91.255', '100.115.94.0-100.127.255.255', 'fd7a:115c:a1e0::/48'];
const ssh029 = {
  SrcIPs: CGNAT_029,
  DstPorts: [
    { IP: '100.64.0.3', Ports: { First: 22, Last: 22 } },
    { IP: 'fd7a:115c:a1e0::3', Ports: { First: 22, Last: 22 } },
  ],
};

describe('effectiveAccess', () => {
  it('headscale 0.29.2 `*` to port 22: anyone, every peer but the ChromeOS range', () => {
    expect(access([ssh029])).toEqual([
      { peers: ['laptop', 'nas', 'phone', 'v6only'], anyone: true, sources: CGNAT_029, protocols: ['tcp', 'udp', 'icmp'], ports: [{ first: 22, last: 22 }] },
    ]);
  });

  it('headscale 0.26.1 `*` (0.0.0.0/0, ::/0) and FilterAllowAll: anyone, all ports', () => {
    const hs026 = { SrcIPs: ['0.0.0.0/0', '::/0'], DstPorts: [{ IP: '100.64.0.3/32', Ports: { First: 0, Last: 65535 } }] };
    const all = { SrcIPs: ['*'], DstPorts: [{ IP: '*', Ports: { First: 0, Last: 65535 } }] };
    const names = ['chromebook', 'laptop', 'nas', 'phone', 'v6only'];
    // 0.26.1 names only the IPv4 address here, so the IPv6-only peer cannot reach it.
    expect(access([hs026])).toEqual([{ peers: names.filter((n) => n !== 'v6only'), anyone: true, sources: ['0.0.0.0/0', '::/0'], protocols: ['tcp', 'udp', 'icmp'], ports: [{ first: 0, last: 65535 }] }]);
    expect(access([all])).toEqual([{ peers: names, anyone: true, sources: ['*'], protocols: ['tcp', 'udp', 'icmp'], ports: [{ first: 0, last: 65535 }] }]);
  });

  it('one peer, proto icmp ([1] in 0.29.2, [1, 58] in 0.26.1): icmp, no ports', () => {
    for (const IPProto of [[1], [1, 58]]) {
      expect(access([{ SrcIPs: ['100.64.0.5'], DstPorts: [{ IP: '100.64.0.3', Ports: { First: 0, Last: 65535 } }], IPProto }])).toEqual([
        { peers: ['nas'], anyone: false, sources: ['100.64.0.5'], protocols: ['icmp'], ports: [] },
      ]);
    }
  });

  it('ICMP comes with any rule; other protocols need all ports', () => {
    const r = (First: number) => ({ SrcIPs: ['100.64.0.4/31'], DstPorts: [{ IP: '100.64.0.3', Ports: { First, Last: 65535 } }], IPProto: [6, 47, 99, 300] });
    expect(access([r(0)])).toEqual([{ peers: ['laptop', 'nas'], anyone: false, sources: ['100.64.0.4/31'], protocols: ['tcp', 'icmp', 'proto 47'], ports: [{ first: 0, last: 65535 }] }]);
    expect(access([r(1)])[0]!.protocols).toEqual(['tcp', 'icmp']);
  });

  it('skips rules that do not reach this node, capability grants and filters with SrcBits', () => {
    const other = { SrcIPs: ['*'], DstPorts: [{ IP: '100.64.0.4', Ports: { First: 22, Last: 22 } }] };
    const capOnly = { SrcIPs: ['100.64.0.5'], CapGrant: [{ Dsts: ['100.64.0.3/32'], CapMap: {} }] };
    // IPv4-only sources and an IPv6-only destination: no family in common.
    const crossed = { SrcIPs: ['100.64.0.5'], DstPorts: [{ IP: 'fd7a:115c:a1e0::3', Ports: { First: 22, Last: 22 } }] };
    expect(access([other, capOnly, crossed])).toEqual([]);
    expect(access([ssh029, { SrcIPs: ['*'], SrcBits: [32], DstPorts: [{ IP: '*', Ports: { First: 0, Last: 0 } }] }])).toEqual([]);
    expect(access([ssh029], [])).toEqual([]);
  });

  it('ports come from the entries naming this node; same sources and protocols merge', () => {
    const rules = [
      { SrcIPs: ['100.64.0.9'], DstPorts: [{ IP: '100.64.0.3', Ports: { First: 80, Last: 80 } }, { IP: '100.64.0.4', Ports: { First: 25, Last: 25 } }], IPProto: [6] },
      { SrcIPs: ['100.64.0.9'], DstPorts: [{ IP: '100.64.0.0/24', Ports: { First: 81, Last: 90 } }, { IP: '100.64.0.3', Ports: { First: 443, Last: 443 } }], IPProto: [6] },
      { SrcIPs: ['100.64.0.9'], DstPorts: [{ IP: '100.64.0.3', Ports: { First: 80, Last: 80 } }], IPProto: [6] },
      { SrcIPs: ['100.64.0.9'], DstPorts: [{ IP: '100.64.0.3', Ports: { First: 53, Last: 53 } }], IPProto: [17] },
      { SrcIPs: ['cap:x', 'junk', '100.64.0.5'], DstPorts: [{ IP: 'cap:y', Ports: { First: 1, Last: 1 } }, { IP: '100.64.0.3', Ports: { First: 9, Last: 1 } }, { IP: '100.64.0.3', Ports: { First: 7, Last: 7 } }] },
    ];
    expect(access(rules)).toEqual([
      {
        peers: ['phone'],
        anyone: false,
        sources: ['100.64.0.9'],
        protocols: ['tcp', 'icmp'],
        ports: [
          { first: 80, last: 90 },
          { first: 443, last: 443 },
        ],
      },
      { peers: ['phone'], anyone: false, sources: ['100.64.0.9'], protocols: ['udp', 'icmp'], ports: [{ first: 53, last: 53 }] },
      { peers: ['nas'], anyone: false, sources: ['cap:x', 'junk', '100.64.0.5'], protocols: ['tcp', 'udp', 'icmp'], ports: [{ first: 7, last: 7 }] },
    ]);
  });

  it('anyone needs the whole tailnet of a family the rule reaches', () => {
    const r = (SrcIPs: string[]) => ({ SrcIPs, DstPorts: [{ IP: '*', Ports: { First: 22, Last: 22 } }] });
    expect(access([r(['100.64.0.0/10'])])[0]!.anyone).toBe(true);
    expect(access([r(['100.64.0.0-100.115.91.255'])])[0]!.anyone).toBe(false);
    expect(access([r(['fd7a:115c:a1e0::/48'])])[0]).toMatchObject({ anyone: true, peers: ['laptop', 'nas', 'v6only'] });
    expect(access([{ SrcIPs: ['fd7a:115c:a1e0::/48'], DstPorts: [{ IP: '100.64.0.3', Ports: { First: 22, Last: 22 } }] }])).toEqual([]);
  });

  it('is bounded', () => {
    const rules = Array.from({ length: 400 }, (_, i) => ({ SrcIPs: [`10.0.${i >> 8}.${i & 255}`], DstPorts: [{ IP: '*', Ports: { First: 22, Last: 22 } }] }));
    expect(access(rules)).toHaveLength(MAX_GRANTS);
    const wide = access([{ SrcIPs: Array.from({ length: 100 }, (_, i) => `10.1.0.${i}`), DstPorts: [{ IP: '*', Ports: { First: 22, Last: 22 } }] }]);
    expect(wide[0]!.sources).toHaveLength(65);
    expect(wide[0]!.sources.at(-1)).toBe('… and 36 more');
  });
});
