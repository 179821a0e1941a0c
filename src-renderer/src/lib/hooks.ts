/** Small generic hooks: a ticking clock for relative times, and a throttled value for expensive derivations. */
import { useEffect, useRef, useState } from 'react';

/** The current time, refreshed every `everyMs` (for "12 s ago" labels). */
export function useNow(everyMs = 5000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(t);
  }, [everyMs]);
  return now;
}

/**
 * `value`, but changing at most once per `ms`: the first change passes at once, changes within the window are
 * coalesced into one at its end (so a burst of deltas relayouts the graph once, not per delta).
 */
export function useThrottled<T>(value: T, ms: number): T {
  const [out, setOut] = useState(value);
  const last = useRef(0);
  useEffect(() => {
    if (Object.is(value, out)) return;
    const wait = last.current + ms - Date.now();
    if (wait <= 0) {
      last.current = Date.now();
      setOut(value);
      return;
    }
    const t = setTimeout(() => {
      last.current = Date.now();
      setOut(value);
    }, wait);
    return () => clearTimeout(t);
  }, [value, out, ms]);
  return out;
}
