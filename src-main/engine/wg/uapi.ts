/**
 * WireGuard's cross-platform userspace API (UAPI, https://www.wireguard.com/xplatform/): the text protocol
 * wireguard-go serves on /var/run/wireguard/<ifname>.sock. Pure: this module builds and parses the text; the
 * socket lives in wireguard-go.ts.
 *
 *   get:  > get=1\n\n
 *         < private_key=<hex>\n listen_port=N\n [fwmark=N\n]
 *           { public_key=<hex>\n preshared_key=<hex>\n protocol_version=1\n [endpoint=ip:port\n]
 *             last_handshake_time_sec=N\n last_handshake_time_nsec=N\n tx_bytes=N\n rx_bytes=N\n
 *             persistent_keepalive_interval=N\n { allowed_ip=cidr\n } }
 *           errno=0\n\n
 *   set:  > set=1\n [private_key=<hex>\n] [listen_port=N\n] [fwmark=N\n] [replace_peers=true\n]
 *           { public_key=<hex>\n [remove=true\n] [update_only=true\n] [endpoint=ip:port\n]
 *             [persistent_keepalive_interval=N\n] [replace_allowed_ips=true\n] { allowed_ip=cidr\n } }
 *           \n
 *         < errno=N\n\n            (0 = applied; wireguard-go sends negative errnos, e.g. -22 for EINVAL)
 *
 * Keys are 32 bytes in lowercase hex: exactly the bytes of a Tailscale node key, so `nodekey:<hex>` and the
 * UAPI `public_key=<hex>` carry the same 64 digits. A `public_key=` line opens a peer section; every later
 * peer key applies to it. An all-zero private_key removes the key. IPv6 endpoints are bracketed.
 *
 * Encoding validates every value (a stray "\n" in a value would inject UAPI lines). `parseSetRequest`
 * re-parses request text strictly so the privileged helper can refuse anything that is not a plain
 * configuration of the device it owns.
 */
import type { UdpAddr } from '../../protocol/wire/addr.ts';
import { formatAddr, parseHostPort } from '../../protocol/wire/addr.ts';
import { fromHex, toHex } from '../../protocol/wire/hex.ts';
import { canonicalPrefix, parseIp } from './ip-prefix.ts';

export const WG_KEY_LEN = 32;

export interface UapiPeerUpdate {
  publicKey: Uint8Array;
  /** Removes the peer; other fields of this section are then ignored by WireGuard (and must be absent). */
  remove?: boolean;
  /** Only update an existing peer; do not create it. */
  updateOnly?: boolean;
  endpoint?: UdpAddr;
  /** Seconds; 0 disables. */
  persistentKeepalive?: number;
  replaceAllowedIPs?: boolean;
  allowedIPs?: string[];
}

export interface UapiSetRequest {
  /** All-zero removes the private key. */
  privateKey?: Uint8Array;
  listenPort?: number;
  fwmark?: number;
  replacePeers?: boolean;
  peers: UapiPeerUpdate[];
}

export interface UapiPeerState {
  publicKey: Uint8Array;
  endpoint: UdpAddr | null;
  allowedIPs: string[];
  rxBytes: number;
  txBytes: number;
  /** Unix time of the last completed handshake in ms; null when there has been none. */
  lastHandshakeUnixMs: number | null;
  persistentKeepalive: number;
}

export interface UapiDeviceState {
  /** null when no private key is set. */
  privateKey: Uint8Array | null;
  listenPort: number;
  fwmark: number;
  peers: UapiPeerState[];
}

export type UapiError = { kind: 'errno'; errno: number } | { kind: 'malformed'; reason: string };
export type UapiResult<T> = { ok: true; value: T } | { ok: false; error: UapiError };

/** Thrown by the encoders for a value that cannot be expressed (a programming error, not wire input). */
export class UapiEncodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UapiEncodeError';
  }
}

// --- keys ----------------------------------------------------------------------------------------------

const HEX64 = /^[0-9a-fA-F]{64}$/;

export function keyToHex(key: Uint8Array): string {
  if (key.length !== WG_KEY_LEN) throw new UapiEncodeError(`WireGuard keys are ${WG_KEY_LEN} bytes, got ${key.length}`);
  return toHex(key);
}

