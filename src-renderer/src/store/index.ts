/**
 * The one store: zustand's vanilla `createStore` composed from the slices (zustand slices pattern). The factory
 * is exported for tests; the app uses the `weftStore` singleton through `useWeft(selector)` (atomic selectors or
 * memoised ones from ./selectors, never the whole state).
 */
import { createStore, type StoreApi } from 'zustand/vanilla';
import { createLogsSlice } from './slices/logs.ts';
import { createMeshSlice } from './slices/mesh.ts';
import { createSessionSlice } from './slices/session.ts';
import { createUiSlice } from './slices/ui.ts';
import type { WeftState } from './state.ts';

export type { WeftState };
export type WeftStore = StoreApi<WeftState>;

export function createWeftStore(): WeftStore {
  return createStore<WeftState>()((...a) => ({
    ...createMeshSlice(...a),
    ...createSessionSlice(...a),
    ...createUiSlice(...a),
    ...createLogsSlice(...a),
  }));
}

export const weftStore: WeftStore = createWeftStore();
