/**
 * Tiny memoisation for selectors: recompute only when the inputs' references change, so a selector that builds a
 * new array or object is still safe to pass to `useStore` (which needs a stable result for unchanged state).
 */
import type { WeftState } from '../state.ts';

export function memo1<A, R>(a: (s: WeftState) => A, f: (a: A) => R): (s: WeftState) => R {
  let init = false;
  let lastA: A;
  let last: R;
  return (s) => {
    const na = a(s);
    if (!init || !Object.is(na, lastA)) {
      init = true;
      lastA = na;
      last = f(na);
    }
    return last;
  };
}

export function memo2<A, B, R>(a: (s: WeftState) => A, b: (s: WeftState) => B, f: (a: A, b: B) => R): (s: WeftState) => R {
  let init = false;
  let lastA: A;
  let lastB: B;
  let last: R;
  return (s) => {
    const na = a(s);
    const nb = b(s);
    if (!init || !Object.is(na, lastA) || !Object.is(nb, lastB)) {
      init = true;
      lastA = na;
      lastB = nb;
      last = f(na, nb);
    }
    return last;
  };
}