/** Parses 64 hex digits (either case) into a key; null when malformed. */
export function keyFromHex(hex: string): Uint8Array | null {
  return HEX64.test(hex) ? fromHex(hex) : null;
}

/** The WireGuard public key of a Tailscale node key text (`nodekey:<hex>`); null when malformed. */
export function keyFromNodeKey(text: string): Uint8Array | null {
  return text.startsWith('nodekey:') ? keyFromHex(text.slice('nodekey:'.length)) : null;
}

/** The `nodekey:` text of a WireGuard public key. */
export function nodeKeyFromKey(key: Uint8Array): string {
  return `nodekey:${keyToHex(key)}`;
}

// --- encoding ------------------------------------------------------------------------------------------

export const UAPI_GET_REQUEST = 'get=1\n\n';

/** A port-like value as text; throws UapiEncodeError outside min..65535. */
export function u16(name: string, v: number, min: number): string {
  if (!Number.isInteger(v) || v < min || v > 65535) throw new UapiEncodeError(`${name} must be an integer ${min}-65535, got ${v}`);
  return String(v);
}

/** An endpoint as ip:port ([ip]:port for IPv6); throws UapiEncodeError. */
export function endpointText(e: UdpAddr): string {
  const ip = parseIp(e.ip);
  if (!ip) throw new UapiEncodeError(`endpoint address is not an IP: ${JSON.stringify(e.ip)}`);
  return formatAddr({ ip: ip.ip, port: Number(u16('endpoint port', e.port, 1)) });
}

/** A prefix in canonical form; throws UapiEncodeError. */
export function allowedIpText(cidr: string): string {
  const c = canonicalPrefix(cidr);
  if (!c) throw new UapiEncodeError(`allowed IP is not a prefix: ${JSON.stringify(cidr)}`);
  return c;
}

/** Encodes a set request, ending with the blank line that terminates it. Throws UapiEncodeError. */
export function encodeSetRequest(req: UapiSetRequest): string {
  const out: string[] = ['set=1'];
  if (req.privateKey !== undefined) out.push(`private_key=${keyToHex(req.privateKey)}`);
  if (req.listenPort !== undefined) out.push(`listen_port=${u16('listen_port', req.listenPort, 0)}`);
  if (req.fwmark !== undefined) {
    if (!Number.isInteger(req.fwmark) || req.fwmark < 0 || req.fwmark > 0xffffffff) throw new UapiEncodeError('fwmark must be a uint32');
    out.push(`fwmark=${req.fwmark}`);
  }
  if (req.replacePeers) out.push('replace_peers=true');
  for (const p of req.peers) {
    out.push(`public_key=${keyToHex(p.publicKey)}`);
    if (p.remove) {
      if (p.updateOnly || p.endpoint || p.persistentKeepalive !== undefined || p.replaceAllowedIPs || p.allowedIPs?.length) {
        throw new UapiEncodeError('a peer section with remove=true carries no other fields');
      }
      out.push('remove=true');
      continue;
    }
    if (p.updateOnly) out.push('update_only=true');
    if (p.endpoint) out.push(`endpoint=${endpointText(p.endpoint)}`);
    if (p.persistentKeepalive !== undefined) out.push(`persistent_keepalive_interval=${u16('persistent_keepalive_interval', p.persistentKeepalive, 0)}`);
    if (p.replaceAllowedIPs) out.push('replace_allowed_ips=true');
    for (const a of p.allowedIPs ?? []) out.push(`allowed_ip=${allowedIpText(a)}`);
  }
  return `${out.join('\n')}\n\n`;
}

// --- parsing -------------------------------------------------------------------------------------------

function malformed<T>(reason: string): UapiResult<T> {
  return { ok: false, error: { kind: 'malformed', reason } };
}

/** Splits a reply or request into key/value pairs; stops at the first blank line (the terminator). */
function lines(text: string): { pairs: [string, string][]; terminated: boolean } | string {
  const pairs: [string, string][] = [];
  const all = text.split('\n');
  for (let i = 0; i < all.length; i++) {
    const l = all[i]!;
    if (l === '') return { pairs, terminated: i < all.length - 1 };
    const eq = l.indexOf('=');
    if (eq <= 0) return `line without key=value: ${JSON.stringify(l.slice(0, 80))}`;
    pairs.push([l.slice(0, eq), l.slice(eq + 1)]);
  }
  return { pairs, terminated: false };
}

