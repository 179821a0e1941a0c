/** The store's "Create a network on this computer" action (`network:create-local`), through the guarded client. */
import { describe, expect, it } from 'vitest';
import { qrDataUrl } from '../../../src-renderer/src/features/join/qr.ts';
import { guardApi } from '../../../src-renderer/src/ipc/guard.ts';
import { showJoinScreen } from '../../../src-renderer/src/store/selectors/mesh.ts';
import { createWeftStore } from '../../../src-renderer/src/store/index.ts';
import { IDLE_JOIN } from '../../../src-renderer/src/store/slices/session.ts';
import { FakeApi, ok } from './support/fake-client.ts';
import { snapshot } from './support/fixtures.ts';

const NETWORK = {
  serverUrl: 'http://192.168.1.20:8080',
  authKey: '0123456789abcdef0123456789abcdef0123456789abcdef',
  qrSvg: '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 29 29"><path d="M0 0h29v29H0z"/></svg>',
  qrText: 'tailscale up --login-server=http://192.168.1.20:8080 --auth-key=0123456789abcdef0123456789abcdef0123456789abcdef',
};

function setup(answer: (req: unknown) => unknown) {
  const store = createWeftStore();
  const fake = new FakeApi().answer('network:create-local', answer);
  const client = guardApi(fake.api, 'preload', (e) => store.getState().reportIpcError(e));
  store.getState().setSnapshot(snapshot([]));
  return { store, fake, client, st: () => store.getState() };
}

describe('createLocalNetwork', () => {
  it('holds the join screen while the server starts and this device joins, then keeps it for the details until finished', async () => {
    let release: (v: unknown) => void = () => undefined;
    const { fake, client, st } = setup(() => new Promise((r) => (release = r)));
    const pending = st().createLocalNetwork(client);
    expect(st().localNetwork).toEqual({ status: 'creating' });
    expect(st().join).toMatchObject({ active: true, stage: 'reaching-server' });
    expect(showJoinScreen(st())).toBe(true);
    // A second click while it runs does not call again.
    await st().createLocalNetwork(client);
    expect(fake.calls.filter((c) => c.method === 'network:create-local')).toEqual([{ method: 'network:create-local', request: {} }]);

    st().setProgress({ stage: 'connected', authUrl: null, error: null });
    release(ok(NETWORK));
    await pending;
    expect(st().localNetwork).toEqual({ status: 'ready', network: NETWORK });
    expect(st().serverUrl).toBe(NETWORK.serverUrl);
    expect(st().join.active).toBe(true);
    expect(showJoinScreen(st())).toBe(true);

    st().finishLocalNetwork();
    expect(st().localNetwork).toEqual({ status: 'idle' });
    expect(st().join).toEqual(IDLE_JOIN);
  });

  it('a failure shows as a failed join and leaves the action available again', async () => {
    const { client, st } = setup(() => ({ ok: false, error: { code: 'internal', message: 'cannot start the network on this computer: EADDRINUSE', retryable: true } }));
    await st().createLocalNetwork(client);
    expect(st().localNetwork).toEqual({ status: 'idle' });
    expect(st().join).toMatchObject({ active: false, stage: 'failed', error: { code: 'internal', retryable: true } });
  });

  it('an off-contract answer (e.g. a QR that is not SVG) is refused by the client and reported, never shown', async () => {
    const { client, st } = setup(() => ok({ ...NETWORK, qrSvg: '<script>alert(1)</script>' }));
    await st().createLocalNetwork(client);
    expect(st().localNetwork).toEqual({ status: 'idle' });
    expect(st().join.error?.code).toBe('invalid-payload');
    expect(st().ipcError?.code).toBe('invalid-payload');
  });
});

describe('qrDataUrl', () => {
  it('encodes the SVG as a data: URL an <img> can show (nothing left unescaped that could end the attribute)', () => {
    const u = qrDataUrl(NETWORK.qrSvg);
    expect(u.startsWith('data:image/svg+xml;charset=utf-8,%3Csvg')).toBe(true);
    expect(u).not.toMatch(/["<> ]/);
    expect(decodeURIComponent(u.slice(u.indexOf(',') + 1))).toBe(NETWORK.qrSvg);
  });
});
