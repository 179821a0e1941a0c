import { join } from 'node:path';
import { homedir } from 'node:os';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { SERVER_DB_FILE, defaultServerDataDir, serverDbPath } from '../../../../src-main/server/store/paths.ts';

describe('server data directory', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.restoreAllMocks();
  });

  it('is /var/lib/weft/server for root', () => {
    vi.stubEnv('WEFT_SERVER_DATA_DIR', '');
    vi.spyOn(process, 'getuid').mockReturnValue(0);
    expect(defaultServerDataDir()).toBe('/var/lib/weft/server');
  });

  it('is ~/.local/share/weft/server (or under $XDG_DATA_HOME) for other users', () => {
    vi.stubEnv('WEFT_SERVER_DATA_DIR', '');
    vi.stubEnv('XDG_DATA_HOME', '');
    vi.spyOn(process, 'getuid').mockReturnValue(1000);
    expect(defaultServerDataDir()).toBe(join(homedir(), '.local', 'share', 'weft', 'server'));
    vi.stubEnv('XDG_DATA_HOME', '/data/home');
    expect(defaultServerDataDir()).toBe('/data/home/weft/server');
  });

  it('honours $WEFT_SERVER_DATA_DIR', () => {
    vi.stubEnv('WEFT_SERVER_DATA_DIR', '/srv/weft');
    expect(defaultServerDataDir()).toBe('/srv/weft');
  });

  it('names the database weft.db', () => {
    expect(SERVER_DB_FILE).toBe('weft.db');
    expect(serverDbPath('/srv/weft')).toBe('/srv/weft/weft.db');
  });
});
