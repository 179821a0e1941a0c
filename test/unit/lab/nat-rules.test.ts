import { describe, expect, it } from 'vitest';
import { buildRuleset, MINIUPNPD_NFT, routerSysctls } from '../../lab/nat-rules.ts';
import type { FilterMode, MappingMode, RouterContext, RouterProfile } from '../../lab/nat-rules.ts';

const ctx: RouterContext = { wanIf: 'wan', wanIp: '198.51.100.2', lanIf: 'br-lan', lanCidr: '192.168.1.0/24' };

/** Normalised non-empty lines of the generated ruleset. */
function lines(p: RouterProfile, c: RouterContext = ctx): string[] {
  return buildRuleset(c, p)
    .split('\n')
    .map((l) => l.trim().replace(/\s+/g, ' '))
    .filter((l) => l !== '');
}

/** The rule lines of one chain (between `chain NAME {` and its closing brace). */
function chainRules(ls: string[], name: string, table = 'natlab'): string[] | undefined {
  const t = ls.findIndex((l) => new RegExp(`^table \\w+ ${table} \\{$`).test(l));
  if (t < 0) return undefined;
  const start = ls.findIndex((l, i) => i > t && l === `chain ${name} {`);
  if (start < 0) return undefined;
  const end = ls.findIndex((l, i) => i > start && l === '}');
  return ls.slice(start + 1, end);
}

const has = (ls: string[] | undefined, re: RegExp): boolean => (ls ?? []).some((l) => re.test(l));

const EIF_DNAT = /^iifname "wan" ip daddr 198\.51\.100\.2 meta l4proto udp dnat ip addr \. port to udp dport map @fc$/;
const ADF_DNAT = /^iifname "wan" ip daddr 198\.51\.100\.2 meta l4proto udp ip saddr \. udp dport @seen dnat .* map @fc$/;
const HAIRPIN_DNAT = /^iifname "br-lan" ip daddr 198\.51\.100\.2 meta l4proto udp dnat .* map @fc$/;
const HAIRPIN_SNAT = /^oifname "br-lan" ip saddr 192\.168\.1\.0\/24 ct status dnat snat ip to 198\.51\.100\.2$/;
const INPUT_DROP = /^iifname "wan" ct state new meta l4proto \{ udp, tcp \} drop$/;

