/**
 * Applying one netmap to the data plane as a single transaction. The three steps (magicsock's peer table, the
 * WireGuard config, the interface's routes) either all take the new state, or all go back to the last state that
 * applied in full: a route the kernel refuses never leaves WireGuard with peers whose routes are gone, or routes
 * whose peers are gone. The next netmap tries again from that good state (each step is declarative, so a retry is
 * a plain re-apply). Pure: the steps are injected.
 */
import type { WgConfig } from './config.ts';

/** Everything one netmap decides about the data plane. */
export interface DataPlaneState<P> {
  /** Magicsock's peers (disco keys, endpoints, names). */
  peers: P[];
  wg: WgConfig;
  routes: string[];
  /** Connected prefixes that must fall through to the main table (router/plan.ts: the LAN wins). */
  throws?: string[];
}

/**
 * A state to apply. Its WireGuard config may be a function, called after the peers are set: it needs their loopback
 * proxy ports, which a peer dropped and re-added (a restore) gets anew.
 */
export interface DataPlaneTarget<P> extends Omit<DataPlaneState<P>, 'wg'> {
  wg: WgConfig | (() => WgConfig);
}

export interface DataPlaneSteps<P> {
  setPeers(peers: P[]): Promise<void>;
  setWg(cfg: WgConfig): Promise<void>;
  setRoutes(routes: string[], throws: string[]): Promise<void>;
}

export type ApplyOutcome =
  | { ok: true }
  /** `restored`: the previous state is back in place (false: there was none, or restoring failed too). */
  | { ok: false; error: string; restored: boolean; restoreError: string | null };

const msg = (e: unknown): string => (e instanceof Error ? e.message : String(e));

async function put<P>(steps: DataPlaneSteps<P>, t: DataPlaneTarget<P>): Promise<void> {
  await steps.setPeers(t.peers);
  await steps.setWg(typeof t.wg === 'function' ? t.wg() : t.wg);
  await steps.setRoutes(t.routes, t.throws ?? []);
}

export async function applyDataPlane<P>(steps: DataPlaneSteps<P>, prev: DataPlaneTarget<P> | null, next: DataPlaneTarget<P>): Promise<ApplyOutcome> {
  try {
    await put(steps, next);
    return { ok: true };
  } catch (e) {
    const error = msg(e);
    if (!prev) return { ok: false, error, restored: false, restoreError: null };
    try {
      await put(steps, prev);
      return { ok: false, error, restored: true, restoreError: null };
    } catch (e2) {
      return { ok: false, error, restored: false, restoreError: msg(e2) };
    }
  }
}

/** Interface creation backoff: 1 s, 2 s, 4 s … capped at 30 s (attempt counts from 1). */
export function ifaceRetryDelayMs(attempt: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.max(0, attempt - 1));
}
