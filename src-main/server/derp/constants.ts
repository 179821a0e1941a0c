/**
 * Timers and limits of the embedded DERP server, each with the reason for its value. The protocol block
 * mirrors Tailscale's derper (`derp/derp.go`, `derp/derpserver/derpserver.go`); the implementation block is
 * Weft's own bounds. Tests shrink these through DerpServerInit options, never by mutating them.
 */
import { MAX_CLIENT_INFO_LEN } from '../../protocol/wire/derp.ts';

// --- Protocol (what derper does; clients rely on it) ------------------------------------------------------

/** derper gives a new connection 10 s to take the ServerKey and deliver its ClientInfo (accept's deadline). */
export const DERP_HANDSHAKE_TIMEOUT_MS = 10_000;
/** derp.KeepAlive: a KeepAlive frame at least this often; Go clients time out reads after 120 s (two missed). */
export const DERP_KEEPALIVE_MS = 60_000;
/** derper adds a random 0–5 s to each client's keepalive period so connections accepted together spread out. */
export const DERP_KEEPALIVE_JITTER_MS = 5_000;
/** derper's DefaultTCPWriteTimeout: a client that cannot take a frame for 2 s is dropped, not waited for. */
export const DERP_WRITE_TIMEOUT_MS = 2_000;
/** derper's per-client queue depth, used for the data queue and (separately) the disco queue. */
export const DERP_SEND_QUEUE_DEPTH = 32;
/** derper's peerGoneLim: PeerGone(NotHere) replies to one sender, 1 per second ... */
export const DERP_NOT_HERE_PER_SEC = 1;
/** ... with a burst of 3, so a peer looking for several absent keys at once hears about each. */
export const DERP_NOT_HERE_BURST = 3;
/** derper closes a client whose Ping body exceeds this ("unreasonably extra large"). */
export const DERP_MAX_PING_LEN = 1000;

// --- Implementation (Weft's bounds) -----------------------------------------------------------------------

/**
 * Largest frame body read from a client. The largest legal one is ClientInfo (256 KiB, derper's cap); a
 * SendPacket is at most 32 + 64 KiB. derper streams unknown frames of any length to /dev/null; we buffer whole
 * frames, so anything longer is treated as a malformed stream and closes that client.
 */
export const DERP_MAX_CLIENT_FRAME_LEN = MAX_CLIENT_INFO_LEN;
/** Control frames (PeerGone) waiting behind a blocked socket; Go blocks a goroutine per frame instead. */
export const DERP_CONTROL_QUEUE_DEPTH = 64;
/**
 * Connections kept open for one node key. derper keeps every duplicate (the most recently active one
 * receives); we keep the newest few and close the oldest beyond this, so one admitted key cannot hold
 * unbounded sockets.
 */
export const DERP_MAX_CONNS_PER_KEY = 4;
/** Bytes of frames read while verifyClient runs (the socket is paused, so only the rest of one read). */
export const DERP_MAX_BACKLOG_BYTES = 512 << 10;
