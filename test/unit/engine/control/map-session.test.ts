import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { NodeId } from '../../../../src-shared/model/ids.ts';
import { applyMapResponse, emptyNetMap, isKeyExpired, sortedPeers, type ApplyResult, type NetMap } from '../../../../src-main/engine/control/map-session.ts';
import { formatGoTime, parseGoTime, ZERO_TIME } from '../../../../src-main/protocol/control/tailcfg.ts';
import { fixture, fixtureObject } from './control-fixtures.ts';

type Ok = Extract<ApplyResult, { kind: 'ok' }>;

/** Applies a message and checks that `prev` came out untouched, whatever the outcome. */
function apply(prev: NetMap, raw: unknown, nowMs?: number): ApplyResult {
  const before = structuredClone(prev);
  const r = applyMapResponse(prev, raw, nowMs === undefined ? {} : { nowMs });
  expect(prev).toEqual(before);
  return r;
}

function ok(prev: NetMap, raw: unknown, nowMs?: number): Ok {
  const r = apply(prev, raw, nowMs);
  if (r.kind !== 'ok') throw new Error(`unexpected error: ${r.reason}`);
  return r;
}

function peer(nm: NetMap, id: string) {
  const p = nm.peers.get(id as NodeId);
  if (!p) throw new Error(`no peer ${id}`);
  return p;
}

const ids = (nm: NetMap): string[] => sortedPeers(nm).map((p) => p.ID);

