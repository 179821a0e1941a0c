/** The store's slices, driven through their actions (no DOM). */
import { beforeEach, describe, expect, it } from 'vitest';
import { createWeftStore, type WeftStore } from '../../../src-renderer/src/store/index.ts';
import { EMPTY_SNAPSHOT, LATENCY_HISTORY_MAX } from '../../../src-renderer/src/store/slices/mesh.ts';
import { LOGS_MAX } from '../../../src-renderer/src/store/slices/logs.ts';
import { IDLE_JOIN } from '../../../src-renderer/src/store/slices/session.ts';
import { direct, peer, relay, snapshot } from './support/fixtures.ts';

let store: WeftStore;
const st = () => store.getState();

beforeEach(() => {
  store = createWeftStore();
});

describe('mesh slice', () => {
  it('starts empty and not loaded; resets with getInitialState', () => {
    expect(st().snapshot).toEqual(EMPTY_SNAPSHOT);
    expect(st().meshLoaded).toBe(false);
    st().setSnapshot(snapshot([peer()]));
    store.setState(store.getInitialState(), true);
    expect(st().meshLoaded).toBe(false);
    expect(st().snapshot.peers).toEqual([]);
  });

  it('drops deltas until the snapshot arrives (the snapshot already contains them)', () => {
    st().applyDelta({ upsertPeers: [peer({ id: 'early' })] });
    expect(st().snapshot.peers).toEqual([]);
    st().setSnapshot(snapshot([peer({ id: 'a' })]));
    st().applyDelta({ upsertPeers: [peer({ id: 'b' })] });
    expect(st().snapshot.peers.map((p) => p.id)).toEqual(['a', 'b']);
  });

  it('applies deltas with applyMeshDelta: upsert keeps order, remove drops, fields replace', () => {
    const a = peer({ id: 'a', path: relay(1) });
    const b = peer({ id: 'b' });
    st().setSnapshot(snapshot([a, b]));
    const before = st().snapshot;
    st().applyDelta({ upsertPeers: [{ ...a, path: direct(5) }], removePeers: ['b'], netcheck: null });
    expect(st().snapshot).not.toBe(before);
    expect(st().snapshot.peers.map((p) => [p.id, p.path.kind])).toEqual([['a', 'direct']]);
    expect(st().snapshot.netcheck).toBeNull();
    expect(st().snapshot.control).toEqual(before.control);
  });

  it('keeps unchanged peers by reference (memoised rows stay put)', () => {
    const a = peer({ id: 'a' });
    const b = peer({ id: 'b' });
    st().setSnapshot(snapshot([a, b]));
    st().applyDelta({ upsertPeers: [{ ...b, rxBytes: 9 }] });
    expect(st().snapshot.peers[0]).toBe(a);
  });

  it('tracks whether control was ever connected, and forgets when no network is joined', () => {
    st().setSnapshot(snapshot([], { control: { state: 'connecting', url: 'https://x.example', error: null, authUrl: null } }));
    expect(st().everConnected).toBe(false);
    st().applyDelta({ control: { state: 'connected', url: 'https://x.example', error: null, authUrl: null } });
    expect(st().everConnected).toBe(true);
    st().applyDelta({ control: { state: 'error', url: 'https://x.example', error: 'boom', authUrl: null } });
    expect(st().everConnected).toBe(true);
    st().applyDelta({ control: null });
    expect(st().everConnected).toBe(false);
  });

  it('keeps a bounded latency history per peer and the latest counters', () => {
    st().setSnapshot(snapshot([peer({ id: 'a' })]));
    for (let i = 0; i < LATENCY_HISTORY_MAX + 30; i++) {
      st().applyStats([{ id: 'a', rxBytes: i, txBytes: 2 * i, latencyMs: i % 3 === 0 ? null : i, lastHandshake: null }], 1000 + i);
    }
    const h = st().latencyHistory['a']!;
    expect(h).toHaveLength(LATENCY_HISTORY_MAX);
    expect(h[h.length - 1]).toEqual({ at: 1000 + LATENCY_HISTORY_MAX + 29, ms: LATENCY_HISTORY_MAX + 29 });
    expect(h[0]!.at).toBe(1030);
    expect(st().liveStats['a']!.rxBytes).toBe(LATENCY_HISTORY_MAX + 29);
  });

  it('forgets the stats of removed peers', () => {
    st().setSnapshot(snapshot([peer({ id: 'a' }), peer({ id: 'b' })]));
    st().applyStats(
      [
        { id: 'a', rxBytes: 1, txBytes: 1, latencyMs: 5, lastHandshake: null },
        { id: 'b', rxBytes: 1, txBytes: 1, latencyMs: 5, lastHandshake: null },
      ],
      1,
    );
    st().applyDelta({ removePeers: ['b'] });
    expect(Object.keys(st().latencyHistory)).toEqual(['a']);
    expect(Object.keys(st().liveStats)).toEqual(['a']);
  });

  it('setNetcheck replaces only the report', () => {
    st().setSnapshot(snapshot([peer()], { netcheck: null }));
    const peers = st().snapshot.peers;
    const r = snapshot([]).netcheck!;
    st().setNetcheck(r);
    expect(st().snapshot.netcheck).toBe(r);
    expect(st().snapshot.peers).toBe(peers);
  });
});

