/** dns-config.ts: weft server's DNS settings, checked, and the DNSConfig headscale would send for them. */
import { describe, expect, it } from 'vitest';
import { checkDnsSettings, DEFAULT_DNS, dnsConfigOf, NO_DNS, parseExtraRecord, parseSplitDns, type DnsSettings } from '../../../../src-main/server/control/dns-config.ts';
import { eventually, Harness } from './harness.ts';

describe('dnsConfigOf', () => {
  it('gives the reference example (headscale 0.29.2: MagicDNS, a resolver, split DNS with and without servers, a record)', () => {
    const s: DnsSettings = {
      magicDns: true,
      baseDomain: 'ts.example.com',
      nameservers: ['1.1.1.1'],
      searchDomains: [],
      split: { 'corp.example': ['10.0.0.53'], 'lab.example': [] },
      extraRecords: [{ Name: 'grafana.ts.example.com', Type: 'A', Value: '100.64.0.3' }],
    };
    expect(dnsConfigOf(s)).toEqual({
      Resolvers: [{ Addr: '1.1.1.1' }],
      Routes: { 'corp.example': [{ Addr: '10.0.0.53' }], 'lab.example': null },
      Domains: ['ts.example.com'],
      Proxied: true,
      ExtraRecords: [{ Name: 'grafana.ts.example.com', Type: 'A', Value: '100.64.0.3' }],
    });
  });

  it('defaults to MagicDNS under weft.internal and nothing else; NO_DNS sends {}', () => {
    expect(dnsConfigOf(DEFAULT_DNS)).toEqual({ Domains: ['weft.internal'], Proxied: true });
    expect(dnsConfigOf(NO_DNS)).toEqual({});
    expect(dnsConfigOf({ ...DEFAULT_DNS, magicDns: false, searchDomains: ['corp.example'] })).toEqual({ Domains: ['weft.internal', 'corp.example'] });
  });
});

describe('checkDnsSettings', () => {
  it('canonicalises names', () => {
    const r = checkDnsSettings({ ...DEFAULT_DNS, baseDomain: 'Home.Example.', split: { 'Corp.Example': ['10.0.0.1'] }, extraRecords: [{ Name: 'NAS.home.example', Type: 'A', Value: '100.64.0.9' }] });
    expect(r).toEqual({ kind: 'ok', settings: { ...DEFAULT_DNS, baseDomain: 'home.example', split: { 'corp.example': ['10.0.0.1'] }, extraRecords: [{ Name: 'nas.home.example', Type: 'A', Value: '100.64.0.9' }] } });
  });

  it.each([
    ['a one-label base domain', { baseDomain: 'home' }, /base domain "home" is not a DNS name with at least two labels/],
    ['MagicDNS without a base domain', { baseDomain: null }, /MagicDNS needs a base domain/],
    ['a bad nameserver', { nameservers: ['dns.example'] }, /nameserver "dns.example" is not an IP address/],
    ['a bad split server', { split: { 'corp.example': ['x'] } }, /split DNS server "x" for corp.example is not an IP address/],
    ['a bad split domain', { split: { 'bad_domain!': [] } }, /split DNS domain "bad_domain!" is not a DNS name/],
    ['an A record with an IPv6 value', { extraRecords: [{ Name: 'a.example', Type: 'A' as const, Value: '::1' }] }, /is not an IPv4 address/],
  ])('refuses %s', (_n, patch, want) => {
    const r = checkDnsSettings({ ...DEFAULT_DNS, ...patch });
    expect(r.kind === 'error' && r.error).toMatch(want);
  });

  it('parses the CLI forms', () => {
    expect(parseExtraRecord('grafana.weft.internal=100.64.0.9')).toEqual({ Name: 'grafana.weft.internal', Type: 'A', Value: '100.64.0.9' });
    expect(parseExtraRecord('v6.weft.internal=fd7a:115c:a1e0::9')).toEqual({ Name: 'v6.weft.internal', Type: 'AAAA', Value: 'fd7a:115c:a1e0::9' });
    expect(parseExtraRecord('x=not-an-ip')).toBeNull();
    expect(parseSplitDns('corp.example=10.0.0.53,10.0.0.54')).toEqual(['corp.example', ['10.0.0.53', '10.0.0.54']]);
    expect(parseSplitDns('lab.example=')).toEqual(['lab.example', []]);
    expect(parseSplitDns('nothing')).toBeNull();
  });
});

describe('weft server with DNS settings', () => {
  it('names nodes under the base domain and sends the DNSConfig in every full map', async () => {
    const h = new Harness();
    try {
      await h.start({ dns: { ...DEFAULT_DNS, nameservers: ['192.0.2.53'], split: { 'corp.example': ['10.0.0.53'] } } });
      const a = await h.client('alpha');
      await a.start();
      const b = await h.client('beta');
      await b.start();
      const peer = await eventually('alpha sees beta', () => [...a.netmap.peers.values()].find((p) => p.Hostinfo?.Hostname === 'beta'));
      expect(peer.Name).toBe('beta.weft.internal.');
      expect(a.netmap.self?.Name).toBe('alpha.weft.internal.');
      expect(a.netmap.dnsConfig).toMatchObject({ Resolvers: [{ Addr: '192.0.2.53' }], Routes: { 'corp.example': [{ Addr: '10.0.0.53' }] }, Domains: ['weft.internal'], Proxied: true });
    } finally {
      await h.stop();
    }
  });
});
