/**
 * The SQLite ServerStore (better-sqlite3): the one `weft server` runs on, shared with the admin CLI
 * (`weft server users|preauthkeys|nodes …`), which writes the same file from another process.
 *
 * Durability and sharing:
 *  - journal_mode=WAL + synchronous=FULL: a commit is fsynced to the WAL before the call returns, so nothing
 *    acknowledged is lost on a crash or power cut, and readers never block the one writer;
 *  - busy_timeout: a write waits for the other process's write lock instead of failing at once;
 *  - every read-then-write runs in an IMMEDIATE transaction (it takes the write lock first), so the other process
 *    cannot commit between the read and the write: redeeming a single-use key, allocating an address and inserting
 *    the node are one atomic step, and a second redeemer sees the key as used;
 *  - foreign_keys=ON; the file is 0600 in a directory created 0700 (SQLite gives -wal/-shm the file's mode).
 *
 * Pre-auth keys are 48 hex characters from randomBytes; only their SHA-256 is stored (plus the first 8
 * characters, for listings), and they are looked up by hash, so the stored value never meets the plaintext in a
 * comparison. A single-use key that was used may be presented again by the same machine (the node it registered):
 * that is a client retrying after a lost response, not a second use.
 *
 * changeCounter() is PRAGMA data_version, which changes when another connection commits: the running server polls
 * it to notice the admin CLI's `nodes register/expire/delete`.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, fchmodSync, fstatSync, mkdirSync, openSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { ipv4ForHost, ipv6ForHost, lowestFreeHost, uniqueGivenName } from './allocate.ts';
import { migrate } from './sqlite-schema.ts';
import type { NewNode, NodePatch, NodeRecord, PendingRegistration, PreAuthKeyRecord, RedeemError, ServerStore, UserRecord } from './types.ts';

export interface SqliteStoreOptions {
  /** How long a write waits for another process's lock before failing with SQLITE_BUSY. @default 5000 */
  busyTimeoutMs?: number;
}

/**
 * How long a write waits for the other process's write lock. Write transactions here take milliseconds, so 5 s
 * only runs out when the other process is stuck; then failing (SQLITE_BUSY) beats hanging a client's request.
 */
const BUSY_TIMEOUT_MS = 5000;

/** Random bytes in a pre-auth key (48 hex characters), and how many of its characters are kept in clear. */
const KEY_BYTES = 24;
const KEY_PREFIX_CHARS = 8;

interface UserRow {
  id: number;
  name: string;
  created_at: number;
}

interface KeyRow {
  id: number;
  user_id: number;
  prefix: string;
  reusable: number;
  ephemeral: number;
  created_at: number;
  expires_at: number | null;
  used_at: number | null;
  revoked_at: number | null;
}

interface NodeRow {
  id: number;
  user_id: number;
  machine_key: string;
  node_key: string;
  disco_key: string | null;
  hostname: string;
  given_name: string;
  ip_host: number;
  ipv4: string;
  ipv6: string;
  endpoints: string;
  hostinfo: string | null;
  home_derp: number;
  ephemeral: number;
  created_at: number;
  expires_at: number | null;
  last_seen: number | null;
  online: number;
  auth_key_id: number | null;
  tags: string;
  approved_routes: string;
  primary_routes: string;
}

interface PendingRow {
  id: string;
  machine_key: string;
  node_key: string;
  hostname: string;
  hostinfo: string | null;
  created_at: number;
  approved_user_id: number | null;
}

const KEY_COLUMNS = 'id, user_id, prefix, reusable, ephemeral, created_at, expires_at, used_at, revoked_at';

