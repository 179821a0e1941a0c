/**
 * Desired WireGuard device configuration and the minimal UAPI `set` that moves a device from one
 * configuration to the next. Pure.
 *
 * WgInterface.set(cfg) is declarative (tailscale's Router/wgengine Reconfig): the engine hands over the
 * whole desired config every time, and `diffConfig` turns it into the smallest change, so a peer whose
 * settings did not change keeps its session untouched:
 *
 *   prev = null          -> full config with replace_peers=true (a fresh device)
 *   private key changed  -> private_key=
 *   listen port changed  -> listen_port=
 *   peer gone            -> public_key= remove=true
 *   peer new             -> public_key= [endpoint=] persistent_keepalive_interval= replace_allowed_ips=true allowed_ip=...
 *   peer changed         -> public_key= update_only=true and only the changed fields; allowed IPs (compared as
 *                           a set) are replaced only when they differ
 *   peer endpoint -> null -> remove + re-add (UAPI cannot clear an endpoint)
 *   nothing changed      -> null (no request at all)
 */
import type { UdpAddr } from '../../protocol/wire/addr.ts';
import { sameAddr } from '../../protocol/wire/addr.ts';
import { bytesEqual, toHex } from '../../protocol/wire/hex.ts';
import { canonicalPrefix } from './ip-prefix.ts';
import type { UapiPeerUpdate, UapiSetRequest } from './uapi.ts';
import { UapiEncodeError, WG_KEY_LEN } from './uapi.ts';

export interface WgPeer {
  /** The peer's WireGuard public key (the bytes of its Tailscale node key). */
  publicKey: Uint8Array;
  /** Where to send; null when no path is known yet. */
  endpoint: UdpAddr | null;
  /** Prefixes routed to this peer and accepted from it ("100.64.0.2/32"). */
  allowedIPs: string[];
  /** Seconds between keepalives; 0 or absent disables them. */
  persistentKeepalive?: number;
}

export interface WgConfig {
  privateKey: Uint8Array;
  /** UDP port wireguard-go binds; 0 lets it choose. */
  listenPort: number;
  peers: WgPeer[];
}

/** Canonical, sorted, de-duplicated allowed IPs; throws UapiEncodeError on a malformed prefix. */
export function canonicalAllowedIPs(list: readonly string[]): string[] {
  const out = new Set<string>();
  for (const a of list) {
    const c = canonicalPrefix(a);
    if (!c) throw new UapiEncodeError(`allowed IP is not a prefix: ${JSON.stringify(a)}`);
    out.add(c);
  }
  return [...out].sort();
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function fullPeer(p: WgPeer): UapiPeerUpdate {
  const u: UapiPeerUpdate = {
    publicKey: p.publicKey,
    persistentKeepalive: p.persistentKeepalive ?? 0,
    replaceAllowedIPs: true,
    allowedIPs: canonicalAllowedIPs(p.allowedIPs),
  };
  if (p.endpoint) u.endpoint = p.endpoint;
  return u;
}

function peersByKey(peers: readonly WgPeer[]): Map<string, WgPeer> {
  const m = new Map<string, WgPeer>();
  for (const p of peers) {
    if (p.publicKey.length !== WG_KEY_LEN) throw new UapiEncodeError('peer public keys are 32 bytes');
    const k = toHex(p.publicKey);
    if (m.has(k)) throw new UapiEncodeError(`duplicate peer ${k}`);
    m.set(k, p);
  }
  return m;
}

/** Returns the UAPI set that turns `prev` into `next`, or null when they are equivalent. */
export function diffConfig(prev: WgConfig | null, next: WgConfig): UapiSetRequest | null {
  const nextPeers = peersByKey(next.peers);
  if (prev === null) {
    return { privateKey: next.privateKey, listenPort: next.listenPort, replacePeers: true, peers: next.peers.map(fullPeer) };
  }
  const prevPeers = peersByKey(prev.peers);
  const req: UapiSetRequest = { peers: [] };
  if (!bytesEqual(prev.privateKey, next.privateKey)) req.privateKey = next.privateKey;
  if (prev.listenPort !== next.listenPort) req.listenPort = next.listenPort;
  for (const [k, p] of prevPeers) {
    if (!nextPeers.has(k)) req.peers.push({ publicKey: p.publicKey, remove: true });
  }
  for (const [k, n] of nextPeers) {
    const o = prevPeers.get(k);
    if (!o) {
      req.peers.push(fullPeer(n));
      continue;
    }
    if (o.endpoint && !n.endpoint) {
      req.peers.push({ publicKey: n.publicKey, remove: true }, fullPeer(n));
      continue;
    }
    const u: UapiPeerUpdate = { publicKey: n.publicKey, updateOnly: true };
    let changed = false;
    if (n.endpoint && !sameAddr(o.endpoint, n.endpoint)) {
      u.endpoint = n.endpoint;
      changed = true;
    }
    if ((o.persistentKeepalive ?? 0) !== (n.persistentKeepalive ?? 0)) {
      u.persistentKeepalive = n.persistentKeepalive ?? 0;
      changed = true;
    }
    const oa = canonicalAllowedIPs(o.allowedIPs);
    const na = canonicalAllowedIPs(n.allowedIPs);
    if (!sameList(oa, na)) {
      u.replaceAllowedIPs = true;
      u.allowedIPs = na;
      changed = true;
    }
    if (changed) req.peers.push(u);
  }
  const empty = req.privateKey === undefined && req.listenPort === undefined && req.peers.length === 0;
  return empty ? null : req;
}

/**
 * Forgets the endpoint a config gave peer `publicKey` (in place), so that the next diffConfig from it sends the
 * wanted endpoint again: WireGuard itself moved the peer elsewhere (roaming: it follows the source of the peer's
 * last authenticated packet), and the device no longer has what was applied.
 */
export function forgetPeerEndpoint(applied: WgConfig | null, publicKey: Uint8Array): void {
  const p = applied?.peers.find((q) => bytesEqual(q.publicKey, publicKey));
  if (p) p.endpoint = null;
}

/** A deep copy, so a caller mutating its config object afterwards cannot change what was applied. */
export function cloneConfig(c: WgConfig): WgConfig {
  return {
    privateKey: c.privateKey.slice(),
    listenPort: c.listenPort,
    peers: c.peers.map((p) => {
      const q: WgPeer = { publicKey: p.publicKey.slice(), endpoint: p.endpoint ? { ...p.endpoint } : null, allowedIPs: [...p.allowedIPs] };
      if (p.persistentKeepalive !== undefined) q.persistentKeepalive = p.persistentKeepalive;
      return q;
    }),
  };
}
