/**
 * The app frame once joined: sidebar navigation, a status header (connection state and link counts), the current
 * view, the peer detail panel when a peer is selected, and the banners (contract errors, expired key) and notices.
 */
import { useEffect } from 'react';
import { errorWords } from '../../lib/error-text.ts';
import { directCount, onlineCount, relayedCount } from '../../store/selectors/mesh.ts';
import type { View } from '../../store/slices/ui.ts';
import { actions, useWeft } from '../../store/use-weft.ts';
import { DeviceCard } from '../device/DeviceCard.tsx';
import { LogsView } from '../logs/LogsView.tsx';
import { MeshGraph } from '../mesh-graph/MeshGraph.tsx';
import { PeerDetail } from '../peer-detail/PeerDetail.tsx';
import { PeerList } from '../peer-list/PeerList.tsx';
import { SettingsView } from '../settings/SettingsView.tsx';

const NAV: readonly { view: View; label: string; icon: string }[] = [
  { view: 'mesh', label: 'Mesh', icon: '◎' },
  { view: 'peers', label: 'Peers', icon: '☰' },
  { view: 'device', label: 'This device', icon: '⌂' },
  { view: 'logs', label: 'Logs', icon: '≡' },
  { view: 'settings', label: 'Settings', icon: '⚙' },
];

const TITLES: Record<View, string> = { mesh: 'Mesh', peers: 'Peers', device: 'This device', logs: 'Logs', settings: 'Settings' };

export function Shell() {
  const view = useWeft((s) => s.view);
  const selected = useWeft((s) => s.selectedPeerId);
  const showDetail = selected !== null && (view === 'mesh' || view === 'peers');

  return (
    <div className="shell">
      <nav className="sidebar" aria-label="Sections">
        <div className="brand">
          <span className="logo" aria-hidden="true" />
          Weft
        </div>
        {NAV.map((n) => (
          <button
            key={n.view}
            type="button"
            data-testid={`nav-${n.view}`}
            className={`nav${view === n.view ? ' on' : ''}`}
            aria-current={view === n.view ? 'page' : undefined}
            onClick={() => actions().setView(n.view)}
          >
            <span className="nav-icon" aria-hidden="true">
              {n.icon}
            </span>
            {n.label}
          </button>
        ))}
      </nav>
      <div className="content">
        <StatusBar title={TITLES[view]} />
        <Banners />
        <div className={`workspace${showDetail ? ' with-detail' : ''}`}>
          <main className="view">
            {view === 'mesh' ? <MeshGraph /> : null}
            {view === 'peers' ? <PeerList /> : null}
            {view === 'device' ? <DeviceCard /> : null}
            {view === 'logs' ? <LogsView /> : null}
            {view === 'settings' ? <SettingsView /> : null}
          </main>
          {showDetail ? <PeerDetail id={selected} /> : null}
        </div>
      </div>
      <NoticeToast />
    </div>
  );
}

function StatusBar({ title }: { title: string }) {
  const control = useWeft((s) => s.snapshot.control);
  const direct = useWeft(directCount);
  const relayed = useWeft(relayedCount);
  const online = useWeft(onlineCount);
  const total = useWeft((s) => s.snapshot.peers.length);
  const state = control?.state ?? 'connecting';
  return (
    <header className="statusbar">
      <h1>{title}</h1>
      <span className={`state state-${state}`} data-testid="control-state" data-state={state}>
        {state === 'connected' ? 'Connected' : state === 'connecting' ? 'Connecting…' : state === 'needs-login' ? 'Needs login' : state === 'expired' ? 'Key expired' : 'Error'}
      </span>
      <span className="counts muted small" data-testid="link-counts">
        <span className="c-direct">{direct} direct</span> · <span className="c-relay">{relayed} relayed</span> · {online} of {total} online
      </span>
    </header>
  );
}

function Banners() {
  const ipcError = useWeft((s) => s.ipcError);
  const control = useWeft((s) => s.snapshot.control);
  return (
    <>
      {ipcError ? (
        <div className="banner banner-error" role="alert" data-testid="ipc-error" data-code={ipcError.code}>
          <strong>{errorWords(ipcError).title}</strong>
          <span className="detail">{ipcError.message}</span>
          <button type="button" className="icon" aria-label="Dismiss" onClick={() => actions().clearIpcError()}>
            ×
          </button>
        </div>
      ) : null}
      {control?.state === 'expired' || control?.state === 'needs-login' ? (
        <div className="banner banner-warn" role="status">
          <strong>{control.state === 'expired' ? 'This device’s key has expired.' : 'This device needs to log in again.'}</strong>
          <button type="button" className="primary" onClick={() => actions().requestJoin(true)}>
            Log in again
          </button>
        </div>
      ) : null}
      {control?.state === 'error' && control.error ? (
        <div className="banner banner-error" role="status">
          <strong>Connection problem</strong>
          <span className="detail">{control.error}</span>
        </div>
      ) : null}
    </>
  );
}

/** Shows the current notice for a few seconds. */
function NoticeToast() {
  const notice = useWeft((s) => s.notice);
  useEffect(() => {
    if (!notice) return;
    const t = setTimeout(() => actions().dismissNotice(notice.id), notice.tone === 'error' ? 6000 : 2500);
    return () => clearTimeout(t);
  }, [notice]);
  if (!notice) return null;
  return (
    <div className={`toast toast-${notice.tone}`} role={notice.tone === 'error' ? 'alert' : 'status'} data-testid="notice">
      {notice.text}
    </div>
  );
}
