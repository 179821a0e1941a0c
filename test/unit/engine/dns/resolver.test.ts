/** quad-100's answers (engine/dns/resolver.ts), with queries and responses encoded and decoded by dns-packet. */
import dnsPacket, { type Answer, type Packet } from 'dns-packet';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MAX_RESPONSE_BYTES,
  RCODE,
  errorResponse,
  fitResponse,
  ipToReverseName,
  respond,
  reverseNameToIp,
  type DnsReply,
} from '../../../../src-main/engine/dns/resolver.ts';
import { HS_0292_OVERRIDE_OFF, HS_0292_OVERRIDE_ON, answerData, decode, dnsConfig, planOf, query, type Decoded } from './dns-helpers.ts';

const plan = planOf({ dnsConfig: dnsConfig(HS_0292_OVERRIDE_ON) });
/** Override off with systemd-resolved: no default route. */
const splitOnly = planOf({ dnsConfig: dnsConfig(HS_0292_OVERRIDE_OFF), osBase: null });

function answered(r: DnsReply): Decoded {
  if (r.kind !== 'answer') throw new Error(`expected an answer, got ${JSON.stringify(r)}`);
  return decode(r.bytes);
}

function ask(name: string, type: Parameters<typeof query>[1], p = plan): Decoded {
  return answered(respond(p, query(name, type), 'udp'));
}

describe('respond: local names', () => {
  it('answers A with exactly one record, TTL 5 s, the asker\'s spelling, AA and RA set, RD echoed', () => {
    const d = ask('Laptop.TS.example.com', 'A');
    expect(d.rcode).toBe('NOERROR');
    expect(d.id).toBe(0x1234);
    expect(d.type).toBe('response');
    expect([d.flag_aa, d.flag_ra, d.flag_rd, d.flag_tc]).toEqual([true, true, true, false]);
    expect(d.questions).toEqual([{ name: 'Laptop.TS.example.com', type: 'A', class: 'IN' }]);
    expect(d.answers).toEqual([{ name: 'Laptop.TS.example.com', type: 'A', ttl: 5, class: 'IN', flush: false, data: '100.64.0.2' }]);
  });

  it('answers AAAA for an IPv6-only node, and NOERROR with no data (and an SOA) for a gated dual-stack one', () => {
    expect(answerData(ask('v6only.ts.example.com.', 'AAAA'))).toEqual(['fd7a:115c:a1e0::9']);
    const d = ask('laptop.ts.example.com', 'AAAA');
    expect(d.rcode).toBe('NOERROR');
    expect(d.answers).toEqual([]);
    expect(d.authorities).toEqual([expect.objectContaining({ type: 'SOA', name: 'ts.example.com', ttl: 10 })]);
  });

  it('returns one record even when a name has several addresses', () => {
    const cfg = dnsConfig({
      ...HS_0292_OVERRIDE_ON,
      ExtraRecords: [
        { Name: 'multi.ts.example.com', Type: 'A', Value: '100.64.0.20' },
        { Name: 'multi.ts.example.com', Type: 'A', Value: '100.64.0.21' },
      ],
    });
    expect(answerData(ask('multi.ts.example.com', 'A', planOf({ dnsConfig: cfg })))).toEqual(['100.64.0.20']);
  });

  it('answers extra records, and the quad-100 name both ways', () => {
    expect(answerData(ask('grafana.ts.example.com', 'A'))).toEqual(['100.64.0.3']);
    expect(answerData(ask('magicdns.localhost-tailscale-daemon', 'A'))).toEqual(['100.100.100.100']);
    expect(answerData(ask('magicdns.localhost-tailscale-daemon', 'AAAA'))).toEqual(['fd7a:115c:a1e0::53']);
    expect(answerData(ask('100.100.100.100.in-addr.arpa', 'PTR'))).toEqual(['magicdns.localhost-tailscale-daemon']);
    expect(answerData(ask(ipToReverseName('fd7a:115c:a1e0::53')!, 'PTR'))).toEqual(['magicdns.localhost-tailscale-daemon']);
  });

  it('resolves a bare single-label name under the MagicDNS suffix', () => {
    const d = ask('laptop', 'A');
    expect(d.answers).toEqual([expect.objectContaining({ name: 'laptop', data: '100.64.0.2' })]);
  });

  it('answers other types of a known name with NOERROR and no data', () => {
    for (const t of ['TXT', 'MX', 'UNKNOWN_65'] as const) {
      const d = ask('laptop.ts.example.com', t);
      expect([d.rcode, d.answers?.length, d.flag_aa], t).toEqual(['NOERROR', 0, true]);
    }
  });

  it('answers NS, SOA, AXFR and HINFO for a known name with NOTIMP', () => {
    for (const t of ['NS', 'SOA', 'AXFR', 'HINFO'] as const) expect(ask('laptop.ts.example.com', t).rcode, t).toBe('NOTIMP');
  });

  it('answers NXDOMAIN with an SOA for unknown names under a local suffix', () => {
    for (const [name, zone] of [
      ['nope.ts.example.com', 'ts.example.com'],
      ['x.y.lab.example', 'lab.example'],
      ['9.9.64.100.in-addr.arpa', '64.100.in-addr.arpa'],
    ] as const) {
      const d = ask(name, 'A');
      expect(d.rcode, name).toBe('NXDOMAIN');
      expect(d.flag_aa).toBe(true);
      expect(d.authorities).toEqual([expect.objectContaining({ type: 'SOA', name: zone, ttl: 10, data: expect.objectContaining({ minimum: 10 }) })]);
    }
  });

  it('answers the zone apexes and the names above a record with no data, never NXDOMAIN (RFC 8020)', () => {
    expect(ask('ts.example.com', 'A').rcode).toBe('NOERROR');
    expect(ask('ts.example.com', 'SOA').rcode).toBe('NOTIMP');
    expect(ask('0.64.100.in-addr.arpa', 'PTR').rcode).toBe('NOERROR');
    expect(ask('lab.example', 'A').rcode).toBe('NOERROR');
  });

  it('answers PTR for nodes and extra records over IPv4 and IPv6', () => {
    expect(answerData(ask('2.0.64.100.in-addr.arpa', 'PTR'))).toEqual(['laptop.ts.example.com']);
    expect(answerData(ask('3.0.64.100.in-addr.arpa.', 'PTR'))).toEqual(['grafana.ts.example.com']);
    expect(answerData(ask(ipToReverseName('fd7a:115c:a1e0::2')!, 'PTR'))).toEqual(['laptop.ts.example.com']);
    expect(ask('2.0.64.100.in-addr.arpa', 'A').rcode).toBe('NOERROR');
  });

  it('answers .onion and DNS-SD reverse browse names with NXDOMAIN and never forwards them', () => {
    expect(ask('duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion', 'A').rcode).toBe('NXDOMAIN');
    expect(ask('b._dns-sd._udp.0.1.168.192.in-addr.arpa', 'PTR').rcode).toBe('NXDOMAIN');
    expect(ask('lb._dns-sd._udp.0.1.168.192.in-addr.arpa', 'PTR').rcode).toBe('NXDOMAIN');
  });

  it('echoes EDNS with its own OPT record', () => {
    const d = answered(respond(plan, query('laptop.ts.example.com', 'A', { edns: 4096 }), 'udp'));
    expect(d.additionals).toEqual([expect.objectContaining({ type: 'OPT', udpPayloadSize: 1232, ednsVersion: 0 })]);
  });
});

