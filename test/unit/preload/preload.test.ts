/**
 * Pins the surface the preload exposes: exactly `window.weft` with `invoke` and `on`, no raw ipcRenderer, and
 * contract checks in both directions. Electron is mocked (the binary is not needed).
 */
import { beforeAll, beforeEach, describe, expect, it, vi, type Mock } from 'vitest';
import type { WeftApi } from '../../../src-shared/ipc/contract.ts';
import { EVENT_CHANNEL, INVOKE_CHANNEL } from '../../../src-main/preload/channels.ts';

type IpcListener = (event: unknown, ...args: unknown[]) => void;

const m = vi.hoisted(() => {
  const listeners = new Map<string, ((event: unknown, ...args: unknown[]) => void)[]>();
  return {
    listeners,
    exposed: [] as [string, unknown][],
    invoke: null as unknown as Mock<(...args: unknown[]) => unknown>,
  };
});

vi.mock('electron', () => {
  m.invoke = vi.fn<(...args: unknown[]) => unknown>();
  return {
    contextBridge: { exposeInMainWorld: (key: string, api: unknown) => m.exposed.push([key, api]) },
    ipcRenderer: {
      invoke: (...args: unknown[]) => m.invoke(...args),
      on: (channel: string, l: IpcListener) => m.listeners.set(channel, [...(m.listeners.get(channel) ?? []), l]),
      removeListener: () => undefined,
      send: () => {
        throw new Error('the preload must not send');
      },
    },
  };
});

let weft: WeftApi;
const push = (event: unknown, payload: unknown): void => {
  for (const l of m.listeners.get(EVENT_CHANNEL) ?? []) l({}, event, payload);
};

beforeAll(async () => {
  await import('../../../src-main/preload/index.ts');
  weft = m.exposed[0]![1] as WeftApi;
});

beforeEach(() => {
  m.invoke.mockReset();
});

describe('preload', () => {
  it('exposes exactly one key, weft, with exactly invoke and on', () => {
    expect(m.exposed.map(([k]) => k)).toEqual(['weft']);
    expect(Object.keys(weft).sort()).toEqual(['invoke', 'on']);
    expect(typeof weft.invoke).toBe('function');
    expect(typeof weft.on).toBe('function');
    expect([...m.listeners.keys()]).toEqual([EVENT_CHANNEL]);
  });

  it('invokes through the one channel with the validated request and checks the response', async () => {
    const snap = { control: null, self: null, peers: [], regions: [], netcheck: null, tailnet: null };
    m.invoke.mockResolvedValueOnce({ ok: true, value: snap });
    expect(await weft.invoke('mesh:snapshot', {})).toEqual({ ok: true, value: snap });
    expect(m.invoke).toHaveBeenCalledWith(INVOKE_CHANNEL, 'mesh:snapshot', {});
  });

  it('refuses a bad request before it leaves, with a typed error', async () => {
    const r = await weft.invoke('session:join', { serverUrl: 'not a url' });
    expect(r).toMatchObject({ ok: false, error: { code: 'invalid-payload' } });
    const u = await (weft.invoke as (m: string, r: unknown) => ReturnType<WeftApi['invoke']>)('fs:read', {});
    expect(u).toMatchObject({ ok: false, error: { code: 'unknown-method' } });
    expect(m.invoke).not.toHaveBeenCalled();
  });

  it('turns an off-contract or failed reply into an error result', async () => {
    m.invoke.mockResolvedValueOnce({ ok: true, value: { control: 'nope' } });
    expect(await weft.invoke('mesh:snapshot', {})).toMatchObject({ ok: false, error: { code: 'invalid-payload' } });
    m.invoke.mockResolvedValueOnce({ ok: false, error: { code: 'helper-denied', message: 'cancelled', retryable: true } });
    expect(await weft.invoke('session:connect', {})).toEqual({ ok: false, error: { code: 'helper-denied', message: 'cancelled', retryable: true } });
    m.invoke.mockResolvedValueOnce('garbage');
    expect(await weft.invoke('session:connect', {})).toMatchObject({ ok: false, error: { code: 'internal' } });
    m.invoke.mockRejectedValueOnce(new Error('refused'));
    expect(await weft.invoke('session:connect', {})).toMatchObject({ ok: false, error: { code: 'internal' } });
  });

  it('delivers valid events, drops invalid ones, and unsubscribes', () => {
    const got: unknown[] = [];
    const off = weft.on('log:entry', (e) => got.push(e));
    push('log:entry', { at: '2026-11-22T12:00:00Z', level: 'info', message: 'hello' });
    push('log:entry', { at: 1, level: 'loud', message: 'bad' });
    push('not:an-event', {});
    push('mesh:stats', { peers: [] });
    off();
    push('log:entry', { at: '2026-11-22T12:00:01Z', level: 'info', message: 'after' });
    expect(got).toEqual([{ at: '2026-11-22T12:00:00Z', level: 'info', message: 'hello' }]);
    expect(() => (weft.on as (e: string, l: () => void) => void)('nope', () => undefined)).toThrow(TypeError);
  });
});
