import { describe, expect, it } from 'vitest';
import type { MeshSnapshot, PeerView } from '../../../src-shared/model/mesh.ts';
import type { PeerPath } from '../../../src-shared/model/status.ts';
import { INITIAL_NOTICE_STATE, noticesFor, PATH_NOTICE_GAP_MS, type NoticeState } from '../../../src-main/host/notifications.ts';

const NOW = Date.parse('2026-11-22T12:00:00Z');

function snap(paths: PeerPath[], over: Partial<MeshSnapshot> = {}): MeshSnapshot {
  return {
    control: { state: 'connected', url: 'https://hs', error: null, authUrl: null },
    self: { name: 'me', fqdn: 'me.tailnet.example.com', nodeKey: 'k', addresses: ['100.64.0.1'], keyExpiry: null, homeRegion: null },
    peers: paths.map((path, i): PeerView => ({ id: String(i), name: `p${i}`, fqdn: `p${i}.tailnet.example.com`, nodeKey: 'k', addresses: [], os: null, online: true, lastSeen: null, keyExpiry: null, homeRegion: null, endpoints: [], path, lastHandshake: null, rxBytes: 0, txBytes: 0, netInfo: null, disco: null, routes: [], exitNode: false })),
    regions: [{ id: 1, code: 'fra', name: 'Frankfurt' }],
    netcheck: null,
    tailnet: null,
    ...over,
  };
}
const D: PeerPath = { kind: 'direct', endpoint: '192.0.2.1:1', latencyMs: 1 };
const R: PeerPath = { kind: 'relay', region: 1 };
const C: PeerPath = { kind: 'connecting' };

describe('noticesFor', () => {
  it('announces direct ⇄ relay flips, not connecting → either', () => {
    const r = noticesFor(snap([C, D]), snap([R, R]), INITIAL_NOTICE_STATE, { enabled: true, now: 0, wallNowMs: NOW });
    expect(r.notices).toEqual([{ kind: 'path', peerId: '1', title: 'p1: relayed', body: 'p1 is now relayed through Frankfurt (fra).' }]);
    const back = noticesFor(snap([R]), snap([D]), INITIAL_NOTICE_STATE, { enabled: true, now: 0, wallNowMs: NOW });
    expect(back.notices[0]?.body).toBe('p0 is now connected directly (192.0.2.1:1).');
  });

  it('rate-limits per peer', () => {
    let st: NoticeState = INITIAL_NOTICE_STATE;
    let count = 0;
    let prev = snap([D, D]);
    for (let t = 0; t <= PATH_NOTICE_GAP_MS; t += 10_000) {
      const next = snap(t % 20_000 === 0 ? [R, R] : [D, D]);
      const r = noticesFor(prev, next, st, { enabled: true, now: t, wallNowMs: NOW });
      st = r.state;
      count += r.notices.length;
      prev = next;
    }
    expect(count).toBe(4); // each of the 2 peers: at t=0 and again at t=120 s
  });

  it('warns once when the key expires within a day', () => {
    const soon = snap([], { self: { name: 'me', fqdn: 'me.tailnet.example.com', nodeKey: 'k', addresses: [], keyExpiry: '2026-11-22T20:00:00Z', homeRegion: null } });
    const r1 = noticesFor(snap([]), soon, INITIAL_NOTICE_STATE, { enabled: true, now: 0, wallNowMs: NOW });
    expect(r1.notices).toEqual([{ kind: 'key-expiry', title: 'Weft: key expires soon', body: "This device's key expires in about 8 hours; log in again to stay connected." }]);
    expect(noticesFor(soon, soon, r1.state, { enabled: true, now: 1, wallNowMs: NOW }).notices).toEqual([]);
    const later = snap([], { self: { name: 'me', fqdn: 'me.tailnet.example.com', nodeKey: 'k', addresses: [], keyExpiry: '2026-12-22T20:00:00Z', homeRegion: null } });
    expect(noticesFor(snap([]), later, INITIAL_NOTICE_STATE, { enabled: true, now: 0, wallNowMs: NOW }).notices).toEqual([]);
  });

  it('announces login needed once per spell', () => {
    const login = snap([], { control: { state: 'needs-login', url: 'https://hs', error: null, authUrl: 'https://hs/a' } });
    const r1 = noticesFor(snap([]), login, INITIAL_NOTICE_STATE, { enabled: true, now: 0, wallNowMs: NOW });
    expect(r1.notices.map((n) => n.kind)).toEqual(['login']);
    const r2 = noticesFor(login, login, r1.state, { enabled: true, now: 1, wallNowMs: NOW });
    expect(r2.notices).toEqual([]);
    const r3 = noticesFor(login, snap([]), r2.state, { enabled: true, now: 2, wallNowMs: NOW });
    expect(noticesFor(snap([]), login, r3.state, { enabled: true, now: 3, wallNowMs: NOW }).notices.map((n) => n.kind)).toEqual(['login']);
  });

  it('shows nothing when turned off, but still advances its state', () => {
    const r = noticesFor(snap([D]), snap([R]), INITIAL_NOTICE_STATE, { enabled: false, now: 0, wallNowMs: NOW });
    expect(r.notices).toEqual([]);
    expect(r.state.lastPathNoticeAt.get('0')).toBe(0);
  });
});
