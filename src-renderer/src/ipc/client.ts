/**
 * The only file that reaches for the API: the Electron preload's `window.weft`, or, in a plain browser (dev mode,
 * the Chromium end-to-end test), the dev bridge over WebSocket via `connectWsApi` (ws-api.ts). Which one is chosen
 * is decided by transport.ts; everything handed out is wrapped by guard.ts, so callers only ever see payloads that
 * passed the contract's schemas.
 */
import type { IpcError, WeftApi } from '../../../src-shared/ipc/contract.ts';
import { guardApi, type WeftClient } from './guard.ts';
import { chooseTransport } from './transport.ts';
import { connectWsApi } from './ws-api.ts';

export type { WeftClient };

export type ConnectResult = { ok: true; client: WeftClient; detail: string } | { ok: false; reason: string };

let connected: ConnectResult | null = null;

/**
 * Connects once per page (later calls answer the same result). `onInvalid` hears every payload that broke the
 * contract.
 */
export function connectClient(onInvalid: (error: IpcError) => void): ConnectResult {
  if (connected) return connected;
  const preload: unknown = (window as unknown as { weft?: unknown }).weft;
  const choice = chooseTransport({ preload, search: window.location.search, envUrl: import.meta.env.VITE_WEFT_BRIDGE });
  switch (choice.kind) {
    case 'preload':
      connected = { ok: true, client: guardApi(preload as WeftApi, 'preload', onInvalid), detail: 'Electron preload' };
      break;
    case 'ws':
      try {
        connected = { ok: true, client: guardApi(connectWsApi(choice.url), 'ws', onInvalid), detail: `dev bridge ${choice.url}` };
      } catch (e) {
        connected = { ok: false, reason: `cannot use the dev bridge at ${choice.url}: ${e instanceof Error ? e.message : String(e)}` };
      }
      break;
    case 'none':
      connected = { ok: false, reason: choice.reason };
      break;
  }
  return connected;
}
