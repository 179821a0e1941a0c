/** The React hook over the app store; components pass an atomic or memoised selector. */
import { useStore } from 'zustand';
import { weftStore, type WeftState } from './index.ts';

export function useWeft<T>(selector: (s: WeftState) => T): T {
  return useStore(weftStore, selector);
}

/** Actions never change, so reading them from the current state once is safe. */
export function actions(): WeftState {
  return weftStore.getState();
}
