/**
 * Acceptance for `weft netcheck` in the NAT lab: for every NAT profile the report's mapping, filtering, udp,
 * hairpinning and natType must be right, checked against coturn (an RFC 5780 server on two addresses) and
 * against Weft's own STUN server, and cross-checked with coturn's turnutils_natdiscovery.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetcheckReport } from '../../src-shared/model/netcheck.ts';
import { createLab, type HostName, type Lab, type LabProcess, type RouterName, type RouterProfile } from './lab.ts';
import { natDiscovery, startCoturn, STUN } from './services.ts';

const WEFT = ['node', 'src-main/cli/bin.mjs'];
const WEFT_STUN = { ip: '203.0.113.13', altIp: '203.0.113.14', port: 3478, altPort: 3479 };

let lab: Lab;
let weftStun: LabProcess;

beforeAll(async () => {
  lab = await createLab();
  await startCoturn(lab);
  weftStun = lab.spawn('srv', [...WEFT, 'stun-server', '--listen', `${WEFT_STUN.ip}:${WEFT_STUN.port}`, '--alt', `${WEFT_STUN.altIp}:${WEFT_STUN.altPort}`]);
  await weftStun.waitForOutput(/stun-server: ready/, 20_000);
});

afterAll(async () => {
  await lab?.destroy();
});

async function netcheck(host: HostName, args: string[]): Promise<{ report: NetcheckReport; ms: number }> {
  const t0 = performance.now();
  const r = await lab.exec(host, [...WEFT, 'netcheck', '--json', ...args], { timeoutMs: 30_000 });
  const ms = performance.now() - t0;
  expect(r.code, `weft netcheck failed: ${r.stderr}`).toBe(0);
  return { report: NetcheckReport.parse(JSON.parse(r.stdout)), ms };
}

interface Profile {
  name: string;
  host: HostName;
  routers: [RouterName, RouterProfile][];
  mapping: NetcheckReport['mapping'];
  filtering: NetcheckReport['filtering'];
  natType: NetcheckReport['natType'];
  hairpinning?: boolean;
  portPreserved?: boolean;
  publicIp?: string;
}

const home = (p: RouterProfile): [RouterName, RouterProfile][] => [['na', p]];

const PROFILES: Profile[] = [
  { name: 'no NAT', host: 'e1', routers: [['fw', { mapping: 'none', filtering: 'eif', forward: 'open' }]], mapping: 'endpoint-independent', filtering: 'endpoint-independent', natType: 'open', publicIp: '192.0.2.10' },
  { name: 'stateful firewall', host: 'e1', routers: [['fw', { mapping: 'none', filtering: 'apdf', forward: 'stateful' }]], mapping: 'endpoint-independent', filtering: 'address-and-port-dependent', natType: 'firewall', publicIp: '192.0.2.10' },
  { name: 'EIM+APDF', host: 'a1', routers: home({ mapping: 'eim', filtering: 'apdf' }), mapping: 'endpoint-independent', filtering: 'address-and-port-dependent', natType: 'easy', portPreserved: true, publicIp: '198.51.100.2' },
  { name: 'EIM+ADF', host: 'a1', routers: home({ mapping: 'eim', filtering: 'adf' }), mapping: 'endpoint-independent', filtering: 'address-dependent', natType: 'easy' },
  { name: 'EIM+EIF', host: 'a1', routers: home({ mapping: 'eim', filtering: 'eif' }), mapping: 'endpoint-independent', filtering: 'endpoint-independent', natType: 'easy' },
  { name: 'EDM (random mapping)', host: 'a1', routers: home({ mapping: 'edm', filtering: 'apdf' }), mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent', natType: 'hard' },
  { name: 'EIM without port preservation', host: 'a1', routers: home({ mapping: 'eim-range', filtering: 'apdf' }), mapping: 'endpoint-independent', filtering: 'address-and-port-dependent', natType: 'easy', portPreserved: false },
  {
    name: 'CGNAT behind a home NAT',
    host: 'c1',
    routers: [
      ['nc', { mapping: 'eim', filtering: 'apdf' }],
      ['cgn', { mapping: 'eim', filtering: 'apdf' }],
    ],
    mapping: 'endpoint-independent',
    filtering: 'address-and-port-dependent',
    natType: 'easy',
    publicIp: '198.51.100.34',
  },
  { name: 'hairpin on', host: 'a1', routers: home({ mapping: 'eim', filtering: 'apdf', hairpin: true }), mapping: 'endpoint-independent', filtering: 'address-and-port-dependent', natType: 'easy', hairpinning: true },
  { name: 'hairpin off', host: 'a1', routers: home({ mapping: 'eim', filtering: 'apdf', hairpin: false }), mapping: 'endpoint-independent', filtering: 'address-and-port-dependent', natType: 'easy', hairpinning: false },
];

const SERVERS = [
  { name: 'coturn', stun: `${STUN.ip}:${STUN.port}` },
  { name: 'weft stun-server', stun: `${WEFT_STUN.ip}:${WEFT_STUN.port}` },
];

describe.each(PROFILES)('netcheck behind $name', (p) => {
  beforeAll(async () => {
    for (const [r, prof] of p.routers) await lab.setRouter(r, prof);
  });

  it.each(SERVERS)('classifies correctly against $name', async ({ stun }) => {
    const { report } = await netcheck(p.host, ['--no-portmap', '--stun', stun]);
    expect(report.udp).toBe(true);
    expect(report.rfc5780).toBe(true);
    expect({ mapping: report.mapping, filtering: report.filtering, natType: report.natType }).toEqual({
      mapping: p.mapping,
      filtering: p.filtering,
      natType: p.natType,
    });
    expect(report.mappingVariesByDestIP).toBe(p.mapping !== 'endpoint-independent');
    if (p.hairpinning !== undefined) expect(report.hairpinning).toBe(p.hairpinning);
    if (p.portPreserved !== undefined) expect(report.portPreserved).toBe(p.portPreserved);
    if (p.publicIp) expect(report.publicV4?.split(':')[0]).toBe(p.publicIp);
  });

  it('turnutils_natdiscovery agrees with Weft (coturn)', async () => {
    const [theirs, ours] = await Promise.all([natDiscovery(lab, p.host, STUN.ip), netcheck(p.host, ['--no-portmap', '--stun', `${STUN.ip}:${STUN.port}`])]);
    expect({ mapping: ours.report.mapping, filtering: ours.report.filtering }).toEqual({ mapping: theirs.mapping, filtering: theirs.filtering });
  });
});

describe('netcheck without RFC 5780 support', () => {
  beforeAll(async () => {
    await lab.setRouter('na', { mapping: 'edm', filtering: 'apdf' });
  });

  it('works out the mapping from several plain servers and says filtering is unknown', async () => {
    // Weft's STUN server on one address per port: no alternate, so no OTHER-ADDRESS and no CHANGE-REQUEST.
    const plain = [lab.spawn('srv', [...WEFT, 'stun-server', '--listen', '203.0.113.12:3478']), lab.spawn('srv', [...WEFT, 'stun-server', '--listen', '203.0.113.12:3479'])];
    await Promise.all(plain.map((p) => p.waitForOutput(/stun-server: ready/, 20_000)));
    const plain2 = lab.spawn('srv', [...WEFT, 'stun-server', '--listen', '203.0.113.11:4478']);
    await plain2.waitForOutput(/stun-server: ready/, 20_000);
    try {
      const { report } = await netcheck('a1', ['--no-portmap', '--stun', '203.0.113.12:3478', '--stun', '203.0.113.12:3479', '--stun', '203.0.113.11:4478']);
      expect(report.rfc5780).toBe(false);
      expect(report.mapping).toBe('address-and-port-dependent');
      expect(report.mappingVariesByDestIP).toBe(true);
      expect(report.filtering).toBe('unknown');
      expect(report.natType).toBe('hard');

      await lab.setRouter('na', { mapping: 'eim', filtering: 'apdf' });
      const one = await netcheck('a1', ['--no-portmap', '--stun', '203.0.113.12:3478']);
      expect(one.report.mapping).toBe('unknown');
      expect(one.report.natType).toBe('unknown');
    } finally {
      await Promise.all([...plain, plain2].map((p) => p.kill()));
    }
  });
});

describe('netcheck with UDP blocked', () => {
  beforeAll(async () => {
    await lab.setRouter('nb', { mapping: 'eim', filtering: 'apdf', forward: 'udp443' });
  });
  afterAll(async () => {
    await lab.setRouter('nb', { mapping: 'eim', filtering: 'apdf' });
  });

  it('reports udp-blocked, within 5 s', async () => {
    const { report, ms } = await netcheck('b1', ['--stun', `${STUN.ip}:${STUN.port}`, '--stun', `${WEFT_STUN.ip}:${WEFT_STUN.port}`]);
    expect(report.udp).toBe(false);
    expect(report.natType).toBe('udp-blocked');
    expect(report.publicV4).toBeNull();
    expect(report.hairpinning).toBeNull();
    expect(ms).toBeLessThan(5000);
  });

  it('agrees with turnutils_natdiscovery that nothing answers', async () => {
    const theirs = await natDiscovery(lab, 'b1', STUN.ip);
    expect(theirs.mapping).toBe('unknown');
  });
});

describe('netcheck with a DERP map', () => {
  it('measures region latency and picks a preferred region from the map’s STUN nodes', async () => {
    await lab.setRouter('na', { mapping: 'eim', filtering: 'apdf' });
    const map = {
      Regions: {
        '900': { RegionID: 900, RegionCode: 'lab-a', Nodes: [{ Name: '900a', RegionID: 900, HostName: 'derp-a.lab', IPv4: STUN.ip, STUNPort: STUN.port }] },
        '901': { RegionID: 901, RegionCode: 'lab-b', Nodes: [{ Name: '901a', RegionID: 901, HostName: 'derp-b.lab', IPv4: WEFT_STUN.ip, STUNPort: WEFT_STUN.port }] },
        '902': { RegionID: 902, RegionCode: 'lab-c', NoMeasureNoHome: true, Nodes: [{ Name: '902a', RegionID: 902, HostName: 'derp-c.lab', IPv4: '203.0.113.12', STUNPort: 3478 }] },
        '903': { RegionID: 903, RegionCode: 'lab-dead', Nodes: [{ Name: '903a', RegionID: 903, HostName: 'derp-d.lab', IPv4: '203.0.113.12', STUNPort: 9 }] },
      },
    };
    const { writeFileSync } = await import('node:fs');
    const file = `${lab.tmpDir}/derpmap.json`;
    writeFileSync(file, JSON.stringify(map));
    const { report } = await netcheck('a1', ['--no-portmap', '--derp-map', file]);
    expect(Object.keys(report.regionLatencyMs).sort()).toEqual(['900', '901']);
    expect(report.regionLatencyMs['900']).toBeGreaterThan(0);
    expect([900, 901]).toContain(report.preferredRegion);
    expect(report.preferredRegion).toBe(Number(Object.entries(report.regionLatencyMs).sort((x, y) => x[1] - y[1])[0]![0]));
    expect(report.mapping).toBe('endpoint-independent');
  });

  it('rejects a malformed DERP map with a clear error', async () => {
    const { writeFileSync } = await import('node:fs');
    const file = `${lab.tmpDir}/bad.json`;
    writeFileSync(file, '{"Regions": {"1": {"RegionID": "one"}}}');
    const r = await lab.exec('a1', [...WEFT, 'netcheck', '--json', '--derp-map', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not a valid tailcfg DERPMap/);
  });
});
