/**
 * The join screen: server URL (remembered), auth key or browser login, and progress through the join stages from
 * `session:progress`, with the login URL while waiting for approval and every failure in words.
 */
import { useEffect, useState, type FormEvent } from 'react';
import type { JoinStage } from '../../../../src-shared/ipc/contract.ts';
import { useClient } from '../../app-context.ts';
import { errorWords } from '../../lib/error-text.ts';
import { rememberServerUrl } from '../../lib/remember.ts';
import { actions, useWeft } from '../../store/use-weft.ts';
import { LocalNetworkPanel } from './LocalNetworkPanel.tsx';
import { inProgress, serverUrlProblem, STAGE_ORDER, STAGE_STEP, STAGE_TEXT } from './stages.ts';

/** How long "Connected" stays on screen before the mesh view takes over. */
const CONNECTED_HOLD_MS = 1200;

export function JoinScreen() {
  const client = useClient();
  const storedUrl = useWeft((s) => s.serverUrl);
  const mode = useWeft((s) => s.joinMode);
  const join = useWeft((s) => s.join);
  const canGoBack = useWeft((s) => s.joinRequested && s.everConnected);
  const ipcError = useWeft((s) => s.ipcError);
  const local = useWeft((s) => s.localNetwork);
  const [serverUrl, setServerUrl] = useState(storedUrl);
  const [authKey, setAuthKey] = useState('');
  const [problem, setProblem] = useState<string | null>(null);
  const controlConnected = useWeft((s) => s.snapshot.control?.state === 'connected');
  // Whether control was seen not connected while this screen is up (so "connected" is about this join, not the
  // session it is replacing).
  const [sawDown, setSawDown] = useState(!controlConnected);
  useEffect(() => {
    if (!controlConnected) setSawDown(true);
  }, [controlConnected]);
  // Connected (by progress or by control state, whichever comes first): show it briefly, then hand over.
  const done = join.active && (join.stage === 'connected' || (controlConnected && sawDown));
  const stage = done ? 'connected' : join.stage;
  const creating = local.status === 'creating';
  const busy = (inProgress(stage) && join.active) || creating;

  useEffect(() => {
    // "Create a network on this computer" holds the screen until its details were seen (LocalNetworkPanel).
    if (!done || local.status !== 'idle') return;
    const t = setTimeout(() => actions().finishJoin(), CONNECTED_HOLD_MS);
    return () => clearTimeout(t);
  }, [done, local.status]);

  // The remembered URL may arrive after mount (settings load); fill it in unless the user typed something.
  useEffect(() => {
    if (storedUrl) setServerUrl((cur) => (cur === '' ? storedUrl : cur));
  }, [storedUrl]);

  const submit = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    const url = serverUrl.trim();
    const urlProblem = serverUrlProblem(url);
    if (urlProblem) {
      setProblem(urlProblem);
      return;
    }
    if (mode === 'authkey' && authKey.trim() === '') {
      setProblem('Enter an auth key, or choose “Log in with browser”.');
      return;
    }
    setProblem(null);
    rememberServerUrl(url);
    actions().beginJoin(url);
    const r = await client.call('session:join', mode === 'authkey' ? { serverUrl: url, authKey: authKey.trim() } : { serverUrl: url });
    if (!r.ok) actions().failJoin(r.error);
  };

  const cancel = async (): Promise<void> => {
    actions().resetJoin();
    await client.call('session:disconnect', {});
  };

  const openAuthUrl = async (url: string): Promise<void> => {
    const r = await client.call('session:open-auth-url', { url });
    if (!r.ok) actions().showNotice('error', `Could not open the browser: ${errorWords(r.error).title}`);
  };

  const err = join.error ? errorWords(join.error) : null;

  if (local.status === 'ready') {
    return (
      <main className="join" data-testid="join-screen">
        <LocalNetworkPanel network={local.network} />
      </main>
    );
  }

  return (
    <main className="join" data-testid="join-screen">
      <form className="join-card" onSubmit={(e) => void submit(e)} noValidate>
        <header className="join-head">
          <div className="logo" aria-hidden="true" />
          <div>
            <h1>Join your network</h1>
            <p className="muted">Connect this device to a headscale server.</p>
          </div>
        </header>

        <label className="field">
          <span>Server URL</span>
          <input
            data-testid="join-server-url"
            type="url"
            inputMode="url"
            autoComplete="url"
            placeholder="https://headscale.example.com"
            value={serverUrl}
            onChange={(e) => setServerUrl(e.target.value)}
            disabled={busy}
            spellCheck={false}
          />
        </label>

        <div className="segmented" role="radiogroup" aria-label="How to log in">
          <button
            type="button"
            role="radio"
            aria-checked={mode === 'authkey'}
            data-testid="join-mode-authkey"
            className={mode === 'authkey' ? 'on' : ''}
            onClick={() => actions().setJoinMode('authkey')}
            disabled={busy}
          >
            Auth key
          </button>
          <button
            type="button"
            role="radio"
            aria-checked={mode === 'browser'}
            data-testid="join-mode-browser"
            className={mode === 'browser' ? 'on' : ''}
            onClick={() => actions().setJoinMode('browser')}
            disabled={busy}
          >
            Log in with browser
          </button>
        </div>

        {mode === 'authkey' ? (
          <label className="field">
            <span>Auth key</span>
            <input
              data-testid="join-auth-key"
              type="password"
              autoComplete="off"
              placeholder="Pre-auth key from your administrator"
              value={authKey}
              onChange={(e) => setAuthKey(e.target.value)}
              disabled={busy}
              spellCheck={false}
            />
          </label>
        ) : (
          <p className="muted small">Weft opens the server’s login page in your browser; this screen continues once you are approved.</p>
        )}

        <div className="join-actions">
          <button type="submit" className="primary" data-testid="join-submit" disabled={busy}>
            {busy ? 'Joining…' : 'Join'}
          </button>
          {busy ? (
            <button type="button" onClick={() => void cancel()}>
              Cancel
            </button>
          ) : null}
          {canGoBack && !busy ? (
            <button type="button" onClick={() => actions().requestJoin(false)}>
              Back
            </button>
          ) : null}
        </div>

        {!busy ? (
          <div className="create-network">
            <button type="button" data-testid="create-network" onClick={() => void actions().createLocalNetwork(client)}>
              Create a network on this computer
            </button>
            <p className="muted small">No server yet? This computer can run one: other devices join it with a key or a QR code.</p>
          </div>
        ) : null}

        {stage ? <Progress stage={stage} /> : null}

        {stage === 'waiting-approval' && join.authUrl ? (
          <div className="approval">
            <p>Approve this device in your browser to finish joining.</p>
            <div className="row">
              <button type="button" className="primary" data-testid="join-open-auth-url" onClick={() => void openAuthUrl(join.authUrl!)}>
                Open login page
              </button>
              <code className="auth-url" data-testid="join-auth-url">
                {join.authUrl}
              </code>
            </div>
          </div>
        ) : null}

        {problem || err ? (
          <div className="error" role="alert" data-testid="join-error">
            <strong>{problem ?? err!.title}</strong>
            {!problem && err?.detail ? <span className="detail">{err.detail}</span> : null}
            {!problem && err?.retryable ? <span className="detail">You can try again.</span> : null}
          </div>
        ) : null}
        {ipcError ? (
          <div className="error" role="alert" data-testid="ipc-error" data-code={ipcError.code}>
            <strong>{errorWords(ipcError).title}</strong>
            <span className="detail">{ipcError.message}</span>
          </div>
        ) : null}
      </form>
    </main>
  );
}

function Progress({ stage }: { stage: JoinStage }) {
  const at = stage === 'failed' ? -1 : STAGE_ORDER.indexOf(stage);
  return (
    <div className="progress">
      <ol className="steps">
        {STAGE_ORDER.map((s, i) => (
          <li key={s} className={stage === 'failed' ? '' : i < at ? 'done' : i === at ? (s === 'connected' ? 'done' : 'current') : ''}>
            {STAGE_STEP[s as Exclude<JoinStage, 'failed'>]}
          </li>
        ))}
      </ol>
      <p className={`stage stage-${stage}`} data-testid="join-stage" data-stage={stage} aria-live="polite">
        {STAGE_TEXT[stage]}
      </p>
    </div>
  );
}
