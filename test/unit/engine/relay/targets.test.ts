import { describe, expect, it } from 'vitest';
import { DerpMap } from '../../../../src-shared/model/derp-map.ts';
import { derpTargets, stunTargets, targetKey } from '../../../../src-main/engine/relay/targets.ts';

const map = DerpMap.parse({
  Regions: {
    '901': {
      RegionID: 901,
      RegionCode: 'lab',
      Nodes: [
        { Name: '901s', RegionID: 901, HostName: 'stun.lab', IPv4: '203.0.113.12', STUNOnly: true, STUNPort: 3479 },
        { Name: '901a', RegionID: 901, HostName: '203.0.113.11', IPv4: '203.0.113.11', DERPPort: 0, InsecureForTests: true },
      ],
    },
    '2': { RegionID: 2, RegionCode: 'sfo', Nodes: [{ Name: '2a', RegionID: 2, HostName: 'derp2.example.com', CertName: 'cert.example.com', IPv4: 'none', STUNPort: -1, DERPPort: 8443 }] },
    '3': { RegionID: 3, RegionCode: 'empty', Nodes: null },
  },
});

describe('derpTargets', () => {
  it('dials the first non-STUN-only node: its IPv4, port 443 by default, TLS, InsecureForTests kept, no SNI for an IP', () => {
    const t = derpTargets(map);
    expect(t.get(901)).toEqual({ regionId: 901, host: '203.0.113.11', port: 443, secure: true, serverName: null, insecure: true });
  });

  it('verifies against CertName, dials the host name when IPv4 is "none", and keeps an explicit port', () => {
    expect(derpTargets(map).get(2)).toEqual({ regionId: 2, host: 'derp2.example.com', port: 8443, secure: true, serverName: 'cert.example.com', insecure: false });
  });

  it('skips regions without a DERP node, and the plain-HTTP debug switch turns TLS off', () => {
    const t = derpTargets(map, true);
    expect([...t.keys()].sort()).toEqual([2, 901]);
    expect(t.get(901)?.secure).toBe(false);
    expect(derpTargets(null).size).toBe(0);
  });

  it('targetKey changes when anything that matters for the connection changes', () => {
    const a = derpTargets(map).get(901)!;
    expect(targetKey(a)).toBe(targetKey({ ...a }));
    expect(targetKey(a)).not.toBe(targetKey({ ...a, port: 444 }));
    expect(targetKey(a)).not.toBe(targetKey({ ...a, insecure: false }));
  });
});

describe('stunTargets', () => {
  it('lists every IPv4 STUN node with its port, and skips nodes with STUN off or no usable address', () => {
    expect(stunTargets(map)).toEqual([
      { regionId: 901, addr: { ip: '203.0.113.12', port: 3479 } },
      { regionId: 901, addr: { ip: '203.0.113.11', port: 3478 } },
    ]);
  });
});
