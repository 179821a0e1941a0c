/**
 * Acceptance for port mapping against a real miniupnpd on the lab's home routers:
 * - netcheck finds NAT-PMP with the router's WAN address as externalV4, and a test mapping works;
 * - a mapping Weft creates lets an unsolicited packet from the internet reach the LAN host, and releasing it
 *   closes the door again;
 * - behind a CGNAT the router answers, but the report says port mapping is not usable.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetcheckReport } from '../../src-shared/model/netcheck.ts';
import { UdpAgent } from './agent.ts';
import { createLab, type HostName, type Lab } from './lab.ts';
import { startCoturn, startMiniupnpd, STUN } from './services.ts';

const WEFT = ['node', 'src-main/cli/bin.mjs'];

let lab: Lab;

beforeAll(async () => {
  lab = await createLab();
  await startCoturn(lab);
});

afterAll(async () => {
  await lab?.destroy();
});

async function netcheck(host: HostName): Promise<NetcheckReport> {
  const r = await lab.exec(host, [...WEFT, 'netcheck', '--json', '--stun', `${STUN.ip}:${STUN.port}`], { timeoutMs: 30_000 });
  expect(r.code, r.stderr).toBe(0);
  return NetcheckReport.parse(JSON.parse(r.stdout));
}

describe('port mapping behind a home router running miniupnpd', () => {
  beforeAll(async () => {
    await lab.setRouter('na', { mapping: 'eim', filtering: 'apdf', inputDrop: false, miniupnpd: true });
    await startMiniupnpd(lab, 'na', { lanIf: 'br-lan', stunIp: STUN.ip });
  });

  it('netcheck reports NAT-PMP, PCP and UPnP with the router’s WAN address, and a working test mapping', async () => {
    const report = await netcheck('a1');
    expect(report.portMapping.natpmp).toBe(true);
    expect(report.portMapping.pcp).toBe(true);
    expect(report.portMapping.upnp).toBe(true);
    expect(report.portMapping.externalV4).toBe(lab.addr.naWan);
    expect(report.portMapping.usable).toBe(true);
    expect(report.portMapping.error).toBeNull();
  });

  it.each(['natpmp', 'pcp', 'upnp'])('a %s mapping weft creates lets an unsolicited packet from the internet reach the LAN host', async (protocol) => {
    const lan = await UdpAgent.start(lab, 'a1', 120);
    const inet = await UdpAgent.start(lab, 'srv', 120);
    try {
      const port = await lan.bind('l', { natpmp: 41641, pcp: 41642, upnp: 41643 }[protocol]);
      await inet.bind('s', 0, '203.0.113.12');
      // Before any mapping, an unsolicited packet to the router's WAN does not reach the LAN host. It is sent
      // from another socket: its conntrack entry (to the router itself) would otherwise capture the later
      // packets of the same 5-tuple and bypass the new forward (natlab gotcha G3).
      await inet.bind('pre', 0, '203.0.113.12');
      await inet.send('pre', lab.addr.naWan, port, 'aa');
      const portmap = lab.spawn('a1', [...WEFT, 'portmap', '--port', String(port), '--lifetime', '120', '--protocol', protocol, '--json']);
      const line = await portmap.waitForOutput(/\{"protocol".*\}/, 20_000);
      const m = JSON.parse(line[0]) as { protocol: string; external: string; internalPort: number };
      expect(m.internalPort).toBe(port);
      expect(m.protocol).toBe(protocol);
      const [extIp, extPort] = m.external.split(':');
      expect(extIp).toBe(lab.addr.naWan);
      await inet.send('s', extIp!, Number(extPort), 'c0ffee');
      const got = await lan.waitFor((e) => e.ev === 'recv' && e.id === 'l' && e.hex === 'c0ffee', 5000);
      expect(got, 'the unsolicited packet should arrive through the mapping').toBeDefined();
      expect(lan.received('l').some((e) => e.hex === 'aa')).toBe(false);
      expect(got && 'from' in got ? got.from : null).toBe('203.0.113.12');

      // Releasing the mapping (SIGTERM) closes it for new flows (an existing flow keeps its conntrack entry,
      // as on any Linux router), so the check uses a new source socket.
      await portmap.kill('SIGTERM');
      expect(await portmap.exited).toBe(0);
      await inet.bind('s2', 0, '203.0.113.12');
      await inet.send('s2', extIp!, Number(extPort), 'dead');
      const after = await lan.waitFor((e) => e.ev === 'recv' && e.id === 'l' && e.hex === 'dead', 1500);
      expect(after).toBeUndefined();
    } finally {
      await Promise.all([lan.stop(), inet.stop()]);
    }
  });
});

describe('port mapping behind a CGNAT', () => {
  beforeAll(async () => {
    await lab.setRouter('cgn', { mapping: 'eim', filtering: 'apdf' });
    await lab.setRouter('nc', { mapping: 'eim', filtering: 'apdf', inputDrop: false, miniupnpd: true });
    await startMiniupnpd(lab, 'nc', { lanIf: 'lan', stunIp: STUN.ip });
  });

  it('says port mapping is not usable', async () => {
    const report = await netcheck('c1');
    expect(report.portMapping.natpmp).toBe(true);
    expect(report.portMapping.usable).toBe(false);
    expect(report.portMapping.error).toMatch(/carrier-grade NAT|another NAT/);
    expect(report.natType).toBe('easy');
    expect(report.publicV4?.split(':')[0]).toBe(lab.addr.cgnWan);
  });

  it('weft portmap fails with a clear message', async () => {
    const r = await lab.exec('c1', [...WEFT, 'portmap', '--port', '41641'], { timeoutMs: 20_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/another NAT/);
  });
});