describe('a headscale session, message by message', () => {
  // Each step applies one fixture to the previous step's netmap and checks what changed.
  interface Step {
    name: string;
    check: (r: Ok, prev: NetMap) => void;
  }
  const steps: Step[] = [
    {
      name: 'keepalive',
      check: (r) => {
        expect(r.keepAlive).toBe(true);
        expect(r.netmap.self).toBeNull();
        expect(r.netmap.lastSeq).toBe(1);
      },
    },
    {
      name: 'initial-map',
      check: (r) => {
        const nm = r.netmap;
        expect(r.keepAlive).toBe(false);
        expect(nm.self?.ID).toBe('1');
        expect(nm.self?.HomeDERP).toBe(999);
        expect(ids(nm)).toEqual(['2', '3']);
        expect(r.changed).toMatchObject({ self: true, peersAdded: ['2', '3'], peersRemoved: [], peersChanged: [], derpMap: true, dnsConfig: true, packetFilter: true, userProfiles: true });
        expect(Object.keys(nm.derpMap!.Regions).sort()).toEqual(['1', '999']);
        expect(nm.derpMap!.HomeParams?.RegionScore).toEqual({ '999': 0.5 });
        expect(nm.domain).toBe('hs.example.com');
        expect([...nm.userProfiles.keys()]).toEqual([1, 2]);
        expect(nm.dnsConfig?.Resolvers?.map((x) => x.Addr)).toEqual(['1.1.1.1', 'https://dns.nextdns.io/abc123']);
        expect(nm.packetFilter).toHaveLength(1);
        expect([...nm.packetFilters.keys()]).toEqual(['base']);
        expect(nm.sshPolicy).toEqual({ rules: [] });
        expect(nm.collectServices).toBe(false);
        expect(nm.controlTime).toBe('2026-07-21T13:28:35.123456789Z');
        expect(r.debug).toEqual({ DisableLogTail: true });
        expect(peer(nm, '2').Expired).toBe(false);
        expect(peer(nm, '3').HomeDERP).toBe(999);
      },
    },
    {
      name: 'keepalive-0.26',
      check: (r, prev) => {
        expect(r.keepAlive).toBe(true);
        expect(r.netmap.controlTime).toBe('2026-07-21T13:29:30Z');
        expect(r.netmap.peers).toBe(prev.peers);
        expect(r.netmap.self).toBe(prev.self);
        expect(r.changed).toMatchObject({ self: false, peersAdded: [], peersRemoved: [], peersChanged: [], derpMap: false });
      },
    },
    {
      name: 'peers-changed',
      check: (r) => {
        expect(r.changed).toMatchObject({ self: false, peersAdded: ['4'], peersChanged: ['2'], peersRemoved: [], userProfiles: true });
        expect(ids(r.netmap)).toEqual(['2', '3', '4']);
        expect(peer(r.netmap, '2').Endpoints).toEqual(['198.51.100.7:41641']);
        expect(peer(r.netmap, '2').Hostinfo?.Hostname).toBe('server-renamed');
        expect(r.netmap.userProfiles.get(2)?.DisplayName).toBe('Tagged devices (renamed)');
        expect(r.netmap.userProfiles.get(1)?.LoginName).toBe('alice@example.com');
        expect(r.netmap.controlTime).toBe('2026-07-21T13:30:00Z');
      },
    },
    {
      name: 'peers-removed',
      check: (r) => {
        expect(r.changed).toMatchObject({ peersAdded: [], peersRemoved: ['3'], peersChanged: [] });
        expect(ids(r.netmap)).toEqual(['2', '4']);
      },
    },
    {
      name: 'patch-key-rotation',
      check: (r, prev) => {
        expect(r.changed.peersChanged).toEqual(['2']);
        const before = peer(prev, '2');
        const after = peer(r.netmap, '2');
        expect(after.Key).not.toBe(before.Key);
        expect(after.DiscoKey).not.toBe(before.DiscoKey);
        expect(after.KeyExpiry).toBe('2027-06-30T00:00:00Z');
        expect(after.Endpoints).toEqual(['198.51.100.7:41642']);
        expect(after.HomeDERP).toBe(before.HomeDERP);
        expect(after.Hostinfo).toBe(before.Hostinfo);
        expect(r.netmap.peers.get('4' as NodeId)).toBe(prev.peers.get('4' as NodeId));
      },
    },
    {
      name: 'patch-derp-endpoints',
      check: (r) => {
        expect(r.changed.peersChanged).toEqual(['2']);
        expect(peer(r.netmap, '2').HomeDERP).toBe(999);
        expect(peer(r.netmap, '2').Endpoints).toEqual(['198.51.100.8:41641', '10.1.1.7:41641']);
        expect(r.netmap.peers.has('99' as NodeId)).toBe(false);
      },
    },
    {
      name: 'patch-online',
      check: (r) => {
        expect(r.changed.peersChanged).toEqual(['4']);
        expect(peer(r.netmap, '4')).toMatchObject({ Online: false, LastSeen: '2026-07-21T13:31:00Z' });
      },
    },
    {
      name: 'online-change',
      check: (r) => {
        expect(r.changed.peersChanged).toEqual(['2', '4']);
        expect(peer(r.netmap, '2').Online).toBe(false);
        expect(peer(r.netmap, '4').Online).toBe(true);
        expect(r.netmap.peers.has('99' as NodeId)).toBe(false);
      },
    },
    {
      name: 'peer-seen-change',
      check: (r) => {
        expect(r.changed.peersChanged).toEqual(['2', '4']);
        expect(peer(r.netmap, '2').LastSeen).toBe(formatGoTime(parseGoTime('2026-07-21T13:32:00Z')!));
        expect(peer(r.netmap, '4').LastSeen).toBeUndefined();
      },
    },
    {
      name: 'derp-map-update',
      check: (r) => {
        expect(r.changed.derpMap).toBe(true);
        expect(Object.keys(r.netmap.derpMap!.Regions)).toEqual(['999']);
        expect(r.netmap.derpMap!.Regions['999']!.Nodes![0]!.HostName).toBe('derp.hs.example.com');
        expect(r.netmap.derpMap!.HomeParams?.RegionScore).toEqual({ '999': 0.5 });
      },
    },
    {
      name: 'derp-map-homeparams-only',
      check: (r, prev) => {
        expect(r.changed.derpMap).toBe(true);
        expect(r.netmap.derpMap!.Regions).toBe(prev.derpMap!.Regions);
        expect(r.netmap.derpMap!.HomeParams?.RegionScore).toEqual({ '1': 2 });
      },
    },
    {
      name: 'full-peers-again',
      check: (r) => {
        expect(r.changed).toMatchObject({ peersAdded: ['5'], peersRemoved: ['4'], peersChanged: ['2'] });
        expect(ids(r.netmap)).toEqual(['2', '5']);
        const p5 = peer(r.netmap, '5');
        expect(p5.Expired).toBe(true); // KeyExpiry 2026-01-01 is before this message's ControlTime
        expect(p5.AllowedIPs).toEqual(p5.Addresses);
        // A full list carries the whole node: the earlier patches to peer 2 are gone.
        expect(peer(r.netmap, '2').KeyExpiry).toBe('2026-12-31T00:00:00Z');
      },
    },
    {
      name: 'policy-change',
      check: (r) => {
        expect(r.changed).toMatchObject({ peersRemoved: ['5'], peersChanged: [], peersAdded: [], dnsConfig: true, packetFilter: true, derpMap: false, self: false });
        expect(r.netmap.dnsConfig?.Resolvers).toEqual([{ Addr: '9.9.9.9' }]);
        expect(r.netmap.packetFilter).toEqual([
          { SrcIPs: ['100.64.0.2/32', 'fd7a:115c:a1e0::2/128'], DstPorts: [{ IP: '100.64.0.1/32', Ports: { First: 22, Last: 22 } }], IPProto: [6] },
        ]);
        expect(r.netmap.sshPolicy).toHaveProperty('rules');
        expect(r.netmap.domain).toBe('hs.example.com');
      },
    },
    {
      name: 'self-update',
      check: (r) => {
        expect(r.changed).toMatchObject({ self: true, peersAdded: [], peersRemoved: [], peersChanged: [] });
        expect(r.netmap.self?.Endpoints).toEqual(['192.0.2.11:41641']);
      },
    },
    {
      name: 'ping-request',
      check: (r) => {
        expect(r.keepAlive).toBe(false);
        expect(r.pingRequest).toMatchObject({ URL: 'https://hs.example.com/machine/ping-response?id=abc123', Log: true, Types: '', URLIsNoise: false });
        expect(r.netmap.lastPingURL).toBe('https://hs.example.com/machine/ping-response?id=abc123');
      },
    },
  ];

  let nm: NetMap = emptyNetMap;
  it.each(steps)('applies $name', ({ name, check }) => {
    const r = ok(nm, fixture(name));
    check(r, nm);
    expect(r.netmap.lastSeq).toBe(nm.lastSeq + 1);
    nm = r.netmap;
  });

  it.each([
    ['bad-peers-not-array', /Peers: .*expected array/],
    ['bad-key-prefix', /PeersChanged\.0\.Key: expected "nodekey:"/],
    ['bad-time', /PeersChanged\.0\.KeyExpiry: expected an RFC 3339 time/],
    ['bad-online-change-key', /OnlineChange: map key "node-2" is not a node ID/],
  ])('rejects %s after the session is established, keeping the netmap', (name, reason) => {
    const r = apply(nm, fixture(name));
    expect(r).toEqual({ kind: 'error', reason: expect.stringMatching(reason) as unknown });
  });

  it('suppresses a repeated PingRequest URL', () => {
    const r = ok(nm, fixture('ping-request'));
    expect(r.pingRequest).toBeUndefined();
  });
});