describe('buildRuleset', () => {
  it('starts with flush ruleset and declares the lab table', () => {
    const ls = lines({ mapping: 'eim', filtering: 'apdf' });
    expect(ls[0]).toBe('flush ruleset');
    expect(ls[1]).toBe('table ip natlab {');
  });

  it.each<[MappingMode, RegExp[]]>([
    ['eim', [/^oifname "wan" ip saddr 192\.168\.1\.0\/24 masquerade$/]],
    ['eim-range', [/^oifname "wan" ip saddr 192\.168\.1\.0\/24 meta l4proto \{ tcp, udp \} masquerade to :20000-29999$/, /^oifname "wan" ip saddr 192\.168\.1\.0\/24 masquerade$/]],
    ['edm', [/^oifname "wan" ip saddr 192\.168\.1\.0\/24 masquerade random$/]],
    ['edm-fully', [/^oifname "wan" ip saddr 192\.168\.1\.0\/24 masquerade fully-random$/]],
  ])('mapping %s uses the right masquerade rule', (mapping, expected) => {
    const post = chainRules(lines({ mapping, filtering: 'apdf' }), 'post');
    for (const re of expected) expect(has(post, re), String(re)).toBe(true);
    const masq = (post ?? []).filter((l) => /masquerade/.test(l));
    expect(masq).toHaveLength(expected.length);
  });

  it('the port-range rule comes before the plain masquerade fallback', () => {
    const post = chainRules(lines({ mapping: 'eim-range', filtering: 'apdf' }), 'post') ?? [];
    expect(post.findIndex((l) => l.includes(':20000-29999'))).toBeLessThan(post.indexOf('oifname "wan" ip saddr 192.168.1.0/24 masquerade'));
  });

  it.each<MappingMode>(['eim', 'eim-range', 'edm', 'edm-fully'])('mapping %s always learns the map (hairpin works)', (mapping) => {
    const ls = lines({ mapping, filtering: 'apdf' });
    expect(has(ls, /^map fc \{ type inet_service : ipv4_addr \. inet_service; flags dynamic,timeout; timeout 120s; \}$/)).toBe(true);
    expect(has(ls, /^set seen \{ type ipv4_addr \. inet_service;/)).toBe(true);
    const learn = chainRules(ls, 'learn');
    expect(has(learn, /^type filter hook postrouting priority srcnat \+ 10;/)).toBe(true);
    expect(has(learn, /ct direction original update @fc \{ udp sport : ct original ip saddr \. ct original proto-src \}/)).toBe(true);
    expect(has(learn, /ct direction reply update @fc \{ udp sport : ct reply ip saddr \. ct reply proto-src \}/)).toBe(true);
    expect(has(learn, /update @seen \{ ip daddr \. udp sport \}/)).toBe(true);
  });

  it.each<[FilterMode, RegExp | undefined]>([
    ['apdf', undefined],
    ['adf', ADF_DNAT],
    ['eif', EIF_DNAT],
  ])('filtering %s has exactly its inbound dnat rule', (filtering, expected) => {
    const pre = chainRules(lines({ mapping: 'eim', filtering }), 'pre') ?? [];
    const wanRules = pre.filter((l) => l.startsWith('iifname "wan"'));
    if (expected) {
      expect(wanRules).toHaveLength(1);
      expect(wanRules[0]).toMatch(expected);
    } else {
      expect(wanRules).toHaveLength(0);
    }
    expect(has(pre, /^type nat hook prerouting priority dstnat;/)).toBe(true);
  });

  it('hairpin adds the LAN-side dnat and the snat back to the public address', () => {
    const on = lines({ mapping: 'edm', filtering: 'apdf', hairpin: true });
    expect(has(chainRules(on, 'pre'), HAIRPIN_DNAT)).toBe(true);
    const post = chainRules(on, 'post') ?? [];
    expect(has(post, HAIRPIN_SNAT)).toBe(true);
    // the hairpin snat must come before masquerade
    expect(post.findIndex((l) => HAIRPIN_SNAT.test(l))).toBeLessThan(post.findIndex((l) => /masquerade/.test(l)));
    const off = lines({ mapping: 'edm', filtering: 'apdf' });
    expect(has(off, HAIRPIN_DNAT)).toBe(false);
    expect(has(off, HAIRPIN_SNAT)).toBe(false);
  });

  it('input drop is on by default and can be turned off', () => {
    expect(has(chainRules(lines({ mapping: 'eim', filtering: 'apdf' }), 'input'), INPUT_DROP)).toBe(true);
    const off = chainRules(lines({ mapping: 'eim', filtering: 'apdf', inputDrop: false }), 'input');
    expect(off).toBeDefined();
    expect(has(off, INPUT_DROP)).toBe(false);
  });

  it('forward open has no forward chain', () => {
    expect(chainRules(lines({ mapping: 'eim', filtering: 'eif' }), 'forward')).toBeUndefined();
  });

  it('forward stateful: policy drop, established + dnat + lan-originated accepted', () => {
    const fwd = chainRules(lines({ mapping: 'none', filtering: 'apdf', forward: 'stateful' }), 'forward');
    expect(has(fwd, /^type filter hook forward priority filter; policy drop;$/)).toBe(true);
    expect(has(fwd, /^ct state established,related accept$/)).toBe(true);
    expect(has(fwd, /^ct status dnat accept$/)).toBe(true);
    expect(has(fwd, /^iifname "br-lan" accept$/)).toBe(true);
  });

  it('forward udp443: drops UDP first, allows only new TCP 443 from the LAN', () => {
    const fwd = chainRules(lines({ mapping: 'none', filtering: 'apdf', forward: 'udp443' }), 'forward') ?? [];
    expect(has(fwd, /policy drop;$/)).toBe(true);
    const udpDrop = fwd.indexOf('meta l4proto udp drop');
    expect(udpDrop).toBeGreaterThanOrEqual(0);
    expect(udpDrop).toBeLessThan(fwd.indexOf('ct state established,related accept'));
    expect(has(fwd, /^iifname "br-lan" oifname "wan" tcp dport 443 ct state new accept$/)).toBe(true);
    expect(fwd.filter((l) => l.endsWith('accept'))).toHaveLength(2);
  });

  it('mapping none has no NAT chains, maps or masquerade', () => {
    const ls = lines({ mapping: 'none', filtering: 'eif', hairpin: true });
    expect(has(ls, /masquerade|dnat|snat|@fc|@seen/)).toBe(false);
    expect(chainRules(ls, 'pre')).toBeUndefined();
    expect(chainRules(ls, 'learn')).toBeUndefined();
  });

  it('udpTimeoutS sets the map/set lifetimes and the conntrack sysctls', () => {
    const ls = lines({ mapping: 'eim', filtering: 'eif', udpTimeoutS: 5 });
    expect(has(ls, /^map fc \{.*timeout 5s; \}$/)).toBe(true);
    expect(has(ls, /^set seen \{.*timeout 5s; \}$/)).toBe(true);
    expect(routerSysctls({ mapping: 'eim', filtering: 'eif', udpTimeoutS: 5 })).toEqual({
      'net.netfilter.nf_conntrack_udp_timeout': '5',
      'net.netfilter.nf_conntrack_udp_timeout_stream': '5',
    });
    expect(routerSysctls({ mapping: 'eim', filtering: 'eif' })).toEqual({
      'net.netfilter.nf_conntrack_udp_timeout': '30',
      'net.netfilter.nf_conntrack_udp_timeout_stream': '120',
    });
  });

  it('miniupnpd adds the skeleton miniupnpd-nftables expects', () => {
    const ls = lines({ mapping: 'eim', filtering: 'apdf', inputDrop: false, miniupnpd: true });
    const t = MINIUPNPD_NFT;
    expect(ls).toContain(`table ${t.family} ${t.table} {`);
    expect(has(chainRules(ls, 'forward', t.table), new RegExp(`^jump ${t.forwardChain}$`))).toBe(true);
    expect(has(chainRules(ls, 'forward', t.table), /hook forward/)).toBe(true);
    expect(has(chainRules(ls, 'prerouting', t.table), new RegExp(`^jump ${t.natChain}$`))).toBe(true);
    expect(has(chainRules(ls, 'prerouting', t.table), /type nat hook prerouting/)).toBe(true);
    expect(has(chainRules(ls, 'postrouting', t.table), new RegExp(`^jump ${t.natPostroutingChain}$`))).toBe(true);
    expect(has(chainRules(ls, 'postrouting', t.table), /type nat hook postrouting/)).toBe(true);
    for (const c of [t.forwardChain, t.natChain, t.natPostroutingChain]) expect(chainRules(ls, c, t.table)).toEqual([]);
    expect(has(lines({ mapping: 'eim', filtering: 'apdf' }), /miniupnpd/)).toBe(false);
  });

  it('uses the router context for interfaces and addresses', () => {
    const c: RouterContext = { wanIf: 'wan', wanIp: '100.64.0.2', lanIf: 'lan', lanCidr: '192.168.3.0/24' };
    const ls = lines({ mapping: 'eim', filtering: 'eif', hairpin: true }, c);
    expect(has(ls, /^iifname "wan" ip daddr 100\.64\.0\.2 meta l4proto udp dnat/)).toBe(true);
    expect(has(ls, /^iifname "lan" ip daddr 100\.64\.0\.2 /)).toBe(true);
    expect(has(ls, /^oifname "lan" ip saddr 192\.168\.3\.0\/24 ct status dnat snat ip to 100\.64\.0\.2$/)).toBe(true);
    expect(has(ls, /198\.51\.100\.2|br-lan/)).toBe(false);
  });

  it('rejects invalid input instead of generating broken nft', () => {
    expect(() => buildRuleset({ ...ctx, wanIf: 'wan"; flush' }, { mapping: 'eim', filtering: 'apdf' })).toThrow();
    expect(() => buildRuleset({ ...ctx, wanIf: 'a-very-long-interface' }, { mapping: 'eim', filtering: 'apdf' })).toThrow();
    expect(() => buildRuleset({ ...ctx, wanIp: '300.1.1.1' }, { mapping: 'eim', filtering: 'apdf' })).toThrow();
    expect(() => buildRuleset({ ...ctx, lanCidr: '192.168.1.0' }, { mapping: 'eim', filtering: 'apdf' })).toThrow();
    expect(() => buildRuleset(ctx, { mapping: 'eim', filtering: 'apdf', udpTimeoutS: 0 })).toThrow();
    expect(() => buildRuleset(ctx, { mapping: 'bogus' as MappingMode, filtering: 'apdf' })).toThrow();
  });
});
