/**
 * The dev bridge's WebSocket server: frame parsing (pure), then a real server on loopback with a fake backend
 * and real `ws` clients: requests, every kind of bad message, origin/host guards, event fan-out, limits.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { checkBackendResult, hostHeaderOk, newBridgeToken, parseClientFrame, startDevBridge, tokenOk, type DevBridge } from '../../../src-main/devbridge/server.ts';
import { FakeBackend, snapshot, until } from './fixtures.ts';

describe('parseClientFrame', () => {
  const MAX = 1024;
  it('accepts {id, method, payload}', () => {
    expect(parseClientFrame('{"id":7,"method":"mesh:snapshot","payload":{}}', false, MAX)).toEqual({ kind: 'request', id: 7, method: 'mesh:snapshot', payload: {} });
    expect(parseClientFrame(Buffer.from('{"id":"a1","method":"logs:get"}'), false, MAX)).toEqual({ kind: 'request', id: 'a1', method: 'logs:get', payload: undefined });
  });

  it.each([
    ['binary', '{"id":1,"method":"mesh:snapshot","payload":{}}', true, null],
    ['not JSON', '{nope', false, null],
    ['not an object', '[1,2]', false, null],
    ['no id', '{"method":"mesh:snapshot","payload":{}}', false, null],
    ['a fractional id', '{"id":1.5,"method":"mesh:snapshot","payload":{}}', false, null],
    ['an over-long id', JSON.stringify({ id: 'x'.repeat(65), method: 'mesh:snapshot', payload: {} }), false, null],
    ['no method', '{"id":3,"payload":{}}', false, 3],
    ['too large', JSON.stringify({ id: 4, method: 'mesh:snapshot', payload: { pad: 'x'.repeat(2000) } }), false, null],
  ] as const)('rejects %s with invalid-payload', (_n, data, binary, id) => {
    const f = parseClientFrame(data, binary, MAX);
    expect(f).toMatchObject({ kind: 'reject', id, error: { code: 'invalid-payload', retryable: false } });
  });

  it('answers a method outside the contract with unknown-method, keeping the id', () => {
    expect(parseClientFrame('{"id":9,"method":"shell:exec","payload":{}}', false, MAX)).toMatchObject({ kind: 'reject', id: 9, error: { code: 'unknown-method' } });
    expect(parseClientFrame('{"id":9,"method":"__proto__","payload":{}}', false, MAX)).toMatchObject({ kind: 'reject', error: { code: 'unknown-method' } });
  });
});

describe('checkBackendResult', () => {
  it('passes IpcResults through and turns anything else into internal', () => {
    expect(checkBackendResult({ ok: true, value: 1 })).toEqual({ ok: true, value: 1 });
    const err = { code: 'auth-failed', message: 'no', retryable: false };
    expect(checkBackendResult({ ok: false, error: err })).toEqual({ ok: false, error: err });
    for (const bad of [undefined, null, 42, { ok: true }, { ok: false }, { ok: false, error: { code: 1 } }]) {
      expect(checkBackendResult(bad)).toMatchObject({ ok: false, error: { code: 'internal' } });
    }
  });
});

const TOKEN = newBridgeToken();

describe('tokenOk', () => {
  it('accepts exactly the token, in the query', () => {
    expect(tokenOk(`/?token=${TOKEN}`, TOKEN)).toBe(true);
    expect(tokenOk(`/?x=1&token=${TOKEN}`, TOKEN)).toBe(true);
    expect(tokenOk('/', TOKEN)).toBe(false);
    expect(tokenOk(undefined, TOKEN)).toBe(false);
    expect(tokenOk(`/?token=${TOKEN.slice(1)}`, TOKEN)).toBe(false);
    expect(tokenOk(`/?token=${TOKEN}x`, TOKEN)).toBe(false);
    expect(tokenOk('/?token=', TOKEN)).toBe(false);
  });
});

describe('hostHeaderOk', () => {
  it('accepts loopback names on the bridge port only', () => {
    expect(hostHeaderOk('127.0.0.1:5000', 5000)).toBe(true);
    expect(hostHeaderOk('localhost:5000', 5000)).toBe(true);
    expect(hostHeaderOk('[::1]:5000', 5000)).toBe(true);
    expect(hostHeaderOk('127.0.0.1:5001', 5000)).toBe(false);
    expect(hostHeaderOk('evil.example:5000', 5000)).toBe(false);
    expect(hostHeaderOk(undefined, 5000)).toBe(false);
    expect(hostHeaderOk('a b', 5000)).toBe(false);
  });
});

describe('dev bridge server', () => {
  let backend: FakeBackend;
  let bridge: DevBridge;
  const sockets: WebSocket[] = [];
  const ORIGIN = 'http://127.0.0.1:5173';

  beforeEach(async () => {
    backend = new FakeBackend();
    backend.handlers.set('mesh:snapshot', () => ({ ok: true, value: snapshot() }));
    bridge = await startDevBridge({ backend, token: TOKEN, allowOrigin: (o) => o === ORIGIN, maxMessageBytes: 4096, maxConnections: 3 });
  });

  afterEach(async () => {
    for (const s of sockets.splice(0)) s.terminate();
    await bridge.close();
  });

  /** Opens a client; resolves once open (or rejects with the HTTP status of a refused upgrade). */
  function client(opts: { origin?: string; headers?: Record<string, string>; url?: string } = {}): Promise<WebSocket> {
    const ws = new WebSocket(opts.url ?? bridge.url, { ...(opts.origin ? { origin: opts.origin } : {}), headers: opts.headers ?? {} });
    sockets.push(ws);
    return new Promise((res, rej) => {
      ws.once('open', () => res(ws));
      ws.once('unexpected-response', (_req, r) => rej(new Error(`HTTP ${r.statusCode}`)));
      ws.once('error', rej);
    });
  }

  /** Every JSON frame the client receives, in order. */
  function inbox(ws: WebSocket): unknown[] {
    const got: unknown[] = [];
    ws.on('message', (d: Buffer) => got.push(JSON.parse(d.toString('utf8'))));
    return got;
  }

  it('listens on loopback only', async () => {
    expect(bridge.url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/\?token=[\w-]{43}$/);
    await expect(startDevBridge({ backend, token: TOKEN, host: '0.0.0.0' })).rejects.toThrow(/loopback/);
  });

  it('dispatches a request and answers {id, result}', async () => {
    const ws = await client();
    const got = inbox(ws);
    ws.send(JSON.stringify({ id: 1, method: 'mesh:snapshot', payload: {} }));
    await until(() => got.length === 1);
    expect(got[0]).toEqual({ id: 1, result: { ok: true, value: snapshot() } });
    expect(backend.calls).toEqual([{ method: 'mesh:snapshot', payload: {} }]);
  });

  it('answers every kind of bad message with an error and keeps serving', async () => {
    backend.handlers.set('settings:get', () => {
      throw new Error('boom');
    });
    backend.handlers.set('logs:get', () => 'not an IpcResult');
    const ws = await client();
    const got = inbox(ws);
    ws.send('{not json');
    ws.send(Buffer.from([1, 2, 3]), { binary: true });
    ws.send(JSON.stringify({ id: 2, method: 'no:such', payload: {} }));
    ws.send(JSON.stringify({ id: 3, method: 'settings:get', payload: {} }));
    ws.send(JSON.stringify({ id: 4, method: 'logs:get', payload: {} }));
    ws.send(JSON.stringify({ id: 5, method: 'mesh:snapshot', payload: { pad: 'x'.repeat(5000) } }));
    ws.send(JSON.stringify({ id: 6, method: 'mesh:snapshot', payload: {} }));
    await until(() => got.length === 7);
    const byId = (id: unknown): unknown[] => got.filter((m) => (m as { id: unknown }).id === id);
    expect(byId(null)).toHaveLength(3); // not JSON, binary, oversized (its id is not read)
    for (const m of byId(null)) expect(m).toMatchObject({ result: { ok: false, error: { code: 'invalid-payload' } } });
    expect(byId(2)[0]).toMatchObject({ result: { ok: false, error: { code: 'unknown-method' } } });
    expect(byId(3)[0]).toMatchObject({ result: { ok: false, error: { code: 'internal', message: expect.stringContaining('boom') } } });
    expect(byId(4)[0]).toMatchObject({ result: { ok: false, error: { code: 'internal' } } });
    expect(byId(6)[0]).toMatchObject({ result: { ok: true } });
    // The methods outside the contract never reached the backend.
    expect(backend.calls.map((c) => c.method)).toEqual(['settings:get', 'logs:get', 'mesh:snapshot']);
  });

  it('closes a client that sends a frame far over the limit, and survives', async () => {
    const ws = await client();
    const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
    ws.send('x'.repeat(4096 * 4 + 1));
    expect(await closed).toBe(1009);
    const ws2 = await client();
    const got = inbox(ws2);
    ws2.send(JSON.stringify({ id: 1, method: 'mesh:snapshot', payload: {} }));
    await until(() => got.length === 1);
  });

  it('accepts the allowed origin and no origin; refuses other origins and foreign Host headers', async () => {
    await expect(client({ origin: ORIGIN })).resolves.toBeInstanceOf(WebSocket);
    await expect(client()).resolves.toBeInstanceOf(WebSocket);
    await expect(client({ origin: 'http://evil.example' })).rejects.toThrow(/403/);
    await expect(client({ origin: 'http://127.0.0.1:5174' })).rejects.toThrow(/403/);
    await expect(client({ headers: { Host: `rebind.example:${bridge.port}` } })).rejects.toThrow(/403/);
  });

  it('refuses every connection without the token, with or without an Origin', async () => {
    const bare = `ws://127.0.0.1:${bridge.port}/`;
    await expect(client({ url: bare })).rejects.toThrow(/403/);
    await expect(client({ url: bare, origin: ORIGIN })).rejects.toThrow(/403/);
    await expect(client({ url: `${bare}?token=${newBridgeToken()}` })).rejects.toThrow(/403/);
    expect(backend.calls).toEqual([]);
    expect(bridge.clientCount).toBe(0);
  });

  it('limits the number of clients', async () => {
    await client();
    await client();
    await client();
    await expect(client()).rejects.toThrow(/503/);
  });

  it('answers plain HTTP with 426', async () => {
    const r = await fetch(bridge.url.replace('ws:', 'http:'));
    expect(r.status).toBe(426);
  });

  it('forwards backend events to every client as {event, payload}, and unsubscribes on close', async () => {
    const a = await client();
    const b = await client({ origin: ORIGIN });
    const ga = inbox(a);
    const gb = inbox(b);
    const entry = { at: '2026-01-01T00:00:00Z', level: 'info', message: 'hello' };
    backend.fire('log:entry', entry);
    await until(() => ga.length === 1 && gb.length === 1);
    expect(ga[0]).toEqual({ event: 'log:entry', payload: entry });
    expect(gb[0]).toEqual({ event: 'log:entry', payload: entry });
    expect(backend.listenerCount).toBe(1);
    await bridge.close();
    expect(backend.listenerCount).toBe(0);
  });

  it('caps requests in flight per client', async () => {
    const bridge2 = await startDevBridge({ backend, token: TOKEN, maxInFlight: 2 });
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    backend.handlers.set('settings:get', async () => {
      await gate;
      return { ok: true, value: 'late' };
    });
    try {
      const ws = new WebSocket(bridge2.url);
      sockets.push(ws);
      await new Promise((r) => ws.once('open', r));
      const got = inbox(ws);
      for (const id of [1, 2, 3]) ws.send(JSON.stringify({ id, method: 'settings:get', payload: {} }));
      await until(() => got.length === 1);
      expect(got[0]).toMatchObject({ id: 3, result: { ok: false, error: { code: 'internal', retryable: true } } });
      release();
      await until(() => got.length === 3);
    } finally {
      release();
      await bridge2.close();
    }
  });
});
