/**
 * The app's settings file (settings.json in the app's data directory): persisted atomically (temp file, fsync,
 * rename; mode 0600) and validated with the contract's `Settings` schema on every load and save.
 *
 * A file that cannot be read as settings never stops the app: the defaults are used, the problem is reported
 * by load() (the host logs it), and the bad file is moved aside to `settings.json.corrupt` so the next save
 * does not destroy what the user may want to recover. Fields missing from an older file take their defaults.
 * Saves run one at a time in call order.
 */
import { mkdir, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { MeshError } from '../../src-shared/errors.ts';
import { Settings } from '../../src-shared/ipc/contract.ts';
import { writeFileAtomic } from '../engine/state/store.ts';

export const SETTINGS_FILE = 'settings.json';

export const DEFAULT_SETTINGS: Settings = Object.freeze({
  autoStart: false,
  startMinimised: false,
  notifications: true,
  profiles: [],
  activeProfile: null,
  acceptRoutes: false,
  acceptDns: true,
}) as Settings;

export interface SettingsLoad {
  settings: Settings;
  /** Why the file was not used (null when it was, or when there was none). */
  problem: string | null;
}

/** Keeps profile ids unique (first wins) and the active profile pointing at a saved one. */
export function normaliseSettings(s: Settings): Settings {
  const seen = new Set<string>();
  const profiles = s.profiles.filter((p) => !seen.has(p.id) && seen.add(p.id));
  const activeProfile = s.activeProfile !== null && seen.has(s.activeProfile) ? s.activeProfile : null;
  return { ...s, profiles, activeProfile };
}

/** Parses a settings file's text over the defaults. Pure. */
export function parseSettings(text: string): SettingsLoad {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { settings: DEFAULT_SETTINGS, problem: 'the settings file is not valid JSON' };
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return { settings: DEFAULT_SETTINGS, problem: 'the settings file is not a JSON object' };
  const r = Settings.safeParse({ ...DEFAULT_SETTINGS, ...json });
  if (!r.success) {
    const i = r.error.issues[0];
    return { settings: DEFAULT_SETTINGS, problem: `the settings file is invalid${i && i.path.length ? ` at ${i.path.join('.')}` : ''}: ${i?.message ?? 'schema mismatch'}` };
  }
  return { settings: normaliseSettings(r.data), problem: null };
}

export interface SettingsStore {
  readonly path: string;
  /** Reads the file (once at start); never rejects. */
  load(): Promise<SettingsLoad>;
  /** The settings in force (defaults until load()). */
  get(): Settings;
  /** Merges `patch`, validates, saves atomically, and answers the settings as saved. */
  update(patch: Partial<Settings>): Promise<Settings>;
}

export function createSettingsStore(path: string): SettingsStore {
  // Owned here: the settings in force and the save queue.
  let current: Settings = DEFAULT_SETTINGS;
  let queue: Promise<unknown> = Promise.resolve();
  return {
    path,
    async load() {
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (e) {
        current = DEFAULT_SETTINGS;
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { settings: current, problem: null };
        return { settings: current, problem: `cannot read ${path}: ${(e as Error).message}` };
      }
      const r = parseSettings(text);
      current = r.settings;
      if (r.problem) {
        await rename(path, `${path}.corrupt`).catch(() => undefined);
        return { settings: current, problem: `${r.problem} (${path}; moved aside to ${path}.corrupt, using defaults)` };
      }
      return r;
    },
    get: () => current,
    update(patch) {
      const run = queue.then(async () => {
        const r = Settings.safeParse(normaliseSettings({ ...current, ...patch }));
        if (!r.success) throw new MeshError('state', `invalid settings: ${r.error.issues[0]?.message ?? 'schema mismatch'}`, false);
        try {
          await mkdir(dirname(path), { recursive: true, mode: 0o700 });
          await writeFileAtomic(path, `${JSON.stringify(r.data, null, 2)}\n`);
        } catch (e) {
          throw new MeshError('state', `cannot save ${path}: ${(e as Error).message}`, true, { cause: e });
        }
        current = r.data;
        return current;
      });
      queue = run.catch(() => undefined);
      return run;
    },
  };
}
