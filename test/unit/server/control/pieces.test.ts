/**
 * The pure pieces of the control plane: the peer diff (patch or whole node), stored zstd frames as the client
 * decodes them, the persisted Noise key, the embedded DERP region and the Followup URL parser.
 */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeMapBody, encodeZstdStored } from '../../../../src-main/protocol/control/stream-framing.ts';
import { embeddedDerpMap } from '../../../../src-main/server/control/derp-map.ts';
import { diffChanged, diffSession, fullMap, nodeFingerprint, peerPatch, wireNode, type MapperConfig, type NodeView, type SessionView, type Snapshot, type WireNode, type WirePeerChange } from '../../../../src-main/server/control/mapper.ts';
import { loadOrCreateNoiseKey, NOISE_KEY_FILE } from '../../../../src-main/server/control/noise-key.ts';
import { followupId } from '../../../../src-main/server/control/register.ts';
import type { NodeRecord } from '../../../../src-main/server/store/types.ts';
import { nodeRecord } from '../store/store-contract.ts';

const base: WireNode = {
  ID: 2,
  StableID: '2',
  Name: 'beta',
  User: 1,
  Key: `nodekey:${'1'.repeat(64)}`,
  Machine: `mkey:${'2'.repeat(64)}`,
  Addresses: ['100.64.0.2/32'],
  AllowedIPs: ['100.64.0.2/32'],
  Created: '2026-01-01T00:00:00.000Z',
  Cap: 130,
  Online: true,
  MachineAuthorized: true,
};

describe('peerPatch', () => {
  it.each([
    ['online → offline with LastSeen', { Online: false, LastSeen: '2026-01-02T00:00:00.000Z' }, { NodeID: 2, Online: false, LastSeen: '2026-01-02T00:00:00.000Z' }],
    ['endpoints', { Endpoints: ['192.0.2.1:1'] }, { NodeID: 2, Endpoints: ['192.0.2.1:1'] }],
    ['home DERP', { HomeDERP: 999 }, { NodeID: 2, DERPRegion: 999 }],
    ['key rotation', { Key: `nodekey:${'3'.repeat(64)}`, DiscoKey: `discokey:${'4'.repeat(64)}` }, { NodeID: 2, Key: `nodekey:${'3'.repeat(64)}`, DiscoKey: `discokey:${'4'.repeat(64)}` }],
  ] satisfies [string, Partial<WireNode>, WirePeerChange][])('patches %s', (_n, change, want) => {
    expect(peerPatch(base, { ...base, ...change })).toEqual(want);
  });

  it.each([
    ['a new hostinfo', { Hostinfo: { Hostname: 'b2' } }],
    ['a rename', { Name: 'beta-2' }],
    ['expiry that flips Expired', { KeyExpiry: '2020-01-01T00:00:00.000Z', Expired: true, MachineAuthorized: false }],
  ] satisfies [string, Partial<WireNode>][])('needs the whole node for %s', (_n, change) => {
    expect(peerPatch(base, { ...base, ...change })).toBeNull();
  });

  it('cannot clear HomeDERP with a patch', () => {
    expect(peerPatch({ ...base, HomeDERP: 1 }, base)).toBeNull();
  });
});

const rec = nodeRecord;

