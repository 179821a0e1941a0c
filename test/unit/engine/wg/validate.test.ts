/**
 * What becomes an `ip` argument (engine/wg/validate.ts), and the one transaction that applies a netmap to the
 * data plane (engine/wg/apply.ts): refused input never reaches the system, and a netmap that fails halfway
 * leaves the previous WireGuard peers and routes in place.
 */
import { describe, expect, it } from 'vitest';
import { generateKeyPair } from '../../../../src-main/protocol/crypto/keys.ts';
import { applyDataPlane, ifaceRetryDelayMs, type DataPlaneTarget } from '../../../../src-main/engine/wg/apply.ts';
import type { WgConfig } from '../../../../src-main/engine/wg/config.ts';
import { FakeWgInterface } from '../../../../src-main/engine/wg/fake.ts';
import { WgError } from '../../../../src-main/engine/wg/iface.ts';
import { routeRefusal, validateAddresses, validateMtu, validateRoutes } from '../../../../src-main/engine/wg/validate.ts';

describe('validate', () => {
  it('routes are canonical with host bits cleared; /0 is refused', () => {
    expect(validateRoutes(['10.1.2.3/8', '10.0.0.0/8', 'FD7A::5/48', '100.64.0.2'])).toEqual(['10.0.0.0/8', 'fd7a::/48', '100.64.0.2/32']);
    expect(() => validateRoutes(['::/0'])).toThrow(/default route/);
    expect(() => validateRoutes(['1.2.3'])).toThrow(WgError);
  });

  it('refuses the capture-all pair and anything wider than /8 (IPv4) or /16 (IPv6)', () => {
    for (const p of ['0.0.0.0/1', '128.0.0.0/1', '0.0.0.0/7', '::/1', '8000::/1', '2000::/3', 'fd00::/15']) {
      expect(routeRefusal(p), p).toMatch(/wider than/);
      expect(() => validateRoutes(['100.64.0.2/32', p])).toThrow(expect.objectContaining({ code: 'refused' }));
    }
    for (const p of ['10.0.0.0/8', '100.64.0.2/32', 'fd7a:115c:a1e0::/48', 'fd00::/16']) expect(routeRefusal(p), p).toBeNull();
    expect(routeRefusal('eth0')).toMatch(/not an IP prefix/);
  });

  it('addresses keep their prefix length; bare addresses are hosts', () => {
    expect(validateAddresses(['10.0.0.1/24', '100.64.0.1', 'fd7a::1'])).toEqual(['10.0.0.1/24', '100.64.0.1/32', 'fd7a::1/128']);
    expect(() => validateAddresses(['10.0.0.1/24 dev lo'])).toThrow(WgError);
  });

  it('MTU bounds', () => {
    expect(validateMtu(1280)).toBe(1280);
    expect(() => validateMtu(575)).toThrow(WgError);
    expect(() => validateMtu(1280.5)).toThrow(WgError);
  });
});

describe('applyDataPlane', () => {
  const me = generateKeyPair();
  const p1 = generateKeyPair();
  const p2 = generateKeyPair();
  const cfg = (peers: { key: Uint8Array; ip: string }[]): WgConfig => ({
    privateKey: me.priv,
    listenPort: 40000,
    peers: peers.map((p) => ({ publicKey: p.key, endpoint: { ip: '127.0.0.1', port: 50000 }, allowedIPs: [`${p.ip}/32`], persistentKeepalive: 0 })),
  });

  function rig(failRoutesOn: (routes: string[]) => boolean) {
    const wg = new FakeWgInterface('weft0');
    let magicPeers: string[] = [];
    const steps = {
      setPeers: async (ps: string[]) => {
        magicPeers = [...ps];
      },
      setWg: (c: WgConfig) => wg.set(c),
      setRoutes: async (rs: string[]) => {
        if (failRoutesOn(rs)) throw new Error('RTNETLINK answers: File exists');
        await wg.routes(rs);
      },
    };
    return { wg, steps, magic: () => magicPeers };
  }

  it('applies a netmap in full, then restores it when the next one fails halfway', async () => {
    const r = rig((rs) => rs.includes('100.64.0.3/32'));
    const first: DataPlaneTarget<string> = { peers: ['p1'], wg: cfg([{ key: p1.pub, ip: '100.64.0.2' }]), routes: ['100.64.0.2/32'] };
    expect(await applyDataPlane(r.steps, null, first)).toEqual({ ok: true });
    const second: DataPlaneTarget<string> = {
      peers: ['p1', 'p2'],
      wg: () => cfg([{ key: p1.pub, ip: '100.64.0.2' }, { key: p2.pub, ip: '100.64.0.3' }]),
      routes: ['100.64.0.2/32', '100.64.0.3/32'],
    };
    const out = await applyDataPlane(r.steps, first, second);
    expect(out).toEqual({ ok: false, error: 'RTNETLINK answers: File exists', restored: true, restoreError: null });
    // WireGuard went to two peers and back to one; routes and magicsock are as after the first netmap.
    expect(r.wg.configs.map((c) => c.peers.length)).toEqual([1, 2, 1]);
    expect(r.wg.installedRoutes).toEqual(['100.64.0.2/32']);
    expect(r.magic()).toEqual(['p1']);
  });

  it('a capture-all pair from the netmap is refused by the routes step and nothing of it stays', async () => {
    const r = rig(() => false);
    const first: DataPlaneTarget<string> = { peers: ['p1'], wg: cfg([{ key: p1.pub, ip: '100.64.0.2' }]), routes: ['100.64.0.2/32'] };
    await applyDataPlane(r.steps, null, first);
    const out = await applyDataPlane(r.steps, first, { ...first, routes: ['100.64.0.2/32', '0.0.0.0/1', '128.0.0.0/1'] });
    expect(out).toMatchObject({ ok: false, error: expect.stringMatching(/wider than/), restored: true });
    expect(r.wg.installedRoutes).toEqual(['100.64.0.2/32']);
  });

  it('reports a first netmap that fails as nothing restored', async () => {
    const r = rig(() => true);
    expect(await applyDataPlane(r.steps, null, { peers: [], wg: cfg([]), routes: [] })).toMatchObject({ ok: false, restored: false, restoreError: null });
  });

  it('backs off interface creation 1, 2, 4 … 30 s', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 20].map(ifaceRetryDelayMs)).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  });
});
