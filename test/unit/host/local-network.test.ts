/** "Create a network on this computer" (`network:create-local`): the host starts the embedded server and joins it. */
import { createServer as createNetServer, type Server } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalNetwork, PolicyFileView } from '../../../src-shared/ipc/contract.ts';
import type { EngineInit } from '../../../src-main/engine/engine.ts';
import type { WgInterface } from '../../../src-main/engine/wg/iface.ts';
import { createDispatcher } from '../../../src-main/host/dispatch.ts';
import { createHost, LOCAL_PROFILE_NAME, type Host } from '../../../src-main/host/host.ts';
import { DEFAULT_LOCAL_POLICY, joinQrText, lanIPv4, LOCAL_USER } from '../../../src-main/host/local-network.ts';
import { MemoryStore } from '../../../src-main/server/store/memory.ts';
import { FakeClock } from '../../sim/fake-clock.ts';
import { FakeEngine } from './fake-engine.ts';
import { eventually } from '../../support/eventually.ts';

let dir: string;
let hosts: Host[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weft-local-net-'));
});
afterEach(async () => {
  for (const h of hosts) await h.stop();
  hosts = [];
  await rm(dir, { recursive: true, force: true });
});

const noInterface = (): Promise<WgInterface> => Promise.reject(new Error('no interface in unit tests'));

interface Rig {
  host: Host;
  /** The store the server opened last (each start opens its own, as the SQLite one would). */
  readonly store: MemoryStore;
  engines: FakeEngine[];
  dispatch: ReturnType<typeof createDispatcher>;
}

function rig(): Rig {
  const stores: MemoryStore[] = [];
  const engines: FakeEngine[] = [];
  const host = createHost({
    dataDir: dir,
    createInterface: noInterface,
    clock: new FakeClock(),
    createEngine: (init: EngineInit) => {
      const e = new FakeEngine(init);
      engines.push(e);
      return e;
    },
    localServer: {
      openStore: async () => {
        const s = new MemoryStore();
        stores.push(s);
        return s;
      },
      lanAddress: () => '127.0.0.1',
      stun: false,
    },
  });
  hosts.push(host);
  return {
    host,
    get store() {
      const s = stores[stores.length - 1];
      if (!s) throw new Error('no store opened yet');
      return s;
    },
    engines,
    dispatch: createDispatcher(host.handlers),
  };
}

/** Calls network:create-local through the dispatcher; answers the parsed response (throws on an error). */
async function create(r: Rig, payload: unknown): Promise<LocalNetwork> {
  const res = await r.dispatch('network:create-local', payload);
  if (!res.ok) throw new Error(`${res.error.code}: ${res.error.message}`);
  return LocalNetwork.parse(res.value);
}

async function health(url: string): Promise<number> {
  const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(5000) });
  await r.text();
  return r.status;
}