describe('fullMap and diffSession', () => {
  const cfg: MapperConfig = { domain: 'hs.example', baseDomain: 'tail.example', derpMap: { Regions: {} } };
  const users = new Map([[1, { id: 1, name: 'alice', createdAt: 0 }]]);
  const snap = (nodes: NodeRecord[]): Snapshot => ({ nodes: nodes.map((record) => ({ record, online: true })), users });

  it('sends self, sorted peers with /32 and /128, and omits Peers when alone', () => {
    const m = fullMap(snap([rec(3), rec(1), rec(2)]), 1, cfg, 130, 0)!;
    expect(m.msg.Node?.Name).toBe('n1.tail.example.');
    expect(m.msg.Peers?.map((p) => p.ID)).toEqual([2, 3]);
    expect(m.msg.Peers?.[0]?.AllowedIPs).toEqual(['100.64.0.2/32', 'fd7a:115c:a1e0::2/128']);
    expect(m.msg.UserProfiles).toEqual([{ ID: 1, LoginName: 'alice', DisplayName: 'alice', ProfilePicURL: '' }]);
    expect(fullMap(snap([rec(1)]), 1, cfg, 130, 0)!.msg).not.toHaveProperty('Peers');
    expect(fullMap(snap([rec(2)]), 1, cfg, 130, 0)).toBeUndefined();
  });

  it('diffs into PeersChanged, PeersRemoved and PeersChangedPatch; nothing when nothing changed', () => {
    const first = fullMap(snap([rec(1), rec(2), rec(3)]), 1, cfg, 130, 0)!;
    expect(diffSession(first.view, snap([rec(1), rec(2), rec(3)]), 1, cfg, 130, 5)).toBeNull();
    const d = diffSession(first.view, snap([rec(1), rec(2, { endpoints: ['192.0.2.2:2'] }), rec(4)]), 1, cfg, 130, 5)!;
    expect(d.msg.PeersRemoved).toEqual([3]);
    expect(d.msg.PeersChanged?.map((p) => p.ID)).toEqual([4]);
    expect(d.msg.PeersChangedPatch).toEqual([{ NodeID: 2, Endpoints: ['192.0.2.2:2'] }]);
    expect(d.msg).not.toHaveProperty('Node');
    const self = diffSession(d.view, snap([rec(1, { endpoints: ['192.0.2.1:1'] }), rec(2, { endpoints: ['192.0.2.2:2'] }), rec(4)]), 1, cfg, 130, 6)!;
    expect(Object.keys(self.msg).sort()).toEqual(['ControlTime', 'Node']);
  });

  it('diffChanged (over the changed nodes only) sends what diffSession (over all nodes) sends, step by step', () => {
    // A deterministic random walk: nodes join, leave, go on- and offline, move endpoints, expire, change user.
    let seed = 42;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const users2 = new Map([...users, [2, { id: 2, name: 'bob', createdAt: 0 }]]);
    let nodes = new Map<number, NodeView>([1, 2, 3, 4].map((id) => [id, { record: rec(id), online: true }]));
    let nextId = 5;
    const snapOf = (): Snapshot => ({ nodes: [...nodes.values()], users: users2 });
    const first = fullMap(snapOf(), 1, cfg, 130, 0)!;
    let full: SessionView = first.view;
    const cloneView = (v: SessionView): SessionView => ({ self: v.self, peers: new Map(v.peers), users: new Set(v.users), filter: v.filter });
    const inc: SessionView = cloneView(first.view);
    let prints = new Map([...nodes.values()].map((v) => [v.record.id, nodeFingerprint(v, 0)]));
    let messages = 0;
    for (let step = 1; step <= 300; step++) {
      const now = step * 10;
      const next = new Map(nodes);
      for (let k = 0; k < 1 + rnd(3); k++) {
        const ids = [...next.keys()];
        const id = ids[rnd(ids.length)]!;
        const v = next.get(id)!;
        switch (rnd(7)) {
          case 0:
            next.set(nextId, { record: rec(nextId, { userId: 1 + rnd(2) }), online: true });
            nextId++;
            break;
          case 1:
            if (id !== 1) next.delete(id);
            break;
          case 2:
            next.set(id, { record: { ...v.record, lastSeen: now }, online: !v.online });
            break;
          case 3:
            next.set(id, { ...v, record: { ...v.record, endpoints: [`192.0.2.${rnd(250)}:${1 + rnd(9)}`] } });
            break;
          case 4:
            next.set(id, { ...v, record: { ...v.record, expiresAt: now + rnd(40) } });
            break;
          case 5:
            next.set(id, { ...v, record: { ...v.record, userId: 1 + rnd(2) } });
            break;
          default:
            next.set(id, { ...v, record: { ...v.record, homeDerp: 1 + rnd(3) } });
        }
      }
      nodes = next;
      const snap = snapOf();
      const now2 = now + 5;
      const fp = new Map(snap.nodes.map((v) => [v.record.id, nodeFingerprint(v, now2)]));
      const changed = new Set([...fp].filter(([id, f]) => prints.get(id) !== f).map(([id]) => id));
      const removed = new Set([...prints.keys()].filter((id) => !fp.has(id)));
      prints = fp;
      const a = diffSession(full, snap, 1, cfg, 130, now2);
      const b = diffChanged(inc, new Map(snap.nodes.map((v) => [v.record.id, v])), users2, 1, { changed, removed }, (v) => wireNode(v, cfg, 130, now2), now2);
      expect(b === null ? null : b?.msg).toEqual(a === null ? null : a?.msg);
      if (a) {
        full = a.view;
        messages++;
      }
      expect([...inc.peers.entries()].sort((x, y) => x[0] - y[0])).toEqual([...full.peers.entries()].sort((x, y) => x[0] - y[0]));
      expect(inc.self).toEqual(full.self);
    }
    expect(messages).toBeGreaterThan(200);
  });
});

describe('encodeZstdStored', () => {
  it.each([0, 1, 1000, 128 * 1024, 128 * 1024 + 1, 300_000])('round-trips %i bytes through the client decoder', (n) => {
    const data = new Uint8Array(n).map((_, i) => (i * 31) & 0xff);
    const out = decodeMapBody(encodeZstdStored(data), true);
    expect(out).toEqual(data);
  });
});

describe('loadOrCreateNoiseKey', () => {
  it('creates the key once with mode 0600, returns the same key later, and refuses a damaged file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weft-noise-key-'));
    try {
      const k1 = await loadOrCreateNoiseKey(join(dir, 'data'));
      const file = join(dir, 'data', NOISE_KEY_FILE);
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      expect((await stat(join(dir, 'data'))).mode & 0o777).toBe(0o700);
      expect((await readFile(file, 'utf8')).trim()).toMatch(/^privkey:[0-9a-f]{64}$/);
      expect(await loadOrCreateNoiseKey(join(dir, 'data'))).toEqual(k1);
      await writeFile(file, 'garbage');
      await expect(loadOrCreateNoiseKey(join(dir, 'data'))).rejects.toThrow(/refusing to replace/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('embeddedDerpMap and followupId', () => {
  it('describes region 999 from the server URL and STUN port', () => {
    const m = embeddedDerpMap({ serverUrl: new URL('http://10.0.0.1:8080'), derp: true, stunPort: 3478 });
    expect(m.Regions['999']).toMatchObject({ RegionID: 999, RegionCode: 'headscale', Nodes: [{ HostName: '10.0.0.1', IPv4: '10.0.0.1', DERPPort: 8080, STUNPort: 3478, STUNOnly: false }] });
    expect(embeddedDerpMap({ serverUrl: new URL('http://h'), derp: false, stunPort: null })).toEqual({ Regions: {} });
  });

  it('takes the id from an AuthURL path only', () => {
    expect(followupId('https://hs.example/register/abc123')).toBe('abc123');
    expect(followupId('/register/abc123')).toBe('abc123');
    expect(followupId('https://hs.example/register/../x')).toBeNull();
    expect(followupId('https://hs.example/other/abc')).toBeNull();
  });
});
