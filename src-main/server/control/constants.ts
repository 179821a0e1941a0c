/**
 * Every timer, limit and threshold of the control plane, with why it has its value. Protocol-mandated values
 * first, then tuning. Tests shrink them through ControlPlaneInit options, never by changing these.
 */

// --- Protocol (control-protocol.md) ---------------------------------------------------------------------

/** The Upgrade token of POST /ts2021 (§4.1). */
export const UPGRADE_PROTOCOL = 'tailscale-control-protocol';
/** Below this capability version /key has no Noise key to offer (NoiseCapabilityVersion, §3.2). */
export const NOISE_CAPVER = 39;
/** The oldest client we serve: headscale 0.29's minimum (≈ Tailscale 1.80), checked at Noise and in requests (§3.1). */
export const MIN_CAPVER = 113;
/** A client drops a stream silent for 120 s (§8.3), so keep-alives go out every 50 s plus up to 9 s of jitter. */
export const KEEPALIVE_MS = 50_000;
export const KEEPALIVE_JITTER_MS = 9_000;
/** headscale waits this long after the last stream of a node ends before calling it offline (§8.2). */
export const OFFLINE_GRACE_MS = 10_000;
/** An ephemeral node is removed this long after it went offline (headscale's code default, errata §8.2). */
export const EPHEMERAL_TIMEOUT_MS = 120_000;
/** A pending interactive registration lives this long (headscale register_cache_expiration, §7.5). */
export const PENDING_TTL_MS = 15 * 60_000;
/** Request bodies over Noise are limited to 1 MiB, as headscale's noiseBodyLimit (§6). */
export const MAX_BODY_BYTES = 1 << 20;

// --- Tuning --------------------------------------------------------------------------------------------

/**
 * How often the store's change counter is read, so `weft server nodes …` in another process reaches the open
 * map streams within about half a second; the same tick sweeps expiries and waiting Followups.
 */
export const POLL_MS = 500;
/**
 * How long one Followup request is held before "registration timed out". Shorter than the pending TTL so a
 * proxy between client and server does not cut the stream first; Weft and Tailscale clients simply ask again.
 */
export const FOLLOWUP_WAIT_MS = 5 * 60_000;
/** Per-connection request rate limit: a burst, refilled at a steady rate (requests per second). */
export const RATE_BURST = 40;
export const RATE_PER_SECOND = 10;
/** A map stream whose client stopped reading is closed once this much is queued for it. */
export const MAX_STREAM_BACKLOG_BYTES = 16 << 20;
/** Noise connections with no request in flight for this long (before the first one, or between two) are closed. */
export const HANDSHAKE_IDLE_MS = 30_000;

// --- Bounds on what clients can make the server hold -----------------------------------------------------

/** Endpoints stored per node (Tailscale clients report a handful); the rest of a longer list is dropped. */
export const MAX_ENDPOINTS = 32;
/** A node's stored Hostinfo JSON (real ones are 1–2 KiB); it goes into every peer's map, so it is capped. */
export const MAX_HOSTINFO_BYTES = 16 << 10;
/** Interactive registrations waiting for approval, in all (each holds at most MAX_HOSTINFO_BYTES of Hostinfo). */
export const MAX_PENDING = 1000;
/** …and per source IP address: a NATed office registers a few devices at a time, an attacker many. */
export const MAX_PENDING_PER_IP = 16;
/** Expired pending registrations are deleted this often (they are refused at use anyway). */
export const PENDING_SWEEP_MS = 60_000;
/** Noise connections in all, and per source IP (each node holds one long-lived connection for its map stream). */
export const MAX_CONNECTIONS = 10_000;
export const MAX_CONNECTIONS_PER_IP = 256;
/** New Noise handshakes per source IP: a burst, refilled at a steady rate per second (the handshake costs CPU). */
export const HANDSHAKE_BURST_PER_IP = 64;
export const HANDSHAKE_RATE_PER_IP = 8;
/** Source IPs whose handshake rate is tracked at once; the least recently seen are forgotten beyond it. */
export const MAX_TRACKED_IPS = 20_000;

// --- The HA prober (map-streams.ts), with headscale 0.29.2's defaults (node.routes.ha) ---------------------

/** How often subnet routers that have a standby are pinged; 0 turns the prober off. */
export const HA_PROBE_INTERVAL_MS = 10_000;
/** How long a pinged router has to answer before it is passed over for its routes. */
export const HA_PROBE_TIMEOUT_MS = 5_000;
