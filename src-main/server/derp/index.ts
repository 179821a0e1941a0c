/**
 * The embedded DERP relay of `weft server`: what the control server attaches (server.ts), the HTTP side
 * (http.ts) and the persisted server key (key-file.ts).
 */
export { createDerpServer, type DerpServer, type DerpServerInit, type DerpServerStats, type DerpVerifyContext } from './server.ts';
export { DERP_PATH, NO_CONTENT_PATH, PROBE_PATHS, handleDerpHttpRequest, pathOf, serveNoContent, serveProbe } from './http.ts';
export { loadOrCreateDerpServerKey, parseServerKeyFile } from './key-file.ts';
