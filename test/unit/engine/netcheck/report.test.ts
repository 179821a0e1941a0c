import { describe, expect, it } from 'vitest';
import { buildReport, explain, summarise, type ProbeObservations, type Rfc5780Observation } from '../../../../src-main/engine/netcheck/report.ts';
import type { StunAnswer } from '../../../../src-main/engine/netcheck/stun-client.ts';
import { NO_PORT_MAPPING } from '../../../../src-main/engine/netcheck/prober.ts';
import type { UdpAddr } from '../../../../src-main/protocol/wire/addr.ts';
import { NetcheckReport } from '../../../../src-shared/model/netcheck.ts';

const S = { ip: '203.0.113.10', port: 3478 };
const O = { ip: '203.0.113.11', port: 3479 };
const ans = (ip: string, port: number, rttMs = 5, other: UdpAddr | null = null): StunAnswer => ({
  kind: 'success',
  mapped: { ip, port },
  from: S,
  rttMs,
  responseOrigin: null,
  otherAddress: other,
  software: null,
  error: null,
});
const err420: StunAnswer = { ...ans('0.0.0.0', 0), kind: 'error', mapped: null, error: { code: 420, reason: 'Unknown Attribute' } };

function rfc(m: [number, number | null, number | null], f: 'eif' | 'adf' | 'apdf' | 'none', ip = '198.51.100.2'): Rfc5780Observation {
  const at = (p: number | null) => (p === null ? null : ans(ip, p));
  return {
    server: S,
    other: O,
    test2: at(m[1]),
    test3: at(m[2]),
    filterBase: f === 'none' ? null : ans(ip, 50000),
    filterChangeBoth: f === 'eif' ? ans(ip, 50000) : null,
    filterChangePort: f === 'eif' || f === 'adf' ? ans(ip, 50000) : null,
  };
}

function obs(over: Partial<ProbeObservations> & { first?: StunAnswer | null }): ProbeObservations {
  return {
    localIps: ['127.0.0.1', '192.168.1.2'],
    localPort: 40000,
    servers: [{ server: S, regionId: null, answer: over.first === undefined ? ans('198.51.100.2', 40000, 5, O) : over.first }],
    rfc5780: null,
    hairpin: null,
    portMapping: NO_PORT_MAPPING,
    ...over,
  };
}

describe('buildReport with RFC 5780 observations', () => {
  it.each([
    ['EIM + APDF (port-restricted cone)', [40000, 40000, 40000], 'apdf', 'endpoint-independent', 'address-and-port-dependent', 'easy', false],
    ['EIM + ADF (restricted cone)', [40000, 40000, 40000], 'adf', 'endpoint-independent', 'address-dependent', 'easy', false],
    ['EIM + EIF (full cone)', [40000, 40000, 40000], 'eif', 'endpoint-independent', 'endpoint-independent', 'easy', false],
    ['EDM (symmetric)', [40000, 51111, 52222], 'apdf', 'address-and-port-dependent', 'address-and-port-dependent', 'hard', true],
    ['address-dependent mapping', [40000, 51111, 51111], 'apdf', 'address-dependent', 'address-and-port-dependent', 'hard', true],
  ] as const)('%s', (_n, m, f, mapping, filtering, natType, varies) => {
    const first = ans('198.51.100.2', m[0], 5, O);
    const r = buildReport(obs({ first, rfc5780: rfc([m[0], m[1], m[2]], f) }));
    expect(r.mapping).toBe(mapping);
    expect(r.filtering).toBe(filtering);
    expect(r.natType).toBe(natType);
    expect(r.mappingVariesByDestIP).toBe(varies);
    expect(r.udp).toBe(true);
    expect(r.rfc5780).toBe(true);
    expect(r.publicV4).toBe(`198.51.100.2:${m[0]}`);
    expect(r.portPreserved).toBe(true);
    expect(NetcheckReport.safeParse(r).success).toBe(true);
  });

  it('no NAT: a local address seen by the server; EIF is "open", anything stricter is "firewall"', () => {
    const first = ans('192.168.1.2', 40000, 5, O);
    const open = buildReport(obs({ first, rfc5780: rfc([40000, 40000, 40000], 'eif', '192.168.1.2') }));
    expect(open.behindNat).toBe(false);
    expect(open.natType).toBe('open');
    const fw = buildReport(obs({ first, rfc5780: rfc([40000, 40000, 40000], 'apdf', '192.168.1.2') }));
    expect(fw.natType).toBe('firewall');
    expect(fw.filtering).toBe('address-and-port-dependent');
  });

  it('port not preserved is reported without changing the NAT type', () => {
    const first = ans('198.51.100.2', 24944, 5, O);
    const r = buildReport(obs({ first, rfc5780: rfc([24944, 24944, 24944], 'apdf') }));
    expect(r.portPreserved).toBe(false);
    expect(r.natType).toBe('easy');
  });

  it('a server that refuses CHANGE-REQUEST leaves filtering unknown', () => {
    const o = rfc([40000, 40000, 40000], 'apdf');
    o.filterChangeBoth = err420;
    o.filterChangePort = err420;
    expect(buildReport(obs({ rfc5780: o })).filtering).toBe('unknown');
  });

  it('a lost test III leaves the mapping unknown but says it varies', () => {
    const r = buildReport(obs({ rfc5780: rfc([40000, 51111, null], 'apdf') }));
    expect(r.mapping).toBe('unknown');
    expect(r.mappingVariesByDestIP).toBe(true);
    expect(r.natType).toBe('hard');
  });
});