describe('first message', () => {
  it('must contain Node', () => {
    const r = apply(emptyNetMap, fixture('bad-first-without-node'));
    expect(r).toEqual({ kind: 'error', reason: expect.stringMatching(/first map message has no Node/) as unknown });
  });

  it('may be preceded by keep-alives, which still count and carry ControlTime', () => {
    const r = ok(ok(emptyNetMap, fixture('keepalive-0.26')).netmap, fixture('initial-map-0.29'));
    expect(r.netmap.self?.ID).toBe('7');
    expect(r.netmap.lastSeq).toBe(2);
  });

  it('from headscale 0.29 with no other nodes omits Peers and leaves the peer table empty', () => {
    const r = ok(emptyNetMap, fixture('initial-map-0.29'));
    expect(r.netmap.peers.size).toBe(0);
    expect(r.changed.peersAdded).toEqual([]);
    expect(Object.keys(r.netmap.derpMap!.Regions)).toEqual(['999']);
    expect(r.netmap.self?.AllowedIPs).toEqual(['100.64.0.7/32']);
  });

  it('treats a malformed first message as an error, never a throw', () => {
    expect(apply(emptyNetMap, fixture('bad-peers-not-array')).kind).toBe('error');
    expect(apply(emptyNetMap, 'not an object').kind).toBe('error');
  });
});

