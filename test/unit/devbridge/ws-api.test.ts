/**
 * The renderer's WebSocket client (src-renderer/src/ipc/ws-api.ts) against the real dev bridge server on
 * loopback, with `ws` standing in for the browser's WebSocket.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { connectWsApi, type SocketLike, type WsWeftApi } from '../../../src-renderer/src/ipc/ws-api.ts';
import { newBridgeToken, startDevBridge, type DevBridge } from '../../../src-main/devbridge/server.ts';
import type { EventPayload } from '../../../src-shared/ipc/contract.ts';
import { FakeBackend, peer, snapshot, until } from './fixtures.ts';

const nodeSocket = (url: string): SocketLike => new WebSocket(url) as unknown as SocketLike;

describe('connectWsApi', () => {
  const open: { api?: WsWeftApi; bridge?: DevBridge }[] = [];
  afterEach(async () => {
    for (const o of open.splice(0)) {
      o.api?.close();
      await o.bridge?.close();
    }
  });

  const bridgeToken = newBridgeToken();

  async function setup(port = 0): Promise<{ backend: FakeBackend; bridge: DevBridge; api: WsWeftApi; warnings: string[] }> {
    const backend = new FakeBackend();
    backend.handlers.set('mesh:snapshot', () => ({ ok: true, value: snapshot([peer('1', 'b1')]) }));
    const bridge = await startDevBridge({ backend, token: bridgeToken, port });
    const warnings: string[] = [];
    const api = connectWsApi(bridge.url, { createSocket: nodeSocket, minBackoffMs: 20, maxBackoffMs: 100, warn: (m) => warnings.push(m) });
    open.push({ api, bridge });
    return { backend, bridge, api, warnings };
  }

  it('rejects URLs that are not ws:// or wss://', () => {
    expect(() => connectWsApi('http://127.0.0.1:1')).toThrow(/ws:\/\//);
    expect(() => connectWsApi('nope')).toThrow(/not a URL/);
  });

  it('invokes a method (waiting for the connection) and validates the response', async () => {
    const { api, backend } = await setup();
    const r = await api.invoke('mesh:snapshot', {});
    expect(r).toEqual({ ok: true, value: snapshot([peer('1', 'b1')]) });
    expect(api.connected).toBe(true);
    backend.handlers.set('settings:get', () => ({ ok: true, value: { autoStart: 'yes' } }));
    const bad = await api.invoke('settings:get', {});
    expect(bad).toMatchObject({ ok: false, error: { code: 'invalid-payload' } });
    backend.handlers.set('session:join', () => ({ ok: false, error: { code: 'auth-failed', message: 'bad key', retryable: false } }));
    expect(await api.invoke('session:join', { serverUrl: 'http://203.0.113.10:8080', authKey: 'k' })).toEqual({
      ok: false,
      error: { code: 'auth-failed', message: 'bad key', retryable: false },
    });
  });

  it('delivers valid events to listeners, drops invalid ones, and unsubscribes', async () => {
    const { api, backend, warnings } = await setup();
    await api.invoke('mesh:snapshot', {});
    const got: EventPayload<'log:entry'>[] = [];
    const off = api.on('log:entry', (e) => got.push(e));
    backend.fire('log:entry', { at: 'now', level: 'info', message: 'one' });
    backend.fire('log:entry', { at: 'now', level: 'loud', message: 'bad level' });
    backend.fire('log:entry', { at: 'now', level: 'warn', message: 'two' });
    await until(() => got.length === 2);
    expect(got.map((e) => e.message)).toEqual(['one', 'two']);
    expect(warnings.some((w) => /dropping log:entry/.test(w))).toBe(true);
    off();
    backend.fire('log:entry', { at: 'now', level: 'info', message: 'three' });
    await api.invoke('mesh:snapshot', {}); // a round trip: the event would have arrived before this answer
    expect(got).toHaveLength(2);
  });

  it('fails calls in flight with internal when the connection drops, reconnects, and resyncs the mesh', async () => {
    const { api, backend, bridge } = await setup();
    const deltas: EventPayload<'mesh:delta'>[] = [];
    api.on('mesh:delta', (d) => deltas.push(d));
    expect((await api.invoke('mesh:snapshot', {})).ok).toBe(true);
    backend.fire('mesh:delta', { upsertPeers: [peer('2', 'c1')] });
    await until(() => deltas.length === 1);
    // A call that never gets its answer: the bridge goes away under it.
    backend.handlers.set('netcheck:run', () => new Promise(() => undefined));
    const pending = api.invoke('netcheck:run', {});
    await until(() => backend.calls.some((c) => c.method === 'netcheck:run'));
    const port = bridge.port;
    await bridge.close();
    expect(await pending).toMatchObject({ ok: false, error: { code: 'internal', retryable: true } });
    expect(api.connected).toBe(false);
    // The bridge comes back on the same port with a different mesh: peer 2 gone, peer 3 new.
    const backend2 = new FakeBackend();
    backend2.handlers.set('mesh:snapshot', () => ({ ok: true, value: snapshot([peer('1', 'b1'), peer('3', 'd1')]) }));
    // Same port and token: the page's URL stays valid across a bridge restart only if the token does.
    const bridge2 = await startDevBridge({ backend: backend2, token: bridgeToken, port });
    open.push({ bridge: bridge2 });
    await until(() => deltas.length === 2, 5000);
    expect(deltas[1]!.removePeers).toEqual(['2']);
    expect(deltas[1]!.upsertPeers?.map((p) => p.id)).toEqual(['1', '3']);
    expect(api.connected).toBe(true);
  });

  it('fails a call that cannot reach the bridge in time, and everything once closed', async () => {
    const api = connectWsApi('ws://127.0.0.1:1', { createSocket: nodeSocket, connectWaitMs: 200, minBackoffMs: 20, maxBackoffMs: 50, warn: () => undefined });
    open.push({ api });
    expect(await api.invoke('mesh:snapshot', {})).toMatchObject({ ok: false, error: { code: 'internal', retryable: true } });
    const later = api.invoke('mesh:snapshot', {});
    api.close();
    expect(await later).toMatchObject({ ok: false, error: { code: 'internal', retryable: false } });
    expect(await api.invoke('mesh:snapshot', {})).toMatchObject({ ok: false, error: { code: 'internal' } });
  });
});
