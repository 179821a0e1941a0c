/**
 * weftd's local API (src-main/daemon/api-server.ts, api-client.ts) with the real host and dispatcher over a fake
 * engine: reads and writes on the operator socket, writes refused on the read-only socket, events streamed to
 * subscribers, bad lines answered, and nothing that does not follow from the netmap accepted by any entry point.
 */
import { stat } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { METHOD_NAMES, WRITE_METHODS, type EventName } from '../../../src-shared/ipc/contract.ts';
import { connectDaemon, DaemonUnavailable, type DaemonClient } from '../../../src-main/daemon/api-client.ts';
import { OPERATOR_SOCKET, READ_SOCKET, startApiServer, type ApiServer } from '../../../src-main/daemon/api-server.ts';
import type { FakeEngine } from '../host/fake-engine.ts';
import { startRig, type Rig } from './rig.ts';

let rig: Rig;
let dir: string;
let api: ApiServer;
let engines: FakeEngine[];
let ifaces: string[];
const clients: DaemonClient[] = [];

beforeEach(async () => {
  rig = await startRig();
  ({ dir, api, engines, ifaces } = rig);
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await rig.stop();
});

async function connect(readOnly = false): Promise<DaemonClient> {
  const c = await connectDaemon(join(dir, 'run'), { readOnly });
  clients.push(c);
  return c;
}