function uint(v: string, max: number): number | null {
  if (!/^[0-9]{1,20}$/.test(v)) return null;
  const n = Number(v);
  return n <= max ? n : null;
}

function parseErrnoValue(v: string): number | null {
  return /^-?[0-9]{1,10}$/.test(v) ? Number(v) : null;
}

function parseEndpoint(v: string): UdpAddr | null {
  const hp = parseHostPort(v);
  const ip = hp ? parseIp(hp.host) : null;
  return hp && ip ? { ip: ip.ip, port: hp.port } : null;
}

/** Parses an `errno=N\n\n` reply (to a set). errno 0 is success. */
export function parseErrnoReply(text: string): UapiResult<void> {
  const l = lines(text);
  if (typeof l === 'string') return malformed(l);
  const last = l.pairs[l.pairs.length - 1];
  if (l.pairs.length !== 1 || !last || last[0] !== 'errno') return malformed('expected a single errno= line');
  const errno = parseErrnoValue(last[1]);
  if (errno === null) return malformed(`bad errno value ${JSON.stringify(last[1])}`);
  return errno === 0 ? { ok: true, value: undefined } : { ok: false, error: { kind: 'errno', errno } };
}

/** Parses the reply to `get=1`. Unknown keys are ignored (forward compatibility); a non-zero errno is an error. */
export function parseGetReply(text: string): UapiResult<UapiDeviceState> {
  const l = lines(text);
  if (typeof l === 'string') return malformed(l);
  const dev: UapiDeviceState = { privateKey: null, listenPort: 0, fwmark: 0, peers: [] };
  let peer: UapiPeerState | null = null;
  let sec = 0;
  let nsec = 0;
  const finishPeer = (): void => {
    if (!peer) return;
    peer.lastHandshakeUnixMs = sec === 0 && nsec === 0 ? null : sec * 1000 + Math.floor(nsec / 1e6);
    dev.peers.push(peer);
    peer = null;
  };
  let errno: number | null = null;
  for (const [k, v] of l.pairs) {
    if (errno !== null) return malformed('data after errno=');
    if (k === 'errno') {
      errno = parseErrnoValue(v);
      if (errno === null) return malformed(`bad errno value ${JSON.stringify(v)}`);
      continue;
    }
    if (k === 'public_key') {
      finishPeer();
      const key = keyFromHex(v);
      if (!key) return malformed('bad public_key');
      peer = { publicKey: key, endpoint: null, allowedIPs: [], rxBytes: 0, txBytes: 0, lastHandshakeUnixMs: null, persistentKeepalive: 0 };
      sec = 0;
      nsec = 0;
      continue;
    }
    if (!peer) {
      if (k === 'private_key') {
        const key = keyFromHex(v);
        if (!key) return malformed('bad private_key');
        dev.privateKey = key.every((b) => b === 0) ? null : key;
      } else if (k === 'listen_port') {
        const n = uint(v, 65535);
        if (n === null) return malformed('bad listen_port');
        dev.listenPort = n;
      } else if (k === 'fwmark') {
        const n = uint(v, 0xffffffff);
        if (n === null) return malformed('bad fwmark');
        dev.fwmark = n;
      }
      continue;
    }
    const p: UapiPeerState = peer;
    switch (k) {
      case 'endpoint': {
        const e = parseEndpoint(v);
        if (!e) return malformed(`bad endpoint ${JSON.stringify(v)}`);
        p.endpoint = e;
        break;
      }
      case 'allowed_ip': {
        const c = canonicalPrefix(v);
        if (!c) return malformed(`bad allowed_ip ${JSON.stringify(v)}`);
        p.allowedIPs.push(c);
        break;
      }
      case 'rx_bytes':
      case 'tx_bytes':
      case 'last_handshake_time_sec':
      case 'last_handshake_time_nsec':
      case 'persistent_keepalive_interval': {
        // Counters are uint64; beyond 2^53 they lose precision as numbers, which is fine for statistics.
        const n = uint(v, Number.MAX_VALUE);
        if (n === null) return malformed(`bad ${k}`);
        if (k === 'rx_bytes') p.rxBytes = n;
        else if (k === 'tx_bytes') p.txBytes = n;
        else if (k === 'last_handshake_time_sec') sec = n;
        else if (k === 'last_handshake_time_nsec') nsec = n;
        else p.persistentKeepalive = n;
        break;
      }
      default:
        break; // preshared_key, protocol_version and future keys
    }
  }
  finishPeer();
  if (errno === null) return malformed(l.terminated ? 'reply without errno=' : 'truncated reply');
  if (errno !== 0) return { ok: false, error: { kind: 'errno', errno } };
  return { ok: true, value: dev };
}

