/**
 * "Create a network on this computer", done: how other devices join the network this computer now serves. The
 * server URL and the auth key with copy buttons, and both as a QR code. The QR code is an SVG document made in
 * the main process, shown as an <img> from a data: URL (CSP img-src allows data:; an image cannot run scripts).
 */
import type { LocalNetwork } from '../../../../src-shared/ipc/contract.ts';
import { actions } from '../../store/use-weft.ts';
import { useCopy } from '../shell/use-copy.ts';
import { PolicyEditor } from './PolicyEditor.tsx';
import { qrDataUrl } from './qr.ts';

export function LocalNetworkPanel({ network }: { network: LocalNetwork }) {
  const copy = useCopy();
  return (
    <section className="join-card local-network" data-testid="local-network" aria-labelledby="local-network-title">
      <header className="join-head">
        <div className="logo" aria-hidden="true" />
        <div>
          <h1 id="local-network-title">Your network is ready</h1>
          <p className="muted">This computer runs it and has joined it. Other devices join with the details below.</p>
        </div>
      </header>

      <div className="field">
        <span>Server URL</span>
        <div className="copy-row">
          <code data-testid="local-network-url">{network.serverUrl}</code>
          <button type="button" data-testid="copy-server-url" onClick={() => copy(network.serverUrl, 'the server URL')}>
            Copy
          </button>
        </div>
      </div>

      <div className="field">
        <span>Auth key</span>
        <div className="copy-row">
          <code data-testid="local-network-key">{network.authKey}</code>
          <button type="button" data-testid="copy-auth-key" onClick={() => copy(network.authKey, 'the auth key')}>
            Copy
          </button>
        </div>
        <p className="muted small">Reusable for a day: anyone with it can join this network, so share it only with your devices.</p>
      </div>

      <figure className="qr">
        <img data-testid="join-qr" src={qrDataUrl(network.qrSvg)} width={200} height={200} alt={`QR code: ${network.qrText}`} />
        <figcaption className="muted small">Scan on another device: it holds the login server and the key.</figcaption>
      </figure>

      <PolicyEditor />

      <div className="join-actions">
        <button type="button" className="primary" data-testid="local-network-done" onClick={() => actions().finishLocalNetwork()}>
          Continue
        </button>
      </div>
    </section>
  );
}
