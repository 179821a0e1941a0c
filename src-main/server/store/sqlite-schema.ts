/**
 * The numbered migrations of `weft server`'s SQLite database and the code that applies them.
 *
 * Each migration runs in its own IMMEDIATE transaction that first re-reads the applied versions, so two processes
 * opening a fresh database at once (the server and the admin CLI) apply each step exactly once. Applied steps are
 * recorded in schema_migrations; a database from a newer Weft (a version this code does not know) is refused
 * rather than written to. Migrations are append-only: never edit one that has shipped, add the next number.
 */
import type Database from 'better-sqlite3';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'users, pre-auth keys, nodes, pending registrations',
    sql: `
      CREATE TABLE users (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        name       TEXT    NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
      );
      -- The key itself is never stored: key_hash is its SHA-256, prefix its first characters for listings.
      CREATE TABLE pre_auth_keys (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        key_hash   BLOB    NOT NULL UNIQUE,
        prefix     TEXT    NOT NULL,
        reusable   INTEGER NOT NULL CHECK (reusable IN (0, 1)),
        ephemeral  INTEGER NOT NULL CHECK (ephemeral IN (0, 1)),
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        used_at    INTEGER,
        revoked_at INTEGER
      );
      -- ip_host is the host number both addresses are derived from (allocate.ts); AUTOINCREMENT so a deleted
      -- node's id is never given to another node (peers key caches by id).
      CREATE TABLE nodes (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE RESTRICT,
        machine_key TEXT    NOT NULL UNIQUE,
        node_key    TEXT    NOT NULL UNIQUE,
        disco_key   TEXT,
        hostname    TEXT    NOT NULL,
        given_name  TEXT    NOT NULL UNIQUE,
        ip_host     INTEGER NOT NULL UNIQUE,
        ipv4        TEXT    NOT NULL UNIQUE,
        ipv6        TEXT    NOT NULL UNIQUE,
        endpoints   TEXT    NOT NULL DEFAULT '[]',
        hostinfo    TEXT,
        home_derp   INTEGER NOT NULL DEFAULT 0,
        ephemeral   INTEGER NOT NULL CHECK (ephemeral IN (0, 1)),
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER,
        last_seen   INTEGER,
        auth_key_id INTEGER REFERENCES pre_auth_keys(id) ON DELETE SET NULL
      );
      CREATE TABLE pending_registrations (
        id               TEXT    PRIMARY KEY,
        machine_key      TEXT    NOT NULL,
        node_key         TEXT    NOT NULL,
        hostname         TEXT    NOT NULL,
        hostinfo         TEXT,
        created_at       INTEGER NOT NULL,
        approved_user_id INTEGER REFERENCES users(id) ON DELETE CASCADE
      );
    `,
  },
  {
    version: 2,
    name: 'indexes for per-user listings and the pending-registration sweep',
    sql: `
      CREATE INDEX nodes_user_id ON nodes(user_id);
      CREATE INDEX pre_auth_keys_user_id ON pre_auth_keys(user_id);
      CREATE INDEX pending_registrations_created_at ON pending_registrations(created_at);
    `,
  },
  {
    version: 3,
    name: 'node presence written by the running server, for the admin CLI',
    sql: `
      ALTER TABLE nodes ADD COLUMN online INTEGER NOT NULL DEFAULT 0 CHECK (online IN (0, 1));
    `,
  },
  {
    version: 4,
    name: 'index for the disco-key uniqueness check',
    // Not UNIQUE: a database written before the check may hold duplicates; the control plane refuses new ones.
    sql: `
      CREATE INDEX nodes_disco_key ON nodes(disco_key);
    `,
  },
  {
    version: 5,
    name: 'node tags, for the policy',
    sql: `
      ALTER TABLE nodes ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
    `,
  },
  {
    version: 6,
    name: 'approved routes, and the primary routes the running server elected',
    sql: `
      ALTER TABLE nodes ADD COLUMN approved_routes TEXT NOT NULL DEFAULT '[]';
      ALTER TABLE nodes ADD COLUMN primary_routes TEXT NOT NULL DEFAULT '[]';
    `,
  },
];

/** The schema version this code writes. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** The highest applied migration (0 for a new database). */
export function schemaVersion(db: Database.Database): number {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)');
  const v = db.prepare('SELECT MAX(version) FROM schema_migrations').pluck().get();
  return typeof v === 'number' ? v : 0;
}

/** Applies the migrations not yet applied, each in its own transaction; throws on a database newer than `migrations`. */
export function migrate(db: Database.Database, migrations: readonly Migration[] = MIGRATIONS, now: number = Date.now()): void {
  const known = migrations.length === 0 ? 0 : migrations[migrations.length - 1]!.version;
  const found = schemaVersion(db);
  if (found > known) throw new Error(`the database has schema version ${found}, newer than this Weft knows (${known}); upgrade Weft`);
  for (const m of migrations) {
    db.transaction(() => {
      if (schemaVersion(db) >= m.version) return;
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(m.version, m.name, now);
    }).immediate();
  }
}
