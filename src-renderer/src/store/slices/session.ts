/**
 * Session slice: where joining stands (from `session:progress`), the remembered server URL, and the saved
 * Settings. The join screen reads it; the bridge and the join form write it.
 */
import type { StateCreator } from 'zustand/vanilla';
import type { IpcError, JoinProgress, JoinStage, LocalNetwork, Settings } from '../../../../src-shared/ipc/contract.ts';
import type { WeftClient } from '../../ipc/guard.ts';
import type { WeftState } from '../state.ts';

export type JoinMode = 'authkey' | 'browser';

export interface JoinState {
  /** Whether the join screen is held for this join (started here, or seen before ever connecting) until connected. */
  active: boolean;
  stage: JoinStage | null;
  authUrl: string | null;
  error: IpcError | null;
}

export const IDLE_JOIN: JoinState = { active: false, stage: null, authUrl: null, error: null };

/** "Create a network on this computer": idle, starting (server + join), or ready with the details for others. */
export type LocalNetworkState = { status: 'idle' } | { status: 'creating' } | { status: 'ready'; network: LocalNetwork };

export interface SessionSlice {
  join: JoinState;
  /** The server URL to prefill: remembered from the last join, else the active profile's. */
  serverUrl: string;
  joinMode: JoinMode;
  settings: Settings | null;
  localNetwork: LocalNetworkState;
  beginJoin(serverUrl: string): void;
  setProgress(p: JoinProgress): void;
  /** A join request that failed before any progress (bad input, IPC error). */
  failJoin(error: IpcError): void;
  resetJoin(): void;
  /** The join screen has shown "connected" long enough; hand over to the app. */
  finishJoin(): void;
  setServerUrl(url: string): void;
  setJoinMode(mode: JoinMode): void;
  setSettings(settings: Settings): void;
  /**
   * Starts the embedded server in the main process and joins this device to it (`network:create-local`). The join
   * screen is held meanwhile (progress arrives as for any join) and afterwards, to show the URL, key and QR code,
   * until `finishLocalNetwork`. A failure shows like a failed join.
   */
  createLocalNetwork(client: Pick<WeftClient, 'call'>): Promise<void>;
  /** The user has seen the details: hand over to the app. */
  finishLocalNetwork(): void;
}

export const createSessionSlice: StateCreator<WeftState, [], [], SessionSlice> = (set, get) => ({
  join: IDLE_JOIN,
  serverUrl: '',
  joinMode: 'authkey',
  settings: null,
  localNetwork: { status: 'idle' },

  beginJoin(serverUrl) {
    set({ serverUrl, join: { active: true, stage: 'reaching-server', authUrl: null, error: null } });
  },

  setProgress(p) {
    set((s) => ({
      // Once connected, the "join another network" request is done.
      ...(p.stage === 'connected' ? { joinRequested: false } : {}),
      join: {
        // A join started here holds the screen (through "connected", until finishJoin); so does progress seen
        // before this device was ever connected (a join started from the CLI). Later reconnects do not.
        active: p.stage === 'connected' ? s.join.active : s.join.active || !s.everConnected,
        stage: p.stage,
        authUrl: p.authUrl,
        error: p.stage === 'failed' ? (p.error ?? { code: 'internal', message: 'joining failed', retryable: true }) : p.error,
      },
    }));
  },

  failJoin(error) {
    set((s) => ({ join: { ...s.join, active: false, stage: 'failed', error } }));
  },

  resetJoin() {
    set({ join: IDLE_JOIN });
  },

  finishJoin() {
    set({ join: IDLE_JOIN, joinRequested: false });
  },

  setServerUrl(serverUrl) {
    set({ serverUrl });
  },

  setJoinMode(joinMode) {
    set({ joinMode });
  },

  async createLocalNetwork(client) {
    if (get().localNetwork.status === 'creating') return;
    set({ localNetwork: { status: 'creating' }, join: { active: true, stage: 'reaching-server', authUrl: null, error: null } });
    const r = await client.call('network:create-local', {});
    if (r.ok) {
      const url = r.value.serverUrl;
      set((s) => ({ localNetwork: { status: 'ready', network: r.value }, serverUrl: url, join: { ...s.join, active: true } }));
    } else {
      set({ localNetwork: { status: 'idle' } });
      get().failJoin(r.error);
    }
  },

  finishLocalNetwork() {
    set({ localNetwork: { status: 'idle' }, join: IDLE_JOIN, joinRequested: false });
  },

  setSettings(settings) {
    set((s) => {
      const active = settings.profiles.find((p) => p.id === settings.activeProfile);
      return { settings, serverUrl: s.serverUrl || active?.serverUrl || '' };
    });
  },
});