/** The columns a NodePatch sets, with their stored values (fields left undefined are not touched). */
function patchColumns(p: NodePatch): [column: string, value: string | number | null][] {
  const out: [string, string | number | null][] = [];
  if (p.nodeKey !== undefined) out.push(['node_key', p.nodeKey]);
  if (p.discoKey !== undefined) out.push(['disco_key', p.discoKey]);
  if (p.endpoints !== undefined) out.push(['endpoints', JSON.stringify(p.endpoints)]);
  if (p.hostinfo !== undefined) out.push(['hostinfo', p.hostinfo]);
  if (p.homeDerp !== undefined) out.push(['home_derp', p.homeDerp]);
  if (p.expiresAt !== undefined) out.push(['expires_at', p.expiresAt]);
  if (p.lastSeen !== undefined) out.push(['last_seen', p.lastSeen]);
  if (p.online !== undefined) out.push(['online', p.online ? 1 : 0]);
  if (p.tags !== undefined) out.push(['tags', JSON.stringify(p.tags)]);
  if (p.approvedRoutes !== undefined) out.push(['approved_routes', JSON.stringify(p.approvedRoutes)]);
  if (p.primaryRoutes !== undefined) out.push(['primary_routes', JSON.stringify(p.primaryRoutes)]);
  return out;
}

/** Opens (creating if needed) the database at `path` (":memory:" for a private in-memory one) and migrates it. */
export function openSqliteStore(path: string, opts: SqliteStoreOptions = {}): ServerStore {
  const db = openSqliteDatabase(path, opts);
  try {
    return new SqliteStore(db);
  } catch (e) {
    db.close();
    throw e;
  }
}

