/** The app-lifetime bridge: one subscription per event, initial loads, ordering, retries, invalid payloads. */
import { describe, expect, it } from 'vitest';
import { guardApi } from '../../../src-renderer/src/ipc/guard.ts';
import { INITIAL_LOG_LIMIT, startBridge } from '../../../src-renderer/src/store/bridge.ts';
import { createWeftStore } from '../../../src-renderer/src/store/index.ts';
import { FakeApi, flush, ok } from './support/fake-client.ts';
import { direct, peer, snapshot } from './support/fixtures.ts';

const settings = { autoStart: false, startMinimised: false, notifications: true, profiles: [], activeProfile: null, acceptRoutes: false, acceptDns: true };

function setup(fake = new FakeApi()) {
  if (!fake.handlers.has('mesh:snapshot')) fake.answer('mesh:snapshot', () => ok(snapshot([peer({ id: 'a' })])));
  fake.answer('logs:get', () => ok([{ at: '2025-01-01T00:00:00Z', level: 'info', message: 'hello' }]));
  fake.answer('settings:get', () => ok(settings));
  const store = createWeftStore();
  const timers: { fn: () => void; ms: number }[] = [];
  const client = guardApi(fake.api, 'preload', (e) => store.getState().reportIpcError(e));
  const stop = startBridge(client, store, {
    now: () => 42,
    schedule: (fn, ms) => {
      timers.push({ fn, ms });
      return () => undefined;
    },
  });
  return { fake, store, stop, timers };
}

describe('startBridge', () => {
  it('subscribes once per event and loads snapshot, logs and settings', async () => {
    const { fake, store, stop } = setup();
    await flush();
    for (const e of ['mesh:delta', 'mesh:stats', 'session:progress', 'log:entry'] as const) expect(fake.listenerCount(e)).toBe(1);
    expect(fake.calls.map((c) => c.method).sort()).toEqual(['logs:get', 'mesh:snapshot', 'settings:get']);
    expect(fake.calls.find((c) => c.method === 'logs:get')!.request).toEqual({ level: 'debug', limit: INITIAL_LOG_LIMIT });
    expect(store.getState().meshLoaded).toBe(true);
    expect(store.getState().logs).toHaveLength(1);
    expect(store.getState().settings).toEqual(settings);
    stop();
    for (const e of ['mesh:delta', 'mesh:stats', 'session:progress', 'log:entry'] as const) expect(fake.listenerCount(e)).toBe(0);
  });

  it('is idempotent per store', async () => {
    const { fake, store, stop } = setup();
    const client = guardApi(fake.api, 'preload', () => undefined);
    expect(startBridge(client, store)).toBe(stop);
    expect(fake.listenerCount('mesh:delta')).toBe(1);
    stop();
  });

  it('routes events to the store', async () => {
    const { fake, store, stop } = setup();
    await flush();
    fake.push('mesh:delta', { upsertPeers: [peer({ id: 'b', path: direct(4) })] });
    fake.push('mesh:stats', { peers: [{ id: 'a', rxBytes: 10, txBytes: 20, latencyMs: 7, lastHandshake: null }] });
    fake.push('session:progress', { stage: 'handshake', authUrl: null, error: null });
    fake.push('log:entry', { at: '2025-01-01T00:00:01Z', level: 'warn', message: 'careful' });
    const s = store.getState();
    expect(s.snapshot.peers.map((p) => p.id)).toEqual(['a', 'b']);
    expect(s.latencyHistory['a']).toEqual([{ at: 42, ms: 7 }]);
    expect(s.join.stage).toBe('handshake');
    expect(s.logs.map((l) => l.message)).toEqual(['hello', 'careful']);
    stop();
  });

  it('shows an invalid event as a typed error and keeps the state', async () => {
    const { fake, store, stop } = setup();
    await flush();
    const before = store.getState().snapshot;
    fake.push('mesh:delta', { upsertPeers: [{ id: 'x' }] });
    expect(store.getState().snapshot).toBe(before);
    expect(store.getState().ipcError).toMatchObject({ code: 'invalid-payload' });
    stop();
  });

  it('retries the snapshot with backoff until it arrives', async () => {
    const fake = new FakeApi();
    let fail = 3;
    fake.answer('mesh:snapshot', () => (fail-- > 0 ? { ok: false, error: { code: 'internal', message: 'not ready', retryable: true } } : ok(snapshot([]))));
    const { store, timers, stop } = setup(fake);
    await flush();
    expect(store.getState().meshLoaded).toBe(false);
    expect(store.getState().ipcError).toMatchObject({ code: 'internal', message: 'not ready' });
    for (let i = 0; i < 3; i++) {
      timers[i]!.fn();
      await flush();
    }
    expect(timers.map((t) => t.ms)).toEqual([1000, 2000, 4000]);
    expect(store.getState().meshLoaded).toBe(true);
    expect(store.getState().ipcError).toBeNull();
    stop();
  });
});
