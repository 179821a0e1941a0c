/**
 * Runs the port-mapping client against an in-process fake gateway on 127.0.0.1: one UDP socket playing
 * the NAT-PMP/PCP server (port 5351's role) and one playing the SSDP responder (port 1900's role).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { bindUdp, type UdpSocket } from '../../../../src-main/engine/io/udp.ts';
import { realClock, type Clock, type TimerHandle } from '../../../../src-main/engine/sys/clock.ts';
import type { UdpAddr } from '../../../../src-main/protocol/wire/addr.ts';
import { encodeNatPmpResponse, parseNatPmpRequest, type NatPmpRequest } from '../../../../src-main/protocol/wire/natpmp.ts';
import { PcpResult, encodePcpResponse, parsePcpRequest, type PcpRequest } from '../../../../src-main/protocol/wire/pcp.ts';
import { UPNP_WANIP1 } from '../../../../src-main/protocol/wire/upnp.ts';
import { FakeIgd } from './fake-igd.ts';
import {
  chooseMappingProtocol,
  createMapping,
  probePortMapping,
  releaseMapping,
  type PortMapProbe,
} from '../../../../src-main/engine/portmap/portmapper.ts';

const GW = '127.0.0.1';
const EXT_IP = '203.0.113.7';

interface GatewayBehaviour {
  /** NAT-PMP: false = answer version-0 packets in PCP format with UNSUPP_VERSION (a PCP-only server). */
  natpmp: boolean;
  /** PCP: false = answer version-2 packets with the NAT-PMP 8-byte "unsupported version" reply. */
  pcp: boolean;
  /** Result code for NAT-PMP external address requests. */
  pmpExtResult: number;
  pmpMapResult: number;
  pcpAnnounceResult: number;
  pcpMapResult: number;
  /** Send PCP MAP errors as the 24-byte header only. */
  pcpShortErrors: boolean;
  /** Corrupt the nonce in PCP MAP replies. */
  pcpWrongNonce: boolean;
  /** Drop this many NAT-PMP packets before answering. */
  dropPmp: number;
  /** Record but answer nothing on the NAT-PMP/PCP port. */
  silent: boolean;
  externalPort: number;
  epoch: number;
  /** SSDP answers (full text) sent back for each M-SEARCH. */
  ssdp: string[];
}

const igdReply = (location: string, st = 'urn:schemas-upnp-org:device:InternetGatewayDevice:1'): string =>
  `HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: ${st}\r\nUSN: uuid:1234::${st}\r\nLOCATION: ${location}\r\nSERVER: test UPnP/1.1 fake/1\r\n\r\n`;

class FakeGateway {
  readonly pmpLog: NatPmpRequest[] = [];
  readonly pcpLog: PcpRequest[] = [];
  readonly ssdpLog: string[] = [];
  b: GatewayBehaviour = {
    natpmp: true,
    pcp: true,
    pmpExtResult: 0,
    pmpMapResult: 0,
    pcpAnnounceResult: 0,
    pcpMapResult: 0,
    pcpShortErrors: false,
    pcpWrongNonce: false,
    dropPmp: 0,
    silent: false,
    externalPort: 54321,
    epoch: 1000,
    ssdp: [],
  };

  private constructor(
    private readonly srv: UdpSocket,
    private readonly ssdpSock: UdpSocket,
  ) {
    srv.onPacket((d, from) => this.onServer(d, from));
    ssdpSock.onPacket((d, from) => this.onSsdp(d, from));
  }

  static async start(b: Partial<GatewayBehaviour> = {}): Promise<FakeGateway> {
    const g = new FakeGateway(await bindUdp({ address: GW }), await bindUdp({ address: GW }));
    Object.assign(g.b, b);
    return g;
  }

  get serverPort(): number {
    return this.srv.localPort();
  }
  get ssdpPort(): number {
    return this.ssdpSock.localPort();
  }

  async close(): Promise<void> {
    await this.srv.close();
    await this.ssdpSock.close();
  }

  private reply(data: Uint8Array, to: UdpAddr): void {
    this.srv.send(data, to).catch(() => {});
  }