/**
 * Parses set-request text strictly: "set=1" first, then only the keys this module encodes, each value
 * well-formed, terminated by a blank line with nothing after it. Used by the privileged helper to refuse
 * anything but a plain configuration (and to re-encode it canonically).
 */
export function parseSetRequest(text: string): UapiResult<UapiSetRequest> {
  if (!text.endsWith('\n\n')) return malformed('a set request ends with a blank line');
  const body = text.slice(0, -1);
  if (body.slice(0, -1).includes('\n\n')) return malformed('exactly one request is allowed');
  const l = lines(body);
  if (typeof l === 'string') return malformed(l);
  const [first, ...rest] = l.pairs;
  if (!first || first[0] !== 'set' || first[1] !== '1') return malformed('a set request starts with set=1');
  const req: UapiSetRequest = { peers: [] };
  let peer: UapiPeerUpdate | null = null;
  const bool = (k: string, v: string): boolean | string => (v === 'true' ? true : `${k} must be true`);
  for (const [k, v] of rest) {
    if (k === 'public_key') {
      const key = keyFromHex(v);
      if (!key) return malformed('bad public_key');
      peer = { publicKey: key };
      req.peers.push(peer);
      continue;
    }
    if (!peer) {
      switch (k) {
        case 'private_key': {
          const key = keyFromHex(v);
          if (!key) return malformed('bad private_key');
          req.privateKey = key;
          break;
        }
        case 'listen_port': {
          const n = uint(v, 65535);
          if (n === null) return malformed('bad listen_port');
          req.listenPort = n;
          break;
        }
        case 'fwmark': {
          const n = uint(v, 0xffffffff);
          if (n === null) return malformed('bad fwmark');
          req.fwmark = n;
          break;
        }
        case 'replace_peers': {
          const b = bool(k, v);
          if (typeof b === 'string') return malformed(b);
          req.replacePeers = true;
          break;
        }
        default:
          return malformed(`unknown device key ${JSON.stringify(k.slice(0, 40))}`);
      }
      continue;
    }
    switch (k) {
      case 'remove':
      case 'update_only':
      case 'replace_allowed_ips': {
        const b = bool(k, v);
        if (typeof b === 'string') return malformed(b);
        if (k === 'remove') peer.remove = true;
        else if (k === 'update_only') peer.updateOnly = true;
        else peer.replaceAllowedIPs = true;
        break;
      }
      case 'endpoint': {
        const e = parseEndpoint(v);
        if (!e) return malformed(`bad endpoint ${JSON.stringify(v.slice(0, 60))}`);
        peer.endpoint = e;
        break;
      }
      case 'persistent_keepalive_interval': {
        const n = uint(v, 65535);
        if (n === null) return malformed('bad persistent_keepalive_interval');
        peer.persistentKeepalive = n;
        break;
      }
      case 'allowed_ip': {
        const c = canonicalPrefix(v);
        if (!c) return malformed(`bad allowed_ip ${JSON.stringify(v.slice(0, 60))}`);
        (peer.allowedIPs ??= []).push(c);
        break;
      }
      default:
        return malformed(`unknown peer key ${JSON.stringify(k.slice(0, 40))}`);
    }
  }
  for (const p of req.peers) {
    if (p.remove && Object.keys(p).some((k) => k !== 'publicKey' && k !== 'remove')) {
      return malformed('a peer section with remove=true carries no other fields');
    }
  }
  return { ok: true, value: req };
}