describe('delta rules', () => {
  const base = ok(emptyNetMap, fixture('initial-map')).netmap;
  const rawPeers = fixtureObject('initial-map').Peers as Record<string, unknown>[];
  const peer2 = rawPeers[0]!;

  it('a non-empty Peers replaces the table and overrides the other peer deltas in the same message', () => {
    const r = ok(base, {
      Peers: [peer2],
      PeersRemoved: [2],
      PeersChanged: [{ ...peer2, ID: 8 }],
      PeersChangedPatch: [{ NodeID: 2, DERPRegion: 7 }],
      OnlineChange: { '2': false },
    });
    expect(ids(r.netmap)).toEqual(['2']);
    expect(peer(r.netmap, '2').HomeDERP).toBe(1);
    expect(peer(r.netmap, '2').Online).toBe(true);
    expect(r.changed).toMatchObject({ peersRemoved: ['3'], peersAdded: [], peersChanged: [] });
  });

  it('an empty Peers list is not a replacement (omitempty: empty means absent)', () => {
    const r = ok(base, { Peers: [], PeersRemoved: [3] });
    expect(ids(r.netmap)).toEqual(['2']);
  });

  it('applies PeersRemoved before PeersChanged, so a removed-and-re-added peer is a change', () => {
    const r = ok(base, { PeersRemoved: [2], PeersChanged: [{ ...peer2, Endpoints: ['192.0.2.99:1'] }] });
    expect(r.changed).toMatchObject({ peersRemoved: [], peersAdded: [], peersChanged: ['2'] });
    expect(peer(r.netmap, '2').Endpoints).toEqual(['192.0.2.99:1']);
  });

  it('applies PeersChangedPatch after PeersChanged', () => {
    const r = ok(base, { PeersChanged: [{ ...peer2, ID: 6, StableID: '6' }], PeersChangedPatch: [{ NodeID: 6, Online: false }] });
    expect(peer(r.netmap, '6').Online).toBe(false);
    expect(r.changed.peersAdded).toEqual(['6']);
  });

  it('ignores removals, patches and online changes for unknown peers', () => {
    const r = ok(base, { PeersRemoved: [42], PeersChangedPatch: [{ NodeID: 42, Online: true }], OnlineChange: { '43': true }, PeerSeenChange: { '44': false } });
    expect(r.netmap.peers).toBe(base.peers);
    expect(r.changed).toMatchObject({ peersAdded: [], peersRemoved: [], peersChanged: [] });
  });

  it('keeps the peer table identical when a PeersChanged node is unchanged', () => {
    const r = ok(base, { PeersChanged: [peer2] });
    expect(r.netmap.peers).toBe(base.peers);
    expect(r.changed.peersChanged).toEqual([]);
  });

  it.each([
    ['zero DERPRegion and Cap leave them', { DERPRegion: 0, Cap: 0 }, { HomeDERP: 1, Cap: 130 }],
    ['non-zero DERPRegion and Cap set them', { DERPRegion: 999, Cap: 131 }, { HomeDERP: 999, Cap: 131 }],
    ['an empty Endpoints list clears them', { Endpoints: [] }, { Endpoints: [] }],
    ['a null Endpoints leaves them', { Endpoints: null }, { Endpoints: ['198.51.100.7:41641', '10.1.1.7:41641'] }],
    ['CapMap replaces', { CapMap: { 'cap:x': null } }, { CapMap: { 'cap:x': null } }],
    ['KeySignature replaces', { KeySignature: 'c2ln' }, { KeySignature: 'c2ln' }],
    ['a zero KeyExpiry means no expiry', { KeyExpiry: ZERO_TIME }, { KeyExpiry: ZERO_TIME, Expired: false }],
  ])('patch: %s', (_name, patch, want) => {
    const r = ok(base, { PeersChangedPatch: [{ NodeID: 2, ...patch }] });
    expect(peer(r.netmap, '2')).toMatchObject(want);
  });

  it('a keep-alive applies nothing but ControlTime, PingRequest and PopBrowserURL', () => {
    const r = ok(base, {
      KeepAlive: true,
      ControlTime: '2026-07-21T14:00:00Z',
      Domain: 'other.example.com',
      PeersRemoved: [2, 3],
      DNSConfig: { Proxied: false },
      PopBrowserURL: 'https://hs.example.com/a',
      PingRequest: { URL: 'https://hs.example.com/machine/ping-response?id=k' },
    });
    expect(r.keepAlive).toBe(true);
    expect(r.netmap).toEqual({
      ...base,
      controlTime: '2026-07-21T14:00:00Z',
      lastPingURL: 'https://hs.example.com/machine/ping-response?id=k',
      lastPopBrowserURL: 'https://hs.example.com/a',
      lastSeq: base.lastSeq + 1,
    });
    expect(r.popBrowserURL).toBe('https://hs.example.com/a');
    expect(r.pingRequest?.URL).toBe('https://hs.example.com/machine/ping-response?id=k');
    const again = ok(r.netmap, { KeepAlive: true, PopBrowserURL: 'https://hs.example.com/a' });
    expect(again.popBrowserURL).toBeUndefined();
  });

  it('keeps persistent sub-objects when a delta omits them', () => {
    const r = ok(base, { PeersRemoved: [3], Domain: '', CollectServices: null, DNSConfig: null });
    for (const k of ['derpMap', 'dnsConfig', 'packetFilter', 'packetFilters', 'sshPolicy', 'domain', 'userProfiles', 'self'] as const) {
      expect(r.netmap[k]).toBe(base[k]);
    }
    expect(r.changed).toMatchObject({ self: false, derpMap: false, dnsConfig: false, packetFilter: false, userProfiles: false });
  });

  it('sets CollectServices and Health when present', () => {
    const r = ok(base, { CollectServices: true, Health: ['DNS is broken'] });
    expect(r.netmap.collectServices).toBe(true);
    expect(r.netmap.health).toEqual(['DNS is broken']);
    expect(ok(r.netmap, { Health: [] }).netmap.health).toEqual([]);
    expect(ok(r.netmap, { Health: null }).netmap.health).toEqual(['DNS is broken']);
  });

  it('ignores a zero ControlTime', () => {
    expect(ok(base, { ControlTime: ZERO_TIME }).netmap.controlTime).toBe(base.controlTime);
  });
});

