import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  defaultRoutes,
  findDefaultGateway,
  isRfc1918,
  localIpForGateway,
  parseProcNetRoute,
  pickDefaultGateway,
  type IfaceTable,
} from '../../../../src-main/engine/portmap/gateway.ts';

const HEADER = 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT                                                       ';
const row = (iface: string, dst: string, gw: string, flags: string, metric: number, mask: string): string =>
  `${iface}\t${dst}\t${gw}\t${flags}\t0\t0\t${metric}\t${mask}\t0\t0\t0                                                                               `;
const table = (...rows: string[]): string => [HEADER, ...rows, ''].join('\n');

// Little-endian (x86/arm) encodings of the addresses used below.
const LE = {
  any: '00000000',
  gw_192_168_1_1: '0101A8C0',
  net_192_168_1_0: '0001A8C0',
  mask24: '00FFFFFF',
  gw_10_0_0_1: '0100000A',
  net_172_17_0_0: '000011AC',
  mask16: '0000FFFF',
  net_0_0_0_0: '00000000',
  mask1: '00000080', // 128.0.0.0
  net_128_0_0_0: '00000080',
  gw_100_64_0_1: '01004064',
  gw_203_0_113_1: '017100CB',
};

const HOME = table(
  row('wlan0', LE.any, LE.gw_192_168_1_1, '0003', 600, LE.any),
  row('wlan0', LE.net_192_168_1_0, LE.any, '0001', 600, LE.mask24),
  row('docker0', LE.net_172_17_0_0, LE.any, '0001', 0, LE.mask16),
);

const IFACES: IfaceTable = {
  lo: [{ address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', internal: true }],
  wlan0: [
    { address: 'fe80::1', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', internal: false },
    { address: '10.9.9.9', netmask: '255.255.255.0', family: 'IPv4', internal: false },
    { address: '192.168.1.23', netmask: '255.255.255.0', family: 'IPv4', internal: false },
  ],
  eth0: [{ address: '10.0.0.5', netmask: '255.255.255.0', family: 4, internal: false }],
  docker0: [{ address: '172.17.0.1', netmask: '255.255.0.0', family: 'IPv4', internal: false }],
  weft0: [{ address: '100.64.0.7', netmask: '255.255.255.255', family: 'IPv4', internal: false }],
};

describe('parseProcNetRoute', () => {
  it('parses a home router table (little-endian)', () => {
    expect(parseProcNetRoute(HOME)).toEqual([
      { iface: 'wlan0', destination: '0.0.0.0', gateway: '192.168.1.1', mask: '0.0.0.0', flags: 3, metric: 600 },
      { iface: 'wlan0', destination: '192.168.1.0', gateway: '0.0.0.0', mask: '255.255.255.0', flags: 1, metric: 600 },
      { iface: 'docker0', destination: '172.17.0.0', gateway: '0.0.0.0', mask: '255.255.0.0', flags: 1, metric: 0 },
    ]);
  });

  it('decodes big-endian hosts', () => {
    const text = table(row('eth0', '00000000', 'C0A80101', '0003', 0, '00000000'));
    expect(parseProcNetRoute(text, 'BE')[0]?.gateway).toBe('192.168.1.1');
  });

  it.each([
    ['empty file', ''],
    ['header only', HEADER],
    ['too few fields', table('eth0\t00000000\t0101A8C0\t0003')],
    ['bad hex', table(row('eth0', 'zz000000', LE.gw_192_168_1_1, '0003', 0, LE.any))],
    ['bad metric', table(row('eth0', LE.any, LE.gw_192_168_1_1, '0003', -1, LE.any))],
  ])('skips junk: %s', (_name, text) => {
    expect(parseProcNetRoute(text)).toEqual([]);
  });

  it('never throws on random text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 400 }), (s) => {
        expect(Array.isArray(parseProcNetRoute(s))).toBe(true);
        expect(Array.isArray(parseProcNetRoute(HEADER + '\n' + s))).toBe(true);
      }),
    );
  });
});

