/** The MagicDNS plan (engine/dns/plan.ts) from headscale-shaped DNSConfigs, good and bad. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dnsPlan, normalizeFqdn, parseResolverAddr, QUAD100_NAME, type DnsNode } from '../../../../src-main/engine/dns/plan.ts';
import { HS_0292_OVERRIDE_OFF, HS_0292_OVERRIDE_ON, LAPTOP, SELF, V6ONLY, dnsConfig, planOf } from './dns-helpers.ts';

const REVERSE_V4_ZONES = Array.from({ length: 64 }, (_, i) => `${64 + i}.100.in-addr.arpa.`);

describe('dnsPlan with headscale 0.29.2, override_local_dns on', () => {
  const plan = planOf({ dnsConfig: dnsConfig(HS_0292_OVERRIDE_ON) });

  it('serves every node name and the extra record', () => {
    expect(plan.records.get('me.ts.example.com.')).toEqual({ v4: ['100.64.0.1'], v6: [] });
    expect(plan.records.get('laptop.ts.example.com.')).toEqual({ v4: ['100.64.0.2'], v6: [] });
    expect(plan.records.get('v6only.ts.example.com.')).toEqual({ v4: [], v6: ['fd7a:115c:a1e0::9'] });
    expect(plan.records.get('grafana.ts.example.com.')).toEqual({ v4: ['100.64.0.3'], v6: [] });
    expect(plan.records.get(QUAD100_NAME)).toEqual({ v4: ['100.100.100.100'], v6: ['fd7a:115c:a1e0::53'] });
  });

  it('maps every address back to its name, quad-100 included', () => {
    expect(plan.reverse.get('100.64.0.2')).toBe('laptop.ts.example.com.');
    expect(plan.reverse.get('fd7a:115c:a1e0::2')).toBe('laptop.ts.example.com.');
    expect(plan.reverse.get('100.64.0.3')).toBe('grafana.ts.example.com.');
    expect(plan.reverse.get('100.100.100.100')).toBe(QUAD100_NAME);
    expect(plan.reverse.get('fd7a:115c:a1e0::53')).toBe(QUAD100_NAME);
  });

  it('answers the MagicDNS suffix, the tailnet reverse zones and the null route locally', () => {
    expect(plan.magicSuffix).toBe('ts.example.com.');
    expect(new Set(plan.localSuffixes)).toEqual(
      new Set(['ts.example.com.', 'lab.example.', '0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa.', ...REVERSE_V4_ZONES]),
    );
  });

  it('forwards the split route and sends the rest to the global resolvers', () => {
    expect([...plan.routes]).toEqual([
      ['.', ['1.1.1.1:53']],
      ['corp.example.', ['10.0.0.53:53']],
    ]);
  });

  it('points the OS at quad-100 for everything (no match domains)', () => {
    expect(plan.os).toEqual({
      nameservers: ['100.100.100.100', 'fd7a:115c:a1e0::53'],
      searchDomains: ['ts.example.com'],
      matchDomains: [],
    });
    expect(plan.problems).toEqual([]);
  });

  it('gives only 100.100.100.100 to a self node without IPv6', () => {
    const p = planOf({ dnsConfig: dnsConfig(HS_0292_OVERRIDE_ON), self: { ...SELF, Addresses: ['100.64.0.1/32'] } });
    expect(p.os?.nameservers).toEqual(['100.100.100.100']);
  });
});

describe('dnsPlan with override_local_dns off', () => {
  it('with systemd-resolved: no default route, and every suffix quad-100 handles is a match domain', () => {
    const plan = planOf({ dnsConfig: dnsConfig(HS_0292_OVERRIDE_OFF), osBase: null });
    expect(plan.routes.has('.')).toBe(false);
    expect(plan.routes.get('corp.example.')).toEqual(['10.0.0.53:53']);
    expect(plan.os?.nameservers).toEqual(['100.100.100.100', 'fd7a:115c:a1e0::53']);
    expect(plan.os?.searchDomains).toEqual(['ts.example.com']);
    expect(plan.os?.matchDomains).toEqual(
      ['0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa', ...REVERSE_V4_ZONES.map((z) => z.slice(0, -1)), 'corp.example', 'lab.example', 'ts.example.com'].sort(),
    );
  });

  it('with resolved, leaves out a search domain quad-100 could only answer SERVFAIL for', () => {
    const cfg = dnsConfig({ ...HS_0292_OVERRIDE_OFF, Domains: ['ts.example.com', 'corp.example', 'other.example'] });
    const plan = planOf({ dnsConfig: cfg, osBase: null });
    expect(plan.os?.searchDomains).toEqual(['ts.example.com', 'corp.example']);
    expect(plan.problems).toEqual([expect.stringMatching(/other\.example left out/)]);
  });

  it('with direct resolv.conf: the old nameservers become the default route, without quad-100 itself', () => {
    const osBase = { nameservers: ['192.168.1.1', '100.100.100.100', 'fd7a:115c:a1e0::53', '2001:db8::1'], searchDomains: ['home.lan'] };
    const plan = planOf({ dnsConfig: dnsConfig(HS_0292_OVERRIDE_OFF), osBase });
    expect(plan.routes.get('.')).toEqual(['192.168.1.1:53', '[2001:db8::1]:53']);
    expect(plan.os).toEqual({
      nameservers: ['100.100.100.100', 'fd7a:115c:a1e0::53'],
      searchDomains: ['ts.example.com', 'home.lan'],
      matchDomains: [],
    });
  });

  it('with MagicDNS off and nothing to route, the OS keeps its own servers and gets the search domains', () => {
    const cfg = dnsConfig({ Domains: ['corp.example'], FallbackResolvers: [{ Addr: '9.9.9.9' }] });
    const direct = planOf({ dnsConfig: cfg, osBase: { nameservers: ['192.168.1.1'], searchDomains: ['home.lan'] } });
    expect(direct.os).toEqual({ nameservers: ['192.168.1.1'], searchDomains: ['corp.example', 'home.lan'], matchDomains: [] });
    expect(direct.localSuffixes).toEqual([]);
    const resolved = planOf({ dnsConfig: cfg, osBase: null });
    expect(resolved.os).toEqual({ nameservers: [], searchDomains: ['corp.example'], matchDomains: [] });
  });
});

describe('dnsPlan: what the OS gets', () => {
  it('nothing when accept-dns is off, while quad-100 keeps its records and routes', () => {
    const plan = planOf({ dnsConfig: dnsConfig(HS_0292_OVERRIDE_ON), acceptDns: false });
    expect(plan.os).toBeNull();
    expect(plan.records.get('laptop.ts.example.com.')).toBeDefined();
    expect(plan.routes.get('.')).toEqual(['1.1.1.1:53']);
  });

  it('nothing without a DNSConfig; node names still resolve at quad-100', () => {
    const plan = planOf({ dnsConfig: null });
    expect(plan.os).toBeNull();
    expect(plan.localSuffixes).toEqual([]);
    expect(plan.routes.size).toBe(0);
    expect(plan.records.get('laptop.ts.example.com.')?.v4).toEqual(['100.64.0.2']);
  });
});

describe('dnsPlan: records', () => {
  it('serves dual-stack peers over IPv6 only with the magicdns-aaaa capability', () => {
    const self: DnsNode = { ...SELF, CapMap: { 'magicdns-aaaa': null } };
    const plan = planOf({ dnsConfig: dnsConfig(HS_0292_OVERRIDE_ON), self });
    expect(plan.records.get('laptop.ts.example.com.')).toEqual({ v4: ['100.64.0.2'], v6: ['fd7a:115c:a1e0::2'] });
  });

  it('serves IPv6 when the self node is IPv6-only', () => {
    const plan = planOf({ dnsConfig: dnsConfig(HS_0292_OVERRIDE_ON), self: { ...SELF, Addresses: ['fd7a:115c:a1e0::1/128'] } });
    expect(plan.records.get('laptop.ts.example.com.')?.v6).toEqual(['fd7a:115c:a1e0::2']);
    expect(plan.os?.nameservers).toEqual(['100.100.100.100', 'fd7a:115c:a1e0::53']);
  });

  it('lowercases names and keeps every address of a name, in order', () => {
    const peer: DnsNode = { Name: 'NAS.TS.Example.COM.', Addresses: ['100.64.0.7/32', '100.64.0.8/32', '10.0.0.0/24'], CapMap: undefined };
    const plan = planOf({ dnsConfig: dnsConfig(HS_0292_OVERRIDE_ON), peers: [peer] });
    expect(plan.records.get('nas.ts.example.com.')).toEqual({ v4: ['100.64.0.7', '100.64.0.8'], v6: [] });
  });

  it('takes the family of an extra record from its value, and lets it win over a node of the same name', () => {
    const cfg = dnsConfig({
      ...HS_0292_OVERRIDE_ON,
      ExtraRecords: [
        { Name: 'laptop.ts.example.com', Type: 'A', Value: '100.64.0.50' },
        { Name: 'v6.ts.example.com.', Type: 'A', Value: 'FD7A:115C:A1E0::0042' },
        { Name: 'both.ts.example.com', Type: '', Value: '100.64.0.60' },
        { Name: 'both.ts.example.com', Type: 'AAAA', Value: 'fd7a:115c:a1e0::60' },
      ],
    });
    const plan = planOf({ dnsConfig: cfg });
    expect(plan.records.get('laptop.ts.example.com.')).toEqual({ v4: ['100.64.0.50'], v6: [] });
    expect(plan.records.get('v6.ts.example.com.')).toEqual({ v4: [], v6: ['fd7a:115c:a1e0::42'] });
    expect(plan.records.get('both.ts.example.com.')).toEqual({ v4: ['100.64.0.60'], v6: ['fd7a:115c:a1e0::60'] });
    // The node keeps the PTR of its own address.
    expect(plan.reverse.get('100.64.0.2')).toBe('laptop.ts.example.com.');
    expect(plan.reverse.get('100.64.0.50')).toBe('laptop.ts.example.com.');
  });

  it('gives an extra record outside every route a local route of its own, and a match domain', () => {
    const cfg = dnsConfig({ ...HS_0292_OVERRIDE_OFF, ExtraRecords: [{ Name: 'printer.home.arpa', Type: 'A', Value: '192.168.1.9' }] });
    const plan = planOf({ dnsConfig: cfg });
    expect(plan.localSuffixes).toContain('printer.home.arpa.');
    expect(plan.os?.matchDomains).toContain('printer.home.arpa');
    // Covered ones do not.
    const covered = planOf({ dnsConfig: dnsConfig(HS_0292_OVERRIDE_ON) });
    expect(covered.localSuffixes).not.toContain('grafana.ts.example.com.');
  });
});

describe('dnsPlan: resolver addresses', () => {
  it.each([
    ['1.1.1.1', '1.1.1.1:53'],
    ['1.1.1.1:5353', '1.1.1.1:5353'],
    ['2606:4700:4700::1111', '[2606:4700:4700::1111]:53'],
    ['[2606:4700:4700::1111]:853', '[2606:4700:4700::1111]:853'],
    ['2606:4700:4700:0:0:0:0:1111', '[2606:4700:4700::1111]:53'],
  ])('%s → %s', (addr, up) => {
    expect(parseResolverAddr(addr)).toEqual({ upstream: up, ip: expect.any(String) });
  });

  it.each(['https://dns.nextdns.io/abc123', 'tls://1.1.1.1', 'dns.google', '1.1.1.1:0', '1.1.1.1:99999', 'fe80::1%eth0', ''])('rejects %j', (addr) => {
    expect(parseResolverAddr(addr)).toHaveProperty('error');
  });
});

describe('dnsPlan: malformed configs', () => {
  it('skips bad entries, reports them and keeps the rest', () => {
    const cfg = dnsConfig({
      Resolvers: [{ Addr: 'https://dns.nextdns.io/abc' }, { Addr: '9.9.9.9' }, { Addr: '100.100.100.100' }],
      Routes: {
        'corp.example': [{ Addr: 'not-an-ip' }, { Addr: '10.0.0.53:5353' }],
        'doh.example': [{ Addr: 'https://doh.example/dns-query' }],
        'bad domain!': [{ Addr: '10.0.0.1' }],
        '.': [{ Addr: '10.0.0.1' }],
      },
      Domains: ['ts.example.com', 'bad..domain'],
      Proxied: true,
      ExtraRecords: [
        { Name: 'mx.ts.example.com', Type: 'MX', Value: '10 mail.example.com' },
        { Name: 'cname.ts.example.com', Type: 'CNAME', Value: 'laptop.ts.example.com' },
        { Name: 'badip.ts.example.com', Type: 'A', Value: '300.1.2.3' },
        { Name: 'bad name.ts.example.com', Type: 'A', Value: '100.64.0.9' },
        { Name: 'ok.ts.example.com', Type: 'A', Value: ' 100.64.0.10 ' },
      ],
    });
    const r = dnsPlan({ dnsConfig: cfg, self: SELF, peers: [LAPTOP], acceptDns: true, osBase: null });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const { plan } = r;
    expect(plan.routes.get('.')).toEqual(['9.9.9.9:53']);
    expect(plan.routes.get('corp.example.')).toEqual(['10.0.0.53:5353']);
    // A route none of whose resolvers works stays a route (SERVFAIL), so its names do not leak to ".".
    expect(plan.routes.get('doh.example.')).toEqual([]);
    expect(plan.records.get('ok.ts.example.com.')).toEqual({ v4: ['100.64.0.10'], v6: [] });
    for (const n of ['mx', 'cname', 'badip']) expect(plan.records.has(`${n}.ts.example.com.`)).toBe(false);
    expect(plan.os?.searchDomains).toEqual(['ts.example.com']);
    const text = plan.problems.join('\n');
    for (const re of [/abc: DNS over HTTPS/, /100\.100\.100\.100 is quad-100/, /not-an-ip/, /doh\.example: no usable resolver/, /bad domain!/, /"\."/, /MX/, /CNAME/, /300\.1\.2\.3/, /bad name/, /bad\.\.domain/]) {
      expect(text).toMatch(re);
    }
  });

  it('falls back to the system resolvers when no global resolver is usable', () => {
    const cfg = dnsConfig({ Resolvers: [{ Addr: 'https://dns.example/dns-query' }], Domains: [], Proxied: false });
    const r = dnsPlan({ dnsConfig: cfg, self: SELF, peers: [], acceptDns: true, osBase: { nameservers: ['192.168.1.1'], searchDomains: [] } });
    expect(r.ok && r.plan.routes.get('.')).toEqual(['192.168.1.1:53']);
    expect(r.ok && r.plan.problems).toContain('no usable global resolver; the system resolvers are used instead');
  });

  it('is unusable without a self node, or with MagicDNS on and no domain in the self name', () => {
    const none = dnsPlan({ dnsConfig: dnsConfig(HS_0292_OVERRIDE_ON), self: null, peers: [], acceptDns: true, osBase: null });
    expect(none).toMatchObject({ ok: false, error: 'no self node yet' });
    const bare = dnsPlan({ dnsConfig: dnsConfig(HS_0292_OVERRIDE_ON), self: { ...SELF, Name: 'me' }, peers: [], acceptDns: true, osBase: null });
    expect(bare).toMatchObject({ ok: false, error: expect.stringMatching(/no domain/) });
  });

  it('skips nodes with bad names and keeps the others', () => {
    const peers: DnsNode[] = [{ Name: 'bad_\u00e9.ts.example.com.', Addresses: ['100.64.0.77/32'], CapMap: undefined }, LAPTOP, { ...V6ONLY, Name: '' }];
    const r = dnsPlan({ dnsConfig: dnsConfig(HS_0292_OVERRIDE_ON), self: SELF, peers, acceptDns: true, osBase: null });
    expect(r.ok && [...r.plan.records.keys()].sort()).toEqual(['grafana.ts.example.com.', 'laptop.ts.example.com.', QUAD100_NAME, 'me.ts.example.com.'].sort());
    expect(r.ok && r.plan.problems).toEqual([expect.stringMatching(/peer: name/)]);
  });

  it('never throws, whatever the strings in a DNSConfig', () => {
    const resolver = fc.record({ Addr: fc.string() });
    const cfg = fc.record({
      Resolvers: fc.option(fc.array(resolver), { nil: undefined }),
      Routes: fc.option(fc.dictionary(fc.string(), fc.option(fc.array(resolver), { nil: null })), { nil: undefined }),
      Domains: fc.option(fc.array(fc.string()), { nil: undefined }),
      Proxied: fc.option(fc.boolean(), { nil: undefined }),
      ExtraRecords: fc.option(fc.array(fc.record({ Name: fc.string(), Type: fc.constantFrom('', 'A', 'AAAA', 'TXT', 'a'), Value: fc.string() })), { nil: undefined }),
    });
    const node = fc.record({ Name: fc.string(), Addresses: fc.array(fc.oneof(fc.string(), fc.ipV4().map((a) => `${a}/32`), fc.ipV6().map((a) => `${a}/128`))), CapMap: fc.constant(undefined) });
    fc.assert(
      fc.property(cfg, node, fc.array(node, { maxLength: 4 }), fc.boolean(), (c, self, peers, acceptDns) => {
        const r = dnsPlan({ dnsConfig: dnsConfig(c), self, peers, acceptDns, osBase: { nameservers: ['192.0.2.1', 'junk'], searchDomains: ['x y'] } });
        expect(typeof r.ok).toBe('boolean');
      }),
      { numRuns: 300 },
    );
  });
});

describe('normalizeFqdn', () => {
  it.each([
    ['Laptop.TS.example.com', 'laptop.ts.example.com.'],
    ['laptop.ts.example.com.', 'laptop.ts.example.com.'],
    ['_srv.x', '_srv.x.'],
    ['.', '.'],
  ])('%s → %s', (a, b) => expect(normalizeFqdn(a)).toBe(b));

  it.each(['', 'a..b', '-', 'a b', `${'a'.repeat(64)}.com`, `${'a.'.repeat(127)}com`, '..'])('rejects %j', (n) => {
    expect(normalizeFqdn(n)).toBeNull();
  });
});