describe('packet filters', () => {
  const rule = (src: string) => ({ SrcIPs: [src], DstPorts: [{ IP: '*', Ports: { First: 0, Last: 65535 } }] });
  const start = ok(emptyNetMap, { ...fixtureObject('initial-map-0.29'), PacketFilters: { base: [rule('b')], zeta: [rule('z')], alpha: [rule('a')] } }).netmap;
  const srcs = (nm: NetMap): string[] => nm.packetFilter.flatMap((r) => r.SrcIPs);

  it.each([
    ['concatenates chunks in sorted-name order', {}, ['a', 'b', 'z']],
    ['a null chunk deletes that name', { PacketFilters: { zeta: null } }, ['a', 'b']],
    ['"*": null clears all chunks before the rest apply', { PacketFilters: { '*': null, mid: [rule('m')] } }, ['m']],
    ['an empty base means no rules (block all)', { PacketFilters: { base: [], alpha: null, zeta: null } }, []],
    ['the legacy PacketFilter replaces "base"', { PacketFilter: [rule('legacy')] }, ['a', 'legacy', 'z']],
  ])('%s', (_name, msg, want) => {
    const r = ok(start, msg);
    expect(srcs(r.netmap)).toEqual(want);
  });

  it('"*" with a non-null value is not a clear', () => {
    expect(srcs(ok(start, { PacketFilters: { '*': [rule('star')] } }).netmap)).toEqual(['a', 'b', 'z']);
  });
});

