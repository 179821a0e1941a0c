import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addressBonus, betterAddr, latencyPoints, type PathQuality } from '../../../../src-main/engine/paths/score.ts';

const q = (ip: string, latencyMs: number, extra: Partial<PathQuality> = {}): PathQuality => ({ addr: { ip, port: 41641 }, latencyMs, ...extra });

describe('addressBonus', () => {
  it.each([
    ['203.0.113.5', 0],
    ['127.0.0.1', 50],
    ['169.254.3.4', 30],
    ['10.1.2.3', 20],
    ['172.16.0.1', 20],
    ['172.31.255.1', 20],
    ['172.32.0.1', 0],
    ['192.168.1.1', 20],
    ['100.64.0.1', 0], // CGNAT is not "private" in Go's IsPrivate
    ['::ffff:192.168.1.1', 20], // v4-mapped is judged as IPv4
    ['2001:db8::1', 10],
    ['::1', 60],
    ['fe80::1', 40],
    ['fd7a:115c:a1e0::1', 30],
    ['not-an-ip', 0],
  ])('%s → %i', (ip, pts) => {
    expect(addressBonus(ip)).toBe(pts);
  });
});

describe('latencyPoints', () => {
  it.each([
    [100, 200, [50, 0]],
    [200, 100, [0, 50]],
    [99, 100, [1, 0]],
    [98, 100, [2, 0]],
    [100, 100, [0, 0]],
    [0, 10, [100, 0]],
    [0, 0, [0, 0]],
  ] as const)('a=%i b=%i', (a, b, want) => {
    expect(latencyPoints(a, b)).toEqual(want);
  });
});

describe('betterAddr', () => {
  const cases: { name: string; a: PathQuality | null; b: PathQuality | null; want: boolean }[] = [
    { name: 'nothing beats nothing', a: null, b: null, want: false },
    { name: 'anything beats nothing', a: q('203.0.113.5', 500), b: null, want: true },
    { name: 'nothing never beats something', a: null, b: q('203.0.113.5', 500), want: false },
    { name: 'same address, same MTU', a: q('203.0.113.5', 1), b: q('203.0.113.5', 100), want: false },
    { name: 'same address, larger MTU', a: q('203.0.113.5', 100, { wireMtu: 1500 }), b: q('203.0.113.5', 1, { wireMtu: 1280 }), want: true },
    { name: 'same address in v4-mapped form', a: q('::ffff:203.0.113.5', 1), b: q('203.0.113.5', 100), want: true },
    { name: 'twice as fast wins', a: q('203.0.113.5', 10), b: q('198.51.100.7', 20), want: true },
    { name: 'hysteresis: 1 % faster keeps b', a: q('203.0.113.5', 99), b: q('198.51.100.7', 100), want: false },
    { name: '2 % faster wins', a: q('203.0.113.5', 98), b: q('198.51.100.7', 100), want: true },
    { name: 'slower loses', a: q('203.0.113.5', 30), b: q('198.51.100.7', 20), want: false },
    { name: 'equal latency, public vs public keeps b', a: q('203.0.113.5', 20), b: q('198.51.100.7', 20), want: false },
    { name: 'LAN beats public at equal latency', a: q('192.168.1.5', 20), b: q('203.0.113.5', 20), want: true },
    { name: 'LAN beats a public path up to 20 % faster', a: q('192.168.1.5', 20), b: q('203.0.113.5', 17), want: true },
    { name: 'public path > 20 % faster beats LAN', a: q('203.0.113.5', 10), b: q('192.168.1.5', 20), want: true },
    { name: 'IPv6 beats IPv4 at equal latency', a: q('2001:db8::1', 20), b: q('203.0.113.5', 20), want: true },
    { name: 'IPv4 needs > 10 % to beat IPv6', a: q('203.0.113.5', 19), b: q('2001:db8::1', 20), want: false },
    { name: 'direct beats a faster relay', a: q('203.0.113.5', 200), b: q('198.51.100.7', 1, { relayed: true }), want: true },
    { name: 'relay never beats direct', a: q('198.51.100.7', 1, { relayed: true }), b: q('203.0.113.5', 200), want: false },
    { name: 'loopback beats LAN', a: q('127.0.0.1', 20), b: q('192.168.1.5', 20), want: true },
  ];
  it.each(cases)('$name', ({ a, b, want }) => {
    expect(betterAddr(a, b)).toBe(want);
  });

  const arbIp = fc.oneof(
    fc.constantFrom('203.0.113.5', '198.51.100.7', '192.168.1.5', '10.0.0.9', '127.0.0.1', '169.254.1.1', '2001:db8::1', 'fe80::1', 'fd00::2', '::1'),
  );
  const arbQ = fc.record({ addr: fc.record({ ip: arbIp, port: fc.integer({ min: 1, max: 65535 }) }), latencyMs: fc.integer({ min: 0, max: 2000 }), relayed: fc.boolean() });

  it('is never true both ways (no flapping between two paths)', () => {
    fc.assert(
      fc.property(arbQ, arbQ, (a, b) => {
        expect(betterAddr(a, b) && betterAddr(b, a)).toBe(false);
      }),
    );
  });

  it('an address is never better than itself', () => {
    fc.assert(
      fc.property(arbQ, (a) => {
        expect(betterAddr(a, a)).toBe(false);
      }),
    );
  });
});
