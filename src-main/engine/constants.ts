/**
 * Every timer and threshold of the engine, with its unit in the name and the reason for its value.
 * Values a test needs to shrink are passed in as options, never mutated here.
 */

// --- Protocol-mandated values -------------------------------------------------------------------------

/** NAT-PMP and PCP servers listen on the gateway's UDP 5351 (RFC 6886 §3, RFC 6887 §19). */
export const NATPMP_PORT = 5351;

// --- Tuning values ------------------------------------------------------------------------------------

/**
 * STUN tries per request, as offsets from the first send. Tailscale's netcheck sends three tries 100 ms
 * apart; we space them wider (0/200/600 ms) because the lab and real NATs drop the first packet while they
 * create state, and a filtering test must not mistake slowness for a filter.
 */
export const STUN_RETRANSMIT_MS: readonly number[] = [0, 200, 600];

/**
 * How long one STUN request waits for any answer. 1.5 s covers three tries plus a slow path; with UDP
 * blocked the probe's two sequential phases stay well inside the 5 s budget.
 */
export const STUN_TIMEOUT_MS = 1500;

/** Budget for the whole netcheck report (Tailscale's GetReport uses 5 s overall). */
export const NETCHECK_DEADLINE_MS = 5000;

/** How long the hairpin test waits for our own request to come back through the NAT. */
export const HAIRPIN_TIMEOUT_MS = 800;

/** Port-mapping service probe window (Tailscale waits up to 250 ms; a busy lab router needs longer). */
export const PORTMAP_PROBE_TIMEOUT_MS = 600;

/** Lifetime of the short test mapping netcheck creates (and releases at once) to see if mapping works. */
export const PORTMAP_TEST_LIFETIME_S = 60;

// --- Control client -------------------------------------------------------------------------------------

/**
 * Capability version sent in /key, the Noise prologue, RegisterRequest and MapRequest. 130 (Tailscale
 * v1.90) is above every pinned headscale's minimum (113 in 0.29.x) and declares we understand HomeDERP and
 * null AllowedIPs (control-protocol.md §3.1).
 */
export const CONTROL_CAPVER = 130;

/** Restart the map poll after this long without any message (Tailscale's watchdogTimeout). */
export const MAP_WATCHDOG_MS = 120_000;

/** Reconnect backoff: doubles from 1 s up to 15 s, each delay jittered to 50–100 %. Short enough that a
 * control server back after a 30 s outage is found again within seconds, long enough not to hammer it. */
export const CONTROL_BACKOFF_MIN_MS = 1000;
export const CONTROL_BACKOFF_MAX_MS = 15_000;

/**
 * Map-stream compression requested from control. zstd, as the Go client asks for: full maps of a large
 * tailnet shrink several-fold, and headscale compresses each message as one frame.
 */
export const MAP_COMPRESSION: 'zstd' | '' = 'zstd';
