/**
 * The two IPC channels between the preload and the main process (ipc-server.ts). Every contract method goes
 * through INVOKE_CHANNEL as (method, payload); every contract event comes on EVENT_CHANNEL as (event, payload).
 */
export const INVOKE_CHANNEL = 'weft:invoke';
export const EVENT_CHANNEL = 'weft:event';
