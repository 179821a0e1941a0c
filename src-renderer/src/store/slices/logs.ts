/**
 * Logs slice: recent log lines (from `logs:get`, then `log:entry` events), bounded, and the view's level filter.
 */
import type { StateCreator } from 'zustand/vanilla';
import type { LogEntry, LogLevel } from '../../../../src-shared/ipc/contract.ts';
import type { WeftState } from '../state.ts';

/** Lines kept in memory; older ones fall off the top. */
export const LOGS_MAX = 2000;

export interface LogsSlice {
  logs: readonly LogEntry[];
  /** Whether the initial `logs:get` answered; live entries before it are already in its answer. */
  logsLoaded: boolean;
  logLevel: LogLevel;
  setLogs(entries: readonly LogEntry[]): void;
  appendLog(entry: LogEntry): void;
  setLogLevel(level: LogLevel): void;
}

export const createLogsSlice: StateCreator<WeftState, [], [], LogsSlice> = (set, get) => ({
  logs: [],
  logsLoaded: false,
  logLevel: 'info',

  setLogs(entries) {
    set({ logs: entries.slice(-LOGS_MAX), logsLoaded: true });
  },
  appendLog(entry) {
    if (!get().logsLoaded) return;
    set((s) => ({ logs: s.logs.length >= LOGS_MAX ? [...s.logs.slice(s.logs.length - LOGS_MAX + 1), entry] : [...s.logs, entry] }));
  },
  setLogLevel(logLevel) {
    set({ logLevel });
  },
});