  private onServer(d: Uint8Array, from: UdpAddr): void {
    if (this.b.silent) {
      const pmp = parseNatPmpRequest(d);
      if (pmp.kind !== 'malformed') this.pmpLog.push(pmp);
      const pcp = parsePcpRequest(d);
      if (pcp.kind !== 'malformed') this.pcpLog.push(pcp);
      return;
    }
    if (d[0] === 0) {
      if (!this.b.natpmp) {
        this.reply(encodePcpResponse({ kind: 'announceResponse', resultCode: PcpResult.UNSUPP_VERSION, lifetimeS: 0, epoch: this.b.epoch }), from);
        return;
      }
      const req = parseNatPmpRequest(d);
      if (req.kind === 'malformed') return;
      this.pmpLog.push(req);
      if (this.b.dropPmp > 0) {
        this.b.dropPmp--;
        return;
      }
      if (req.kind === 'externalAddressRequest') {
        const ok = this.b.pmpExtResult === 0;
        this.reply(
          encodeNatPmpResponse({ kind: 'externalAddressResponse', resultCode: this.b.pmpExtResult, epoch: this.b.epoch, externalIp: ok ? EXT_IP : '0.0.0.0' }),
          from,
        );
      } else {
        const ok = this.b.pmpMapResult === 0;
        this.reply(
          encodeNatPmpResponse({
            kind: 'mapResponse',
            protocol: req.protocol,
            resultCode: this.b.pmpMapResult,
            epoch: this.b.epoch,
            internalPort: req.internalPort,
            externalPort: ok && req.lifetimeS > 0 ? this.b.externalPort : 0,
            lifetimeS: ok ? Math.min(req.lifetimeS, 3600) : 0,
          }),
          from,
        );
      }
      return;
    }
    if (d[0] === 2) {
      if (!this.b.pcp) {
        // What a NAT-PMP-only server says to any version it does not know (RFC 6886 §3.5, RFC 6887 §9).
        this.reply(encodeNatPmpResponse({ kind: 'externalAddressResponse', resultCode: 1, epoch: this.b.epoch, externalIp: null }), from);
        return;
      }
      const req = parsePcpRequest(d);
      if (req.kind === 'malformed') return;
      this.pcpLog.push(req);
      // A real PCP server compares the client address field with the packet's source (ADDRESS_MISMATCH).
      const mismatch = req.clientIp !== from.ip;
      if (req.kind === 'announceRequest') {
        const resultCode = mismatch ? PcpResult.ADDRESS_MISMATCH : this.b.pcpAnnounceResult;
        this.reply(encodePcpResponse({ kind: 'announceResponse', resultCode, lifetimeS: 0, epoch: this.b.epoch }), from);
        return;
      }
      const resultCode = mismatch ? PcpResult.ADDRESS_MISMATCH : this.b.pcpMapResult;
      if (resultCode !== 0 && this.b.pcpShortErrors) {
        this.reply(encodePcpResponse({ kind: 'errorResponse', opcode: 1, resultCode, lifetimeS: 30, epoch: this.b.epoch }), from);
        return;
      }
      const nonce = req.nonce.slice();
      if (this.b.pcpWrongNonce) nonce[0] = nonce[0]! ^ 0xff;
      this.reply(
        encodePcpResponse({
          kind: 'mapResponse',
          resultCode,
          lifetimeS: resultCode === 0 ? Math.min(req.lifetimeS, 3600) : 30,
          epoch: this.b.epoch,
          nonce,
          protocol: req.protocol,
          internalPort: req.internalPort,
          externalPort: resultCode === 0 && req.lifetimeS > 0 ? this.b.externalPort : 0,
          externalIp: resultCode === 0 ? EXT_IP : '0.0.0.0',
        }),
        from,
      );
    }
  }

  private onSsdp(d: Uint8Array, from: UdpAddr): void {
    const text = new TextDecoder().decode(d);
    this.ssdpLog.push(text);
    for (const r of this.b.ssdp) this.ssdpSock.send(new TextEncoder().encode(r), from).catch(() => {});
  }
}

