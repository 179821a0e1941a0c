/** Small pure formatters for the views (bytes, latency, times relative to a given now). */

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(n: number): string {
  let v = n;
  let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ${UNITS[i]}`;
}

export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '—';
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

/** "12 s ago", "in 3 days", "never" for an RFC 3339 time relative to `now` (ms since the epoch). */
export function formatRelative(iso: string | null, now: number, never = 'never'): string {
  if (!iso) return never;
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  // Go's zero time (0001-01-01) means "not set".
  if (t < Date.UTC(1971, 0, 1)) return never;
  const d = t - now;
  const a = Math.abs(d);
  const [n, unit] =
    a < 60_000
      ? [Math.round(a / 1000), 's']
      : a < 3_600_000
        ? [Math.round(a / 60_000), 'min']
        : a < 86_400_000
          ? [Math.round(a / 3_600_000), 'h']
          : [Math.round(a / 86_400_000), a < 2 * 86_400_000 ? 'day' : 'days'];
  return d < 0 ? `${n} ${unit} ago` : `in ${n} ${unit}`;
}

export function formatTime(iso: string): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const d = new Date(t);
  const p = (x: number, w = 2): string => String(x).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}