describe('session slice', () => {
  it('follows a join through its stages', () => {
    st().beginJoin('https://hs.example.com');
    expect(st().join).toEqual({ active: true, stage: 'reaching-server', authUrl: null, error: null });
    expect(st().serverUrl).toBe('https://hs.example.com');
    st().setProgress({ stage: 'waiting-approval', authUrl: 'https://hs.example.com/register/abc', error: null });
    expect(st().join.authUrl).toBe('https://hs.example.com/register/abc');
    expect(st().join.active).toBe(true);
    st().setProgress({ stage: 'connected', authUrl: null, error: null });
    // Held (the screen shows "connected" for a moment) until finishJoin.
    expect(st().join).toMatchObject({ active: true, stage: 'connected' });
    st().finishJoin();
    expect(st().join).toEqual(IDLE_JOIN);
  });

  it('keeps the failure, with a fallback error when the event carries none', () => {
    st().beginJoin('https://hs.example.com');
    st().setProgress({ stage: 'failed', authUrl: null, error: { code: 'auth-failed', message: 'bad key', retryable: false } });
    expect(st().join.error?.code).toBe('auth-failed');
    expect(st().join.active).toBe(true);
    st().setProgress({ stage: 'failed', authUrl: null, error: null });
    expect(st().join.error?.code).toBe('internal');
    st().resetJoin();
    expect(st().join).toEqual(IDLE_JOIN);
  });

  it('progress after having been connected (a reconnect) does not hold the join screen', () => {
    st().setSnapshot(snapshot([]));
    expect(st().everConnected).toBe(true);
    st().setProgress({ stage: 'handshake', authUrl: null, error: null });
    expect(st().join.active).toBe(false);
  });

  it('failJoin records an error from the call itself', () => {
    st().beginJoin('https://hs.example.com');
    st().failJoin({ code: 'unreachable', message: 'ECONNREFUSED', retryable: true });
    expect(st().join).toMatchObject({ active: false, stage: 'failed', error: { code: 'unreachable' } });
  });

  it("settings prefill the server URL from the active profile, unless one is remembered", () => {
    const settings = {
      autoStart: false,
      startMinimised: false,
      notifications: true,
      profiles: [{ id: 'home', name: 'Home', serverUrl: 'https://home.example.com' }],
      activeProfile: 'home',
      acceptRoutes: false,
      acceptDns: true,
    };
    st().setSettings(settings);
    expect(st().serverUrl).toBe('https://home.example.com');
    store.setState(store.getInitialState(), true);
    st().setServerUrl('https://remembered.example.com');
    st().setSettings(settings);
    expect(st().serverUrl).toBe('https://remembered.example.com');
  });
});

describe('ui slice', () => {
  it('toggles filters, selects peers, switches views', () => {
    st().toggleFilter('relayed');
    st().toggleFilter('online');
    st().toggleFilter('online');
    expect(st().filters).toEqual({ online: false, direct: false, relayed: true });
    st().selectPeer('a');
    st().setView('device');
    expect([st().selectedPeerId, st().view]).toEqual(['a', 'device']);
  });

  it('dismisses only the notice it was asked to', () => {
    st().showNotice('info', 'one');
    const first = st().notice!.id;
    st().showNotice('error', 'two');
    st().dismissNotice(first);
    expect(st().notice?.text).toBe('two');
    st().dismissNotice(st().notice!.id);
    expect(st().notice).toBeNull();
  });

  it('a connected join clears the "join another network" request', () => {
    st().requestJoin(true);
    st().setProgress({ stage: 'connected', authUrl: null, error: null });
    expect(st().joinRequested).toBe(false);
  });
});

describe('logs slice', () => {
  const line = (i: number) => ({ at: new Date(i * 1000).toISOString(), level: 'info' as const, message: `line ${i}` });

  it('ignores live lines before the backlog, then appends, bounded', () => {
    st().appendLog(line(0));
    expect(st().logs).toEqual([]);
    st().setLogs([line(1)]);
    for (let i = 2; i < LOGS_MAX + 10; i++) st().appendLog(line(i));
    expect(st().logs).toHaveLength(LOGS_MAX);
    expect(st().logs[0]!.message).toBe('line 10');
    expect(st().logs[LOGS_MAX - 1]!.message).toBe(`line ${LOGS_MAX + 9}`);
  });
});