/** The configured, migrated connection under a store (exported for tests that check pragmas and raw rows). */
export function openSqliteDatabase(path: string, opts: SqliteStoreOptions = {}): Database.Database {
  if (path !== ':memory:') prepareFile(path);
  const db = new Database(path, { timeout: opts.busyTimeoutMs ?? BUSY_TIMEOUT_MS });
  try {
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (path !== ':memory:' && mode !== 'wal') throw new Error(`${path}: SQLite refused WAL mode (got ${String(mode)}); is it on a network file system?`);
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    migrate(db);
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}

/** Creates the directory (0700) and the file (0600) before SQLite does, so neither is ever readable by others. */
function prepareFile(path: string): void {
  const dir = dirname(resolve(path));
  if (mkdirSync(dir, { recursive: true, mode: 0o700 }) !== undefined) chmodSync(dir, 0o700);
  const fd = openSync(path, 'a', 0o600);
  try {
    const st = fstatSync(fd);
    if ((st.mode & 0o077) !== 0 && st.uid === process.getuid?.()) fchmodSync(fd, 0o600);
  } finally {
    closeSync(fd);
  }
}

function hashKey(plaintext: string): Buffer {
  return createHash('sha256').update(plaintext, 'utf8').digest();
}

/** A JSON list of strings (endpoints, tags, routes); anything else reads as empty. */
function parseEndpoints(text: string): string[] {
  try {
    const v: unknown = JSON.parse(text);
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

const userRecord = (r: UserRow): UserRecord => ({ id: r.id, name: r.name, createdAt: r.created_at });

const keyRecord = (r: KeyRow): PreAuthKeyRecord => ({
  id: r.id,
  userId: r.user_id,
  prefix: r.prefix,
  reusable: r.reusable === 1,
  ephemeral: r.ephemeral === 1,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
  usedAt: r.used_at,
  revokedAt: r.revoked_at,
});

const nodeRecord = (r: NodeRow): NodeRecord => ({
  id: r.id,
  userId: r.user_id,
  machineKey: r.machine_key,
  nodeKey: r.node_key,
  discoKey: r.disco_key,
  hostname: r.hostname,
  givenName: r.given_name,
  ipv4: r.ipv4,
  ipv6: r.ipv6,
  endpoints: parseEndpoints(r.endpoints),
  hostinfo: r.hostinfo,
  homeDerp: r.home_derp,
  ephemeral: r.ephemeral === 1,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
  lastSeen: r.last_seen,
  online: r.online === 1,
  authKeyId: r.auth_key_id,
  tags: parseEndpoints(r.tags),
  approvedRoutes: parseEndpoints(r.approved_routes),
  primaryRoutes: parseEndpoints(r.primary_routes),
});

const pendingRecord = (r: PendingRow): PendingRegistration => ({
  id: r.id,
  machineKey: r.machine_key,
  nodeKey: r.node_key,
  hostname: r.hostname,
  hostinfo: r.hostinfo,
  createdAt: r.created_at,
  approvedUserId: r.approved_user_id,
});

class SqliteStore implements ServerStore {
  private readonly s;
  /** UPDATE statements for updateNode, by the patched columns (a node's poll patches the same few every time). */
  private readonly patchStatements = new Map<string, Database.Statement<(string | number | null)[], NodeRow>>();
  private readonly redeemTx;
  private readonly registerTx;

  constructor(private readonly db: Database.Database) {
    this.s = {
      insertUser: db.prepare<[string, number], UserRow>('INSERT INTO users (name, created_at) VALUES (?, ?) RETURNING *'),
      users: db.prepare<[], UserRow>('SELECT * FROM users ORDER BY id'),
      userByName: db.prepare<[string], UserRow>('SELECT * FROM users WHERE name = ?'),
      userById: db.prepare<[number], UserRow>('SELECT * FROM users WHERE id = ?'),
      insertKey: db.prepare<[number, Buffer, string, number, number, number, number | null], KeyRow>(
        `INSERT INTO pre_auth_keys (user_id, key_hash, prefix, reusable, ephemeral, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING ${KEY_COLUMNS}`,
      ),
      keys: db.prepare<[], KeyRow>(`SELECT ${KEY_COLUMNS} FROM pre_auth_keys ORDER BY id`),
      keysOfUser: db.prepare<[number], KeyRow>(`SELECT ${KEY_COLUMNS} FROM pre_auth_keys WHERE user_id = ? ORDER BY id`),
      keyByHash: db.prepare<[Buffer], KeyRow>(`SELECT ${KEY_COLUMNS} FROM pre_auth_keys WHERE key_hash = ?`),
      revokeKey: db.prepare<[number, number], KeyRow>('UPDATE pre_auth_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?'),
      markKeyUsed: db.prepare<[number, number], KeyRow>('UPDATE pre_auth_keys SET used_at = ? WHERE id = ? AND used_at IS NULL'),
      nodeById: db.prepare<[number], NodeRow>('SELECT * FROM nodes WHERE id = ?'),
      nodeByMachineKey: db.prepare<[string], NodeRow>('SELECT * FROM nodes WHERE machine_key = ?'),
      nodeByNodeKey: db.prepare<[string], NodeRow>('SELECT * FROM nodes WHERE node_key = ?'),
      nodes: db.prepare<[], NodeRow>('SELECT * FROM nodes ORDER BY id'),
      nodesOfUser: db.prepare<[number], NodeRow>('SELECT * FROM nodes WHERE user_id = ? ORDER BY id'),
      usedHosts: db.prepare<[], number>('SELECT ip_host FROM nodes ORDER BY ip_host').pluck(),
      givenNameTaken: db.prepare<[string], number>('SELECT 1 FROM nodes WHERE given_name = ?').pluck(),
      insertNode: db.prepare<[number, string, string, string, string, number, string, string, string | null, number, number, number | null, number | null], NodeRow>(
        `INSERT INTO nodes (user_id, machine_key, node_key, hostname, given_name, ip_host, ipv4, ipv6, hostinfo, ephemeral, created_at, expires_at, auth_key_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
      ),
      reregisterNode: db.prepare<[number, string, string, string | null, number, number | null, number | null, number], NodeRow>(
        `UPDATE nodes SET user_id = ?, node_key = ?, hostname = ?, hostinfo = COALESCE(?, hostinfo), ephemeral = ?, expires_at = ?, auth_key_id = ?
         WHERE id = ? RETURNING *`,
      ),
      deleteNode: db.prepare<[number], NodeRow>('DELETE FROM nodes WHERE id = ?'),
      insertPending: db.prepare<[string, string, string, string, string | null, number], PendingRow>(
        'INSERT INTO pending_registrations (id, machine_key, node_key, hostname, hostinfo, created_at) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      pendingById: db.prepare<[string], PendingRow>('SELECT * FROM pending_registrations WHERE id = ?'),
      approvePending: db.prepare<[number, string, number], PendingRow>(
        'UPDATE pending_registrations SET approved_user_id = ? WHERE id = ? AND EXISTS (SELECT 1 FROM users WHERE id = ?)',
      ),
      deletePending: db.prepare<[string], PendingRow>('DELETE FROM pending_registrations WHERE id = ?'),
      countPending: db.prepare<[], number>('SELECT COUNT(*) FROM pending_registrations').pluck(),
      sweepPending: db.prepare<[number], PendingRow>('DELETE FROM pending_registrations WHERE created_at < ?'),
      otherDisco: db.prepare<[string, number], number>('SELECT id FROM nodes WHERE disco_key = ? AND id != ? LIMIT 1').pluck(),
      dataVersion: db.prepare<[], number>('PRAGMA data_version').pluck(),
    };

    this.redeemTx = db.transaction((plaintextKey: string, node: Omit<NewNode, 'userId' | 'ephemeral' | 'authKeyId'>, now: number): { node: NodeRecord } | { error: RedeemError } => {
      const k = this.s.keyByHash.get(hashKey(plaintextKey));
      if (!k) return { error: 'unknown' };
      if (k.revoked_at !== null) return { error: 'revoked' };
      if (k.expires_at !== null && k.expires_at <= now) return { error: 'expired' };
      const existing = this.s.nodeByMachineKey.get(node.machineKey);
      if (k.reusable === 0) {
        if (k.used_at !== null && existing?.auth_key_id !== k.id) return { error: 'used' };
        this.s.markKeyUsed.run(now, k.id);
      }
      return { node: this.upsertNode({ ...node, userId: k.user_id, ephemeral: k.ephemeral === 1, authKeyId: k.id }, now, existing) };
    });
    this.registerTx = db.transaction((node: NewNode, now: number) => this.upsertNode(node, now, this.s.nodeByMachineKey.get(node.machineKey)));
  }

  createUser(name: string, now: number): UserRecord {
    return userRecord(this.s.insertUser.get(name, now)!);
  }

  listUsers(): UserRecord[] {
    return this.s.users.all().map(userRecord);
  }

  userByName(name: string): UserRecord | null {
    const r = this.s.userByName.get(name);
    return r ? userRecord(r) : null;
  }

  userById(id: number): UserRecord | null {
    const r = this.s.userById.get(id);
    return r ? userRecord(r) : null;
  }

  createPreAuthKey(o: { userId: number; reusable: boolean; ephemeral: boolean; expiresAt: number | null }, now: number): { key: string; record: PreAuthKeyRecord } {
    const key = randomBytes(KEY_BYTES).toString('hex');
    const row = this.s.insertKey.get(o.userId, hashKey(key), key.slice(0, KEY_PREFIX_CHARS), o.reusable ? 1 : 0, o.ephemeral ? 1 : 0, now, o.expiresAt)!;
    return { key, record: keyRecord(row) };
  }

  listPreAuthKeys(userId?: number): PreAuthKeyRecord[] {
    return (userId === undefined ? this.s.keys.all() : this.s.keysOfUser.all(userId)).map(keyRecord);
  }

  expirePreAuthKey(id: number, now: number): boolean {
    return this.s.revokeKey.run(now, id).changes > 0;
  }

  registerWithAuthKey(plaintextKey: string, node: Omit<NewNode, 'userId' | 'ephemeral' | 'authKeyId'>, now: number): { node: NodeRecord } | { error: RedeemError } {
    return this.redeemTx.immediate(plaintextKey, node, now);
  }

  registerForUser(node: NewNode, now: number): NodeRecord {
    return this.registerTx.immediate(node, now);
  }

  addPending(p: Omit<PendingRegistration, 'approvedUserId'>): void {
    this.s.insertPending.run(p.id, p.machineKey, p.nodeKey, p.hostname, p.hostinfo, p.createdAt);
  }

  pendingById(id: string): PendingRegistration | null {
    const r = this.s.pendingById.get(id);
    return r ? pendingRecord(r) : null;
  }

  approvePending(id: string, userId: number): boolean {
    return this.s.approvePending.run(userId, id, userId).changes > 0;
  }

  deletePending(id: string): void {
    this.s.deletePending.run(id);
  }

  countPending(): number {
    return this.s.countPending.get() ?? 0;
  }

  sweepPending(createdBefore: number): number {
    return this.s.sweepPending.run(createdBefore).changes;
  }

  otherNodeWithDiscoKey(discoKey: string, exceptId: number): number | null {
    return this.s.otherDisco.get(discoKey, exceptId) ?? null;
  }

  nodeById(id: number): NodeRecord | null {
    const r = this.s.nodeById.get(id);
    return r ? nodeRecord(r) : null;
  }

  nodeByMachineKey(machineKey: string): NodeRecord | null {
    const r = this.s.nodeByMachineKey.get(machineKey);
    return r ? nodeRecord(r) : null;
  }

  nodeByNodeKey(nodeKey: string): NodeRecord | null {
    const r = this.s.nodeByNodeKey.get(nodeKey);
    return r ? nodeRecord(r) : null;
  }

  listNodes(userId?: number): NodeRecord[] {
    return (userId === undefined ? this.s.nodes.all() : this.s.nodesOfUser.all(userId)).map(nodeRecord);
  }

  updateNode(id: number, patch: NodePatch): NodeRecord | null {
    const cols = patchColumns(patch);
    if (cols.length === 0) return this.nodeById(id);
    const sig = cols.map(([c]) => c).join(',');
    let stmt = this.patchStatements.get(sig);
    if (!stmt) {
      stmt = this.db.prepare<(string | number | null)[], NodeRow>(`UPDATE nodes SET ${cols.map(([c]) => `${c} = ?`).join(', ')} WHERE id = ? RETURNING *`);
      this.patchStatements.set(sig, stmt);
    }
    const r = stmt.get(...cols.map(([, v]) => v), id);
    return r ? nodeRecord(r) : null;
  }

  deleteNode(id: number): boolean {
    return this.s.deleteNode.run(id).changes > 0;
  }

  changeCounter(): number {
    return this.s.dataVersion.get()!;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  /** Inside a write transaction: re-registers `existing` (same id, addresses and given name) or inserts a new node. */
  private upsertNode(n: NewNode, now: number, existing: NodeRow | undefined): NodeRecord {
    if (existing) {
      const r = this.s.reregisterNode.get(n.userId, n.nodeKey, n.hostname, n.hostinfo, n.ephemeral ? 1 : 0, n.expiresAt, n.authKeyId, existing.id)!;
      return nodeRecord(r);
    }
    const host = lowestFreeHost(this.s.usedHosts.iterate());
    if (host === null) throw new Error('weft server: the address pool 100.64.0.0/10 is exhausted');
    const givenName = uniqueGivenName(n.hostname, (name) => this.s.givenNameTaken.get(name) !== undefined);
    const r = this.s.insertNode.get(
      n.userId,
      n.machineKey,
      n.nodeKey,
      n.hostname,
      givenName,
      host,
      ipv4ForHost(host),
      ipv6ForHost(host),
      n.hostinfo,
      n.ephemeral ? 1 : 0,
      now,
      n.expiresAt,
      n.authKeyId,
    )!;
    return nodeRecord(r);
  }
}
