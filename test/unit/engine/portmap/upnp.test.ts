import { afterEach, describe, expect, it } from 'vitest';
import { UPNP_WANIP1, UPNP_WANIP2, UPNP_WANPPP1 } from '../../../../src-main/protocol/wire/upnp.ts';
import { upnpAddPortMapping, upnpDeletePortMapping, upnpSelectService, type UpnpTarget } from '../../../../src-main/engine/portmap/upnp.ts';
import { FakeIgd, type FakeService } from './fake-igd.ts';

let igd: FakeIgd | null = null;
afterEach(async () => {
  await igd?.close();
  igd = null;
});

async function start(services: FakeService[]): Promise<FakeIgd> {
  igd = await FakeIgd.start(services);
  return igd;
}

const target = (g: FakeIgd, path: string, serviceType = UPNP_WANIP1): UpnpTarget => ({ controlUrl: `http://127.0.0.1:${g.port}${path}`, serviceType });

describe('upnpSelectService', () => {
  it('picks the only WAN connection service without status calls', async () => {
    const g = await start([
      { serviceType: 'urn:schemas-upnp-org:service:Layer3Forwarding:1', path: '/ctl/L3F' },
      { serviceType: UPNP_WANIP1, path: '/ctl/IPConn' },
    ]);
    const r = await upnpSelectService({ location: g.location, gateway: '127.0.0.1' });
    expect(r).toEqual({ ok: true, target: target(g, '/ctl/IPConn'), externalIp: null });
    expect(g.calls).toEqual([]);
  });

  it('prefers connected + public over connected + private over disconnected, whatever the type rank', async () => {
    const g = await start([
      { serviceType: UPNP_WANIP2, path: '/v2', status: 'Disconnected' },
      { serviceType: UPNP_WANIP1, path: '/v1', status: 'Connected', externalIp: '192.168.100.2' },
      { serviceType: UPNP_WANPPP1, path: '/ppp', status: 'Up', externalIp: '198.51.100.9' },
    ]);
    const r = await upnpSelectService({ location: g.location, gateway: '127.0.0.1' });
    expect(r).toEqual({ ok: true, target: target(g, '/ppp', UPNP_WANPPP1), externalIp: '198.51.100.9' });
  });

  it('falls back to the best-ranked service when none is connected', async () => {
    const g = await start([
      { serviceType: UPNP_WANPPP1, path: '/ppp', status: 'Disconnected' },
      { serviceType: UPNP_WANIP1, path: '/v1', status: 'Disconnected' },
    ]);
    const r = await upnpSelectService({ location: g.location });
    expect(r.ok && r.target.controlUrl).toBe(target(g, '/v1').controlUrl);
  });

  it.each([
    ['a location off the gateway', (g: FakeIgd) => g.location, '10.0.0.1', /not the gateway/],
    ['an https location', (g: FakeIgd) => g.location.replace('http:', 'https:'), undefined, /not http/],
    ['a missing description', (g: FakeIgd) => g.location.replace('rootDesc', 'nope'), undefined, /HTTP 404/],
  ])('refuses %s', async (_n, loc, gateway, err) => {
    const g = await start([{ serviceType: UPNP_WANIP1, path: '/v1' }]);
    const r = await upnpSelectService({ location: loc(g), ...(gateway ? { gateway } : {}) });
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toMatch(err);
  });

  it('reports no usable service', async () => {
    const g = await start([{ serviceType: 'urn:schemas-upnp-org:service:Layer3Forwarding:1', path: '/l3' }]);
    const r = await upnpSelectService({ location: g.location });
    expect(!r.ok && r.error).toMatch(/no WANIPConnection/);
  });

  it('times out on a hanging server', async () => {
    const g = await start([{ serviceType: UPNP_WANIP1, path: '/v1' }]);
    g.hang = true;
    const r = await upnpSelectService({ location: g.location, timeoutMs: 100 });
    expect(!r.ok && r.error).toMatch(/timed out after 100 ms/);
  });
});

