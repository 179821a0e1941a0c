import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MIGRATIONS, SCHEMA_VERSION, migrate } from '../../../../src-main/server/store/sqlite-schema.ts';
import { openSqliteDatabase, openSqliteStore } from '../../../../src-main/server/store/sqlite.ts';
import type { ServerStore } from '../../../../src-main/server/store/types.ts';
import { repoRoot } from '../../../support/vectors.ts';
import { describeServerStore, keyNode, newNode } from './store-contract.ts';

const CHILD = resolve(dirname(fileURLToPath(import.meta.url)), 'fixtures/store-child.ts');
const T0 = 1_700_000_000_000;

let dir: string;
let dbPath: string;
const open: ServerStore[] = [];
const store = (path = dbPath): ServerStore => {
  const s = openSqliteStore(path);
  open.push(s);
  return s;
};

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'weft-store-'));
  dbPath = join(dir, 'data', 'weft.db');
});
afterEach(() => {
  for (const s of open.splice(0)) s.close();
  rmSync(dir, { recursive: true, force: true });
});

describeServerStore('sqlite file', () => openSqliteStore(dbPath));
describeServerStore('sqlite :memory:', () => openSqliteStore(':memory:'));

const mode = (p: string): number => statSync(p).mode & 0o777;

function spawnChild(args: string[]): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], { cwd: repoRoot, stdio: 'pipe' });
}

/** Collects a child's stdout lines; `onLine` may act on each; resolves with all lines, the exit code and signal. */
function runChild(c: ChildProcessWithoutNullStreams, onLine: (line: string, all: string[]) => void = () => {}) {
  const lines: string[] = [];
  let stderr = '';
  c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  createInterface({ input: c.stdout }).on('line', (l) => {
    lines.push(l);
    onLine(l, lines);
  });
  return new Promise<{ lines: string[]; code: number | null; signal: NodeJS.Signals | null; stderr: string }>((res) =>
    c.on('close', (code, signal) => res({ lines, code, signal, stderr })),
  );
}

describe('sqlite store: files and pragmas', () => {
  it('creates the directory 0700 and the database, WAL and SHM files 0600', () => {
    const s = store(join(dir, 'a', 'b', 'weft.db'));
    s.createUser('alice', T0);
    expect(mode(join(dir, 'a'))).toBe(0o700);
    expect(mode(join(dir, 'a', 'b'))).toBe(0o700);
    for (const f of ['weft.db', 'weft.db-wal', 'weft.db-shm']) expect(mode(join(dir, 'a', 'b', f))).toBe(0o600);
  });

  it('tightens an existing database file to 0600 and leaves an existing directory alone', () => {
    const d = join(dir, 'existing');
    mkdirSync(d, { mode: 0o755 });
    chmodSync(d, 0o755);
    writeFileSync(join(d, 'weft.db'), '', { mode: 0o644 });
    chmodSync(join(d, 'weft.db'), 0o644);
    store(join(d, 'weft.db'));
    expect(mode(join(d, 'weft.db'))).toBe(0o600);
    expect(mode(d)).toBe(0o755);
  });

  it('runs in WAL mode with synchronous=FULL, foreign keys and a busy timeout', () => {
    const db = openSqliteDatabase(dbPath);
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('synchronous', { simple: true })).toBe(2);
      expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
      expect(db.pragma('busy_timeout', { simple: true })).toBe(5000);
    } finally {
      db.close();
    }
  });

  it('enforces foreign keys', () => {
    const s = store();
    expect(() => s.createPreAuthKey({ userId: 42, reusable: false, ephemeral: false, expiresAt: null }, T0)).toThrow(/FOREIGN KEY/);
    expect(() => s.registerForUser(newNode(42, 1), T0)).toThrow(/FOREIGN KEY/);
  });

  it('refuses a file that is not a database, without touching it', () => {
    mkdirSync(dirname(dbPath), { recursive: true });
    writeFileSync(dbPath, 'not a database, just some text that is long enough to have a header'.repeat(10));
    const before = readFileSync(dbPath);
    expect(() => openSqliteStore(dbPath)).toThrow(/not a database/);
    expect(readFileSync(dbPath)).toEqual(before);
  });
});