const cases: { name: string; text: string; ifaces?: IfaceTable; exclude?: string[]; want: ReturnType<typeof pickDefaultGateway> }[] = [
  {
    name: 'home Wi-Fi: prefers the address in the gateway subnet',
    text: HOME,
    want: { gateway: '192.168.1.1', iface: 'wlan0', localIp: '192.168.1.23', likelyHomeRouter: true },
  },
  {
    name: 'two defaults: lowest metric wins; family given as number 4',
    text: table(row('wlan0', LE.any, LE.gw_192_168_1_1, '0003', 600, LE.any), row('eth0', LE.any, LE.gw_10_0_0_1, '0003', 100, LE.any)),
    want: { gateway: '10.0.0.1', iface: 'eth0', localIp: '10.0.0.5', likelyHomeRouter: true },
  },
  {
    name: 'excluded interface (our own tunnel) is skipped',
    text: table(row('weft0', LE.any, LE.gw_100_64_0_1, '0003', 0, LE.any), row('wlan0', LE.any, LE.gw_192_168_1_1, '0003', 600, LE.any)),
    exclude: ['weft0'],
    want: { gateway: '192.168.1.1', iface: 'wlan0', localIp: '192.168.1.23', likelyHomeRouter: true },
  },
  {
    name: 'route whose interface has no IPv4 falls through to the next',
    text: table(row('ppp0', LE.any, LE.gw_10_0_0_1, '0003', 0, LE.any), row('wlan0', LE.any, LE.gw_192_168_1_1, '0003', 600, LE.any)),
    want: { gateway: '192.168.1.1', iface: 'wlan0', localIp: '192.168.1.23', likelyHomeRouter: true },
  },
  {
    name: 'split default (0/1 + 128/1, as VPNs install) is not a default route',
    text: table(row('tun0', LE.net_0_0_0_0, LE.gw_10_0_0_1, '0003', 0, LE.mask1), row('tun0', LE.net_128_0_0_0, LE.gw_10_0_0_1, '0003', 0, LE.mask1)),
    want: null,
  },
  {
    name: 'default route that is down or has no gateway flag',
    text: table(row('eth0', LE.any, LE.gw_10_0_0_1, '0002', 0, LE.any), row('eth0', LE.any, LE.gw_10_0_0_1, '0001', 0, LE.any)),
    want: null,
  },
  {
    name: 'no default route at all',
    text: table(row('eth0', LE.net_192_168_1_0, LE.any, '0001', 0, LE.mask24)),
    want: null,
  },
  {
    name: 'public gateway is reported but not as a home router',
    text: table(row('eth0', LE.any, LE.gw_203_0_113_1, '0003', 0, LE.any)),
    ifaces: { eth0: [{ address: '203.0.113.9', netmask: '255.255.255.0', family: 'IPv4', internal: false }] },
    want: { gateway: '203.0.113.1', iface: 'eth0', localIp: '203.0.113.9', likelyHomeRouter: false },
  },
];

describe('pickDefaultGateway', () => {
  it.each(cases)('$name', ({ text, ifaces, exclude, want }) => {
    expect(pickDefaultGateway(parseProcNetRoute(text), ifaces ?? IFACES, exclude ? { excludeIfaces: exclude } : {})).toEqual(want);
  });

  it('orders equal metrics by table order', () => {
    const routes = parseProcNetRoute(
      table(row('eth0', LE.any, LE.gw_10_0_0_1, '0003', 5, LE.any), row('wlan0', LE.any, LE.gw_192_168_1_1, '0003', 5, LE.any)),
    );
    expect(defaultRoutes(routes).map((r) => r.iface)).toEqual(['eth0', 'wlan0']);
  });
});

describe('localIpForGateway', () => {
  it.each([
    ['192.168.1.1', '192.168.1.23'],
    ['10.0.0.1', '10.0.0.5'],
    ['172.17.5.5', '172.17.0.1'],
    ['127.0.0.1', '127.0.0.1'],
    ['8.8.8.8', null],
    ['not-an-ip', null],
  ])('%s -> %s', (gw, want) => {
    expect(localIpForGateway(gw, IFACES)).toBe(want);
  });
});

describe('isRfc1918', () => {
  it.each([
    ['10.1.2.3', true],
    ['172.16.0.1', true],
    ['172.31.255.255', true],
    ['172.32.0.1', false],
    ['172.15.0.1', false],
    ['192.168.0.1', true],
    ['192.169.0.1', false],
    ['100.64.0.1', false],
    ['8.8.8.8', false],
    ['junk', false],
  ])('%s -> %s', (ip, want) => {
    expect(isRfc1918(ip)).toBe(want);
  });
});

describe('findDefaultGateway', () => {
  it('reads a route file and an injected interface table', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weft-route-'));
    try {
      const file = join(dir, 'route');
      await writeFile(file, HOME);
      // The file is little-endian; this test assumes a little-endian host like every supported platform.
      await expect(findDefaultGateway({ routeFile: file, ifaces: IFACES })).resolves.toEqual({
        gateway: '192.168.1.1',
        iface: 'wlan0',
        localIp: '192.168.1.23',
        likelyHomeRouter: true,
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('returns null when the route file is missing', async () => {
    await expect(findDefaultGateway({ routeFile: '/nonexistent/route' })).resolves.toBeNull();
  });

  it('does not throw on the real machine', async () => {
    const g = await findDefaultGateway();
    if (g) expect(g.localIp).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
  });
});