describe('respond: forwarding', () => {
  it('forwards to the longest matching route suffix', () => {
    expect(respond(plan, query('x.corp.example', 'A'), 'udp')).toEqual({ kind: 'forward', upstreams: ['10.0.0.53:53'] });
    expect(respond(plan, query('a.b.CORP.example.', 'TXT'), 'tcp')).toEqual({ kind: 'forward', upstreams: ['10.0.0.53:53'] });
    expect(respond(plan, query('corp.example', 'SOA'), 'udp')).toEqual({ kind: 'forward', upstreams: ['10.0.0.53:53'] });
    expect(respond(plan, query('example.org', 'A'), 'udp')).toEqual({ kind: 'forward', upstreams: ['1.1.1.1:53'] });
    expect(respond(plan, query('printer', 'A'), 'udp')).toEqual({ kind: 'forward', upstreams: ['1.1.1.1:53'] });
    expect(respond(plan, query('4.3.2.1.in-addr.arpa', 'PTR'), 'udp')).toEqual({ kind: 'forward', upstreams: ['1.1.1.1:53'] });
  });

  it('forwards a split route below a local suffix to its resolvers', () => {
    const cfg = dnsConfig({ ...HS_0292_OVERRIDE_ON, Routes: { 'svc.ts.example.com': [{ Addr: '10.1.0.53' }] } });
    const p = planOf({ dnsConfig: cfg });
    expect(respond(p, query('db.svc.ts.example.com', 'A'), 'udp')).toEqual({ kind: 'forward', upstreams: ['10.1.0.53:53'] });
    expect(ask('db.ts.example.com', 'A', p).rcode).toBe('NXDOMAIN');
  });

  it('answers SERVFAIL when no route matches, when the route has no usable resolver, and before the first plan', () => {
    expect(ask('example.org', 'A', splitOnly).rcode).toBe('SERVFAIL');
    const cfg = dnsConfig({ ...HS_0292_OVERRIDE_ON, Routes: { 'doh.example': [{ Addr: 'https://doh.example/dns-query' }] } });
    expect(ask('x.doh.example', 'A', planOf({ dnsConfig: cfg })).rcode).toBe('SERVFAIL');
    expect(answered(respond(null, query('laptop.ts.example.com', 'A'), 'udp')).rcode).toBe('SERVFAIL');
  });
});

