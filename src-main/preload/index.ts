/**
 * Preload: a thin typed facade over IPC, exposed with contextBridge. Nothing is exposed yet beyond the
 * version; the IPC contract in src-shared (desktop-app issue) defines the rest.
 */
import { contextBridge } from 'electron';

contextBridge.exposeInMainWorld('weft', { version: '0.1.0' });
