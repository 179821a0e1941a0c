/**
 * The log ring buffer behind `logs:get` and `log:entry`: the most recent lines of the engine and the host,
 * with a level. Engine lines carry no level; verbose ones start with "[v1] " (sys/log.ts) and count as debug.
 */
import type { LogEntry, LogLevel } from '../../src-shared/ipc/contract.ts';

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** The level of an engine log line. */
export function engineLineLevel(line: string): LogLevel {
  return /^(\S+: )?\[v\d\] /.test(line) ? 'debug' : 'info';
}

export class LogBuffer {
  // Owned here: a circular array of at most `capacity` entries; `next` is where the next one goes.
  private readonly entries: LogEntry[] = [];
  private next = 0;

  constructor(readonly capacity = 2000) {}

  push(e: LogEntry): void {
    if (this.entries.length < this.capacity) this.entries.push(e);
    else this.entries[this.next] = e;
    this.next = (this.next + 1) % this.capacity;
  }

  /** The most recent entries at or above `level`, oldest first, at most `limit`. */
  recent(level: LogLevel = 'debug', limit = 500): LogEntry[] {
    const ordered = this.entries.length < this.capacity ? this.entries : [...this.entries.slice(this.next), ...this.entries.slice(0, this.next)];
    const min = RANK[level];
    const out = ordered.filter((e) => RANK[e.level] >= min);
    return out.slice(Math.max(0, out.length - limit));
  }
}
