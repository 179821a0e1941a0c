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

/** Lifetime the engine asks for its own mapping (RFC 6886 §3.3 recommends 7200 s); renewed at half of what is granted. */
export const PORTMAP_LIFETIME_S = 7200;

/** When no mapping can be made, try again after 30 s, doubling to 10 min (routers reboot; users enable UPnP). */
export const PORTMAP_RETRY_MIN_MS = 30_000;
export const PORTMAP_RETRY_MAX_MS = 600_000;

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

// --- Peer paths: disco discovery and path choice (Tailscale magicsock values, dataplane-protocol §4.4) ---

/** While real traffic flows, ping bestAddr this often: two heartbeats fit in one trust window. */
export const DISCO_HEARTBEAT_INTERVAL_MS = 3000;

/** A pong from bestAddr makes it the only destination this long (covers one lost heartbeat pong). */
export const DISCO_TRUST_UDP_ADDR_MS = 6500;

/** Idle time after which heartbeats stop and ping-learned candidates expire (under common 60 s NAT idle). */
export const DISCO_SESSION_ACTIVE_TIMEOUT_MS = 45_000;

/** Minimum gap between discovery pings to one candidate, so steady traffic cannot flood it (CallMeMaybe resets it). */
export const DISCO_PING_INTERVAL_MS = 5000;

/** How long a ping waits for its pong; after that it can no longer confirm (or keep) a path. */
export const DISCO_PING_TIMEOUT_MS = 5000;

/** Re-ping every candidate this often even on a working path, to find a better one (e.g. a LAN route). */
export const DISCO_UPGRADE_DIRECT_INTERVAL_MS = 60_000;

/** A bestAddr at or below this latency is as good as it gets: stop the periodic upgrade search. */
export const DISCO_GOOD_ENOUGH_LATENCY_MS = 5;

/**
 * Liveness of a trusted direct path while traffic flows (Weft's addition to magicsock's timers): when nothing
 * has come back from bestAddr for 1.5 s although we keep sending, ping it at once instead of waiting for the
 * next 3 s heartbeat; if that ping is not answered within max(1 s, 4 × the path's latency), stop trusting the
 * path, so packets go to the relay as well. A dead direct path (rebinding, a firewall change) then costs about
 * 2.5 s of traffic instead of the 6.5 s trust window plus a heartbeat (tailscale#12548, #19457).
 */
export const DISCO_LIVENESS_SILENCE_MS = 1500;
export const DISCO_LIVENESS_TIMEOUT_MS = 1000;

/** Pong results kept per candidate (Tailscale's ring size); enough for status and debugging. */
export const DISCO_PONG_HISTORY = 64;

/**
 * Bounds on one peer's disco state, so that a hostile peer or a spoofing sender cannot grow it (issue 13; TS
 * prunes its endpointState past 100 but keeps fresh entries, which disco pings from thousands of source ports
 * make). With these, the path reducer's per-event cost does not depend on how many sources have pinged.
 *  - Endpoints taken from one netmap entry or one CallMeMaybe: the first 32 (Tailscale sends a handful).
 *  - Candidates learned only from inbound pings: the 8 most recent sources; the oldest is forgotten first
 *    (never the current best). A real peer pings from one or two addresses per path.
 *  - Outstanding pings: 128, the oldest forgotten first (its pong is then ignored, as a late one is); more than
 *    one full round over the most candidates there can be (32 + 32 + 8), so a round never drops its own pings.
 */
export const DISCO_MAX_LISTED_ENDPOINTS = 32;
export const DISCO_MAX_PING_CANDIDATES = 8;
export const DISCO_MAX_SENT_PINGS = 128;

// --- WireGuard interface --------------------------------------------------------------------------------

/**
 * MTU of the WireGuard TUN. 1280 is Tailscale's default TUN MTU: the IPv6 minimum, so the tunnel carries
 * IPv6, and small enough that the outer packet (1280 + 80 bytes of IPv6/UDP/WireGuard overhead = 1360) fits
 * every real underlay, including PPPoE, mobile and other tunnels, without relying on PMTUD (which the lab
 * shows breaking through NAT: natlab.md G9). wireguard-go's own default, 1420, assumes a clean 1500 path.
 */
export const WG_TUN_MTU = 1280;

/**
 * Weft's routing table and the pref of its policy rule (one per family). Tailscale uses table 52 and prefs
 * 5210–5270 (tsconst/linuxfw.go); Weft keeps clear of them so both can run on one host. The rule sits before
 * `main` (32766): a tailnet route wins over a broader LAN route, and `throw` routes hand the LAN back to `main`.
 */
export const WEFT_ROUTE_TABLE = 7070;

/** MagicDNS's service addresses (Tailscale's tsaddr.TailscaleServiceIP and TailscaleServiceIPv6). */
export const QUAD100_V4 = '100.100.100.100';
export const QUAD100_V6 = 'fd7a:115c:a1e0::53';
export const WEFT_RULE_PREF = 5300;

/** How long to wait for wireguard-go's UAPI socket after spawning it (it appears in ~10 ms here). */
export const WG_START_TIMEOUT_MS = 5000;

/** Poll interval while waiting for the UAPI socket to appear. */
export const WG_START_POLL_MS = 20;

/** SIGTERM grace before SIGKILL when stopping wireguard-go (it exits in ms; the bound covers a hung one). */
export const WG_STOP_TIMEOUT_MS = 3000;

/** Bound on one UAPI request/reply over the unix socket (a get of a large tailnet is still sub-ms work). */
export const WG_UAPI_TIMEOUT_MS = 5000;

