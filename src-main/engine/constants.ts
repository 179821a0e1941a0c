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
