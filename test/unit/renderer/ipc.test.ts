/** Transport choice and the contract guard around a WeftApi. */
import { describe, expect, it, vi } from 'vitest';
import { guardApi } from '../../../src-renderer/src/ipc/guard.ts';
import { chooseTransport, isApiShaped } from '../../../src-renderer/src/ipc/transport.ts';
import { FakeApi, ok } from './support/fake-client.ts';
import { peer, snapshot } from './support/fixtures.ts';

describe('chooseTransport', () => {
  const api = { invoke: () => undefined, on: () => undefined };

  it.each([
    [{ preload: api, search: '?bridge=ws://127.0.0.1:1', envUrl: 'ws://127.0.0.1:2' }, { kind: 'preload' }],
    [{ preload: undefined, search: '?bridge=ws%3A%2F%2F127.0.0.1%3A5123', envUrl: 'ws://127.0.0.1:2' }, { kind: 'ws', url: 'ws://127.0.0.1:5123', from: 'query' }],
    [{ preload: undefined, search: '', envUrl: 'wss://bridge.test/x' }, { kind: 'ws', url: 'wss://bridge.test/x', from: 'env' }],
    [{ preload: { version: '0.1.0' }, search: '', envUrl: 'ws://127.0.0.1:2' }, { kind: 'ws', url: 'ws://127.0.0.1:2', from: 'env' }],
    [{ preload: undefined, search: '?bridge=', envUrl: '' }, { kind: 'none' }],
    [{ preload: undefined, search: '?bridge=http://evil.test', envUrl: 'ws://127.0.0.1:2' }, { kind: 'none' }],
    [{ preload: undefined, search: '', envUrl: 'not a url' }, { kind: 'none' }],
  ] as const)('%o → %o', (inputs, expected) => {
    expect(chooseTransport(inputs)).toMatchObject(expected);
  });

  it('only an object with invoke and on counts as the preload API', () => {
    expect(isApiShaped(api)).toBe(true);
    expect(isApiShaped({ invoke: 1, on: () => 0 })).toBe(false);
    expect(isApiShaped(null)).toBe(false);
  });
});

describe('guardApi', () => {
  it('passes valid responses through, typed', async () => {
    const fake = new FakeApi().answer('mesh:snapshot', () => ok(snapshot([peer({ id: 'a' })])));
    const onInvalid = vi.fn();
    const c = guardApi(fake.api, 'preload', onInvalid);
    const r = await c.call('mesh:snapshot', {});
    expect(r.ok && r.value.peers[0]!.id).toBe('a');
    expect(onInvalid).not.toHaveBeenCalled();
  });

  it('turns a response that breaks the contract into invalid-payload, and reports it', async () => {
    const fake = new FakeApi().answer('mesh:snapshot', () => ok({ peers: 'nope' }));
    const onInvalid = vi.fn();
    const r = await guardApi(fake.api, 'preload', onInvalid).call('mesh:snapshot', {});
    expect(r).toMatchObject({ ok: false, error: { code: 'invalid-payload' } });
    expect(onInvalid).toHaveBeenCalledTimes(1);
  });

  it('rejects a result that is not an IpcResult, and a malformed error', async () => {
    const fake = new FakeApi().answer('settings:get', () => 'hello').answer('session:connect', () => ({ ok: false, error: { code: 'nope' } }));
    const c = guardApi(fake.api, 'ws', () => undefined);
    expect(await c.call('settings:get', {})).toMatchObject({ ok: false, error: { code: 'invalid-payload' } });
    expect(await c.call('session:connect', {})).toMatchObject({ ok: false, error: { code: 'invalid-payload' } });
  });

  it('passes errors from the other side through', async () => {
    const fake = new FakeApi().answer('session:join', () => ({ ok: false, error: { code: 'unreachable', message: 'ECONNREFUSED', retryable: true } }));
    const r = await guardApi(fake.api, 'preload', () => undefined).call('session:join', { serverUrl: 'https://hs.example.com' });
    expect(r).toEqual({ ok: false, error: { code: 'unreachable', message: 'ECONNREFUSED', retryable: true } });
  });

  it('checks requests before they leave', async () => {
    const fake = new FakeApi();
    const r = await guardApi(fake.api, 'preload', () => undefined).call('session:join', { serverUrl: 'not a url' });
    expect(r).toMatchObject({ ok: false, error: { code: 'invalid-payload' } });
    expect(fake.calls).toEqual([]);
  });

  it('a transport that throws becomes a retryable internal error', async () => {
    const fake = new FakeApi().answer('netcheck:run', () => {
      throw new Error('channel closed');
    });
    const r = await guardApi(fake.api, 'preload', () => undefined).call('netcheck:run', {});
    expect(r).toEqual({ ok: false, error: { code: 'internal', message: 'netcheck:run failed: channel closed', retryable: true } });
  });

  it('delivers valid events and drops invalid ones with a report', () => {
    const fake = new FakeApi();
    const onInvalid = vi.fn();
    const got = vi.fn();
    const off = guardApi(fake.api, 'preload', onInvalid).on('log:entry', got);
    fake.push('log:entry', { at: 'x', level: 'info', message: 'hi' });
    fake.push('log:entry', { at: 'x', level: 'loud', message: 'hi' });
    expect(got).toHaveBeenCalledWith({ at: 'x', level: 'info', message: 'hi' });
    expect(got).toHaveBeenCalledTimes(1);
    expect(onInvalid).toHaveBeenCalledWith(expect.objectContaining({ code: 'invalid-payload' }));
    off();
    expect(fake.listenerCount('log:entry')).toBe(0);
  });
});
