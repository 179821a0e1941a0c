/**
 * UI slice: which view is shown, the selected peer, the peer list's search and filters, a transient notice
 * (copy done / failed) and the last IPC contract violation (shown as a banner, never thrown).
 */
import type { StateCreator } from 'zustand/vanilla';
import type { IpcError } from '../../../../src-shared/ipc/contract.ts';
import type { WeftState } from '../state.ts';

export type View = 'mesh' | 'peers' | 'device' | 'logs' | 'settings';

export interface PeerFilters {
  online: boolean;
  direct: boolean;
  relayed: boolean;
}

export const NO_FILTERS: PeerFilters = { online: false, direct: false, relayed: false };

export interface Notice {
  id: number;
  tone: 'info' | 'error';
  text: string;
}

export interface UiSlice {
  view: View;
  selectedPeerId: string | null;
  search: string;
  filters: PeerFilters;
  notice: Notice | null;
  /** The latest payload that broke the contract (or a transport failure), for the banner. */
  ipcError: IpcError | null;
  /** Whether the user asked for the join screen while connected (to join another network). */
  joinRequested: boolean;
  setView(view: View): void;
  selectPeer(id: string | null): void;
  setSearch(search: string): void;
  toggleFilter(name: keyof PeerFilters): void;
  clearFilters(): void;
  showNotice(tone: Notice['tone'], text: string): void;
  dismissNotice(id: number): void;
  reportIpcError(error: IpcError): void;
  clearIpcError(): void;
  requestJoin(requested: boolean): void;
}

export const createUiSlice: StateCreator<WeftState, [], [], UiSlice> = (set) => ({
  view: 'mesh',
  selectedPeerId: null,
  search: '',
  filters: NO_FILTERS,
  notice: null,
  ipcError: null,
  joinRequested: false,

  setView(view) {
    set({ view });
  },
  selectPeer(selectedPeerId) {
    set({ selectedPeerId });
  },
  setSearch(search) {
    set({ search });
  },
  toggleFilter(name) {
    set((s) => ({ filters: { ...s.filters, [name]: !s.filters[name] } }));
  },
  clearFilters() {
    set({ filters: NO_FILTERS });
  },
  showNotice(tone, text) {
    set((s) => ({ notice: { id: (s.notice?.id ?? 0) + 1, tone, text } }));
  },
  dismissNotice(id) {
    set((s) => (s.notice?.id === id ? { notice: null } : {}));
  },
  reportIpcError(ipcError) {
    set({ ipcError });
  },
  clearIpcError() {
    set({ ipcError: null });
  },
  requestJoin(joinRequested) {
    set({ joinRequested });
  },
});