describe('buildReport without RFC 5780', () => {
  const srv = (ip: string, port: number, mappedPort: number | null, regionId: number | null = null, rtt = 5) => ({
    server: { ip, port },
    regionId,
    answer: mappedPort === null ? null : ans('198.51.100.2', mappedPort, rtt),
  });

  it('one plain server: mapping and filtering unknown, natType unknown', () => {
    const r = buildReport(obs({ servers: [srv('203.0.113.10', 3478, 40000)] }));
    expect(r.mapping).toBe('unknown');
    expect(r.filtering).toBe('unknown');
    expect(r.mappingVariesByDestIP).toBeNull();
    expect(r.natType).toBe('unknown');
  });

  it('two IPs with one mapping: endpoint-independent', () => {
    const r = buildReport(obs({ servers: [srv('203.0.113.10', 3478, 40000), srv('203.0.113.11', 3478, 40000)] }));
    expect(r.mapping).toBe('endpoint-independent');
    expect(r.mappingVariesByDestIP).toBe(false);
    expect(r.filtering).toBe('unknown');
  });

  it('varies by IP and by port on the same IP: address-and-port-dependent', () => {
    const r = buildReport(obs({ servers: [srv('203.0.113.10', 3478, 40000), srv('203.0.113.11', 3478, 41000), srv('203.0.113.10', 3479, 42000)] }));
    expect(r.mapping).toBe('address-and-port-dependent');
    expect(r.natType).toBe('hard');
  });

  it('varies by IP only: address-dependent', () => {
    const r = buildReport(obs({ servers: [srv('203.0.113.10', 3478, 40000), srv('203.0.113.11', 3478, 41000), srv('203.0.113.10', 3479, 40000)] }));
    expect(r.mapping).toBe('address-dependent');
  });

  it('varies by IP with no shared IP: unknown mapping, but hard', () => {
    const r = buildReport(obs({ servers: [srv('203.0.113.10', 3478, 40000), srv('203.0.113.11', 3478, 41000)] }));
    expect(r.mapping).toBe('unknown');
    expect(r.mappingVariesByDestIP).toBe(true);
    expect(r.natType).toBe('hard');
  });

  it('no answers at all: udp-blocked', () => {
    const r = buildReport(obs({ servers: [srv('203.0.113.10', 3478, null)] }));
    expect(r.udp).toBe(false);
    expect(r.natType).toBe('udp-blocked');
    expect(r.publicV4).toBeNull();
    expect(explain(r).join('\n')).toMatch(/DERP relay/);
  });

  it('region latency is the best per region and the preferred region is the fastest', () => {
    const r = buildReport(
      obs({ servers: [srv('203.0.113.10', 3478, 40000, 1, 30), srv('203.0.113.12', 3478, 40000, 1, 20), srv('203.0.113.11', 3478, 40000, 2, 25)] }),
    );
    expect(r.regionLatencyMs).toEqual({ '1': 20, '2': 25 });
    expect(r.preferredRegion).toBe(1);
  });
});

describe('summarise', () => {
  it.each([
    [false, null, 'unknown', 'unknown', null, 'udp-blocked'],
    [true, false, 'endpoint-independent', 'endpoint-independent', false, 'open'],
    [true, false, 'endpoint-independent', 'unknown', false, 'firewall'],
    [true, true, 'endpoint-independent', 'endpoint-independent', false, 'easy'],
    [true, true, 'unknown', 'unknown', true, 'hard'],
    [true, true, 'unknown', 'unknown', null, 'unknown'],
  ] as const)('udp=%s behindNat=%s mapping=%s filtering=%s varies=%s → %s', (udp, nat, m, f, v, want) => {
    expect(summarise(udp, nat, m, f, v)).toBe(want);
  });
});