describe('sqlite store: pre-auth keys at rest', () => {
  it('stores only the SHA-256 of a key and its 8-character prefix; the file never holds the key', () => {
    const s = openSqliteStore(dbPath);
    const u = s.createUser('alice', T0);
    const { key } = s.createPreAuthKey({ userId: u.id, reusable: false, ephemeral: false, expiresAt: null }, T0);
    s.close();
    const db = new Database(dbPath, { readonly: true });
    const row = db.prepare<[], { key_hash: Buffer; prefix: string }>('SELECT key_hash, prefix FROM pre_auth_keys').get()!;
    db.close();
    expect(row.key_hash.equals(createHash('sha256').update(key).digest())).toBe(true);
    expect(row.prefix).toBe(key.slice(0, 8));
    for (const f of ['', '-wal']) if (existsSync(dbPath + f)) expect(readFileSync(dbPath + f).includes(key)).toBe(false);
  });

  it('does not use up a single-use key when the node insert fails (one transaction)', () => {
    const s = store();
    const u = s.createUser('alice', T0);
    s.registerForUser(newNode(u.id, 1), T0);
    const k = s.createPreAuthKey({ userId: u.id, reusable: false, ephemeral: false, expiresAt: null }, T0);
    // Another machine presenting node 1's node key violates the unique node_key: the whole redeem rolls back.
    expect(() => s.registerWithAuthKey(k.key, keyNode(2, { nodeKey: newNode(u.id, 1).nodeKey }), T0)).toThrow(/UNIQUE/);
    expect(s.listPreAuthKeys()[0]!.usedAt).toBeNull();
    expect(s.registerWithAuthKey(k.key, keyNode(2), T0)).toMatchObject({ node: { ipv4: '100.64.0.2' } });
  });
});

describe('sqlite store: migrations', () => {
  const versions = (path: string): number[] => {
    const db = new Database(path, { readonly: true });
    try {
      return db.prepare<[], number>('SELECT version FROM schema_migrations ORDER BY version').pluck().all();
    } finally {
      db.close();
    }
  };

  it('migrates a database written by an older version, keeping its rows', () => {
    mkdirSync(dirname(dbPath), { recursive: true });
    const old = new Database(dbPath);
    migrate(old, MIGRATIONS.slice(0, 1), T0);
    old.prepare('INSERT INTO users (name, created_at) VALUES (?, ?)').run('alice', T0);
    old.close();
    expect(versions(dbPath)).toEqual([1]);

    const s = store();
    expect(s.listUsers()).toEqual([{ id: 1, name: 'alice', createdAt: T0 }]);
    s.close();
    expect(versions(dbPath)).toEqual(MIGRATIONS.map((m) => m.version));
    const db = new Database(dbPath, { readonly: true });
    const indexes = db.prepare<[], string>("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'").pluck().all();
    db.close();
    expect(indexes).toEqual(expect.arrayContaining(['nodes_user_id', 'pre_auth_keys_user_id', 'pending_registrations_created_at']));
  });

  it('applies each migration once however often the database is opened', () => {
    for (let i = 0; i < 3; i++) store().close();
    expect(versions(dbPath)).toEqual(MIGRATIONS.map((m) => m.version));
    expect(SCHEMA_VERSION).toBe(MIGRATIONS.at(-1)!.version);
  });

  it('refuses a database from a newer Weft', () => {
    store().close();
    const db = new Database(dbPath);
    db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(SCHEMA_VERSION + 1, 'future', T0);
    db.close();
    expect(() => openSqliteStore(dbPath)).toThrow(/newer than this Weft knows/);
  });

  it('rolls a failing migration back completely', () => {
    store().close();
    const db = new Database(dbPath);
    const bad = { version: SCHEMA_VERSION + 1, name: 'half', sql: 'CREATE TABLE half_done (x); CREATE TABLE half_done (y);' };
    expect(() => migrate(db, [...MIGRATIONS, bad])).toThrow(/already exists/);
    expect(db.prepare("SELECT COUNT(*) FROM sqlite_master WHERE name = 'half_done'").pluck().get()).toBe(0);
    db.close();
    expect(versions(dbPath)).toEqual(MIGRATIONS.map((m) => m.version));
  });
});

