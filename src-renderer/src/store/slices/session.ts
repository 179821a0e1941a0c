/**
 * Session slice: where joining stands (from `session:progress`), the remembered server URL, and the saved
 * Settings. The join screen reads it; the bridge and the join form write it.
 */
import type { StateCreator } from 'zustand/vanilla';
import type { IpcError, JoinProgress, JoinStage, Settings } from '../../../../src-shared/ipc/contract.ts';
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

export interface SessionSlice {
  join: JoinState;
  /** The server URL to prefill: remembered from the last join, else the active profile's. */
  serverUrl: string;
  joinMode: JoinMode;
  settings: Settings | null;
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
}

export const createSessionSlice: StateCreator<WeftState, [], [], SessionSlice> = (set) => ({
  join: IDLE_JOIN,
  serverUrl: '',
  joinMode: 'authkey',
  settings: null,

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

  setSettings(settings) {
    set((s) => {
      const active = settings.profiles.find((p) => p.id === settings.activeProfile);
      return { settings, serverUrl: s.serverUrl || active?.serverUrl || '' };
    });
  },
});
