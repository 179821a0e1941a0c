import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MeshError } from '../../../src-shared/errors.ts';
import { parseEvent, type EventName, type EventPayload, type LogEntry, type LogLevel } from '../../../src-shared/ipc/contract.ts';
import { applyMeshDelta, type MeshSnapshot } from '../../../src-shared/model/mesh.ts';
import type { StatusReport } from '../../../src-shared/model/status.ts';
import type { EngineInit } from '../../../src-main/engine/engine.ts';
import type { WgInterface } from '../../../src-main/engine/wg/iface.ts';
import { createDispatcher, HostError } from '../../../src-main/host/dispatch.ts';
import { createHost, newProfileId, type Host, type HostInit } from '../../../src-main/host/host.ts';
import type { Notice } from '../../../src-main/host/notifications.ts';
import { trayState } from '../../../src-main/host/tray-state.ts';
import { FakeClock } from '../../sim/fake-clock.ts';
import { advance, FakeEngine, NETCHECK, peer, settle } from './fake-engine.ts';

interface Rig {
  host: Host;
  clock: FakeClock;
  engines: FakeEngine[];
  events: { event: EventName; payload: unknown }[];
  notices: Notice[];
  prepared: number;
  dispatch: ReturnType<typeof createDispatcher>;
  ui: () => MeshSnapshot;
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weft-host-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const noInterface = (): Promise<WgInterface> => Promise.reject(new Error('no interface in unit tests'));

function rig(over: Partial<HostInit> = {}, setup: (e: FakeEngine) => void = () => undefined): Rig {
  const clock = new FakeClock();
  const engines: FakeEngine[] = [];
  const r: Rig = {
    clock,
    engines,
    events: [],
    notices: [],
    prepared: 0,
    host: null as unknown as Host,
    dispatch: null as unknown as ReturnType<typeof createDispatcher>,
    ui: () => ui,
  };
  let ui: MeshSnapshot = { control: null, self: null, peers: [], regions: [], netcheck: null, tailnet: null };
  r.host = createHost({
    dataDir: dir,
    createInterface: noInterface,
    prepareInterface: async () => {
      r.prepared++;
    },
    clock,
    wallClock: () => Date.parse('2026-11-22T12:00:00Z'),
    createEngine: (init: EngineInit) => {
      const e = new FakeEngine(init);
      e.setNetmap([{ id: '2', os: 'linux' }, { id: '3', os: 'windows' }]);
      e.setPeers([peer('2'), peer('3')]);
      setup(e);
      engines.push(e);
      return e;
    },
    ...over,
  });
  r.host.onAny((event, payload) => {
    r.events.push({ event, payload });
    if (event === 'mesh:delta') ui = applyMeshDelta(ui, payload as EventPayload<'mesh:delta'>);
  });
  r.host.onNotice((n) => r.notices.push(n));
  r.dispatch = createDispatcher(r.host.handlers);
  return r;
}

const of = <E extends EventName>(r: Rig, e: E): EventPayload<E>[] => r.events.filter((x) => x.event === e).map((x) => x.payload as EventPayload<E>);

async function joined(over: Partial<HostInit> = {}, setup?: (e: FakeEngine) => void): Promise<Rig> {
  const r = rig(over, setup);
  await r.host.start();
  const res = await r.dispatch('session:join', { serverUrl: 'https://hs.example.com', authKey: 'tskey-123', hostname: 'laptop' });
  expect(res).toEqual({ ok: true, value: { done: true } });
  await advance(r.clock, 300);
  return r;
}

describe('host: joining', () => {
  it('saves the network as the active profile (0600, atomically) and starts one engine with the request', async () => {
    const r = await joined();
    expect(r.prepared).toBe(1);
    expect(r.engines).toHaveLength(1);
    const init = r.engines[0]!.init;
    expect(init.server.href).toBe('https://hs.example.com/');
    expect(init.authKey).toBe('tskey-123');
    expect(init.hostname).toBe('laptop');
    expect(init.stateDir).toBe(join(dir, 'profiles', 'hs-example-com'));
    const s = r.host.settings();
    expect(s.profiles).toEqual([{ id: 'hs-example-com', name: 'hs.example.com', serverUrl: 'https://hs.example.com' }]);
    expect(s.activeProfile).toBe('hs-example-com');
    const file = join(dir, 'settings.json');
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual(s);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });

  it('builds the snapshot from the status report and the DERP map, and the UI follows it with deltas', async () => {
    const r = await joined();
    const snap = r.host.snapshot();
    expect(snap.control?.state).toBe('connected');
    expect(snap.self).toMatchObject({ name: 'laptop', addresses: ['100.64.0.1', 'fd7a:115c:a1e0::1'], homeRegion: 1 });
    expect(snap.peers.map((p) => [p.id, p.os])).toEqual([
      ['2', 'linux'],
      ['3', 'windows'],
    ]);
    expect(snap.regions).toEqual([
      { id: 1, code: 'fra', name: 'Frankfurt' },
      { id: 2, code: 'nyc', name: 'New York' },
    ]);
    expect(r.ui()).toEqual(snap);
    const res = await r.dispatch('mesh:snapshot', {});
    expect(res).toEqual({ ok: true, value: snap });
    for (const { event, payload } of r.events) expect(parseEvent(event, payload).ok).toBe(true);
  });

  it('puts only the changed peer in a delta, and the tray sees one direct and one relayed peer', async () => {
    const r = await joined();
    const e = r.engines[0]!;
    r.events.length = 0;
    e.setPeers([peer('2', { path: { kind: 'direct', endpoint: '192.0.2.2:41641', latencyMs: 3 } }), peer('3')]);
    e.emit('peer:path-changed', 'x');
    await advance(r.clock, 300);
    let deltas = of(r, 'mesh:delta');
    expect(deltas).toHaveLength(1);
    expect(deltas[0]!.upsertPeers?.map((p) => p.id)).toEqual(['2']);
    expect(deltas[0]!.control).toBeUndefined();
    r.events.length = 0;
    e.setPeers([peer('2', { path: { kind: 'direct', endpoint: '192.0.2.2:41641', latencyMs: 3 } }), peer('3', { path: { kind: 'relay', region: 1 } })]);
    e.emit('peer:path-changed', 'y');
    await advance(r.clock, 300);
    deltas = of(r, 'mesh:delta');
    expect(deltas.flatMap((d) => d.upsertPeers ?? []).map((p) => p.id)).toEqual(['3']);
    expect(trayState(r.ui())).toBe('some-relayed');
    expect(r.notices).toEqual([]); // connecting → relay is not a direct ⇄ relay flip
  });

  it('sends counters as mesh:stats at most 4 times a second however fast the engine changes', async () => {
    const r = await joined({ timing: { pollMs: 20, minRefreshGapMs: 0 } });
    const e = r.engines[0]!;
    e.setPeers([peer('2', { path: { kind: 'direct', endpoint: '192.0.2.2:41641', latencyMs: 1 } }), peer('3')]);
    await advance(r.clock, 300);
    r.events.length = 0;
    let bytes = 0;
    const before = e.statusCalls;
    for (let t = 0; t < 1000; t += 10) {
      bytes += 1000;
      e.setPeers([peer('2', { rxBytes: bytes, txBytes: bytes / 2, path: { kind: 'direct', endpoint: '192.0.2.2:41641', latencyMs: (t % 7) + 1 } }), peer('3')]);
      await advance(r.clock, 10);
    }
    expect(e.statusCalls - before).toBeGreaterThan(20); // the engine was polled fast
    const stats = of(r, 'mesh:stats');
    expect(stats.length).toBeGreaterThanOrEqual(3);
    expect(stats.length).toBeLessThanOrEqual(4);
    expect(of(r, 'mesh:delta')).toEqual([]); // bytes and latency never re-send the peer
    await advance(r.clock, 300);
    const last = of(r, 'mesh:stats').at(-1)!;
    expect(last.peers).toEqual([{ id: '2', rxBytes: bytes, txBytes: bytes / 2, latencyMs: expect.any(Number), lastHandshake: null }]);
    expect(r.host.snapshot().peers[0]!.rxBytes).toBe(bytes);
  });

  it('maps the control stage to session:progress and resolves join while waiting for approval', async () => {
    const r = rig({}, (e) => {
      e.startImpl = () =>
        new Promise(() => {
          e.setControl({ stage: 'reaching-server' });
          e.setControl({ stage: 'handshake' });
          e.setControl({ stage: 'registering' });
          e.setControl({ state: 'needs-login', stage: 'waiting-approval', authUrl: 'https://hs.example.com/register/abc' });
        });
    });
    await r.host.start();
    const res = await r.dispatch('session:join', { serverUrl: 'https://hs.example.com' });
    expect(res.ok).toBe(true);
    expect(of(r, 'session:progress')).toEqual([
      { stage: 'reaching-server', authUrl: null, error: null },
      { stage: 'handshake', authUrl: null, error: null },
      { stage: 'registering', authUrl: null, error: null },
      { stage: 'waiting-approval', authUrl: 'https://hs.example.com/register/abc', error: null },
    ]);
    await advance(r.clock, 300);
    expect(trayState(r.host.snapshot())).toBe('needs-login');
    expect(r.notices.map((n) => n.kind)).toEqual(['login']);
  });

  it('reports a cancelled password prompt as helper-denied, without starting an engine', async () => {
    const r = rig({
      prepareInterface: () => Promise.reject(new HostError('helper-denied', 'Weft needs administrator rights; the password prompt was cancelled.', true)),
    });
    await r.host.start();
    const res = await r.dispatch('session:join', { serverUrl: 'https://hs.example.com', authKey: 'k' });
    expect(res).toEqual({ ok: false, error: { code: 'helper-denied', message: expect.stringContaining('cancelled'), retryable: true } });
    expect(r.engines).toHaveLength(0);
    expect(of(r, 'session:progress').at(-1)).toEqual({ stage: 'failed', authUrl: null, error: { code: 'helper-denied', message: expect.any(String), retryable: true } });
    await advance(r.clock, 300);
    expect(r.host.snapshot().control).toMatchObject({ state: 'error', url: 'https://hs.example.com' });
    expect(trayState(r.host.snapshot())).toBe('error');
  });

  it('answers a failed first connection with the engine error code and stops that engine', async () => {
    const r = rig({}, (e) => {
      e.startImpl = () => Promise.reject(new MeshError('auth-failed', 'the server refused registration: bad key', false));
    });
    await r.host.start();
    const res = await r.dispatch('session:join', { serverUrl: 'https://hs.example.com', authKey: 'bad' });
    expect(res).toEqual({ ok: false, error: { code: 'auth-failed', message: 'the server refused registration: bad key', retryable: false } });
    await settle();
    expect(r.engines[0]!.stopped).toBe(1);
    expect(r.host.snapshot().control).toMatchObject({ state: 'error', error: 'the server refused registration: bad key' });
  });

  it('refuses a bad login server URL with bad-url', async () => {
    const r = rig();
    await r.host.start();
    expect(await r.dispatch('session:join', { serverUrl: 'ftp://hs.example.com' })).toMatchObject({ ok: false, error: { code: 'bad-url' } });
    expect(r.engines).toHaveLength(0);
  });
});

describe('host: sessions and profiles', () => {
  it('disconnect stops the engine and the UI sees control null; connect starts a fresh one', async () => {
    const r = await joined();
    expect(await r.dispatch('session:disconnect', {})).toEqual({ ok: true, value: { done: true } });
    expect(r.engines[0]!.stopped).toBe(1);
    expect(r.ui().control).toBeNull();
    expect(r.ui().peers).toEqual([]);
    expect(trayState(r.ui())).toBe('disconnected');
    expect(await r.dispatch('session:connect', {})).toEqual({ ok: true, value: { done: true } });
    expect(r.engines).toHaveLength(2);
    expect(r.engines[1]!.init.authKey).toBeUndefined();
  });

  it('connect without a saved network is logged-out', async () => {
    const r = rig();
    await r.host.start();
    expect(await r.dispatch('session:connect', {})).toMatchObject({ ok: false, error: { code: 'logged-out' } });
  });

  it('start() connects the saved active profile', async () => {
    const first = await joined();
    await first.host.stop();
    const r = rig();
    await r.host.start();
    await vi.waitFor(() => expect(r.engines).toHaveLength(1)); // connects in the background (real fs first)
    await advance(r.clock, 300);
    expect(r.host.snapshot().control?.state).toBe('connected');
  });

  it('logout expires the key through the running engine and disconnects', async () => {
    const r = await joined();
    expect(await r.dispatch('session:logout', {})).toEqual({ ok: true, value: { done: true } });
    expect(r.engines[0]!.logouts).toBe(1);
    expect(r.engines[0]!.stopped).toBe(1);
    expect(r.host.snapshot().control).toBeNull();
  });

  it('switches and removes profiles, keeping the engine on the active one', async () => {
    const r = await joined();
    await r.dispatch('session:join', { serverUrl: 'http://10.0.0.1:8080', profileName: 'lab' });
    const s = r.host.settings();
    expect(s.profiles.map((p) => p.id)).toEqual(['hs-example-com', '10-0-0-1']);
    expect(s.activeProfile).toBe('10-0-0-1');
    expect(r.engines).toHaveLength(2);
    expect(await r.dispatch('profiles:switch', { id: 'hs-example-com' })).toEqual({ ok: true, value: { done: true } });
    expect(r.engines).toHaveLength(3);
    expect(r.engines[2]!.init.server.origin).toBe('https://hs.example.com');
    expect(await r.dispatch('profiles:switch', { id: 'nope' })).toMatchObject({ ok: false, error: { code: 'invalid-payload' } });
    const removed = await r.dispatch('profiles:remove', { id: 'hs-example-com' });
    expect(removed).toMatchObject({ ok: true, value: { profiles: [{ id: '10-0-0-1' }], activeProfile: '10-0-0-1' } });
    expect(r.engines[2]!.stopped).toBe(1);
  });

  it('settings:set saves a partial update and tells the shell', async () => {
    const r = rig();
    const seen: boolean[] = [];
    r.host.onSettings((s) => seen.push(s.autoStart));
    await r.host.start();
    const res = await r.dispatch('settings:set', { autoStart: true, notifications: false });
    expect(res).toMatchObject({ ok: true, value: { autoStart: true, notifications: false, startMinimised: false } });
    expect(seen).toEqual([true]);
    expect(await r.dispatch('settings:set', { autoStart: 'yes' })).toMatchObject({ ok: false, error: { code: 'invalid-payload' } });
    expect(await r.dispatch('settings:get', {})).toMatchObject({ ok: true, value: { autoStart: true } });
  });

  it('settings:set keeps subnet routes and MagicDNS, and a partial update of other keys leaves them alone', async () => {
    const r = rig();
    await r.host.start();
    expect(await r.dispatch('settings:get', {})).toMatchObject({ ok: true, value: { acceptRoutes: false, acceptDns: true } });
    expect(await r.dispatch('settings:set', { acceptRoutes: true, acceptDns: false })).toMatchObject({ ok: true, value: { acceptRoutes: true, acceptDns: false } });
    expect(await r.dispatch('settings:set', { notifications: false })).toMatchObject({ ok: true, value: { acceptRoutes: true, acceptDns: false, notifications: false } });
    expect(await r.dispatch('settings:get', {})).toMatchObject({ ok: true, value: { acceptRoutes: true, acceptDns: false } });
    expect(JSON.parse(await readFile(join(dir, 'settings.json'), 'utf8'))).toMatchObject({ acceptRoutes: true, acceptDns: false });
    expect(await r.dispatch('settings:set', { acceptRoutes: 'yes' })).toMatchObject({ ok: false, error: { code: 'invalid-payload' } });
  });

  it('opens only the login server URLs, and only http(s)', async () => {
    const opened: string[] = [];
    const r = await joined({ openExternal: async (u) => void opened.push(u) });
    expect(await r.dispatch('session:open-auth-url', { url: 'https://hs.example.com/register/abc' })).toEqual({ ok: true, value: { done: true } });
    expect(await r.dispatch('session:open-auth-url', { url: 'https://evil.example.net/' })).toMatchObject({ ok: false, error: { code: 'invalid-payload' } });
    expect(await r.dispatch('session:open-auth-url', { url: 'file:///etc/passwd' })).toMatchObject({ ok: false, error: { code: 'invalid-payload' } });
    expect(opened).toEqual(['https://hs.example.com/register/abc']);
  });
});

describe('host: netcheck, logs, notices', () => {
  it('runs netcheck through the engine and sends the report in a delta', async () => {
    const r = await joined();
    r.events.length = 0;
    expect(await r.dispatch('netcheck:run', {})).toEqual({ ok: true, value: NETCHECK });
    expect(of(r, 'mesh:delta')).toEqual([{ netcheck: NETCHECK }]);
    expect(r.ui().netcheck).toEqual(NETCHECK);
  });

  it("engine:status names weftd's wireguard-go under dataPath, once the data plane exists", async () => {
    const wg = { path: '/opt/Weft/resources/bin/wireguard-go', version: '0.0.20250522', pinned: true };
    const r = await joined({ wireguardGo: wg });
    const e = r.engines[0]!;
    const before = await r.dispatch('engine:status', {});
    expect(before.ok && (before.value as StatusReport).dataPath).toBeFalsy(); // no data plane yet: nothing added
    e.report = { ...e.report, dataPath: { mode: 'kernel', reason: null } };
    expect(await r.dispatch('engine:status', {})).toMatchObject({ ok: true, value: { dataPath: { mode: 'kernel', reason: null, wireguardGo: wg } } });
  });

  it('engine:status passes the engine’s dataPath unchanged without one (tests with a fake interface)', async () => {
    const r = await joined();
    const e = r.engines[0]!;
    e.report = { ...e.report, dataPath: { mode: 'proxy', reason: 'x' } };
    const v = await r.dispatch('engine:status', {});
    expect(v.ok && (v.value as StatusReport).dataPath).toEqual({ mode: 'proxy', reason: 'x' });
  });

  it('netcheck without a network is a retryable state error', async () => {
    const r = rig();
    await r.host.start();
    expect(await r.dispatch('netcheck:run', {})).toMatchObject({ ok: false, error: { code: 'state', retryable: true } });
  });

  it('keeps engine log lines in a ring buffer with levels, and pushes them as log:entry', async () => {
    const r = await joined({ logCapacity: 5 });
    const logf = r.engines[0]!.init.logf!;
    logf('engine: weft0 up');
    logf('[v1] map message: keys=Peers');
    r.host.log('error', 'something broke');
    r.host.log('info', 'one');
    r.host.log('info', 'two');
    const logs = async (req: { level?: LogLevel; limit?: number }): Promise<LogEntry[]> => {
      const res = await r.dispatch('logs:get', req);
      if (!res.ok) throw new Error(res.error.message);
      return res.value as LogEntry[];
    };
    expect((await logs({})).map((e) => e.message)).toEqual(['engine: weft0 up', '[v1] map message: keys=Peers', 'something broke', 'one', 'two']);
    const errors = await r.dispatch('logs:get', { level: 'warn' });
    expect(errors).toEqual({ ok: true, value: [{ at: '2026-11-22T12:00:00.000Z', level: 'error', message: 'something broke' }] });
    expect((await logs({ limit: 2, level: 'debug' })).map((e) => e.message)).toEqual(['one', 'two']);
    expect((await logs({ level: 'info' })).map((e) => e.level)).toEqual(['info', 'error', 'info', 'info']);
    expect(of(r, 'log:entry').map((e) => e.message)).toContain('engine: weft0 up');
  });

  it('notifies a direct ⇄ relay flip once per peer per two minutes, and not when notifications are off', async () => {
    const r = await joined();
    const e = r.engines[0]!;
    const flip = async (kind: 'direct' | 'relay'): Promise<void> => {
      e.setPeers([peer('2', { path: kind === 'direct' ? { kind, endpoint: '192.0.2.2:41641', latencyMs: 2 } : { kind, region: 2 } }), peer('3')]);
      e.emit('peer:path-changed', 'k');
      await advance(r.clock, 300);
    };
    await flip('direct');
    await flip('relay');
    await flip('direct');
    expect(r.notices).toEqual([{ kind: 'path', peerId: '2', title: 'peer2: relayed', body: 'peer2 is now relayed through New York (nyc).' }]);
    await advance(r.clock, 120_000, 1000);
    await flip('relay');
    expect(r.notices).toHaveLength(2);
    await r.dispatch('settings:set', { notifications: false });
    await advance(r.clock, 120_000, 1000);
    await flip('direct');
    expect(r.notices).toHaveLength(2);
  });

  it('stop() leaves no timer behind', async () => {
    const r = await joined();
    await r.host.stop();
    expect(r.clock.pendingTimers).toBe(0);
  });
});

describe('newProfileId', () => {
  it('derives a contract-valid id from the host name, unique among the taken ones', () => {
    expect(newProfileId(new URL('https://HS.Example.com:8443/x'), [])).toBe('hs-example-com');
    expect(newProfileId(new URL('https://hs.example.com'), ['hs-example-com', 'hs-example-com-2'])).toBe('hs-example-com-3');
    expect(newProfileId(new URL('http://[::1]:8080'), [])).toBe('1');
    expect(newProfileId(new URL('http://a'.padEnd(80, 'b')), [])).toMatch(/^[a-z0-9-]{1,40}$/);
  });
});
