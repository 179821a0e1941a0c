import { describe, expect, it } from 'vitest';
import { EndpointType, localEndpoints, mergeEndpoints, sameEndpointSet } from '../../../../src-main/engine/magicsock/endpoints.ts';

const ifaces = {
  lo: [{ address: '127.0.0.1', family: 'IPv4', internal: true }],
  eth0: [
    { address: '192.168.1.2', family: 'IPv4', internal: false },
    { address: 'fe80::1', family: 'IPv6', internal: false },
    { address: '169.254.3.4', family: 'IPv4', internal: false },
  ],
  weft0: [{ address: '100.64.0.7', family: 'IPv4', internal: false }],
  eth1: [{ address: '10.0.0.5', family: 4, internal: false }],
};

describe('local endpoints', () => {
  it('lists non-internal IPv4 addresses with the socket port, skipping link-local and tailnet addresses', () => {
    expect(localEndpoints(ifaces, 41641).map((e) => `${e.addr.ip}:${e.addr.port}`)).toEqual(['192.168.1.2:41641', '10.0.0.5:41641']);
    expect(localEndpoints(ifaces, 41641, ['eth1']).map((e) => e.addr.ip)).toEqual(['192.168.1.2']);
    expect(localEndpoints(ifaces, 1).every((e) => e.type === EndpointType.Local)).toBe(true);
  });

  it('merges with STUN endpoints first and drops duplicates', () => {
    const stun = [{ addr: { ip: '198.51.100.2', port: 41641 }, type: EndpointType.Stun }];
    const local = localEndpoints(ifaces, 41641);
    const merged = mergeEndpoints(stun, local, [{ addr: { ip: '198.51.100.2', port: 41641 }, type: EndpointType.Local }]);
    expect(merged.map((e) => e.type)).toEqual([EndpointType.Stun, EndpointType.Local, EndpointType.Local]);
    expect(sameEndpointSet(merged, [...merged].reverse())).toBe(true);
    expect(sameEndpointSet(merged, local)).toBe(false);
  });
});
