/**
 * The access policy of the network on this computer, as an editable file: its text (headscale's policy format,
 * HuJSON) in a text area, "Check" (the server's own checks against this network's users, each error with its line)
 * and "Save" (written only when valid; the server reloads it within a second). When the file on disk is not the
 * policy in force (an edit by hand that was refused, or a bad file at start), the panel opens with why, each error
 * with its line. Operators only: weftd refuses the read and the write to other users, and the message says so.
 */
import { useEffect, useState } from 'react';
import type { IpcError, PolicyCheck } from '../../../../src-shared/ipc/contract.ts';
import { useClient } from '../../app-context.ts';

type Outcome = { kind: 'checked' | 'saved'; check: PolicyCheck } | { kind: 'failed'; error: IpcError } | null;

export function PolicyEditor() {
  const client = useClient();
  const [path, setPath] = useState<string | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [text, setText] = useState('');
  const [loadError, setLoadError] = useState<IpcError | null>(null);
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<Outcome>(null);

  useEffect(() => {
    let live = true;
    void client.call('network:policy-get', {}).then((r) => {
      if (!live) return;
      if (r.ok) {
        setPath(r.value.path);
        setText(r.value.text);
        setProblem(r.value.problem);
      } else setLoadError(r.error);
    });
    return () => {
      live = false;
    };
  }, [client]);

  const run = async (method: 'network:policy-check' | 'network:policy-save'): Promise<void> => {
    setBusy(true);
    const r = await client.call(method, { text });
    setBusy(false);
    if (!r.ok) setOutcome({ kind: 'failed', error: r.error });
    else {
      const saved = method === 'network:policy-save' && 'saved' in r.value && r.value.saved;
      setOutcome({ kind: saved ? 'saved' : 'checked', check: r.value });
      // A saved (valid) file is what the server reloads next: the old problem no longer describes it.
      if (saved) setProblem(null);
    }
  };

  if (loadError) {
    return (
      <p className="muted small" data-testid="policy-unavailable">
        The access policy cannot be shown: {loadError.message}
      </p>
    );
  }
  return (
    <details className="policy-editor" data-testid="policy-editor" open={problem !== null ? true : undefined}>
      <summary>Access policy{problem !== null ? ' (needs a fix)' : ''}</summary>
      {problem !== null && (
        <div className="error" role="alert" data-testid="policy-problem">
          <span>This file is not in force: the last valid policy is, until the file is fixed.</span>
          {problem.split('\n').map((l, i) => (
            <span className="detail" key={i}>
              {l}
            </span>
          ))}
        </div>
      )}
      <p className="muted small">
        Who may reach whom, in headscale’s policy format. Without <code>"acls"</code> every device reaches every other one. File:{' '}
        <code data-testid="policy-path">{path ?? '…'}</code>
      </p>
      <textarea
        data-testid="policy-text"
        aria-label="Policy file"
        spellCheck={false}
        rows={12}
        value={text}
        onChange={(e) => {
          setText(e.target.value);
          setOutcome(null);
        }}
      />
      <div className="copy-row">
        <button type="button" data-testid="policy-check" disabled={busy || path === null} onClick={() => void run('network:policy-check')}>
          Check
        </button>
        <button type="button" className="primary" data-testid="policy-save" disabled={busy || path === null} onClick={() => void run('network:policy-save')}>
          Save
        </button>
      </div>
      <PolicyOutcome outcome={outcome} />
    </details>
  );
}

function PolicyOutcome({ outcome }: { outcome: Outcome }) {
  if (!outcome) return null;
  if (outcome.kind === 'failed') {
    return (
      <div className="error" role="alert" data-testid="policy-result">
        {outcome.error.message}
      </div>
    );
  }
  if (outcome.check.valid) {
    return (
      <p className="muted small" role="status" data-testid="policy-result">
        {outcome.kind === 'saved' ? 'Saved. The network applies it within a second.' : 'The policy is valid.'}
      </p>
    );
  }
  return (
    <div className="error" role="alert" data-testid="policy-result">
      <span>{outcome.kind === 'checked' ? 'The policy is not valid:' : 'Not saved: the policy is not valid:'}</span>
      {outcome.check.errors.map((e, i) => (
        <span className="detail" key={i}>
          line {e.line}, column {e.column}: {e.message}
        </span>
      ))}
    </div>
  );
}
