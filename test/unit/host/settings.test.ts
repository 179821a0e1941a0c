import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSettingsStore, DEFAULT_SETTINGS, parseSettings } from '../../../src-main/host/settings.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weft-settings-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const profile = { id: 'home', name: 'Home', serverUrl: 'https://hs.example.com' };

describe('settings store', () => {
  it('starts from defaults when there is no file', async () => {
    const s = createSettingsStore(join(dir, 'settings.json'));
    expect(await s.load()).toEqual({ settings: DEFAULT_SETTINGS, problem: null });
  });

  it('saves atomically with mode 0600 (no temp file left) and loads it back', async () => {
    const file = join(dir, 'sub', 'settings.json');
    const s = createSettingsStore(file);
    await s.load();
    const saved = await s.update({ autoStart: true, profiles: [profile], activeProfile: 'home' });
    expect(saved).toEqual({ ...DEFAULT_SETTINGS, autoStart: true, profiles: [profile], activeProfile: 'home' });
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readdir(join(dir, 'sub'))).toEqual(['settings.json']);
    const again = createSettingsStore(file);
    expect((await again.load()).settings).toEqual(saved);
  });

  it('serialises concurrent updates in call order', async () => {
    const s = createSettingsStore(join(dir, 'settings.json'));
    await s.load();
    await Promise.all([s.update({ autoStart: true }), s.update({ notifications: false }), s.update({ startMinimised: true })]);
    expect(JSON.parse(await readFile(join(dir, 'settings.json'), 'utf8'))).toMatchObject({ autoStart: true, notifications: false, startMinimised: true });
  });

  it.each([
    ['not JSON', '{"autoStart": tru', /not valid JSON/],
    ['not an object', '[1,2]', /not a JSON object/],
    ['a wrong type', '{"autoStart": "yes"}', /invalid at autoStart/],
    ['a bad profile', '{"profiles": [{"id": "Bad Id!", "name": "x", "serverUrl": "https://a"}]}', /profiles\.0\.id/],
  ])('keeps the defaults and reports a file that is %s, moving it aside', async (_name, text, problem) => {
    const file = join(dir, 'settings.json');
    await writeFile(file, text);
    const s = createSettingsStore(file);
    const r = await s.load();
    expect(r.settings).toEqual(DEFAULT_SETTINGS);
    expect(r.problem).toMatch(problem);
    expect(await readFile(`${file}.corrupt`, 'utf8')).toBe(text);
    await s.update({ notifications: false });
    expect(JSON.parse(await readFile(file, 'utf8')).notifications).toBe(false);
  });

  it('fills fields an older file lacks, and drops an active profile that does not exist', () => {
    expect(parseSettings('{"autoStart": true, "activeProfile": "gone"}')).toEqual({ settings: { ...DEFAULT_SETTINGS, autoStart: true }, problem: null });
    expect(parseSettings(JSON.stringify({ profiles: [profile, { ...profile, name: 'dup' }], activeProfile: 'home' })).settings.profiles).toEqual([profile]);
  });

  it('loads a file from before subnet routes and MagicDNS with their defaults, and keeps them once saved', async () => {
    const file = join(dir, 'settings.json');
    await writeFile(file, JSON.stringify({ autoStart: true, startMinimised: false, notifications: true, profiles: [profile], activeProfile: 'home' }));
    const s = createSettingsStore(file);
    const r = await s.load();
    expect(r).toEqual({ settings: { ...DEFAULT_SETTINGS, autoStart: true, profiles: [profile], activeProfile: 'home' }, problem: null });
    expect(r.settings).toMatchObject({ acceptRoutes: false, acceptDns: true });
    await s.update({ acceptRoutes: true, acceptDns: false });
    await s.update({ notifications: false });
    const again = createSettingsStore(file);
    expect((await again.load()).settings).toMatchObject({ acceptRoutes: true, acceptDns: false, notifications: false, autoStart: true });
  });

  it('refuses an invalid update without touching the file', async () => {
    const file = join(dir, 'settings.json');
    const s = createSettingsStore(file);
    await s.load();
    await s.update({ autoStart: true });
    await expect(s.update({ profiles: [{ id: 'x', name: '', serverUrl: 'nope' }] })).rejects.toMatchObject({ code: 'state' });
    expect(JSON.parse(await readFile(file, 'utf8')).autoStart).toBe(true);
    expect(s.get().autoStart).toBe(true);
  });
});