describe('DERP map merging', () => {
  const start = ok(emptyNetMap, fixture('initial-map')).netmap;

  it('a DERPMap with null Regions keeps the old regions and OmitDefaultRegions', () => {
    const withOmit = ok(start, { DERPMap: { ...(fixtureObject('initial-map').DERPMap as object), omitDefaultRegions: true } }).netmap;
    const r = ok(withOmit, { DERPMap: { HomeParams: { RegionScore: null } } });
    expect(r.netmap.derpMap!.Regions).toBe(withOmit.derpMap!.Regions);
    expect(r.netmap.derpMap!.OmitDefaultRegions).toBe(true);
    // HomeParams present but its RegionScore null: the old scores stay.
    expect(r.netmap.derpMap!.HomeParams?.RegionScore).toEqual({ '999': 0.5 });
  });

  it('an empty (non-null) Regions map replaces the regions, as Go does', () => {
    const r = ok(start, { DERPMap: { Regions: {} } });
    expect(r.netmap.derpMap!.Regions).toEqual({});
    expect(r.changed.derpMap).toBe(true);
  });

  it('reports no change when the same DERP map is sent again', () => {
    expect(ok(start, { DERPMap: fixtureObject('initial-map').DERPMap }).changed.derpMap).toBe(false);
  });
});

describe('key expiry', () => {
  const rawPeer = (fixtureObject('initial-map').Peers as Record<string, unknown>[])[0]!;
  const start = ok(emptyNetMap, fixture('initial-map')).netmap;

  it('marks nodes expired against the caller-supplied control-corrected time', () => {
    const later = Date.parse('2027-01-02T00:00:00Z');
    const r = ok(start, { PeersChanged: [rawPeer] }, later);
    expect(peer(r.netmap, '2').Expired).toBe(true);
    expect(isKeyExpired(peer(r.netmap, '2'), later)).toBe(true);
    expect(isKeyExpired({ KeyExpiry: ZERO_TIME }, later)).toBe(false);
  });

  it('keeps Expired as the server set it when the key has not expired locally', () => {
    const r = ok(start, { PeersChanged: [{ ...rawPeer, Expired: true }] });
    expect(peer(r.netmap, '2').Expired).toBe(true);
  });

  it('a KeyExpiry patch recomputes Expired (a rotated key is live again)', () => {
    const expired = ok(start, { PeersChanged: [{ ...rawPeer, Expired: true }] }).netmap;
    const r = ok(expired, { PeersChangedPatch: [{ NodeID: 2, KeyExpiry: '2028-01-01T00:00:00Z' }] });
    expect(peer(r.netmap, '2').Expired).toBe(false);
    const r2 = ok(expired, { PeersChangedPatch: [{ NodeID: 2, KeyExpiry: '2026-07-01T00:00:00Z' }] });
    expect(peer(r2.netmap, '2').Expired).toBe(true);
  });

  it('marks the self node too', () => {
    const self = fixtureObject('initial-map').Node as Record<string, unknown>;
    const r = ok(start, { Node: { ...self, KeyExpiry: '2026-07-01T00:00:00Z' } });
    expect(r.netmap.self?.Expired).toBe(true);
    expect(r.changed.self).toBe(true);
  });
});

describe('robustness (property)', () => {
  const established = ok(emptyNetMap, fixture('initial-map')).netmap;

  it('never throws on arbitrary JSON, before or after the first map', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        for (const prev of [emptyNetMap, established]) {
          const r = applyMapResponse(prev, v);
          expect(['ok', 'error']).toContain(r.kind);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('never throws when any top-level field of a real message is replaced by arbitrary JSON', () => {
    const keys = ['Node', 'Peers', 'PeersChanged', 'PeersRemoved', 'PeersChangedPatch', 'OnlineChange', 'PeerSeenChange', 'DERPMap', 'DNSConfig', 'PacketFilters', 'UserProfiles', 'ControlTime', 'KeepAlive'];
    fc.assert(
      fc.property(fc.constantFrom(...keys), fc.jsonValue(), (key, v) => {
        const msg = { ...fixtureObject('initial-map'), [key]: v };
        const r = applyMapResponse(established, msg);
        if (r.kind === 'ok') expect(r.netmap.lastSeq).toBe(established.lastSeq + 1);
        else expect(r.reason).toMatch(/\S/);
      }),
      { numRuns: 300 },
    );
  });
});
