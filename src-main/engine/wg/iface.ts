/**
 * WgInterface: the engine's one view of a WireGuard device, whatever runs it (wireguard-go in-process as
 * root, the privileged helper over its socket, a fake in tests). Pure types and name rules.
 *
 * Lifecycle (each call after the previous one resolved):
 *
 *   create ──> up({addresses, mtu}) ──> set(cfg) / routes(prefixes) / stats()  (any number, any order) ──> close()
 *
 * - `set` is declarative and idempotent: it takes the whole desired config and applies only the difference
 *   from the last applied one (config.ts); setting the same config twice sends nothing.
 * - `routes` installs exactly the given prefixes on the interface (adding missing ones, removing others). It
 *   is for peers' AllowedIPs and refuses a default route (/0): Weft never captures all traffic.
 * - `close` removes routes, stops the device and leaves no interface or UAPI socket behind. Idempotent.
 */
import type { UdpAddr } from '../../protocol/wire/addr.ts';
import type { WgConfig } from './config.ts';
import type { UapiPeerState } from './uapi.ts';

export interface WgUpOptions {
  /** Interface addresses, "ip/bits" or a bare IP (host prefix), e.g. the node's 100.x address. */
  addresses: string[];
  /** TUN MTU. @default WG_TUN_MTU (1280, engine/constants.ts) */
  mtu?: number;
  /**
   * Local service addresses added after `addresses` (MagicDNS's 100.100.100.100 and fd7a:115c:a1e0::53). They live
   * on the interface itself so resolvers that pin sockets to the link reach them; IPv6 ones are added deprecated
   * (preferred_lft 0) so the kernel never picks one as a source address.
   */
  serviceAddresses?: string[];
}

export interface PeerStats {
  publicKey: Uint8Array;
  endpoint: UdpAddr | null;
  allowedIPs: string[];
  rxBytes: number;
  txBytes: number;
  /** Unix time (ms) of the last completed handshake; null when none yet. */
  lastHandshakeUnixMs: number | null;
}

export interface WgInterface {
  readonly name: string;
  /** Sets MTU and addresses and brings the link up. Call before routes(). */
  up(opts: WgUpOptions): Promise<void>;
  /** Applies the desired config as a minimal diff from the last one applied. */
  set(cfg: WgConfig): Promise<void>;
  /** The device moved this peer's endpoint by itself (roaming): the next set() sends the wanted one again. */
  forgetEndpoint(publicKey: Uint8Array): void;
  /** Makes the interface's routes exactly `prefixes` (peers' AllowedIPs; never /0). */
  routes(prefixes: string[]): Promise<void>;
  stats(): Promise<PeerStats[]>;
  close(): Promise<void>;
}

/**
 * Weft's interface names: "weft" plus 1-10 of [0-9a-z] (at most 14 chars, under Linux's 15-char IFNAMSIZ
 * limit). The privileged helper only ever touches names of this shape, so it cannot be used against other
 * interfaces. Names must be unique machine-wide because UAPI sockets are global (natlab.md G8).
 */
export const WEFT_IFACE_RE = /^weft[0-9a-z]{1,10}$/;

/** A prefix of Weft interface names, for stale cleanup ("weft" alone means all of Weft's interfaces). */
export const WEFT_IFACE_PREFIX_RE = /^weft[0-9a-z]{0,10}$/;

/** Reports whether `name` is a Weft interface name. */
export function isWeftInterfaceName(name: string): boolean {
  return WEFT_IFACE_RE.test(name);
}

export type WgErrorCode =
  | 'invalid' // a malformed argument (name, address, prefix, config)
  | 'refused' // well-formed but not allowed (default route, foreign interface)
  | 'exists' // the interface or its UAPI socket already exists
  | 'not-found' // no such interface (or not one this process owns)
  | 'failed'; // the system refused: ip or wireguard-go failed, the device exited

/** Errors of WgInterface implementations and the helper; `code` is stable, the message is for people. */
export class WgError extends Error {
  constructor(
    readonly code: WgErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'WgError';
  }
}

/** A WgError('failed') with `message` (for runChecked). */
export const wgFailed = (message: string): WgError => new WgError('failed', message);

/** A device's peer as WgInterface.stats() reports it (both backends read UAPI-shaped peer state). */
export function peerStatsOf(p: UapiPeerState): PeerStats {
  return { publicKey: p.publicKey, endpoint: p.endpoint, allowedIPs: p.allowedIPs, rxBytes: p.rxBytes, txBytes: p.txBytes, lastHandshakeUnixMs: p.lastHandshakeUnixMs };
}
