/** Pure selectors over a store built from fixtures. */
import { beforeEach, describe, expect, it } from 'vitest';
import { createWeftStore, type WeftStore } from '../../../src-renderer/src/store/index.ts';
import { atLeast, filterLogs, visibleLogs } from '../../../src-renderer/src/store/selectors/logs.ts';
import {
  directCount,
  filteredPeers,
  filterPeers,
  isOnline,
  linkFor,
  linkKindOf,
  onlineCount,
  peersByPath,
  regionLabel,
  relayedCount,
  showJoinScreen,
} from '../../../src-renderer/src/store/selectors/mesh.ts';
import { NO_FILTERS } from '../../../src-renderer/src/store/slices/ui.ts';
import { connecting, direct, netInfo, offline, peer, relay, report, snapshot } from './support/fixtures.ts';

const alpha = peer({ id: 'a', name: 'alpha', path: direct(8), os: 'macOS', addresses: ['100.64.0.2'] });
const bravo = peer({ id: 'b', name: 'bravo', path: relay(2), netInfo: netInfo('hard'), addresses: ['100.64.0.3'] });
const charlie = peer({ id: 'c', name: 'charlie', path: connecting, online: true, addresses: ['100.64.0.4'] });
const delta = peer({ id: 'd', name: 'delta', path: offline, online: false, addresses: ['100.64.0.5'] });
const echo = peer({ id: 'e', name: 'echo', path: connecting, online: false, addresses: ['100.64.0.6'] });
const all = [alpha, bravo, charlie, delta, echo];

let store: WeftStore;
beforeEach(() => {
  store = createWeftStore();
  store.getState().setSnapshot(snapshot(all, { netcheck: report('hard') }));
});

