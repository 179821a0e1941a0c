/**
 * WireGuard's own command-line tool, `wg` (wireguard-tools, https://git.zx2c4.com/wireguard-tools/about/src/man/wg.8),
 * as the configuration channel of a kernel WireGuard link: Node has no generic-netlink socket, and `wg` speaks
 * netlink to a kernel device (and UAPI to a userspace one, which is how the lab tests this module on machines
 * without the kernel module). Pure: argv in, text out; kernel.ts runs them.
 *
 *   a set request (uapi.ts)                      one `wg set` argv
 *   private_key=K                                 private-key FILE            (the key in base64 in a file of mode 0600
 *                                                                               that the caller writes and removes; never
 *                                                                               in argv, and not /dev/stdin, which wg cannot
 *                                                                               open when stdin is Node's socketpair)
 *   listen_port=N, fwmark=N                       listen-port N, fwmark N
 *   public_key=K remove=true                      peer K remove
 *   public_key=K [endpoint=E]                     peer K [endpoint E] [persistent-keepalive N|off]
 *     [persistent_keepalive_interval=N]             [allowed-ips A,B]            (wg replaces the whole list)
 *     replace_allowed_ips=true allowed_ip=A…                                     (without replace: refused, as
 *                                                                                 Debian 12's wg cannot add to it)
 *   replace_peers=true                            every current peer (`wg show NAME dump`) is removed first, then the
 *                                                 named ones added, as UAPI does
 *   update_only=true                              dropped: `wg set` creates a missing peer; the engine's diff only
 *                                                 sends it for a peer that it set before
 *
 *   `wg show NAME dump`: one tab-separated line for the device (private key, public key, listen port, fwmark), then
 *   one per peer: public key, preshared key, endpoint or (none), allowed IPs or (none), latest handshake (Unix
 *   seconds, 0 = never), rx bytes, tx bytes, persistent keepalive (seconds or off).
 */
import type { UdpAddr } from '../../protocol/wire/addr.ts';
import { parseHostPort } from '../../protocol/wire/addr.ts';
import { canonicalPrefix, parseIp } from './ip-prefix.ts';
import type { UapiDeviceState, UapiPeerState, UapiResult, UapiSetRequest } from './uapi.ts';
import { allowedIpText, endpointText, u16, UapiEncodeError, WG_KEY_LEN } from './uapi.ts';

/** Base64 of a 32-byte key, as `wg` prints and reads keys. */
export function keyToBase64(key: Uint8Array): string {
  if (key.length !== WG_KEY_LEN) throw new UapiEncodeError(`WireGuard keys are ${WG_KEY_LEN} bytes, got ${key.length}`);
  return Buffer.from(key).toString('base64');
}

const B64_KEY = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/** A 32-byte key from `wg`'s base64; null when malformed. */
export function keyFromBase64(text: string): Uint8Array | null {
  return B64_KEY.test(text) ? new Uint8Array(Buffer.from(text, 'base64')) : null;
}

export interface WgSetCommand {
  /** The argv after `wg` (`set NAME …`). */
  argv: string[];
  /** The private key in base64 (with a newline) for the key file, when the request sets one; else null. */
  keyFileText: string | null;
}

/**
 * The `wg set` command for a set request on device `name`. `current` lists the device's peers now (needed only
 * for replace_peers); `keyFile` is where the caller puts `keyFileText` when there is one. Throws UapiEncodeError on a value that cannot be expressed; returns null when the request
 * changes nothing.
 */
