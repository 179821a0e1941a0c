/**
 * Which transport the renderer talks to (pure, so it is tested without a browser):
 *  1. the Electron preload's `window.weft` when it implements the contract (invoke + on);
 *  2. otherwise the dev bridge over WebSocket, from the page's `?bridge=ws://…` query parameter, else the build's
 *     `VITE_WEFT_BRIDGE` (the query wins: a test can point one build at any bridge);
 *  3. otherwise nothing: the app shows why.
 */

export type TransportChoice =
  | { kind: 'preload' }
  | { kind: 'ws'; url: string; from: 'query' | 'env' }
  | { kind: 'none'; reason: string };

export interface TransportInputs {
  /** Whatever the page's global `weft` is (undefined outside Electron). */
  preload: unknown;
  /** The page's `location.search`, e.g. "?bridge=ws%3A%2F%2F127.0.0.1%3A5000". */
  search: string;
  /** `import.meta.env.VITE_WEFT_BRIDGE`. */
  envUrl: string | undefined;
}

/** Reports whether `x` looks like the preload's WeftApi (the real check is done per call by the contract). */
export function isApiShaped(x: unknown): boolean {
  if (typeof x !== 'object' || x === null) return false;
  const o = x as Record<string, unknown>;
  return typeof o['invoke'] === 'function' && typeof o['on'] === 'function';
}

/** Reports whether `url` is a ws:// or wss:// URL. */
export function isWsUrl(url: string): boolean {
  try {
    const u = new URL(url);
    return u.protocol === 'ws:' || u.protocol === 'wss:';
  } catch {
    return false;
  }
}

export function chooseTransport(i: TransportInputs): TransportChoice {
  if (isApiShaped(i.preload)) return { kind: 'preload' };
  const query = new URLSearchParams(i.search).get('bridge');
  if (query !== null && query !== '') {
    return isWsUrl(query) ? { kind: 'ws', url: query, from: 'query' } : { kind: 'none', reason: `the ?bridge= parameter is not a ws:// URL: ${query}` };
  }
  if (i.envUrl !== undefined && i.envUrl !== '') {
    return isWsUrl(i.envUrl) ? { kind: 'ws', url: i.envUrl, from: 'env' } : { kind: 'none', reason: `VITE_WEFT_BRIDGE is not a ws:// URL: ${i.envUrl}` };
  }
  return { kind: 'none', reason: 'not running inside the Weft app, and no dev bridge was given (?bridge=ws://…)' };
}
