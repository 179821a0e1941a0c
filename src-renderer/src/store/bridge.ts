/**
 * The app-lifetime event bridge: subscribes to the contract's push events once, outside React, and feeds them to the
 * store through actions; then loads the initial state (snapshot, logs, settings). A subscription tied to a
 * component's mount could miss events while that component is not shown; this one lives as long as the page.
 *
 * Ordering: pushes and responses share one ordered channel (Electron IPC, or one WebSocket), so deltas and log lines
 * that arrive before the snapshot / `logs:get` answer are already contained in it; the slices drop them until loaded.
 */
import type { WeftClient } from '../ipc/guard.ts';
import type { WeftStore } from './index.ts';

export interface BridgeOptions {
  /** ms since the epoch, stamped on latency samples. @default Date.now */
  now?: () => number;
  /** Schedules a retry; returns a cancel function. @default setTimeout */
  schedule?: (fn: () => void, ms: number) => () => void;
  /** First snapshot retry delay; doubles up to 10 s. @default 1000 */
  retryMs?: number;
}

/** Initial log lines asked for: everything recent, the view filters by level. */
export const INITIAL_LOG_LIMIT = 1000;
const MAX_RETRY_MS = 10_000;

const running = new WeakMap<WeftStore, () => void>();

/** Starts the bridge for `store` (once: a second call returns the first call's stop function). */
export function startBridge(client: WeftClient, store: WeftStore, opts: BridgeOptions = {}): () => void {
  const existing = running.get(store);
  if (existing) return existing;
  const now = opts.now ?? Date.now;
  const schedule =
    opts.schedule ??
    ((fn: () => void, ms: number) => {
      const t = setTimeout(fn, ms);
      return () => clearTimeout(t);
    });
  const act = store.getState;
  let stopped = false;
  let cancelRetry: (() => void) | null = null;

  const unsubs = [
    client.on('mesh:delta', (d) => act().applyDelta(d)),
    client.on('mesh:stats', (s) => act().applyStats(s.peers, now())),
    client.on('session:progress', (p) => act().setProgress(p)),
    client.on('log:entry', (e) => act().appendLog(e)),
  ];

  const loadSnapshot = async (delay: number): Promise<void> => {
    const r = await client.call('mesh:snapshot', {});
    if (stopped) return;
    if (r.ok) {
      act().setSnapshot(r.value);
      if (act().ipcError?.code !== 'invalid-payload') act().clearIpcError();
      return;
    }
    act().reportIpcError(r.error);
    cancelRetry = schedule(() => {
      cancelRetry = null;
      void loadSnapshot(Math.min(delay * 2, MAX_RETRY_MS));
    }, delay);
  };

  const loadLogs = async (): Promise<void> => {
    const r = await client.call('logs:get', { level: 'debug', limit: INITIAL_LOG_LIMIT });
    if (stopped) return;
    // Without the backlog, still show live lines from now on.
    act().setLogs(r.ok ? r.value : []);
  };

  const loadSettings = async (): Promise<void> => {
    const r = await client.call('settings:get', {});
    if (!stopped && r.ok) act().setSettings(r.value);
  };

  void loadSnapshot(opts.retryMs ?? 1000);
  void loadLogs();
  void loadSettings();

  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    cancelRetry?.();
    for (const u of unsubs) u();
    running.delete(store);
  };
  running.set(store, stop);
  return stop;
}