/** Bound on one privileged-helper request as seen by its client (covers spawning wireguard-go). */
export const WG_HELPER_REQUEST_TIMEOUT_MS = 30_000;

// --- Endpoint discovery ---------------------------------------------------------------------------------

/**
 * Periodic re-STUN on the shared socket, at a random 20–26 s: just under the common 30 s UDP NAT timeout,
 * so the mapping we advertise stays alive and changes are noticed (Tailscale's periodic ReSTUN).
 */
export const ENDPOINT_RESTUN_MIN_MS = 20_000;
export const ENDPOINT_RESTUN_MAX_MS = 26_000;

/** While no STUN server answers (UDP blocked), re-STUN every 3 s, so a path opens within seconds of UDP being unblocked. */
export const ENDPOINT_RESTUN_NO_UDP_MS = 3000;

/** A lost direct path triggers a re-STUN (the NAT may have rebound), but never more often than every 2 s. */
export const ENDPOINT_RESTUN_MIN_GAP_MS = 2000;

/**
 * While a peer has no path (no direct address yet, and no DERP until the relay issue), its outgoing
 * WireGuard packets wait in a queue of at most 16, and those younger than 3 s are sent once a direct path
 * appears. This keeps the first handshake from waiting for WireGuard's 5 s retry.
 */
export const MAGIC_PENDING_MAX_PACKETS = 16;
export const MAGIC_PENDING_MAX_AGE_MS = 3000;
/**
 * A peer's loopback proxy socket closes after 200 s without a packet through it or a move of its WireGuard
 * counters: past WireGuard's 180 s session lifetime (RejectAfterTime), so WireGuard's next packet for it is a
 * handshake, which the shared idle socket recognises (wg-mac1.ts). Checked every 30 s.
 */
export const MAGIC_PROXY_IDLE_MS = 200_000;
export const MAGIC_PROXY_SWEEP_MS = 30_000;
/** User-requested disco pings (`weft ping`) outstanding at once; more are answered "no reply" at once. */
export const MAGIC_MAX_USER_PINGS = 64;

/**
 * When a disco ping arrives from a candidate and we have no trusted path, we ping that candidate back at once,
 * at most once a second. The inbound ping proves the peer's NAT lets our reply through, so this completes
 * hole punching in one round trip instead of a second 5 s discoPingInterval round (the job CallMeMaybe does
 * over DERP in Tailscale).
 */
export const DISCO_PING_BACK_MIN_INTERVAL_MS = 1000;

// --- DERP ---------------------------------------------------------------------------------------------

/** Redial a lost DERP connection after 1 s, doubling to at most 5 s (magicsock's cap). */
export const DERP_BACKOFF_MIN_MS = 1000;
export const DERP_BACKOFF_MAX_MS = 5000;
/** The server sends KeepAlive every 60–65 s; two missed ones mean the connection is dead (Go's 120 s). */
export const DERP_READ_TIMEOUT_MS = 120_000;
/** Bound on dialling a DERP server (TCP, TLS and the HTTP upgrade) before it counts as a failed attempt. */
export const DERP_DIAL_TIMEOUT_MS = 10_000;
/** Unsent bytes a DERP socket may buffer; past this a packet is dropped, not queued (best effort; magicsock drops past 32 queued packets too). */
export const DERP_SEND_QUEUE_MAX_BYTES = 1 << 20;
/** Dropped DERP sends are logged at most once per 10 s per connection, with the count, so a stalled server cannot flood the log. */
export const DERP_DROP_LOG_INTERVAL_MS = 10_000;
/** From dial to an opened ServerInfo, as Go's 10 s budget covers dial + TLS + upgrade + DERP handshake; later it is a failed attempt. */
export const DERP_HANDSHAKE_TIMEOUT_MS = 10_000;
/** Unsent bytes that have not drained for 15 s mean the server stopped reading: the connection is redialled. */
export const DERP_WRITE_STALL_MS = 15_000;

// --- Kernel data path (datapath/) -------------------------------------------------------------------------

/**
 * The nft table (inet family) of the kernel data path is this prefix plus the Weft interface name
 * ("weft_dp_weft0"). The ACL filter's tables are `weft_` plus an escaped name in which every `_` is followed by two
 * hex digits (filter/compile.ts filterTableName), so the two kinds of table can never share a name.
 */
export const DATAPATH_TABLE_PREFIX = 'weft_dp_';

/**
 * The packet-mark bit the data path sets on the disco socket's own packets in `output` and tests in `postrouting`
 * (`meta mark | 0x1000`, `meta mark & 0x1000 == 0x1000`). One bit, chosen clear of the marks other software on the
 * same host tests with a mask: Tailscale's 0xff0000 (tsconst/linuxfw), kube-proxy's 0x4000 and 0x8000, the CNI
 * portmap plugin's 0x2000 (Podman, CRI-O), Istio's ambient 0x40-0x220 and Cilium's 0x0f00 nibble. It is set after the
 * routing decision in a `filter` chain, so no `ip rule fwmark` ever sees it.
 */
export const DATAPATH_MARK = 0x1000;

/** The data path's prerouting chain runs at priority raw (-300), before conntrack (-200) looks the packet up. */
export const DATAPATH_PRIO_PREROUTING = -300;
/** Its output chain, where the mark is set, runs at priority filter (0): after conntrack has recorded the flow. */
export const DATAPATH_PRIO_OUTPUT = 0;
/** Its postrouting chain runs at srcnat + 10 (110): after a NAT on the host itself has rewritten the packet. */
export const DATAPATH_PRIO_POSTROUTING = 110;

/** A data-path table that someone removed is loaded again by the periodic check at most 10 times per run. */
export const DATAPATH_MAX_RELOADS = 10;
