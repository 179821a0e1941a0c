import { describe, expect, it } from 'vitest';
import {
  MAX_HOST,
  dnsSafeName,
  hostOfIpv4,
  ipv4ForHost,
  ipv6ForHost,
  isAllocatable,
  lowestFreeHost,
  uniqueGivenName,
} from '../../../../src-main/server/store/allocate.ts';

describe('address allocation', () => {
  it.each([
    [1, '100.64.0.1', 'fd7a:115c:a1e0::1'],
    [255, '100.64.0.255', 'fd7a:115c:a1e0::ff'],
    [256, '100.64.1.0', 'fd7a:115c:a1e0::100'],
    [0x10000, '100.65.0.0', 'fd7a:115c:a1e0::1:0'],
    [0x10001, '100.65.0.1', 'fd7a:115c:a1e0::1:1'],
    [MAX_HOST, '100.127.255.254', 'fd7a:115c:a1e0::3f:fffe'],
  ])('host %i ↔ %s / %s', (n, v4, v6) => {
    expect(ipv4ForHost(n)).toBe(v4);
    expect(ipv6ForHost(n)).toBe(v6);
    expect(hostOfIpv4(v4)).toBe(n);
  });

  it('rejects addresses outside 100.64.0.0/10', () => {
    for (const ip of ['100.63.255.255', '100.128.0.0', '10.0.0.1', '100.64.0.256', 'x']) expect(hostOfIpv4(ip)).toBeNull();
  });

  it('skips the network, broadcast and Tailscale-reserved addresses', () => {
    for (const ip of ['100.64.0.0', '100.127.255.255', '100.100.100.100', '100.115.92.0', '100.115.93.255', '100.64.0.83'])
      expect(isAllocatable(hostOfIpv4(ip)!)).toBe(false);
    for (const ip of ['100.64.0.1', '100.100.100.99', '100.100.100.101', '100.115.91.255', '100.115.94.0']) expect(isAllocatable(hostOfIpv4(ip)!)).toBe(true);
  });

  it('finds the lowest free host number', () => {
    expect(lowestFreeHost([])).toBe(1);
    expect(lowestFreeHost([1, 2, 3])).toBe(4);
    expect(lowestFreeHost([1, 3])).toBe(2);
    expect(lowestFreeHost([2, 3])).toBe(1);
    expect(lowestFreeHost(Array.from({ length: 0x52 }, (_, i) => i + 1))).toBe(0x54);
    const belowService = hostOfIpv4('100.100.100.99')!;
    expect(lowestFreeHost(Array.from({ length: belowService }, (_, i) => i + 1).filter(isAllocatable))).toBe(belowService + 2);
  });

  it('reports a full pool', () => {
    function* all(): Generator<number> {
      for (let n = 1; n <= MAX_HOST; n++) if (isAllocatable(n)) yield n;
    }
    expect(lowestFreeHost(all())).toBeNull();
  });
});

describe('given names', () => {
  it.each([
    ['My Laptop', 'my-laptop'],
    ['web_01.example.com', 'web-01-example-com'],
    ['--x--', 'x'],
    ['', 'node'],
    ['ümlaut', 'mlaut'],
    ['a'.repeat(80), 'a'.repeat(63)],
  ])('%j → %j', (h, want) => {
    expect(dnsSafeName(h)).toBe(want);
  });

  it('appends -2, -3, … while the name is taken, staying within 63 characters', () => {
    const taken = new Set(['db', 'db-2']);
    expect(uniqueGivenName('DB', (n) => taken.has(n))).toBe('db-3');
    const long = 'a'.repeat(63);
    expect(uniqueGivenName(long, (n) => n === long)).toBe(`${'a'.repeat(61)}-2`);
  });
});