describe('mesh selectors', () => {
  it('classifies links, counting a connecting peer that control says is offline as offline', () => {
    expect(all.map(linkKindOf)).toEqual(['direct', 'relay', 'connecting', 'offline', 'offline']);
    expect(all.map(isOnline)).toEqual([true, true, true, false, false]);
  });

  it('groups peers by path, memoised on the peers array', () => {
    const s = store.getState();
    const g = peersByPath(s);
    expect(Object.fromEntries(Object.entries(g).map(([k, v]) => [k, v.map((p) => p.id)]))).toEqual({
      direct: ['a'],
      relay: ['b'],
      connecting: ['c'],
      offline: ['d', 'e'],
    });
    expect(peersByPath(store.getState())).toBe(g);
    store.getState().selectPeer('a'); // unrelated change
    expect(peersByPath(store.getState())).toBe(g);
    store.getState().applyDelta({ removePeers: ['e'] });
    expect(peersByPath(store.getState())).not.toBe(g);
  });

  it('counts', () => {
    const s = store.getState();
    expect([directCount(s), relayedCount(s), onlineCount(s)]).toEqual([1, 1, 3]);
  });

  it.each([
    ['', NO_FILTERS, ['a', 'b', 'c', 'd', 'e']],
    ['alp', NO_FILTERS, ['a']],
    ['100.64.0.3', NO_FILTERS, ['b']],
    ['macos', NO_FILTERS, ['a']],
    ['  ', NO_FILTERS, ['a', 'b', 'c', 'd', 'e']],
    ['a 100.64.0.2', NO_FILTERS, ['a']],
    ['', { online: true, direct: false, relayed: false }, ['a', 'b', 'c']],
    ['', { online: false, direct: true, relayed: false }, ['a']],
    ['', { online: false, direct: false, relayed: true }, ['b']],
    ['', { online: false, direct: true, relayed: true }, ['a', 'b']],
    ['brav', { online: true, direct: true, relayed: false }, []],
  ] as const)('filterPeers(%j, %o)', (search, filters, ids) => {
    expect(filterPeers(all, search, filters).map((p) => p.id)).toEqual(ids);
  });

  it('filteredPeers returns the same array for the same peers', () => {
    const sel = filteredPeers('a', NO_FILTERS);
    const first = sel(store.getState());
    store.getState().setSearch('zzz'); // the selector's arguments are fixed; state search is not read
    expect(sel(store.getState())).toBe(first);
  });

  it('linkFor explains the link, names the region, and is stable while nothing relevant changes', () => {
    const sel = linkFor('b');
    const l = sel(store.getState())!;
    expect(l.kind).toBe('relay');
    expect(l.regionName).toBe('New York (nyc)');
    expect(l.explanation.verdict).toBe('relayed');
    expect(l.explanation.summary).toMatch(/^Relayed through the New York relay \(region 2/);
    expect(l.explanation.reasons[0]!.side).toBe('both');
    store.getState().applyStats([{ id: 'b', rxBytes: 1, txBytes: 1, latencyMs: null, lastHandshake: null }], 1);
    expect(sel(store.getState())).toBe(l);
    store.getState().setNetcheck(report('easy'));
    expect(sel(store.getState())!.explanation.reasons[0]!.side).toBe('peer');
    expect(linkFor('nope')(store.getState())).toBeNull();
    expect(linkFor(null)(store.getState())).toBeNull();
  });

  it('regionLabel falls back to the number', () => {
    const s = store.getState().snapshot;
    expect(regionLabel(s.regions, 1)).toBe('Frankfurt');
    expect(regionLabel(s.regions, 9)).toBe('region 9');
  });
});

describe('showJoinScreen', () => {
  const ctl = (state: 'connected' | 'connecting' | 'needs-login' | 'expired' | 'error') => ({ state, url: 'https://hs.example.com', error: null, authUrl: null });

  it('not before the first snapshot', () => {
    expect(showJoinScreen(createWeftStore().getState())).toBe(false);
  });

  it('when no network is joined', () => {
    const s = createWeftStore();
    s.getState().setSnapshot(snapshot([], { control: null }));
    expect(showJoinScreen(s.getState())).toBe(true);
  });

  it.each([
    ['needs-login', false, true],
    ['error', false, true],
    ['connecting', false, false],
    ['connected', false, false],
    ['needs-login', true, false],
    ['error', true, false],
    ['expired', true, false],
  ] as const)('control %s, ever connected %s → %s', (state, wasConnected, expected) => {
    const s = createWeftStore();
    s.getState().setSnapshot(snapshot([], { control: ctl(wasConnected ? 'connected' : 'connecting') }));
    s.getState().applyDelta({ control: ctl(state) });
    expect(showJoinScreen(s.getState())).toBe(expected);
  });

  it('while a join started here is under way, through connected, until finishJoin', () => {
    const s = createWeftStore();
    s.getState().setSnapshot(snapshot([], { control: null }));
    s.getState().beginJoin('https://hs.example.com');
    s.getState().applyDelta({ control: ctl('connecting') });
    expect(showJoinScreen(s.getState())).toBe(true);
    s.getState().setProgress({ stage: 'registering', authUrl: null, error: null });
    expect(showJoinScreen(s.getState())).toBe(true);
    s.getState().applyDelta({ control: ctl('connected') });
    s.getState().setProgress({ stage: 'connected', authUrl: null, error: null });
    expect(showJoinScreen(s.getState())).toBe(true);
    s.getState().finishJoin();
    expect(showJoinScreen(s.getState())).toBe(false);
  });

  it('when the user asks to join another network', () => {
    store.getState().requestJoin(true);
    expect(showJoinScreen(store.getState())).toBe(true);
  });
});

describe('log selectors', () => {
  const l = (level: 'debug' | 'info' | 'warn' | 'error') => ({ at: '2025-01-01T00:00:00Z', level, message: level });
  const lines = [l('debug'), l('info'), l('warn'), l('error')];

  it('filters at or above a level', () => {
    expect(atLeast('warn', 'info')).toBe(true);
    expect(atLeast('debug', 'info')).toBe(false);
    expect(filterLogs(lines, 'warn').map((x) => x.level)).toEqual(['warn', 'error']);
    expect(filterLogs(lines, 'debug')).toBe(lines);
  });

  it('visibleLogs follows the level and is memoised', () => {
    store.getState().setLogs(lines);
    const a = visibleLogs(store.getState());
    expect(a.map((x) => x.level)).toEqual(['info', 'warn', 'error']);
    expect(visibleLogs(store.getState())).toBe(a);
    store.getState().setLogLevel('error');
    expect(visibleLogs(store.getState()).map((x) => x.level)).toEqual(['error']);
  });
});
