/**
 * Renderer entry: picks the transport (Electron preload or dev bridge), starts the app-lifetime event bridge
 * outside React, and renders the app.
 */
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App.tsx';
import { connectClient } from './ipc/client.ts';
import { rememberedServerUrl } from './lib/remember.ts';
import { startBridge } from './store/bridge.ts';
import { weftStore } from './store/index.ts';
import './styles.css';

const connection = connectClient((error) => weftStore.getState().reportIpcError(error));
const remembered = rememberedServerUrl();
if (remembered) weftStore.getState().setServerUrl(remembered);
if (connection.ok) startBridge(connection.client, weftStore);

const root = document.getElementById('root');
if (root) {
  createRoot(root).render(
    <StrictMode>
      <App connection={connection} />
    </StrictMode>,
  );
}
