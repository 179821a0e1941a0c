import { describe, expect, it } from 'vitest';
import { PortMapKeeper, type PortMapIo } from '../../../../src-main/engine/portmap/keeper.ts';
import type { DefaultGateway } from '../../../../src-main/engine/portmap/gateway.ts';
import type { CreateMappingOptions, PortMapProbe, PortMapping } from '../../../../src-main/engine/portmap/portmapper.ts';
import type { UdpAddr } from '../../../../src-main/protocol/wire/addr.ts';
import { FakeClock } from '../../../sim/fake-clock.ts';

const GW: DefaultGateway = { gateway: '192.168.1.1', localIp: '192.168.1.2', iface: 'eth0', likelyHomeRouter: true };

/** A scripted router: records every call; `answers` says what each create returns. */
function router(opts: { probe?: Partial<PortMapProbe>; grant?: (o: CreateMappingOptions, n: number) => PortMapping | string; gateway?: DefaultGateway | null } = {}) {
  const calls: string[] = [];
  const creates: CreateMappingOptions[] = [];
  const released: PortMapping[] = [];
  let n = 0;
  const io: PortMapIo = {
    findGateway: async () => {
      calls.push('gateway');
      return opts.gateway === undefined ? GW : opts.gateway;
    },
    probe: async () => {
      calls.push('probe');
      return { natpmp: true, pcp: false, upnp: false, externalV4: '198.51.100.2', upnpLocation: null, upnpLocations: [], natpmpEpoch: 1, pcpEpoch: null, at: 0, ...opts.probe };
    },
    create: async (o) => {
      calls.push('create');
      creates.push(o);
      const g = (opts.grant ?? ((c: CreateMappingOptions, i: number) => ({ protocol: 'natpmp', internalPort: c.internalPort, externalIp: '198.51.100.2', externalPort: 40000 + i, lifetimeS: 120, createdAt: 0, epoch: 1 }) as PortMapping))(o, n++);
      return typeof g === 'string' ? { ok: false, error: g } : { ok: true, mapping: g };
    },
    release: async (o) => {
      calls.push('release');
      released.push(o.mapping);
    },
  };
  return { io, calls, creates, released };
}

/** Lets the keeper's promise chain run (its I/O is async even when instant). */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 20; i++) await Promise.resolve();
};

describe('PortMapKeeper', () => {
  it('maps the port, reports the public address, renews at half the lifetime asking for the same port, and releases on stop', async () => {
    const clock = new FakeClock();
    const r = router({ grant: (o) => ({ protocol: 'natpmp', internalPort: o.internalPort, externalIp: '198.51.100.2', externalPort: o.suggestedExternalPort ?? 40001, lifetimeS: 120, createdAt: 0, epoch: 1 }) });
    const k = new PortMapKeeper({ internalPort: 41641, clock, logf: () => {}, io: r.io });
    const seen: (UdpAddr | null)[] = [];
    k.on('changed', (a) => seen.push(a));
    k.start();
    await settle();
    expect(r.calls).toEqual(['gateway', 'probe', 'create']);
    expect(r.creates[0]).toMatchObject({ gateway: '192.168.1.1', localIp: '192.168.1.2', internalPort: 41641, lifetimeS: 7200 });
    expect(seen).toEqual([{ ip: '198.51.100.2', port: 40001 }]);
    clock.advance(59_999);
    await settle();
    expect(r.creates).toHaveLength(1);
    clock.advance(1);
    await settle();
    expect(r.creates).toHaveLength(2);
    expect(r.creates[1]!.suggestedExternalPort).toBe(40001);
    expect(seen).toHaveLength(1); // same address: no change reported
    await k.stop();
    expect(r.released.map((m) => m.externalPort)).toEqual([40001]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('reports a new address when the renewal gets another port', async () => {
    const clock = new FakeClock();
    const r = router();
    const k = new PortMapKeeper({ internalPort: 41641, clock, logf: () => {}, io: r.io });
    const seen: (UdpAddr | null)[] = [];
    k.on('changed', (a) => seen.push(a));
    k.start();
    await settle();
    clock.advance(60_000);
    await settle();
    expect(seen).toEqual([{ ip: '198.51.100.2', port: 40000 }, { ip: '198.51.100.2', port: 40001 }]);
    await k.stop();
  });

  it('with no port-mapping service: no mapping, and retries backing off from 30 s', async () => {
    const clock = new FakeClock();
    const r = router({ probe: { natpmp: false, pcp: false, upnp: false } });
    const logs: string[] = [];
    const k = new PortMapKeeper({ internalPort: 41641, clock, logf: (m) => logs.push(m), io: r.io });
    k.start();
    await settle();
    expect(k.external).toBeNull();
    expect(logs.join('\n')).toMatch(/answers none of NAT-PMP, PCP and UPnP\); trying again in 30 s/);
    clock.advance(30_000);
    await settle();
    expect(r.calls.filter((c) => c === 'probe')).toHaveLength(2);
    clock.advance(59_999);
    await settle();
    expect(r.calls.filter((c) => c === 'probe')).toHaveLength(2);
    clock.advance(1);
    await settle();
    expect(r.calls.filter((c) => c === 'probe')).toHaveLength(3);
    expect(r.calls).not.toContain('create');
    await k.stop();
    expect(r.released).toEqual([]);
  });

  it('a refused renewal drops the mapping (reported as null) and tries again later', async () => {
    const clock = new FakeClock();
    const r = router({ grant: (o, n) => (n === 1 ? 'NAT-PMP: out of resources' : { protocol: 'natpmp', internalPort: o.internalPort, externalIp: '198.51.100.2', externalPort: 40000, lifetimeS: 120, createdAt: 0, epoch: 1 }) });
    const k = new PortMapKeeper({ internalPort: 41641, clock, logf: () => {}, io: r.io });
    const seen: (UdpAddr | null)[] = [];
    k.on('changed', (a) => seen.push(a));
    k.start();
    await settle();
    clock.advance(60_000);
    await settle();
    expect(seen).toEqual([{ ip: '198.51.100.2', port: 40000 }, null]);
    clock.advance(30_000);
    await settle();
    expect(seen).toEqual([{ ip: '198.51.100.2', port: 40000 }, null, { ip: '198.51.100.2', port: 40000 }]);
    await k.stop();
  });

  it('without a default gateway it does not probe', async () => {
    const clock = new FakeClock();
    const r = router({ gateway: null });
    const k = new PortMapKeeper({ internalPort: 41641, clock, logf: () => {}, io: r.io });
    k.start();
    await settle();
    expect(r.calls).toEqual(['gateway']);
    await k.stop();
    expect(clock.pendingTimers).toBe(0);
  });
});
