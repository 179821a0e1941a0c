/**
 * The app's side of weftd (host/remote-host.ts) against a real local API: the snapshot follows weftd's deltas, the
 * user's own preferences are the app's (any user may change them), networks are weftd's (a write there), and the
 * link survives weftd going away and coming back.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connectDaemon } from '../../../src-main/daemon/api-client.ts';
import { createRemoteHost, type RemoteHost } from '../../../src-main/host/remote-host.ts';
import { createSettingsStore } from '../../../src-main/host/settings.ts';
import { startRig, type Rig } from './rig.ts';

let rig: Rig;
let appDir: string;
const hosts: RemoteHost[] = [];

beforeEach(async () => {
  rig = await startRig();
  appDir = await mkdtemp(join(tmpdir(), 'weft-app-'));
});
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.stop();
  await rig.stop();
  await rm(appDir, { recursive: true, force: true });
});

async function until(what: string, f: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function app(readOnly: boolean): RemoteHost {
  const h = createRemoteHost({ connect: () => connectDaemon(rig.runDir, { readOnly }), local: createSettingsStore(join(appDir, 'settings.json')), retryMs: 50 });
  hosts.push(h);
  return h;
}

describe('the app as a client of weftd', () => {
  it('joins through weftd and keeps its snapshot from the deltas', async () => {
    const h = app(false);
    await h.start();
    expect(h.link()).toMatchObject({ connected: true, access: 'write' });
    expect(await h.dispatch('session:join', { serverUrl: 'https://hs.example.com', authKey: 'k'.repeat(20) })).toMatchObject({ ok: true });
    await until('the snapshot shows the engine connected', () => h.snapshot().control?.state === 'connected' && h.snapshot().peers.length === 1);
    expect(h.settings().profiles.map((p) => p.serverUrl)).toEqual(['https://hs.example.com']);
    expect(rig.engines).toHaveLength(1);
  });

  it("keeps the user's preferences in the app, so a non-operator may change them; networks stay weftd's", async () => {
    const h = app(true);
    await h.start();
    expect(h.link().access).toBe('read');
    const seen: boolean[] = [];
    h.onSettings((s) => seen.push(s.notifications));
    expect(await h.dispatch('settings:set', { notifications: false, autoStart: true })).toMatchObject({ ok: true, value: { notifications: false, autoStart: true } });
    expect(JSON.parse(await readFile(join(appDir, 'settings.json'), 'utf8'))).toMatchObject({ notifications: false, autoStart: true });
    expect(seen).toContain(false);
    // weftd's own settings did not change.
    expect(rig.host.settings().notifications).toBe(true);
    // Networks are a write on weftd: refused for this user, and nothing is half-applied.
    const r = await h.dispatch('settings:set', { activeProfile: null, startMinimised: true });
    expect(r).toMatchObject({ ok: false, error: { code: 'permission-denied' } });
    expect(h.settings().startMinimised).toBe(false);
    expect(await h.dispatch('settings:set', { bogus: 1 })).toMatchObject({ ok: false, error: { code: 'invalid-payload' } });
  });

  it('sends subnet routes and MagicDNS to weftd (operator preferences), and reads them back', async () => {
    const h = app(false);
    await h.start();
    expect(h.settings()).toMatchObject({ acceptRoutes: false, acceptDns: true });
    const r = await h.dispatch('settings:set', { acceptRoutes: true, acceptDns: false, notifications: false });
    expect(r).toMatchObject({ ok: true, value: { acceptRoutes: true, acceptDns: false, notifications: false } });
    // weftd saved them (its settings file), the app only its own preference.
    expect(rig.host.settings()).toMatchObject({ acceptRoutes: true, acceptDns: false, notifications: true });
    expect(JSON.parse(await readFile(join(rig.dir, 'data', 'settings.json'), 'utf8'))).toMatchObject({ acceptRoutes: true, acceptDns: false });
    expect(await h.dispatch('settings:get', {})).toMatchObject({ ok: true, value: { acceptRoutes: true, acceptDns: false, notifications: false } });
    // An app-only change leaves them alone (no defaults slip into a partial update).
    expect(await h.dispatch('settings:set', { autoStart: true })).toMatchObject({ ok: true, value: { acceptRoutes: true, acceptDns: false, autoStart: true } });
    expect(rig.host.settings()).toMatchObject({ acceptRoutes: true, acceptDns: false, autoStart: false });
    // A second app (another user's) sees weftd's values, not its own file's defaults.
    const other = createRemoteHost({ connect: () => connectDaemon(rig.runDir, { readOnly: true }), retryMs: 50 });
    hosts.push(other);
    await other.start();
    expect(other.settings()).toMatchObject({ acceptRoutes: true, acceptDns: false });
  });

  it('refuses subnet routes and MagicDNS changes from a non-operator, changing nothing', async () => {
    const h = app(true);
    await h.start();
    const r = await h.dispatch('settings:set', { acceptRoutes: true, startMinimised: true });
    expect(r).toMatchObject({ ok: false, error: { code: 'permission-denied' } });
    expect(rig.host.settings().acceptRoutes).toBe(false);
    expect(h.settings()).toMatchObject({ acceptRoutes: false, startMinimised: false });
  });

  it('shows weftd going away, and reconnects when it is back', async () => {
    const h = app(false);
    await h.start();
    await rig.api.close();
    await until('the link is down', () => !h.link().connected);
    expect(h.snapshot().control).toMatchObject({ state: 'error', error: expect.stringMatching(/stopped or restarted/) });
    expect(await h.dispatch('mesh:snapshot', {})).toMatchObject({ ok: false, error: { code: 'daemon-unavailable' } });
    // The same daemon serves again (as weftd restarted by systemd would).
    const { startApiServer } = await import('../../../src-main/daemon/api-server.ts');
    const { createDispatcher } = await import('../../../src-main/host/dispatch.ts');
    rig.api = await startApiServer({ runDir: rig.runDir, logf: () => undefined, backend: { dispatch: createDispatcher(rig.host.handlers), onEvent: () => () => undefined } });
    await until('reconnected', () => h.link().connected, 5000);
    expect(h.snapshot().control).toBeNull();
  });
});
