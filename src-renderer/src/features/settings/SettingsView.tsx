/**
 * Settings from the contract (start-up, notifications, MagicDNS and subnet routes, saved networks) and the session
 * controls. MagicDNS and subnet routes change this computer's DNS and routes, so the Weft service keeps them (a
 * change needs operator rights there); the app's own preferences are the user's.
 */
import { useState } from 'react';
import type { IpcError, Settings } from '../../../../src-shared/ipc/contract.ts';
import { useClient } from '../../app-context.ts';
import { errorWords } from '../../lib/error-text.ts';
import { actions, useWeft } from '../../store/use-weft.ts';

type Toggle = 'autoStart' | 'startMinimised' | 'notifications' | 'acceptDns' | 'acceptRoutes';

interface ToggleSpec {
  key: Toggle;
  label: string;
  hint: string;
  testId?: string;
}

const TOGGLES: readonly ToggleSpec[] = [
  { key: 'autoStart', label: 'Start Weft when you log in', hint: 'Connects in the background at login.' },
  { key: 'startMinimised', label: 'Start minimised', hint: 'Only the tray icon shows at start.' },
  { key: 'notifications', label: 'Notifications', hint: 'Tell me when the connection drops or a key is about to expire.' },
];

const NETWORK_TOGGLES: readonly ToggleSpec[] = [
  { key: 'acceptDns', label: 'Use MagicDNS', hint: 'Reach devices by their names (such as nas) through the tailnet’s DNS.', testId: 'toggle-accept-dns' },
  { key: 'acceptRoutes', label: 'Use subnet routes', hint: 'Reach the networks other devices share (such as a home LAN); your own LAN always wins.', testId: 'toggle-accept-routes' },
];

export function SettingsView() {
  const client = useClient();
  const settings = useWeft((s) => s.settings);
  const control = useWeft((s) => s.snapshot.control);
  const [error, setError] = useState<IpcError | null>(null);
  const [busy, setBusy] = useState(false);

  const save = async (patch: Partial<Settings>): Promise<void> => {
    setBusy(true);
    const r = await client.call('settings:set', patch);
    setBusy(false);
    if (r.ok) {
      setError(null);
      actions().setSettings(r.value);
    } else setError(r.error);
  };

  const session = async (method: 'session:connect' | 'session:disconnect' | 'session:logout'): Promise<void> => {
    setBusy(true);
    const r = await client.call(method, {});
    setBusy(false);
    setError(r.ok ? null : r.error);
  };

  const switchTo = async (id: string): Promise<void> => {
    const r = await client.call('profiles:switch', { id });
    setError(r.ok ? null : r.error);
    if (r.ok) {
      const s = await client.call('settings:get', {});
      if (s.ok) actions().setSettings(s.value);
    }
  };

  const remove = async (id: string): Promise<void> => {
    const r = await client.call('profiles:remove', { id });
    if (r.ok) actions().setSettings(r.value);
    setError(r.ok ? null : r.error);
  };

  return (
    <section className="settings" data-testid="settings" aria-label="Settings">
      {error ? (
        <div className="error" role="alert">
          <strong>{errorWords(error).title}</strong>
          {errorWords(error).detail ? <span className="detail">{errorWords(error).detail}</span> : null}
        </div>
      ) : null}

      <div className="card">
        <h2>Connection</h2>
        <p className="muted">{control ? `${control.url} — ${control.state}` : 'Not joined to a network.'}</p>
        <div className="row">
          {control?.state === 'connected' ? (
            <button type="button" onClick={() => void session('session:disconnect')} disabled={busy}>
              Disconnect
            </button>
          ) : (
            <button type="button" onClick={() => void session('session:connect')} disabled={busy || !control}>
              Connect
            </button>
          )}
          <button type="button" className="danger" onClick={() => void session('session:logout')} disabled={busy || !control}>
            Log out
          </button>
          <button type="button" onClick={() => actions().requestJoin(true)}>
            Join another network…
          </button>
        </div>
      </div>

      <div className="card">
        <h2>App</h2>
        {settings ? <Toggles items={TOGGLES} settings={settings} busy={busy} save={save} /> : <p className="muted">Loading settings…</p>}
      </div>

      <div className="card" data-testid="settings-network">
        <h2>Tailnet</h2>
        {settings ? (
          <>
            <Toggles items={NETWORK_TOGGLES} settings={settings} busy={busy} save={save} />
            <p className="muted small">These change this computer’s DNS and routes, for every user of it: the Weft service keeps them.</p>
          </>
        ) : (
          <p className="muted">Loading settings…</p>
        )}
      </div>

      <div className="card">
        <h2>Networks</h2>
        {settings && settings.profiles.length > 0 ? (
          <ul className="profiles">
            {settings.profiles.map((p) => (
              <li key={p.id} className={p.id === settings.activeProfile ? 'active' : ''}>
                <span>
                  <strong>{p.name}</strong>
                  <span className="muted small block">{p.serverUrl}</span>
                </span>
                {p.id === settings.activeProfile ? (
                  <span className="badge badge-direct">Active</span>
                ) : (
                  <button type="button" onClick={() => void switchTo(p.id)}>
                    Switch
                  </button>
                )}
                <button type="button" className="danger" onClick={() => void remove(p.id)}>
                  Remove
                </button>
              </li>
            ))}
          </ul>
        ) : (
          <p className="muted">No saved networks.</p>
        )}
      </div>
    </section>
  );
}

function Toggles({ items, settings, busy, save }: { items: readonly ToggleSpec[]; settings: Settings; busy: boolean; save: (patch: Partial<Settings>) => Promise<void> }) {
  return (
    <ul className="toggles">
      {items.map((t) => (
        <li key={t.key}>
          <label className="toggle">
            <input type="checkbox" data-testid={t.testId} checked={settings[t.key]} disabled={busy} onChange={(e) => void save({ [t.key]: e.target.checked })} />
            <span>
              {t.label}
              <span className="muted small block">{t.hint}</span>
            </span>
          </label>
        </li>
      ))}
    </ul>
  );
}