describe('network:create-local', () => {
  it('starts the embedded server, joins this device to it with a key of its own, and answers the URL, a reusable key and a QR code', async () => {
    const r = rig();
    await r.host.start();
    const v = await create(r, { listen: '127.0.0.1:0' });
    expect(v.serverUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(await health(v.serverUrl)).toBe(200);

    // The store has the local user with two keys: a single-use one (this device) and the reusable one returned.
    const user = r.store.userByName(LOCAL_USER);
    expect(user).not.toBeNull();
    const keys = r.store.listPreAuthKeys(user!.id);
    expect(keys.map((k) => k.reusable).sort()).toEqual([false, true]);
    const reusable = keys.find((k) => k.reusable)!;
    expect(v.authKey.startsWith(reusable.prefix)).toBe(true);
    expect(reusable.expiresAt).not.toBeNull();

    // Joined like session:join: one engine, for this server, with the single-use key (not the one handed out).
    expect(r.engines).toHaveLength(1);
    const init = r.engines[0]!.init;
    expect(init.server.origin).toBe(v.serverUrl);
    expect(init.authKey).toBeDefined();
    expect(init.authKey).not.toBe(v.authKey);
    expect(keys.find((k) => !k.reusable)!.prefix).toBe(init.authKey!.slice(0, keys.find((k) => !k.reusable)!.prefix.length));
    const s = r.host.settings();
    const active = s.profiles.find((p) => p.id === s.activeProfile);
    expect(active).toMatchObject({ name: LOCAL_PROFILE_NAME, serverUrl: v.serverUrl });

    // The QR code: an SVG document without scripts, holding the URL and the key.
    expect(v.qrText).toBe(joinQrText(v.serverUrl, v.authKey));
    expect(v.qrSvg.startsWith('<svg')).toBe(true);
    expect(v.qrSvg).not.toMatch(/<script|on\w+=/i);
  });

  it('a second call keeps the server and the connection, and hands out a fresh key', async () => {
    const r = rig();
    await r.host.start();
    const a = await create(r, { listen: '127.0.0.1:0' });
    const b = await create(r, {});
    expect(b.serverUrl).toBe(a.serverUrl);
    expect(b.authKey).not.toBe(a.authKey);
    expect(r.engines).toHaveLength(1);
    expect(r.engines[0]!.stopped).toBe(0);
  });

  it('the policy file: read, checked with its lines, saved only when valid; nothing before the network exists', async () => {
    const r = rig();
    await r.host.start();
    const before = await r.dispatch('network:policy-get', {});
    expect(before).toMatchObject({ ok: false, error: { code: 'state', message: expect.stringContaining('create it first') as unknown } });
    await create(r, { listen: '127.0.0.1:0' });
    const got = await r.dispatch('network:policy-get', {});
    if (!got.ok) throw new Error(got.error.message);
    expect(got.value).toEqual({ path: join(dir, 'server', 'policy.hujson'), text: DEFAULT_LOCAL_POLICY, problem: null });
    const bad = '{\n  "acls": [\n    {"action": "accept", "src": ["nobody@"], "dst": ["local@:22"]}\n  ]\n}';
    const check = await r.dispatch('network:policy-check', { text: bad });
    expect(check).toEqual({ ok: true, value: { valid: false, errors: [{ line: 3, column: expect.any(Number) as unknown, message: 'unknown user "nobody@" (users: local)' }] } });
    const refused = await r.dispatch('network:policy-save', { text: bad });
    expect(refused).toMatchObject({ ok: true, value: { valid: false, saved: false } });
    expect(await readFile(join(dir, 'server', 'policy.hujson'), 'utf8')).toBe(DEFAULT_LOCAL_POLICY);
    const good = '{"acls": [{"action": "accept", "src": ["local@"], "dst": ["local@:*"]}]}';
    expect(await r.dispatch('network:policy-save', { text: good })).toEqual({ ok: true, value: { valid: true, errors: [], saved: true } });
    expect(await readFile(join(dir, 'server', 'policy.hujson'), 'utf8')).toBe(good);
    // An edit by hand that the server refuses: policy-get says why the file is not in force (the panel shows it),
    // until a valid file is back.
    await writeFile(join(dir, 'server', 'policy.hujson'), bad);
    const problem = async (): Promise<string | null> => {
      const g = await r.dispatch('network:policy-get', {});
      if (!g.ok) return `error: ${g.error.message}`;
      return PolicyFileView.parse(g.value).problem;
    };
    await eventually('the refusal shows', 8000, async () => ((await problem()) !== null ? true : undefined), 20);
    expect(await problem()).toMatch(/refused:\nline 3, column \d+: unknown user "nobody@"/);
    await writeFile(join(dir, 'server', 'policy.hujson'), good);
    await eventually('the problem clears', 8000, async () => ((await problem()) === null ? true : undefined), 20);
    // Oversized input never reaches the checker.
    expect(await r.dispatch('network:policy-check', { text: 'x'.repeat((1 << 20) + 1) })).toMatchObject({ ok: false });
    // Two file changes, each seen by the server's 1 s stat poll: more than vitest's default 5 s on a loaded machine.
  }, 20_000);

  it('stop() closes the server', async () => {
    const r = rig();
    await r.host.start();
    const a = await create(r, { listen: '127.0.0.1:0' });
    await r.host.stop();
    await expect(health(a.serverUrl)).rejects.toThrow();
    expect(() => r.store.createUser('after-close', 0)).toThrow(/closed/);
  });

  it('a server that cannot start is a retryable internal error, and a later call can succeed', async () => {
    const blocker: Server = createNetServer();
    await new Promise<void>((res) => blocker.listen(0, '127.0.0.1', res));
    const port = (blocker.address() as { port: number }).port;
    try {
      const r = rig();
      await r.host.start();
      const bad = await r.dispatch('network:create-local', { listen: `127.0.0.1:${port}` });
      expect(bad).toMatchObject({ ok: false, error: { code: 'internal', retryable: true, message: expect.stringMatching(/EADDRINUSE/) } });
      expect(r.engines).toHaveLength(0);
      const good = await r.dispatch('network:create-local', { listen: '127.0.0.1:0' });
      expect(good.ok).toBe(true);
    } finally {
      await new Promise<void>((res) => blocker.close(() => res()));
    }
  });
});

describe('lanIPv4', () => {
  const ifc = (address: string, internal = false) => ({ address, netmask: '255.255.255.0', family: 'IPv4' as const, mac: '00:00:00:00:00:00', internal, cidr: `${address}/24` });
  it('prefers a private address, skips loopback, link-local and Weft tunnel addresses', () => {
    expect(lanIPv4({ lo: [ifc('127.0.0.1', true)], weft0: [ifc('100.64.0.7')], eth0: [ifc('169.254.3.3'), ifc('192.168.1.20')] })).toBe('192.168.1.20');
    expect(lanIPv4({ eth0: [ifc('203.0.113.5')], weft0: [ifc('100.64.0.7')] })).toBe('203.0.113.5');
    expect(lanIPv4({ lo: [ifc('127.0.0.1', true)] })).toBeNull();
  });
});
