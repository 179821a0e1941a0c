/**
 * The root: without a transport, says why; before the first snapshot, a loading state; then the join screen or the
 * app shell (selectors/mesh.ts `showJoinScreen` decides).
 */
import { ClientContext } from './app-context.ts';
import { JoinScreen } from './features/join/JoinScreen.tsx';
import { Shell } from './features/shell/Shell.tsx';
import type { ConnectResult } from './ipc/client.ts';
import { errorWords } from './lib/error-text.ts';
import { showJoinScreen } from './store/selectors/mesh.ts';
import { useWeft } from './store/use-weft.ts';

export function App({ connection }: { connection: ConnectResult }) {
  if (!connection.ok) {
    return (
      <main className="splash" data-testid="no-service">
        <div className="logo big" aria-hidden="true" />
        <h1>Weft is not reachable</h1>
        <p className="muted">This window has no connection to the Weft service: {connection.reason}.</p>
      </main>
    );
  }
  return (
    <ClientContext.Provider value={connection.client}>
      <Root />
    </ClientContext.Provider>
  );
}

function Root() {
  const loaded = useWeft((s) => s.meshLoaded);
  const join = useWeft(showJoinScreen);
  const ipcError = useWeft((s) => s.ipcError);
  if (!loaded) {
    return (
      <main className="splash" data-testid="loading">
        <div className="logo big pulse" aria-hidden="true" />
        <p className="muted">Connecting to the Weft service…</p>
        {ipcError ? (
          <p className="error" role="alert">
            {errorWords(ipcError).title} <span className="detail">{ipcError.message}</span>
          </p>
        ) : null}
      </main>
    );
  }
  return join ? <JoinScreen /> : <Shell />;
}
