/**
 * The store's whole state: the union of the slices. Slices import this type (type-only) so each one's actions can
 * read the others through `get()`; the store itself is assembled in ./index.ts.
 */
import type { LogsSlice } from './slices/logs.ts';
import type { MeshSlice } from './slices/mesh.ts';
import type { SessionSlice } from './slices/session.ts';
import type { UiSlice } from './slices/ui.ts';

export type WeftState = MeshSlice & SessionSlice & UiSlice & LogsSlice;
