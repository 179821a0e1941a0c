/**
 * Where `weft server` keeps its database. The server (server.ts) and the admin CLI (cli/commands/server-admin.ts)
 * both resolve the data directory here, so `weft server users create` without `--data` edits the database the
 * server started without `--data` is using.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The SQLite database inside the data directory (plus its `-wal` and `-shm` companions). */
export const SERVER_DB_FILE = 'weft.db';

/**
 * Default data directory: $WEFT_SERVER_DATA_DIR, else /var/lib/weft/server for root, else
 * $XDG_DATA_HOME/weft/server or ~/.local/share/weft/server.
 */
export function defaultServerDataDir(): string {
  const env = process.env['WEFT_SERVER_DATA_DIR'];
  if (env) return env;
  if (process.getuid?.() === 0) return '/var/lib/weft/server';
  return join(process.env['XDG_DATA_HOME'] || join(homedir(), '.local', 'share'), 'weft', 'server');
}

/** The database file for a data directory. */
export function serverDbPath(dataDir: string): string {
  return join(dataDir, SERVER_DB_FILE);
}