describe('upnpAddPortMapping / upnpDeletePortMapping', () => {
  it('maps with AddPortMapping and the spec arguments, then reads the external IP', async () => {
    const g = await start([{ serviceType: UPNP_WANIP1, path: '/v1' }]);
    const r = await upnpAddPortMapping({ target: target(g, '/v1'), localIp: '192.168.1.2', internalPort: 41641, suggestedExternalPort: 41641 });
    expect(r).toEqual({ ok: true, mapping: { externalIp: '198.51.100.2', externalPort: 41641, lifetimeS: 7200 } });
    expect(g.calls.map((c) => c.action)).toEqual(['AddPortMapping', 'GetExternalIPAddress']);
    expect(g.calls[0]!.args).toEqual({
      NewRemoteHost: '',
      NewExternalPort: '41641',
      NewProtocol: 'UDP',
      NewInternalPort: '41641',
      NewInternalClient: '192.168.1.2',
      NewEnabled: '1',
      NewPortMappingDescription: 'weft-portmap',
      NewLeaseDuration: '7200',
    });
  });

  it('picks a random port >= 1024 when the suggestion is privileged or absent', async () => {
    const g = await start([{ serviceType: UPNP_WANIP1, path: '/v1' }]);
    const r = await upnpAddPortMapping({ target: target(g, '/v1'), localIp: '192.168.1.2', internalPort: 80, suggestedExternalPort: 80 });
    expect(r.ok && r.mapping.externalPort).toBeGreaterThanOrEqual(1024);
  });

  it.each([402, 725])('retries with a permanent lease after error %i', async (code) => {
    const g = await start([{ serviceType: UPNP_WANIP1, path: '/v1', addFaults: [code] }]);
    const r = await upnpAddPortMapping({ target: target(g, '/v1'), localIp: '192.168.1.2', internalPort: 41641, suggestedExternalPort: 41641 });
    expect(r.ok && r.mapping.lifetimeS).toBe(0);
    expect(g.calls.filter((c) => c.action === 'AddPortMapping').map((c) => c.args['NewLeaseDuration'])).toEqual(['7200', '0']);
  });

  it('retries once with another port on 718 (conflict)', async () => {
    const g = await start([{ serviceType: UPNP_WANIP1, path: '/v1', addFaults: [718] }]);
    const r = await upnpAddPortMapping({ target: target(g, '/v1'), localIp: '192.168.1.2', internalPort: 41641, suggestedExternalPort: 41641 });
    expect(r.ok).toBe(true);
    const ports = g.calls.filter((c) => c.action === 'AddPortMapping').map((c) => Number(c.args['NewExternalPort']));
    expect(ports).toHaveLength(2);
    expect(ports[1]).toBeGreaterThanOrEqual(1024);
  });

  it('reports a refusal with the UPnP error code', async () => {
    const g = await start([{ serviceType: UPNP_WANIP1, path: '/v1', addFaults: [606] }]);
    const r = await upnpAddPortMapping({ target: target(g, '/v1'), localIp: '192.168.1.2', internalPort: 41641 });
    expect(r).toMatchObject({ ok: false, resultCode: 606 });
    expect(!r.ok && r.error).toMatch(/AddPortMapping failed: UPnP error 606/);
  });

  it('uses AddAnyPortMapping on WANIPConnection:2 and takes the reserved port', async () => {
    const g = await start([{ serviceType: UPNP_WANIP2, path: '/v2', anyPort: 50000 }]);
    const r = await upnpAddPortMapping({ target: target(g, '/v2', UPNP_WANIP2), localIp: '192.168.1.2', internalPort: 41641, suggestedExternalPort: 41641 });
    expect(r.ok && r.mapping.externalPort).toBe(50000);
    expect(g.calls.map((c) => c.action)).toEqual(['AddAnyPortMapping', 'GetExternalIPAddress']);
  });

  it('falls back to AddPortMapping when AddAnyPortMapping fails', async () => {
    const g = await start([{ serviceType: UPNP_WANIP2, path: '/v2', anyPort: -501 }]);
    const r = await upnpAddPortMapping({ target: target(g, '/v2', UPNP_WANIP2), localIp: '192.168.1.2', internalPort: 41641, suggestedExternalPort: 41641 });
    expect(r.ok && r.mapping.externalPort).toBe(41641);
    expect(g.calls.map((c) => c.action)).toEqual(['AddAnyPortMapping', 'AddPortMapping', 'GetExternalIPAddress']);
  });

  it.each(['0.0.0.0', '127.0.0.1', 'garbage'])('rejects external address %s and deletes the mapping', async (ip) => {
    const g = await start([{ serviceType: UPNP_WANIP1, path: '/v1', externalIp: ip }]);
    const r = await upnpAddPortMapping({ target: target(g, '/v1'), localIp: '192.168.1.2', internalPort: 41641, suggestedExternalPort: 41641 });
    expect(r.ok).toBe(false);
    expect(g.calls.at(-1)).toEqual({ path: '/v1', action: 'DeletePortMapping', args: { NewRemoteHost: '', NewExternalPort: '41641', NewProtocol: 'UDP' } });
  });

  it('deletes a mapping', async () => {
    const g = await start([{ serviceType: UPNP_WANIP1, path: '/v1' }]);
    expect(await upnpDeletePortMapping({ target: target(g, '/v1'), externalPort: 41641 })).toBe(true);
    expect(await upnpDeletePortMapping({ target: target(g, '/nope'), externalPort: 41641 })).toBe(false);
  });
});
