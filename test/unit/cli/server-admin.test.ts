import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { serverAdmin, type AdminIo } from '../../../src-main/cli/commands/server-admin.ts';
import { parseExpiration } from '../../../src-main/cli/commands/server-admin-view.ts';
import { serverDbPath } from '../../../src-main/server/store/paths.ts';
import { openSqliteStore } from '../../../src-main/server/store/sqlite.ts';
import type { ServerStore } from '../../../src-main/server/store/types.ts';
import { newNode } from '../server/store/store-contract.ts';

const T0 = Date.UTC(2025, 0, 2, 3, 4, 5);
const HOUR = 3_600_000;

let dir: string;
let now: number;
let answer: boolean | null;
/** Everything the CLI printed in this test, to check no key hash ever appears. */
let transcript: string;
let stores: ServerStore[];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'weft-admin-'));
  now = T0;
  answer = null;
  transcript = '';
  stores = [];
});
afterEach(() => {
  for (const s of stores) s.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `weft server ARGV --data DIR` and returns its exit code and output. */
async function admin(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: AdminIo = {
    out: (t) => void (out += t),
    err: (t) => void (err += t),
    now: () => now,
    confirm: async () => answer,
  };
  const code = await serverAdmin([...argv, '--data', dir], io);
  transcript += out + err;
  return { code, out, err };
}

async function json<T = Record<string, unknown>>(...argv: string[]): Promise<T> {
  const r = await admin(...argv, '-o', 'json');
  expect(r, r.err).toMatchObject({ code: 0, err: '' });
  return JSON.parse(r.out) as T;
}

/** The server's own connection to the same database. */
function server(): ServerStore {
  const s = openSqliteStore(serverDbPath(dir));
  stores.push(s);
  return s;
}

describe('weft server users', () => {
  it('creates and lists users as a table and as JSON', async () => {
    expect(await admin('users', 'create', 'alice')).toEqual({ code: 0, out: 'created user alice (id 1)\n', err: '' });
    expect(await json('users', 'create', 'bob@example.com')).toEqual({ id: 2, name: 'bob@example.com', createdAt: '2025-01-02T03:04:05.000Z' });
    const table = await admin('users', 'list');
    expect(table.out).toBe(
      ['ID  NAME             CREATED', '1   alice            2025-01-02T03:04:05Z', '2   bob@example.com  2025-01-02T03:04:05Z', ''].join('\n'),
    );
    expect(await json<unknown[]>('users', 'list')).toEqual([
      { id: 1, name: 'alice', createdAt: '2025-01-02T03:04:05.000Z' },
      { id: 2, name: 'bob@example.com', createdAt: '2025-01-02T03:04:05.000Z' },
    ]);
    expect((await admin('user', 'ls', '--json')).out).toContain('"name": "alice"');
    expect((await admin('users', 'list', '-o', 'json-line')).out).toBe(
      '[{"id":1,"name":"alice","createdAt":"2025-01-02T03:04:05.000Z"},{"id":2,"name":"bob@example.com","createdAt":"2025-01-02T03:04:05.000Z"}]\n',
    );
  });

  it('rejects a duplicate, a missing or an invalid name', async () => {
    await admin('users', 'create', 'alice');
    expect(await admin('users', 'create', 'alice')).toMatchObject({ code: 1, err: 'weft server: user "alice" already exists\n' });
    expect(await admin('users', 'create')).toMatchObject({ code: 2, err: expect.stringContaining('needs a NAME') });
    expect(await admin('users', 'create', '-x')).toMatchObject({ code: 2, err: expect.stringContaining("Unknown option '-x'") });
    for (const bad of ['42', '1abc', 'a b', 'x'.repeat(64), 'a/b'])
      expect(await admin('users', 'create', bad), bad).toMatchObject({ code: 2, err: expect.stringContaining('invalid user name') });
    expect(await admin('users', 'create', 'a', 'b')).toMatchObject({ code: 2, err: expect.stringContaining('unexpected argument "b"') });
    expect(await json<unknown[]>('users', 'list')).toHaveLength(1);
  });
});

describe('weft server preauthkeys', () => {
  beforeEach(async () => {
    await admin('users', 'create', 'alice');
    await admin('users', 'create', 'bob');
  });

  it('prints only the key without -o, so it can be captured', async () => {
    const r = await admin('preauthkeys', 'create', '--user', 'alice');
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(r.out).toMatch(/^[0-9a-f]{48}\n$/);
    const key = r.out.trim();
    const s = server();
    expect(s.listPreAuthKeys()).toEqual([expect.objectContaining({ prefix: key.slice(0, 8), reusable: false, ephemeral: false, expiresAt: T0 + HOUR })]);
    expect(s.registerWithAuthKey(key, { machineKey: 'mkey:1', nodeKey: 'nodekey:1', hostname: 'h', hostinfo: null, expiresAt: null }, T0)).toMatchObject({
      node: { userId: 1 },
    });
  });

  it('creates reusable, ephemeral and never-expiring keys, for a user by name or id, with JSON output', async () => {
    const k = await json('preauthkeys', 'create', '--user', '2', '--reusable', '--ephemeral', '--expiration', '0');
    expect(Object.keys(k)).toEqual(['id', 'prefix', 'userId', 'user', 'reusable', 'ephemeral', 'status', 'createdAt', 'expiresAt', 'usedAt', 'revokedAt', 'key']);
    expect(k).toMatchObject({ id: 1, userId: 2, user: 'bob', reusable: true, ephemeral: true, status: 'valid', expiresAt: null, usedAt: null, revokedAt: null });
    expect(k['prefix']).toBe((k['key'] as string).slice(0, 8));
    expect(await json('preauthkeys', 'create', '-u', 'alice', '-e', '30m')).toMatchObject({ expiresAt: '2025-01-02T03:34:05.000Z' });
    expect(await json('preauthkeys', 'create', '-u', 'alice', '--expiration', '1h30m')).toMatchObject({ expiresAt: '2025-01-02T04:34:05.000Z' });
  });

  it('rejects a missing or unknown user and a bad expiration', async () => {
    expect(await admin('preauthkeys', 'create')).toMatchObject({ code: 2, err: expect.stringContaining('--user NAME|ID is required') });
    expect(await admin('preauthkeys', 'create', '--user', 'carol')).toMatchObject({ code: 1, err: expect.stringContaining('no user "carol"') });
    expect(await admin('preauthkeys', 'create', '--user', '9')).toMatchObject({ code: 1, err: expect.stringContaining('no user "9"') });
    for (const e of ['1x', 'h', '-1h', '0h', ''])
      expect(await admin('preauthkeys', 'create', '--user', 'alice', '--expiration', e), e).toMatchObject({ code: 2, err: expect.stringContaining('--expiration') });
    expect(await admin('preauthkeys', 'create', '--user', 'alice', '--bogus')).toMatchObject({ code: 2, err: expect.stringContaining("Unknown option '--bogus'") });
    expect(await json<unknown[]>('preauthkeys', 'list')).toEqual([]);
  });

  it('lists keys with their prefix and status, per user, and never the key or its hash', async () => {
    const a = (await admin('preauthkeys', 'create', '--user', 'alice')).out.trim();
    const b = (await admin('preauthkeys', 'create', '--user', 'bob', '--reusable', '--expiration', '0')).out.trim();
    server().registerWithAuthKey(a, { machineKey: 'mkey:1', nodeKey: 'nodekey:1', hostname: 'h', hostinfo: null, expiresAt: null }, T0);
    const table = (await admin('preauthkeys', 'list')).out;
    expect(table.split('\n')[0]).toBe('ID  PREFIX    USER   REUSABLE  EPHEMERAL  STATUS  EXPIRATION            CREATED');
    expect(table).toContain(`1   ${a.slice(0, 8)}  alice  no        no         used    2025-01-02T04:04:05Z  2025-01-02T03:04:05Z`);
    expect(table).toContain(`2   ${b.slice(0, 8)}  bob    yes       no         valid   never                 2025-01-02T03:04:05Z`);
    expect(table).not.toContain(a.slice(8));
    expect(table).not.toContain(b.slice(8));
    expect(await json<{ id: number }[]>('preauthkeys', 'list', '--user', 'bob')).toEqual([expect.objectContaining({ id: 2, user: 'bob', prefix: b.slice(0, 8) })]);
    now = T0 + 2 * HOUR;
    expect(await json<unknown[]>('preauthkeys', 'list', '--user', 'alice')).toEqual([expect.objectContaining({ status: 'used' })]);
    for (const key of [a, b]) {
      const h = createHash('sha256').update(key).digest();
      for (const enc of [h.toString('hex'), h.toString('base64')]) expect(transcript.includes(enc.slice(0, 16))).toBe(false);
    }
  });

  it('expires a key by id or by prefix', async () => {
    const a = (await admin('preauthkeys', 'create', '--user', 'alice')).out.trim();
    const b = (await admin('preauthkeys', 'create', '--user', 'alice')).out.trim();
    expect(await admin('preauthkeys', 'expire', '--id', '1')).toEqual({ code: 0, out: `expired pre-auth key 1 (${a.slice(0, 8)})\n`, err: '' });
    expect(await admin('preauthkeys', 'expire', '--id', '1')).toMatchObject({ code: 0, out: expect.stringContaining('was already expired') });
    expect(await json('preauthkeys', 'expire', '--prefix', b.slice(0, 6))).toMatchObject({ id: 2, status: 'revoked', revokedAt: '2025-01-02T03:04:05.000Z' });
    expect(server().registerWithAuthKey(b, { machineKey: 'mkey:1', nodeKey: 'nodekey:1', hostname: 'h', hostinfo: null, expiresAt: null }, T0)).toEqual({
      error: 'revoked',
    });
  });

  it('rejects bad expire requests', async () => {
    await admin('preauthkeys', 'create', '--user', 'alice');
    expect(await admin('preauthkeys', 'expire')).toMatchObject({ code: 2, err: expect.stringContaining('exactly one of --id N or --prefix') });
    expect(await admin('preauthkeys', 'expire', '--id', '1', '--prefix', 'abcd')).toMatchObject({ code: 2 });
    expect(await admin('preauthkeys', 'expire', '--id', 'x')).toMatchObject({ code: 2, err: expect.stringContaining('--id must be a positive number') });
    expect(await admin('preauthkeys', 'expire', '--id', '7')).toMatchObject({ code: 1, err: expect.stringContaining('no pre-auth key with id 7') });
    expect(await admin('preauthkeys', 'expire', '--prefix', 'zz')).toMatchObject({ code: 2, err: expect.stringContaining('--prefix must be') });
    expect(await admin('preauthkeys', 'expire', '--id', '1', '--user', 'bob')).toMatchObject({ code: 1, err: expect.stringContaining('for user bob') });
  });
});

describe('weft server nodes', () => {
  beforeEach(async () => {
    await admin('users', 'create', 'alice');
    await admin('users', 'create', 'bob');
  });

  const pending = { id: 'Ab3_x-9', machineKey: 'mkey:p', nodeKey: 'nodekey:p', hostname: 'laptop', hostinfo: null, createdAt: T0 };

  it('approves a pending registration, and the running server notices through changeCounter()', async () => {
    const s = server();
    s.addPending(pending);
    const before = s.changeCounter();
    expect(await admin('nodes', 'register', '--key', pending.id, '--user', 'bob')).toEqual({
      code: 0,
      out: `approved registration ${pending.id} (laptop) for user bob; the device finishes joining on its next request\n`,
      err: '',
    });
    expect(s.changeCounter()).not.toBe(before);
    expect(s.pendingById(pending.id)?.approvedUserId).toBe(2);
  });

  it('accepts the whole login URL and prints JSON', async () => {
    server().addPending(pending);
    expect(await json('nodes', 'register', '-k', `https://vpn.example.com/register/${pending.id}`, '-u', 'alice')).toEqual({
      registrationId: pending.id,
      userId: 1,
      user: 'alice',
      hostname: 'laptop',
      machineKey: 'mkey:p',
      nodeKey: 'nodekey:p',
    });
  });

  it('rejects an unknown registration, a missing key or user', async () => {
    expect(await admin('nodes', 'register', '--key', 'nope', '--user', 'alice')).toMatchObject({ code: 1, err: expect.stringContaining('no pending registration "nope"') });
    expect(await admin('nodes', 'register', '--user', 'alice')).toMatchObject({ code: 2, err: expect.stringContaining('--key REGISTRATION_ID') });
    expect(await admin('nodes', 'register', '--key', 'a b', '--user', 'alice')).toMatchObject({ code: 2 });
    server().addPending(pending);
    expect(await admin('nodes', 'register', '--key', pending.id)).toMatchObject({ code: 2, err: expect.stringContaining('--user NAME|ID is required') });
    expect(await admin('nodes', 'register', '--key', pending.id, '--user', 'carol')).toMatchObject({ code: 1 });
    expect(server().pendingById(pending.id)?.approvedUserId).toBeNull();
  });

  it('lists nodes as a table and as JSON with stable fields, per user', async () => {
    const s = server();
    s.registerForUser(newNode(1, 1, { hostname: 'Web 1' }), T0);
    s.registerForUser(newNode(2, 2, { hostname: 'db', ephemeral: true, expiresAt: T0 + HOUR }), T0);
    s.updateNode(1, { lastSeen: T0, endpoints: ['192.0.2.1:41641'], discoKey: 'discokey:1', homeDerp: 1 });
    const table = (await admin('nodes', 'list')).out.split('\n');
    expect(table[0]).toBe('ID  HOSTNAME  NAME   USER   IPV4        IPV6               TAGS  EPHEMERAL  LAST SEEN             EXPIRATION            EXPIRED');
    expect(table[1]).toBe('1   Web 1     web-1  alice  100.64.0.1  fd7a:115c:a1e0::1  -     no         2025-01-02T03:04:05Z  never                 no');
    expect(table[2]).toBe('2   db        db     bob    100.64.0.2  fd7a:115c:a1e0::2  -     yes        never                 2025-01-02T04:04:05Z  no');
    const nodes = await json<Record<string, unknown>[]>('nodes', 'list');
    expect(Object.keys(nodes[0]!)).toEqual([
      'id',
      'userId',
      'user',
      'hostname',
      'givenName',
      'ipAddresses',
      'machineKey',
      'nodeKey',
      'discoKey',
      'endpoints',
      'homeDerp',
      'ephemeral',
      'expired',
      'online',
      'createdAt',
      'expiresAt',
      'lastSeen',
      'authKeyId',
      'tags',
      'approvedRoutes',
      'availableRoutes',
      'servingRoutes',
    ]);
    expect(nodes[0]).toMatchObject({ id: 1, user: 'alice', ipAddresses: ['100.64.0.1', 'fd7a:115c:a1e0::1'], endpoints: ['192.0.2.1:41641'], homeDerp: 1 });
    expect(await json<{ id: number }[]>('nodes', 'list', '--user', 'bob')).toEqual([expect.objectContaining({ id: 2, ephemeral: true })]);
  });

  it('expires a node once', async () => {
    const s = server();
    s.registerForUser(newNode(1, 1), T0);
    now = T0 + 10;
    expect(await json('nodes', 'expire', '--identifier', '1')).toMatchObject({ id: 1, expired: true, expiresAt: new Date(T0 + 10).toISOString() });
    expect(s.nodeById(1)?.expiresAt).toBe(T0 + 10);
    now = T0 + 20;
    expect(await admin('nodes', 'expire', '-i', '1')).toMatchObject({ code: 0, out: expect.stringContaining('already expired') });
    expect(s.nodeById(1)?.expiresAt).toBe(T0 + 10);
    expect(await admin('nodes', 'expire', '-i', '5')).toMatchObject({ code: 1, err: expect.stringContaining('no node with id 5') });
    expect(await admin('nodes', 'expire', '-i', 'one')).toMatchObject({ code: 2 });
    expect(await admin('nodes', 'expire')).toMatchObject({ code: 2, err: expect.stringContaining('--identifier N is required') });
  });

  it('deletes a node only with --force or a yes on the terminal', async () => {
    const s = server();
    for (const i of [1, 2, 3]) s.registerForUser(newNode(1, i), T0);
    answer = null;
    expect(await admin('nodes', 'delete', '--identifier', '1')).toMatchObject({ code: 2, err: expect.stringContaining('pass --force') });
    answer = false;
    expect(await admin('nodes', 'delete', '--identifier', '1')).toMatchObject({ code: 1, err: 'not deleted\n' });
    expect(s.nodeById(1)).not.toBeNull();
    answer = true;
    expect(await admin('nodes', 'delete', '--identifier', '1')).toEqual({ code: 0, out: 'deleted node 1 (host-1)\n', err: '' });
    answer = null;
    expect(await json('nodes', 'delete', '-i', '2', '--force')).toMatchObject({ id: 2, givenName: 'host-2' });
    expect(s.listNodes().map((n) => n.id)).toEqual([3]);
    expect(await admin('nodes', 'delete', '-i', '2', '--force')).toMatchObject({ code: 1, err: expect.stringContaining('no node with id 2') });
  });
});

describe('weft server admin CLI', () => {
  it('prints usage for help (0) and for an unknown group or verb (2)', async () => {
    expect(await admin('users', '--help')).toMatchObject({ code: 0, out: expect.stringContaining('usage: weft server') });
    expect(await admin('nodes', 'list', '--help')).toMatchObject({ code: 0, out: expect.stringContaining('nodes register') });
    expect(await admin('users')).toMatchObject({ code: 2, err: expect.stringContaining('usage: weft server') });
    expect(await admin('apikeys', 'list')).toMatchObject({ code: 2 });
    expect(await admin('nodes', 'move')).toMatchObject({ code: 2, err: expect.stringContaining('unknown command "nodes move"') });
  });

  it('rejects an unknown output format', async () => {
    expect(await admin('users', 'list', '-o', 'yaml')).toMatchObject({ code: 2, err: expect.stringContaining('-o/--output must be json or json-line') });
  });

  it('fails clearly when the data directory cannot hold a database', async () => {
    const file = join(dir, 'not-a-dir');
    writeFileSync(file, 'x');
    const r = await serverAdmin(['users', 'list', '--data', file], { out: () => {}, err: (t) => void (transcript = t), now: () => now, confirm: async () => null });
    expect(r).toBe(1);
    expect(transcript).toContain('cannot open the server database');
  });
});

describe('weft server nodes tag', () => {
  it('replaces and clears a node\'s tags, refusing malformed ones', async () => {
    await admin('users', 'create', 'alice');
    const s = server();
    s.registerForUser(newNode(1, 1, { hostname: 'web' }), T0);
    expect(await admin('nodes', 'tag', '-i', '1', '-t', 'tag:server,tag:web')).toMatchObject({ code: 0, out: 'node 1 (web) tagged tag:server, tag:web\n' });
    expect(s.nodeById(1)!.tags).toEqual(['tag:server', 'tag:web']);
    expect((await json('nodes', 'tag', '-i', '1', '-t', 'tag:db')).tags).toEqual(['tag:db']);
    expect(await admin('nodes', 'tag', '-i', '1', '-t', 'server')).toMatchObject({ code: 2, err: expect.stringContaining('invalid tag "server"') });
    expect(await admin('nodes', 'tag', '-i', '9', '-t', 'tag:x')).toMatchObject({ code: 1, err: expect.stringContaining('no node with id 9') });
    expect(await admin('nodes', 'tag', '-i', '1', '--tags', '')).toMatchObject({ code: 0, out: 'node 1 (web) has no tags now\n' });
    expect(s.nodeById(1)!.tags).toEqual([]);
  });
});

describe('weft server nodes approve-routes and list-routes', () => {
  it('replaces the approved set (either /0 brings both, empty clears), and lists approved, available and serving routes', async () => {
    await admin('users', 'create', 'alice');
    const s = server();
    s.registerForUser(newNode(1, 1, { hostname: 'router', hostinfo: JSON.stringify({ RoutableIPs: ['192.168.1.0/24', '0.0.0.0/0', '::/0'] }) }), T0);
    s.registerForUser(newNode(1, 2, { hostname: 'laptop' }), T0);
    expect(await admin('nodes', 'list-routes')).toEqual({
      code: 0,
      out: 'ID  HOSTNAME  APPROVED  AVAILABLE                        SERVING (PRIMARY)\n1   router    -         192.168.1.0/24, 0.0.0.0/0, ::/0  -\n',
      err: '',
    });
    expect(await admin('nodes', 'approve-routes', '-i', '1', '-r', '::/0,10.0.0.0/8')).toMatchObject({
      code: 0,
      out: 'node 1 (router): approved routes 0.0.0.0/0, 10.0.0.0/8, ::/0; not announced by the node (unused until it does): 10.0.0.0/8\n',
    });
    expect(s.nodeById(1)!.approvedRoutes).toEqual(['0.0.0.0/0', '10.0.0.0/8', '::/0']);
    // The running server writes primaries; exit routes serve as soon as they are approved and announced.
    s.updateNode(1, { primaryRoutes: [] });
    const listed = await json<Record<string, unknown>[]>('nodes', 'list-routes');
    expect(listed).toEqual([
      expect.objectContaining({ id: 1, givenName: 'router', approvedRoutes: ['0.0.0.0/0', '10.0.0.0/8', '::/0'], availableRoutes: ['192.168.1.0/24', '0.0.0.0/0', '::/0'], servingRoutes: ['0.0.0.0/0', '::/0'] }),
    ]);
    expect((await json('nodes', 'approve-routes', '-i', '1', '-r', '192.168.1.0/24')).approvedRoutes).toEqual(['192.168.1.0/24']);
    s.updateNode(1, { primaryRoutes: ['192.168.1.0/24'] });
    expect((await json<Record<string, unknown>[]>('nodes', 'list-routes', '-i', '1'))[0]!.servingRoutes).toEqual(['192.168.1.0/24']);
    expect(await admin('nodes', 'approve-routes', '-i', '1', '-r', '192.168.1.1/24')).toMatchObject({ code: 2, err: expect.stringContaining('"192.168.1.1/24" is not a route') });
    expect(await admin('nodes', 'approve-routes', '-i', '1')).toMatchObject({ code: 2, err: expect.stringContaining('needs --routes') });
    expect(await admin('nodes', 'approve-routes', '-i', '7', '-r', '')).toMatchObject({ code: 1, err: expect.stringContaining('no node with id 7') });
    expect(await admin('nodes', 'approve-routes', '-i', '1', '--routes', '')).toMatchObject({ code: 0, out: 'node 1 (router): approved routes (none)\n' });
    expect(s.nodeById(1)!.approvedRoutes).toEqual([]);
    expect(await admin('nodes', 'list-routes', '-i', '2')).toMatchObject({ code: 0, out: 'no node announces or has approved routes\n' });
  });
});

describe('weft server policy check', () => {
  const file = (text: string): string => {
    const p = join(dir, 'policy.hujson');
    writeFileSync(p, text);
    return p;
  };

  it('accepts a good HuJSON policy, and checks its users against the database', async () => {
    await admin('users', 'create', 'alice');
    const good = file('{\n  // web servers\n  "tagOwners": {"tag:web": ["alice@"]},\n  "acls": [{"action": "accept", "src": ["alice@"], "dst": ["tag:web:443"]},],\n}\n');
    expect(await admin('policy', 'check', good)).toEqual({ code: 0, out: `${good}: policy is valid\n`, err: '' });
    const unknown = file('{\n  "acls": [\n    {"action": "accept", "src": ["bob@"], "dst": ["*:*"]}\n  ]\n}\n');
    const r = await admin('policy', 'check', unknown);
    expect(r.code).toBe(1);
    expect(r.err).toContain('line 3, column 34: unknown user "bob@" (users: alice)');
  });

  it('refuses a group cycle and a bad port range with their lines', async () => {
    await admin('users', 'create', 'alice');
    const bad = file('{\n  "groups": {\n    "group:a": ["group:b"],\n    "group:b": ["alice@"]\n  },\n  "acls": [{"action": "accept", "src": ["group:a"], "dst": ["*:22-20"]}]\n}\n');
    const r = await admin('policy', 'check', bad);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/line 3, column \d+: groups\["group:a"\]: "group:b": group members cannot be recursive/);
    expect(r.err).toMatch(/line 6, column \d+: dst="\*:22-20": port range "22-20": invalid port range: first port is greater than last port/);
    const j = await admin('policy', 'check', bad, '-o', 'json');
    expect(JSON.parse(j.out)).toMatchObject({ valid: false, usersChecked: true, errors: [{ line: 3 }, { line: 6 }] });
  });

  it('says when users could not be checked (no database yet)', async () => {
    const other = mkdtempSync(join(tmpdir(), 'weft-admin-nodb-'));
    try {
      const p = join(other, 'p.json');
      writeFileSync(p, '{"acls": [{"action": "accept", "src": ["bob@"], "dst": ["*:*"]}]}');
      let out = '';
      const code = await serverAdmin(['policy', 'check', p, '--data', join(other, 'none')], { out: (t) => void (out += t), err: () => {}, now: () => now, confirm: async () => null });
      expect(code).toBe(0);
      expect(out).toContain('policy is valid (users not checked: no database at');
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });
});

describe('parseExpiration', () => {
  it.each([
    ['0', null],
    ['1h', HOUR],
    ['30m', 30 * 60_000],
    ['24h', 24 * HOUR],
    ['1h30m', 90 * 60_000],
    ['90d', 90 * 24 * HOUR],
    ['2w', 14 * 24 * HOUR],
    ['1.5h', 1.5 * HOUR],
    ['500ms', 500],
  ])('%s → %s', (s, ms) => {
    expect(parseExpiration(s)).toBe(ms);
  });
});