export function wgSetCommand(name: string, req: UapiSetRequest, current: readonly Uint8Array[] = [], keyFile = '/dev/null'): WgSetCommand | null {
  const argv: string[] = [];
  let keyFileText: string | null = null;
  if (req.listenPort !== undefined) argv.push('listen-port', u16('listen_port', req.listenPort, 0));
  if (req.fwmark !== undefined) {
    if (!Number.isInteger(req.fwmark) || req.fwmark < 0 || req.fwmark > 0xffffffff) throw new UapiEncodeError('fwmark must be a uint32');
    argv.push('fwmark', req.fwmark === 0 ? 'off' : String(req.fwmark));
  }
  if (req.privateKey !== undefined) {
    argv.push('private-key', keyFile);
    keyFileText = `${keyToBase64(req.privateKey)}\n`;
  }
  // UAPI's replace_peers removes every peer first (sessions, endpoints and all); `wg set` applies its peer
  // sections in order, so removing each current peer and then adding the named ones does the same.
  if (req.replacePeers) for (const k of current) argv.push('peer', keyToBase64(k), 'remove');
  for (const p of req.peers) {
    argv.push('peer', keyToBase64(p.publicKey));
    if (p.remove) {
      if (p.updateOnly || p.endpoint || p.persistentKeepalive !== undefined || p.replaceAllowedIPs || p.allowedIPs?.length) {
        throw new UapiEncodeError('a peer section with remove=true carries no other fields');
      }
      argv.push('remove');
      continue;
    }
    if (p.endpoint) argv.push('endpoint', endpointText(p.endpoint));
    if (p.persistentKeepalive !== undefined) {
      const k = Number(u16('persistent_keepalive_interval', p.persistentKeepalive, 0));
      argv.push('persistent-keepalive', k === 0 ? 'off' : String(k));
    }
    const ips = (p.allowedIPs ?? []).map(allowedIpText);
    // `wg set … allowed-ips` replaces the list; adding to it (`+prefix`) needs a newer wg than Debian 12's.
    if (p.replaceAllowedIPs) argv.push('allowed-ips', ips.join(','));
    else if (ips.length > 0) throw new UapiEncodeError('wg set cannot add allowed IPs without replacing them (replace_allowed_ips=true)');
  }
  if (argv.length === 0) return null;
  return { argv: ['set', name, ...argv], keyFileText };
}

function malformed<T>(reason: string): UapiResult<T> {
  return { ok: false, error: { kind: 'malformed', reason } };
}

function uint(v: string, max: number): number | null {
  if (!/^[0-9]{1,20}$/.test(v)) return null;
  const n = Number(v);
  return n <= max ? n : null;
}

/** Parses `wg show NAME dump`. Never throws. */
export function parseWgDump(text: string): UapiResult<UapiDeviceState> {
  const rows = text.split('\n').filter((l) => l !== '');
  const dev = rows[0]?.split('\t');
  if (!dev || dev.length !== 4) return malformed('the first line is not the device line (4 fields)');
  const privateKey = dev[0] === '(none)' ? null : keyFromBase64(dev[0]!);
  if (dev[0] !== '(none)' && !privateKey) return malformed('bad private key');
  const listenPort = uint(dev[2]!, 65535);
  const fwmark = dev[3] === 'off' ? 0 : /^0x[0-9a-f]{1,8}$/.test(dev[3]!) ? parseInt(dev[3]!.slice(2), 16) : null;
  if (listenPort === null || fwmark === null) return malformed('bad listen port or fwmark');
  const peers: UapiPeerState[] = [];
  for (const row of rows.slice(1)) {
    const f = row.split('\t');
    if (f.length !== 8) return malformed(`a peer line has ${f.length} fields, not 8`);
    const publicKey = keyFromBase64(f[0]!);
    if (!publicKey) return malformed('bad peer public key');
    let endpoint: UdpAddr | null = null;
    if (f[2] !== '(none)') {
      // A link-local peer address carries its zone ([fe80::1%eth0]:p); WireGuard's config has no place for one.
      const hp = parseHostPort(f[2]!.replace(/%[^\]]*\]/, ']'));
      const ip = hp ? parseIp(hp.host) : null;
      if (!hp || !ip) return malformed(`bad endpoint ${JSON.stringify(f[2]!.slice(0, 60))}`);
      endpoint = { ip: ip.ip, port: hp.port };
    }
    const allowedIPs: string[] = [];
    if (f[3] !== '(none)') {
      for (const a of f[3]!.split(',')) {
        const c = canonicalPrefix(a);
        if (!c) return malformed(`bad allowed IP ${JSON.stringify(a.slice(0, 60))}`);
        allowedIPs.push(c);
      }
    }
    // u64 counters: beyond 2^53 they lose their last digits, which no reader of them needs.
    const hs = uint(f[4]!, Number.MAX_VALUE);
    const rx = uint(f[5]!, Number.MAX_VALUE);
    const tx = uint(f[6]!, Number.MAX_VALUE);
    const ka = f[7] === 'off' ? 0 : uint(f[7]!, 65535);
    if (hs === null || rx === null || tx === null || ka === null) return malformed('bad handshake time, byte count or keepalive');
    peers.push({ publicKey, endpoint, allowedIPs, rxBytes: rx, txBytes: tx, lastHandshakeUnixMs: hs === 0 ? null : hs * 1000, persistentKeepalive: ka });
  }
  return { ok: true, value: { privateKey, listenPort, fwmark, peers } };
}