describe('respond: malformed queries', () => {
  const header = (id: number, flags: number, qd = 0, an = 0): Uint8Array => {
    // A header with counts that the body does not hold, built with dns-packet and then given wrong counts.
    const b = dnsPacket.encode({ type: 'query', id, flags, questions: [] });
    b.writeUInt16BE(qd, 4);
    b.writeUInt16BE(an, 6);
    return b;
  };

  it('drops what has no header, and responses', () => {
    expect(respond(plan, new Uint8Array(0), 'udp')).toEqual({ kind: 'drop' });
    expect(respond(plan, new Uint8Array(11), 'udp')).toEqual({ kind: 'drop' });
    const resp = dnsPacket.encode({ type: 'response', id: 1, questions: [{ name: 'a', type: 'A' }] });
    expect(respond(plan, resp, 'udp')).toEqual({ kind: 'drop' });
  });

  it('answers FORMERR to a readable header with a broken body, keeping the ID and RD', () => {
    const d = answered(respond(plan, header(0xbeef, dnsPacket.RECURSION_DESIRED, 1), 'udp'));
    expect([d.id, d.rcode, d.flag_rd, d.questions?.length]).toEqual([0xbeef, 'FORMERR', true, 0]);
    const trailing = Buffer.concat([query('x.example', 'A'), Buffer.from([0xc0])]);
    trailing.writeUInt16BE(1, 10);
    expect(answered(respond(plan, trailing, 'udp')).rcode).toBe('FORMERR');
  });

  it('answers FORMERR to zero or several questions', () => {
    expect(answered(respond(plan, header(1, 0, 0), 'udp')).rcode).toBe('FORMERR');
    const two = dnsPacket.encode({ type: 'query', id: 2, questions: [{ name: 'a.example', type: 'A' }, { name: 'b.example', type: 'A' }] });
    expect(answered(respond(plan, two, 'udp')).rcode).toBe('FORMERR');
  });

  it('answers NOTIMP to other opcodes and BADVERS to EDNS versions above 0', () => {
    const status = dnsPacket.encode({ type: 'query', id: 3, flags: 2 << 11, questions: [{ name: 'a.example', type: 'A' }] });
    const d = answered(respond(plan, status, 'udp'));
    expect([d.rcode, d.opcode]).toEqual(['NOTIMP', 'STATUS']);
    const v1 = answered(respond(plan, query('laptop.ts.example.com', 'A', { edns: 1232, ednsVersion: 1 }), 'udp'));
    expect(v1.rcode).toBe('NOERROR');
    expect(v1.answers).toEqual([]);
    expect(v1.additionals).toEqual([expect.objectContaining({ type: 'OPT', extendedRcode: 1 })]);
  });

  it('never throws and never answers a response, whatever the bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.constantFrom('udp' as const, 'tcp' as const), (bytes, t) => {
        const r = respond(plan, bytes, t);
        if (r.kind === 'answer') {
          expect(r.bytes.byteLength).toBeLessThanOrEqual(t === 'udp' ? 512 : MAX_RESPONSE_BYTES);
          expect(r.bytes[0]).toBe(bytes[0]);
          expect(r.bytes[1]).toBe(bytes[1]);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('never throws on well-formed queries with random names and types', () => {
    const label = fc.stringMatching(/^[a-zA-Z0-9-]{1,20}$/);
    fc.assert(
      fc.property(fc.array(label, { minLength: 1, maxLength: 5 }), fc.integer({ min: 1, max: 65535 }), (labels, type) => {
        const q = dnsPacket.encode({ type: 'query', id: 9, questions: [{ name: labels.join('.'), type: `UNKNOWN_${type}` as 'A' }] });
        expect(['answer', 'forward']).toContain(respond(plan, q, 'udp').kind);
      }),
      { numRuns: 500 },
    );
  });
});

describe('response sizes', () => {
  /** A response to `q` with `n` TXT answers of 200 bytes. */
  const bigResponse = (q: Uint8Array, n: number): Uint8Array => {
    const d = dnsPacket.decode(Buffer.from(q));
    const answers: Answer[] = Array.from({ length: n }, (_, i) => ({ type: 'TXT', name: 'big.example', ttl: 60, class: 'IN', data: `${i}`.padEnd(200, 'x') }));
    const p: Packet = { type: 'response', id: d.id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE, questions: d.questions, answers, additionals: [] };
    return dnsPacket.encode(p);
  };

  it('truncates UDP responses above 512 bytes without EDNS to the question, with TC', () => {
    const q = query('big.example', 'TXT');
    const out = fitResponse(bigResponse(q, 4), q, 'udp');
    expect(out.byteLength).toBeLessThanOrEqual(512);
    const d = decode(out);
    expect([d.flag_tc, d.id, d.answers?.length, d.questions?.[0]?.name]).toEqual([true, 0x1234, 0, 'big.example']);
  });

  it('keeps a UDP response within the EDNS size, and truncates above it', () => {
    const q = query('big.example', 'TXT', { edns: 4096 });
    const ok = bigResponse(q, 10);
    expect(ok.byteLength).toBeGreaterThan(2000);
    expect(fitResponse(ok, q, 'udp')).toBe(ok);
    const small = query('big.example', 'TXT', { edns: 1232 });
    expect(decode(fitResponse(bigResponse(small, 10), small, 'udp')).flag_tc).toBe(true);
    // An EDNS size below 512 counts as 512 (RFC 6891 §6.2.5).
    const tiny = query('big.example', 'TXT', { edns: 100 });
    const two = bigResponse(tiny, 2);
    expect(fitResponse(two, tiny, 'udp')).toBe(two);
  });

  it('caps responses at 4095 bytes, TCP included', () => {
    const q = query('big.example', 'TXT');
    const huge = bigResponse(q, 30);
    expect(huge.byteLength).toBeGreaterThan(MAX_RESPONSE_BYTES);
    const out = fitResponse(huge, q, 'tcp');
    expect(out.byteLength).toBeLessThanOrEqual(MAX_RESPONSE_BYTES);
    expect(decode(out).flag_tc).toBe(true);
    const fits = bigResponse(q, 10);
    expect(fitResponse(fits, q, 'tcp')).toBe(fits);
  });

  it('turns an oversized undecodable response into SERVFAIL', () => {
    const q = query('big.example', 'TXT');
    const junk = new Uint8Array(600).fill(0xff);
    expect(decode(fitResponse(junk, q, 'udp')).rcode).toBe('SERVFAIL');
  });

  it('builds SERVFAIL for a query, with its ID and question', () => {
    const d = decode(errorResponse(query('x.example', 'AAAA', { id: 77 }), 'udp', RCODE.SERVFAIL)!);
    expect([d.id, d.rcode, d.questions?.[0]?.name, d.questions?.[0]?.type]).toEqual([77, 'SERVFAIL', 'x.example', 'AAAA']);
    expect(errorResponse(new Uint8Array(3), 'udp', RCODE.SERVFAIL)).toBeNull();
  });
});

describe('reverse names', () => {
  it.each([
    ['100.64.0.2', '2.0.64.100.in-addr.arpa.'],
    // 20 nibbles of host part (a 2 and 19 zeros), then the tailnet /48 zone.
    ['fd7a:115c:a1e0::2', `2.${'0.'.repeat(19)}0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa.`],
  ])('%s ↔ %s', (ip, name) => {
    expect(ipToReverseName(ip)).toBe(name);
    expect(reverseNameToIp(name)).toBe(ip);
  });

  it.each(['1.2.3.in-addr.arpa.', '256.0.0.1.in-addr.arpa.', '01.0.0.1.in-addr.arpa.', 'x.0.0.1.in-addr.arpa.', '0.ip6.arpa.', 'example.com.'])('rejects %s', (n) => {
    expect(reverseNameToIp(n)).toBeNull();
  });
});