/** A manual clock: timers fire only when the test advances time. */
class ManualClock implements Clock {
  private t = 0;
  private seq = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + ms, fn });
    return id as unknown as TimerHandle;
  }
  clearTimeout(h: TimerHandle): void {
    this.timers.delete(h as unknown as number);
  }
  pending(): number {
    return this.timers.size;
  }
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const next = [...this.timers.entries()].filter(([, v]) => v.at <= end).sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
  }
}

const waitFor = async (cond: () => boolean, ms = 2000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('waitFor timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
};

let gw: FakeGateway | null = null;
let igd: FakeIgd | null = null;
afterEach(async () => {
  await gw?.close();
  gw = null;
  await igd?.close();
  igd = null;
});

const probeOpts = (g: FakeGateway, extra: Partial<Parameters<typeof probePortMapping>[0]> = {}): Parameters<typeof probePortMapping>[0] => ({
  gateway: GW,
  serverPort: g.serverPort,
  ssdpPort: g.ssdpPort,
  ssdpMulticast: null,
  timeoutMs: 300,
  ...extra,
});

describe('probePortMapping', () => {
  it('finds NAT-PMP, PCP and UPnP, and stops early once all three answered', async () => {
    gw = await FakeGateway.start({ ssdp: [igdReply('http://127.0.0.1:5000/rootDesc.xml')] });
    const t0 = performance.now();
    const p = await probePortMapping(probeOpts(gw, { timeoutMs: 3000 }));
    expect(performance.now() - t0).toBeLessThan(1500);
    expect(p).toMatchObject({
      natpmp: true,
      pcp: true,
      upnp: true,
      externalV4: EXT_IP,
      natpmpEpoch: 1000,
      pcpEpoch: 1000,
      upnpLocation: 'http://127.0.0.1:5000/rootDesc.xml',
    });
    expect(gw.pmpLog[0]).toEqual({ kind: 'externalAddressRequest' });
    expect(gw.pcpLog[0]).toEqual({ kind: 'announceRequest', clientIp: '127.0.0.1' });
    expect(gw.ssdpLog[0]).toMatch(/^M-SEARCH \* HTTP\/1\.1\r\nHOST: 239\.255\.255\.250:1900\r\nST: ssdp:all\r\nMAN: "ssdp:discover"\r\nMX: 2\r\n\r\n$/);
  });

  it('NAT-PMP-only gateway: its "unsupported version" reply to PCP does not count as PCP (or spoil PMP)', async () => {
    gw = await FakeGateway.start({ pcp: false });
    const p = await probePortMapping(probeOpts(gw));
    expect(p).toMatchObject({ natpmp: true, pcp: false, upnp: false, externalV4: EXT_IP, upnpLocation: null });
  });

  it('PCP-only gateway', async () => {
    gw = await FakeGateway.start({ natpmp: false });
    const p = await probePortMapping(probeOpts(gw));
    expect(p).toMatchObject({ natpmp: false, pcp: true, externalV4: null });
  });

  it('PCP ADDRESS_MISMATCH (wrong client address) means no PCP', async () => {
    gw = await FakeGateway.start();
    const p = await probePortMapping(probeOpts(gw, { localIp: '192.0.2.99' }));
    expect(gw.pcpLog[0]).toEqual({ kind: 'announceRequest', clientIp: '192.0.2.99' });
    expect(p.pcp).toBe(false);
    expect(p.natpmp).toBe(true);
  });

  it('NAT-PMP network failure (CGNAT miniupnpd) means no NAT-PMP and no external IP', async () => {
    gw = await FakeGateway.start({ pmpExtResult: 3 });
    const p = await probePortMapping(probeOpts(gw));
    expect(p).toMatchObject({ natpmp: false, externalV4: null, natpmpEpoch: null });
  });

  it('retransmits the NAT-PMP request after 250 ms when the first is lost', async () => {
    gw = await FakeGateway.start({ dropPmp: 1 });
    const p = await probePortMapping(probeOpts(gw, { timeoutMs: 600 }));
    expect(gw.pmpLog.length).toBe(2);
    expect(p.natpmp).toBe(true);
  });

  it('collects IGD answers deduplicated and sorted; ignores other devices', async () => {
    gw = await FakeGateway.start({
      ssdp: [
        igdReply('http://127.0.0.1:5000/z.xml'),
        igdReply('http://127.0.0.1:5000/a.xml', 'urn:schemas-upnp-org:device:InternetGatewayDevice:2'),
        igdReply('http://127.0.0.1:5000/z.xml'),
        igdReply('http://127.0.0.1:9/printer.xml', 'urn:schemas-upnp-org:device:Printer:1'),
      ],
    });
    const p = await probePortMapping(probeOpts(gw));
    expect(p.upnp).toBe(true);
    expect(p.upnpLocations).toEqual(['http://127.0.0.1:5000/a.xml', 'http://127.0.0.1:5000/z.xml']);
    expect(p.upnpLocation).toBe('http://127.0.0.1:5000/a.xml');
  });

  it('silent gateway and a failing multicast send still resolve with nothing found', async () => {
    gw = await FakeGateway.start({ silent: true });
    const logs: string[] = [];
    // 255.255.255.255 without SO_BROADCAST makes the "multicast" send fail on Linux.
    const p = await probePortMapping(probeOpts(gw, { ssdpMulticast: '255.255.255.255', logf: (l) => logs.push(l), timeoutMs: 200 }));
    expect(p).toMatchObject({ natpmp: false, pcp: false, upnp: false, externalV4: null });
    await waitFor(() => gw!.ssdpLog.length === 1); // the unicast search still went out
    expect(logs.some((l) => l.includes('what=ssdp-multicast'))).toBe(true);
    expect(logs.some((l) => l.startsWith('portmap: probe gateway='))).toBe(true);
  });

  it('uses the injected clock: timeouts and retransmits fire only when it advances', async () => {
    gw = await FakeGateway.start({ silent: true });
    const clock = new ManualClock();
    let done = false;
    const pr = probePortMapping(probeOpts(gw, { clock, timeoutMs: 500 })).finally(() => {
      done = true;
    });
    await waitFor(() => clock.pending() > 0 && gw!.pmpLog.length === 1 && gw!.pcpLog.length === 1);
    await new Promise((r) => setTimeout(r, 50));
    expect(done).toBe(false);
    clock.advance(250);
    await waitFor(() => gw!.pmpLog.length === 2); // NAT-PMP retransmit; PCP is not retransmitted
    expect(done).toBe(false);
    clock.advance(250);
    await pr;
    expect(done).toBe(true);
    expect(clock.pending()).toBe(0);
  });

  it('rejects when aborted', async () => {
    gw = await FakeGateway.start({ silent: true });
    const ac = new AbortController();
    const pr = probePortMapping(probeOpts(gw, { signal: ac.signal, timeoutMs: 5000 }));
    setTimeout(() => ac.abort(new Error('stop')), 20);
    await expect(pr).rejects.toThrow('stop');
  });
});

const base = (g: FakeGateway): Parameters<typeof createMapping>[0] => ({
  gateway: GW,
  localIp: GW,
  internalPort: 41641,
  serverPort: g.serverPort,
  timeoutMs: 300,
});

const probeResult = (p: Partial<PortMapProbe>): PortMapProbe => ({
  natpmp: false,
  pcp: false,
  upnp: false,
  externalV4: null,
  upnpLocation: null,
  upnpLocations: [],
  natpmpEpoch: null,
  pcpEpoch: null,
  at: 0,
  ...p,
});

describe('chooseMappingProtocol (spec §8.2)', () => {
  it.each([
    [{}, 'natpmp'],
    [{ probe: probeResult({ pcp: true }) }, 'pcp'],
    [{ probe: probeResult({ pcp: true, natpmp: true }) }, 'natpmp'],
    [{ probe: probeResult({}) }, 'natpmp'],
    [{ prefer: 'pcp' as const, probe: probeResult({ natpmp: true }) }, 'pcp'],
    [{ probe: probeResult({ upnp: true, upnpLocation: 'http://x/' }) }, 'upnp'],
    [{ probe: probeResult({ natpmp: true, upnp: true, upnpLocation: 'http://x/' }) }, 'natpmp'],
  ])('%o -> %s', (o, want) => {
    expect(chooseMappingProtocol(o)).toBe(want);
  });

  it('goes straight to UPnP only if the probe is under 5 s old', () => {
    const probe = probeResult({ upnp: true, upnpLocation: 'http://x/', at: 10_000 });
    expect(chooseMappingProtocol({ probe }, 14_999)).toBe('upnp');
    expect(chooseMappingProtocol({ probe }, 15_000)).toBe('natpmp');
  });
});

describe('createMapping / releaseMapping with UPnP', () => {
  it('falls back to UPnP when NAT-PMP says network failure (CGNAT), and releases with DeletePortMapping', async () => {
    gw = await FakeGateway.start({ pmpExtResult: 3, pcp: false });
    igd = await FakeIgd.start([{ serviceType: UPNP_WANIP1, path: '/ctl/IPConn' }]);
    const probe = probeResult({ natpmp: false, upnp: true, upnpLocation: igd.location, at: -60_000 });
    const r = await createMapping({ ...base(gw), probe, suggestedExternalPort: 41641 });
    if (!r.ok) throw new Error(r.error);
    expect(r.mapping).toMatchObject({ protocol: 'upnp', externalIp: '198.51.100.2', externalPort: 41641, lifetimeS: 7200 });
    expect(r.mapping.upnp).toEqual({ controlUrl: `http://127.0.0.1:${igd.port}/ctl/IPConn`, serviceType: UPNP_WANIP1 });
    expect(gw.pmpLog.length).toBe(1);
    await releaseMapping({ gateway: GW, localIp: GW, mapping: r.mapping });
    expect(igd.calls.at(-1)?.action).toBe('DeletePortMapping');
  });

  it('goes straight to UPnP after a fresh probe that found only UPnP', async () => {
    gw = await FakeGateway.start();
    igd = await FakeIgd.start([{ serviceType: UPNP_WANIP1, path: '/ctl/IPConn' }]);
    const r = await createMapping({ ...base(gw), probe: probeResult({ upnp: true, upnpLocation: igd.location, at: performance.now() }) });
    expect(r.ok && r.mapping.protocol).toBe('upnp');
    expect(gw.pmpLog).toEqual([]);
    expect(gw.pcpLog).toEqual([]);
  });

  it('when everything fails, keeps the NAT-PMP result code and joins the errors', async () => {
    gw = await FakeGateway.start({ pmpExtResult: 3 });
    igd = await FakeIgd.start([{ serviceType: UPNP_WANIP1, path: '/ctl/IPConn', addFaults: [606] }]);
    const r = await createMapping({ ...base(gw), probe: probeResult({ upnp: true, upnpLocation: igd.location, at: -60_000 }) });
    expect(r).toMatchObject({ ok: false, resultCode: 3 });
    expect(!r.ok && r.error).toMatch(/result 3 \(network failure.*; UPnP AddPortMapping failed: UPnP error 606/);
  });

  it('does not fall back with upnpFallback: false', async () => {
    gw = await FakeGateway.start({ pmpExtResult: 3 });
    igd = await FakeIgd.start([{ serviceType: UPNP_WANIP1, path: '/ctl/IPConn' }]);
    const r = await createMapping({ ...base(gw), upnpFallback: false, probe: probeResult({ upnp: true, upnpLocation: igd.location, at: -60_000 }) });
    expect(r).toMatchObject({ ok: false, resultCode: 3 });
    expect(igd.calls).toEqual([]);
  });

  it('probe finds the IGD Location that createMapping then uses', async () => {
    gw = await FakeGateway.start({ silent: true });
    igd = await FakeIgd.start([{ serviceType: UPNP_WANIP1, path: '/ctl/IPConn' }]);
    gw.b.ssdp = [igdReply(igd.location)];
    const probe = await probePortMapping(probeOpts(gw, { timeoutMs: 200 }));
    expect(probe).toMatchObject({ natpmp: false, pcp: false, upnp: true, upnpLocation: igd.location });
    const r = await createMapping({ ...base(gw), probe });
    expect(r.ok && r.mapping.protocol).toBe('upnp');
  });
});

describe('createMapping / releaseMapping with NAT-PMP', () => {
  it('asks for the external address, then maps UDP for 7200 s', async () => {
    gw = await FakeGateway.start();
    const r = await createMapping(base(gw));
    expect(r).toEqual({
      ok: true,
      mapping: expect.objectContaining({
        protocol: 'natpmp',
        internalPort: 41641,
        externalIp: EXT_IP,
        externalPort: 54321,
        lifetimeS: 3600,
        epoch: 1000,
      }) as unknown,
    });
    expect(gw.pmpLog).toEqual([
      { kind: 'externalAddressRequest' },
      { kind: 'mapRequest', protocol: 'udp', internalPort: 41641, suggestedExternalPort: 0, lifetimeS: 7200 },
    ]);
  });

  it('skips the external address request when the probe knows it, and suggests the previous port', async () => {
    gw = await FakeGateway.start();
    const r = await createMapping({ ...base(gw), probe: probeResult({ natpmp: true, externalV4: '198.51.100.1' }), suggestedExternalPort: 40000, lifetimeS: 60 });
    expect(r.ok && r.mapping.externalIp).toBe('198.51.100.1');
    expect(gw.pmpLog).toEqual([{ kind: 'mapRequest', protocol: 'udp', internalPort: 41641, suggestedExternalPort: 40000, lifetimeS: 60 }]);
  });

  it('reports result 3 (network failure, e.g. miniupnpd behind CGNAT) clearly', async () => {
    gw = await FakeGateway.start({ pmpExtResult: 3 });
    const r = await createMapping(base(gw));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.resultCode).toBe(3);
    expect(r.error).toMatch(/NAT-PMP external address request failed: result 3 \(network failure/);
    expect(gw.pmpLog.length).toBe(1); // no map request after the failure
  });

  it('reports a refused map request with its code', async () => {
    gw = await FakeGateway.start({ pmpMapResult: 2 });
    const r = await createMapping(base(gw));
    expect(r).toMatchObject({ ok: false, resultCode: 2 });
    expect(!r.ok && r.error).toMatch(/UDP map request failed: result 2 \(not authorized/);
  });

  it('times out cleanly against a silent gateway', async () => {
    gw = await FakeGateway.start({ silent: true });
    const r = await createMapping({ ...base(gw), timeoutMs: 100 });
    expect(r).toEqual({ ok: false, error: 'NAT-PMP: no answer to external address request within 100 ms' });
  });

  it('falls over to PCP when the gateway only speaks PCP', async () => {
    gw = await FakeGateway.start({ natpmp: false });
    const r = await createMapping(base(gw));
    expect(r.ok && r.mapping.protocol).toBe('pcp');
  });

  it('does not fall over when a protocol is forced', async () => {
    gw = await FakeGateway.start({ natpmp: false });
    const r = await createMapping({ ...base(gw), prefer: 'natpmp' });
    expect(r).toMatchObject({ ok: false });
    expect(!r.ok && r.error).toMatch(/only in pcp format/);
  });

  it('release sends a map request with lifetime 0 and external port 0', async () => {
    gw = await FakeGateway.start();
    const r = await createMapping(base(gw));
    if (!r.ok) throw new Error(r.error);
    const logs: string[] = [];
    await releaseMapping({ gateway: GW, localIp: GW, mapping: r.mapping, serverPort: gw.serverPort, logf: (l) => logs.push(l) });
    expect(gw.pmpLog.at(-1)).toEqual({ kind: 'mapRequest', protocol: 'udp', internalPort: 41641, suggestedExternalPort: 0, lifetimeS: 0 });
    expect(logs.join('\n')).toMatch(/acked=true/);
  });

  it('validates its arguments without touching the network', async () => {
    expect(await createMapping({ gateway: 'fe80::1', localIp: '10.0.0.2', internalPort: 1 })).toMatchObject({ ok: false });
    expect(await createMapping({ gateway: '10.0.0.1', localIp: '10.0.0.2', internalPort: 0 })).toMatchObject({ ok: false });
  });

  it('retransmits on the injected clock', async () => {
    gw = await FakeGateway.start({ silent: true });
    const clock = new ManualClock();
    const pr = createMapping({ ...base(gw), clock, timeoutMs: 500, probe: probeResult({ externalV4: EXT_IP }) });
    await waitFor(() => clock.pending() > 0);
    await waitFor(() => gw!.pmpLog.length === 1);
    clock.advance(249);
    await new Promise((r) => setTimeout(r, 30));
    expect(gw.pmpLog.length).toBe(1);
    clock.advance(1);
    await waitFor(() => gw!.pmpLog.length === 2);
    clock.advance(250);
    const r = await pr;
    expect(gw.pmpLog.length).toBe(2);
    expect(r).toEqual({ ok: false, error: 'NAT-PMP: no answer to UDP map request within 500 ms' });
  });
});

describe('createMapping / releaseMapping with PCP', () => {
  it('uses PCP when the probe saw PCP but not NAT-PMP', async () => {
    gw = await FakeGateway.start();
    const r = await createMapping({ ...base(gw), probe: probeResult({ pcp: true }) });
    if (!r.ok) throw new Error(r.error);
    expect(r.mapping).toMatchObject({ protocol: 'pcp', internalPort: 41641, externalIp: EXT_IP, externalPort: 54321, lifetimeS: 3600, epoch: 1000 });
    expect(r.mapping.nonce).toHaveLength(12);
    expect(gw.pmpLog).toEqual([]);
    expect(gw.pcpLog).toEqual([
      {
        kind: 'mapRequest',
        clientIp: '127.0.0.1',
        lifetimeS: 7200,
        nonce: r.mapping.nonce,
        protocol: 17,
        internalPort: 41641,
        suggestedExternalPort: 0,
        suggestedExternalIp: '0.0.0.0',
      },
    ]);
  });

  it.each([false, true])('reports NOT_AUTHORIZED with its code (header-only reply: %s)', async (short) => {
    gw = await FakeGateway.start({ pcpMapResult: 2, pcpShortErrors: short });
    const r = await createMapping({ ...base(gw), prefer: 'pcp' });
    expect(r).toMatchObject({ ok: false, resultCode: 2 });
    expect(!r.ok && r.error).toMatch(/PCP MAP request failed: result 2 \(NOT_AUTHORIZED\)/);
  });

  it('ignores replies whose nonce does not match', async () => {
    gw = await FakeGateway.start({ pcpWrongNonce: true });
    const r = await createMapping({ ...base(gw), prefer: 'pcp', timeoutMs: 100 });
    expect(r).toEqual({ ok: false, error: 'PCP: no answer to MAP request within 100 ms' });
  });

  it('falls over to NAT-PMP when the gateway only speaks NAT-PMP', async () => {
    gw = await FakeGateway.start({ pcp: false });
    const r = await createMapping({ ...base(gw), probe: probeResult({ pcp: true }) });
    expect(r.ok && r.mapping.protocol).toBe('natpmp');
  });

  it('release re-sends MAP with the same nonce and lifetime 0', async () => {
    gw = await FakeGateway.start();
    const r = await createMapping({ ...base(gw), prefer: 'pcp' });
    if (!r.ok) throw new Error(r.error);
    await releaseMapping({ gateway: GW, localIp: GW, mapping: r.mapping, serverPort: gw.serverPort });
    expect(gw.pcpLog.at(-1)).toMatchObject({
      kind: 'mapRequest',
      lifetimeS: 0,
      nonce: r.mapping.nonce,
      internalPort: 41641,
      suggestedExternalPort: 54321,
      suggestedExternalIp: EXT_IP,
    });
  });

  it('release never throws, even against a silent gateway', async () => {
    gw = await FakeGateway.start({ silent: true });
    const mapping = { protocol: 'pcp' as const, internalPort: 1, externalIp: EXT_IP, externalPort: 2, lifetimeS: 60, createdAt: 0, epoch: 0 };
    await expect(releaseMapping({ gateway: GW, localIp: GW, mapping, serverPort: gw.serverPort, clock: realClock, timeoutMs: 50 })).resolves.toBeUndefined();
  });
});