describe('sqlite store: two connections', () => {
  it('changes changeCounter() when another connection commits, not on its own writes', () => {
    const a = store();
    const b = store();
    const u = a.createUser('alice', T0);
    const c0 = a.changeCounter();
    a.registerForUser(newNode(u.id, 1), T0);
    expect(a.changeCounter()).toBe(c0);
    b.registerForUser(newNode(u.id, 2), T0);
    const c1 = a.changeCounter();
    expect(c1).not.toBe(c0);
    expect(a.changeCounter()).toBe(c1);
    b.deleteNode(1);
    expect(a.changeCounter()).not.toBe(c1);
    expect(a.listNodes().map((n) => n.machineKey)).toEqual([newNode(u.id, 2).machineKey]);
  });

  it('redeems a single-use key once when two connections race for it', () => {
    const a = store();
    const b = store();
    const u = a.createUser('alice', T0);
    for (let i = 0; i < 50; i++) {
      const { key } = a.createPreAuthKey({ userId: u.id, reusable: false, ephemeral: false, expiresAt: null }, T0);
      const [first, second] = i % 2 ? [a, b] : [b, a];
      const r1 = first.registerWithAuthKey(key, keyNode(`a${i}`), T0);
      const r2 = second.registerWithAuthKey(key, keyNode(`b${i}`), T0);
      expect([r1, r2].filter((r) => 'node' in r)).toHaveLength(1);
      expect([r1, r2].filter((r) => 'error' in r)).toEqual([{ error: 'used' }]);
    }
    expect(a.listNodes()).toHaveLength(50);
  });

  it('never gives two connections’ nodes the same address, and reuses freed ones', () => {
    const a = store();
    const b = store();
    const u = a.createUser('alice', T0);
    const nodes = Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).registerForUser(newNode(u.id, i), T0));
    expect(new Set(nodes.map((n) => n.ipv4)).size).toBe(40);
    a.deleteNode(nodes[7]!.id);
    expect(b.registerForUser(newNode(u.id, 'z'), T0).ipv4).toBe(nodes[7]!.ipv4);
  });
});

describe('sqlite store: other processes', { timeout: 60_000 }, () => {
  it('redeems each single-use key exactly once when two processes race for the same keys', async () => {
    const s = store();
    const u = s.createUser('alice', T0);
    const N = 150;
    const keys = Array.from({ length: N }, () => s.createPreAuthKey({ userId: u.id, reusable: false, ephemeral: false, expiresAt: null }, T0).key);
    const keysFile = join(dir, 'keys.txt');
    writeFileSync(keysFile, keys.join('\n'));

    const kids = ['a', 'b'].map((label) => spawnChild(['race', dbPath, label, keysFile]));
    let ready = 0;
    const done = kids.map((c) =>
      runChild(c, (line) => {
        if (line === 'ready' && ++ready === kids.length) {
          const start = Date.now() + 300;
          for (const k of kids) k.stdin.end(`${start}\n`);
        }
      }),
    );
    const results = await Promise.all(done);
    for (const r of results) expect(r, r.stderr).toMatchObject({ code: 0 });

    const outcomes = results.flatMap((r) => r.lines.filter((l) => l !== 'ready'));
    expect(outcomes).toHaveLength(2 * N);
    for (let i = 0; i < N; i++) {
      const mine = outcomes.filter((l) => l.split(' ')[1] === String(i));
      expect(mine.filter((l) => l.startsWith('ok '))).toHaveLength(1);
      expect(mine.filter((l) => l.startsWith('err '))).toEqual([`err ${i} used`]);
    }
    const nodes = s.listNodes();
    expect(nodes).toHaveLength(N);
    expect(new Set(nodes.map((n) => n.ipv4)).size).toBe(N);
    expect(new Set(nodes.map((n) => n.ipv6)).size).toBe(N);
    expect(s.listPreAuthKeys().every((k) => k.usedAt !== null)).toBe(true);
  });

  it('keeps every acknowledged write when the writer is SIGKILLed mid-transaction', async () => {
    const acked = { key: new Set<number>(), node: new Set<number>() };
    for (let round = 0; round < 3; round++) {
      const c = spawnChild(['crash', dbPath]);
      let nodesSeen = 0;
      const r = await runChild(c, (line) => {
        const [kind, id] = line.split(' ');
        if (kind === 'key' || kind === 'node') acked[kind].add(Number(id));
        if (kind === 'node' && ++nodesSeen === 100) c.kill('SIGKILL');
      });
      expect(r.signal, r.stderr).toBe('SIGKILL');
      expect(existsSync(`${dbPath}-wal`)).toBe(true);
    }
    expect(acked.node.size).toBeGreaterThanOrEqual(300);

    const db = openSqliteDatabase(dbPath);
    try {
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      expect(db.pragma('foreign_key_check')).toEqual([]);
    } finally {
      db.close();
    }
    const s = store();
    const keyIds = new Set(s.listPreAuthKeys().map((k) => k.id));
    const nodeIds = new Set(s.listNodes().map((n) => n.id));
    expect([...acked.key].filter((id) => !keyIds.has(id))).toEqual([]);
    expect([...acked.node].filter((id) => !nodeIds.has(id))).toEqual([]);
    // Every node that exists consumed its key in the same transaction.
    const used = new Set(s.listPreAuthKeys().filter((k) => k.usedAt !== null).map((k) => k.id));
    expect(s.listNodes().every((n) => n.authKeyId !== null && used.has(n.authKeyId))).toBe(true);
    expect(s.listNodes().length).toBe(used.size);
  });
});
