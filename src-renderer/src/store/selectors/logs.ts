/** Pure selectors over the log lines. */
import type { LogEntry, LogLevel } from '../../../../src-shared/ipc/contract.ts';
import type { WeftState } from '../state.ts';
import { memo2 } from './memo.ts';

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Reports whether `level` is at or above `min`. */
export function atLeast(level: LogLevel, min: LogLevel): boolean {
  return RANK[level] >= RANK[min];
}

export function filterLogs(logs: readonly LogEntry[], min: LogLevel): readonly LogEntry[] {
  return min === 'debug' ? logs : logs.filter((e) => atLeast(e.level, min));
}

export const visibleLogs: (s: WeftState) => readonly LogEntry[] = memo2(
  (s) => s.logs,
  (s) => s.logLevel,
  filterLogs,
);