describe('weftd local API', () => {
  it('creates a read socket for everyone and an operator socket for root only when the group is missing', async () => {
    expect((await stat(join(dir, 'run', READ_SOCKET))).mode & 0o777).toBe(0o666);
    expect((await stat(join(dir, 'run', OPERATOR_SOCKET))).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'run'))).mode & 0o777).toBe(0o755);
    expect(api.operatorGid).toBeNull();
  });

  it('grants write access on the operator socket: join, status and leave work', async () => {
    const c = await connect();
    expect(c.access).toBe('write');
    expect(c.daemonPid).toBe(process.pid);
    const joined = await c.invoke('session:join', { serverUrl: 'https://hs.example.com', authKey: 'k'.repeat(20) });
    expect(joined).toEqual({ ok: true, value: { done: true } });
    expect(engines).toHaveLength(1);
    expect(engines[0]!.init.server.origin).toBe('https://hs.example.com');
    const st = await c.invoke('engine:status', {});
    expect(st.ok && st.value.peers.map((p) => p.name)).toEqual(['peer2']);
    const ping = await c.invoke('engine:ping', { peer: '100.64.0.2' });
    expect(ping).toMatchObject({ ok: true, value: { peer: 'peer2' } });
    expect(await c.invoke('session:disconnect', {})).toEqual({ ok: true, value: { done: true } });
    expect(engines[0]!.stopped).toBe(1);
  });

  it('refuses every write on the read-only socket with permission-denied, and serves every read', async () => {
    const op = await connect();
    await op.invoke('session:join', { serverUrl: 'https://hs.example.com', authKey: 'k'.repeat(20) });
    const ro = await connect(true);
    expect(ro.access).toBe('read');
    const writes: Record<string, unknown> = {
      'session:join': { serverUrl: 'https://evil.example.com', authKey: 'x'.repeat(20) },
      'session:connect': {},
      'session:disconnect': {},
      'session:logout': {},
      'session:open-auth-url': { url: 'https://hs.example.com/x' },
      'settings:set': { notifications: false },
      'profiles:switch': { id: 'hs-example-com' },
      'profiles:remove': { id: 'hs-example-com' },
      'network:create-local': {},
      'network:policy-get': {},
      'network:policy-save': { text: '{}' },
    };
    expect(Object.keys(writes).sort()).toEqual([...WRITE_METHODS].sort());
    for (const [m, payload] of Object.entries(writes)) {
      const r = await ro.dispatch(m, payload);
      expect(r, m).toMatchObject({ ok: false, error: { code: 'permission-denied', message: expect.stringContaining('"weft-test-no-such-group" group') } });
    }
    // Nothing changed: the same one engine runs, still joined to the first server.
    expect(engines).toHaveLength(1);
    expect(engines[0]!.stopped).toBe(0);
    expect(engines[0]!.logouts).toBe(0);
    for (const m of METHOD_NAMES.filter((x) => !WRITE_METHODS.has(x) && x !== 'netcheck:run' && x !== 'network:policy-check')) {
      const payload = m === 'engine:ping' ? { peer: 'peer2' } : {};
      expect(await ro.dispatch(m, payload), m).toMatchObject({ ok: true });
    }
    // A read too, answered by the host: no network runs on this computer here.
    expect(await ro.dispatch('network:policy-check', { text: '{}' })).toMatchObject({ ok: false, error: { code: 'state', message: expect.stringContaining('create it first') as unknown } });
  });

  it('streams contract events to a subscriber', async () => {
    const sub = await connect(true);
    const got: EventName[] = [];
    sub.onEvent((e) => got.push(e));
    const op = await connect();
    await op.invoke('session:join', { serverUrl: 'https://hs.example.com', authKey: 'k'.repeat(20) });
    const deadline = Date.now() + 3000;
    while (!got.includes('mesh:delta') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(got).toContain('mesh:delta');
    expect(got).toContain('session:progress');
  });

  it('refuses anything that does not follow from the netmap at every entry point', async () => {
    const c = await connect();
    const captureAll = ['0.0.0.0/1', '128.0.0.0/1'];
    const foreign = { iface: 'eth0', routes: captureAll, addresses: ['192.0.2.1/24'], listenPort: 53, gateway: '192.0.2.254' };
    for (const m of METHOD_NAMES) {
      const base = m === 'session:join' ? { serverUrl: 'https://hs.example.com' } : m === 'engine:ping' ? { peer: 'peer2' } : m === 'profiles:switch' || m === 'profiles:remove' ? { id: 'x' } : m === 'session:open-auth-url' ? { url: 'https://hs.example.com' } : {};
      const r = await c.dispatch(m, { ...base, ...foreign });
      expect(r, m).toMatchObject({ ok: false, error: { code: 'invalid-payload' } });
    }
    // Methods outside the contract (what the retired helper offered) are unknown.
    for (const m of ['wg:create', 'wg:routes', 'wg:set', 'route:add', 'helper:routes']) {
      expect(await c.dispatch(m, { name: 'eth0', routes: captureAll }), m).toMatchObject({ ok: false, error: { code: 'unknown-method' } });
    }
    expect(engines).toHaveLength(0);
    expect(ifaces).toEqual([]);
  });

  it('answers malformed lines and keeps serving; a line over 64 KiB closes only that connection', async () => {
    const lines: string[] = [];
    const raw = net.connect(join(dir, 'run', OPERATOR_SOCKET));
    raw.setEncoding('utf8');
    let buf = '';
    raw.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    });
    await new Promise((r) => raw.once('connect', r));
    raw.write('{nope\n[1]\n{"id":5}\n{"id":6,"method":"shell:exec"}\n{"id":7,"method":"settings:get","payload":{}}\n');
    const deadline = Date.now() + 3000;
    while (lines.length < 6 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const msgs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(msgs[0]).toMatchObject({ hello: { api: 1, access: 'write' } });
    expect(msgs.slice(1, 4).map((m) => (m['result'] as { error: { code: string } }).error.code)).toEqual(['invalid-payload', 'invalid-payload', 'invalid-payload']);
    expect(msgs[4]).toMatchObject({ id: 6, result: { ok: false, error: { code: 'unknown-method' } } });
    expect(msgs[5]).toMatchObject({ id: 7, result: { ok: true } });
    const closed = new Promise((r) => raw.once('close', r));
    raw.write('x'.repeat(70 * 1024));
    await closed;
    const c = await connect();
    expect(await c.invoke('settings:get', {})).toMatchObject({ ok: true });
  });

  it('refuses a second engine on the same run directory, and says when none runs', async () => {
    await expect(
      startApiServer({ runDir: join(dir, 'run'), logf: () => undefined, backend: { dispatch: async () => ({ ok: true, value: null }), onEvent: () => () => undefined } }),
    ).rejects.toThrow(/already running/);
    await expect(connectDaemon(join(dir, 'nothing-here'))).rejects.toBeInstanceOf(DaemonUnavailable);
  });

  it('readers cannot crowd out operators: the read socket has its own connection limit', async () => {
    const held: net.Socket[] = [];
    try {
      for (let i = 0; i < 60; i++) {
        const s = net.connect(join(dir, 'run', READ_SOCKET));
        s.on('error', () => undefined);
        held.push(s);
      }
      await new Promise((r) => setTimeout(r, 200));
      const refused = await new Promise<string>((resolve) => {
        const s = net.connect(join(dir, 'run', READ_SOCKET));
        let got = '';
        s.setEncoding('utf8');
        s.on('data', (d: string) => (got += d));
        s.on('close', () => resolve(got));
        s.on('error', () => resolve(got));
      });
      expect(refused).toContain('too many connections');
      const op = await connect();
      expect(await op.invoke('settings:get', {})).toMatchObject({ ok: true });
    } finally {
      for (const s of held) s.destroy();
    }
  });

  it('fails pending calls when the daemon goes away', async () => {
    const c = await connect();
    const closed = new Promise<void>((r) => c.onClose(r));
    await api.close();
    await closed;
    expect(await c.invoke('settings:get', {})).toMatchObject({ ok: false, error: { code: 'daemon-unavailable' } });
  });
});
