/**
 * Datagram demux: the one place that decides what an inbound UDP datagram on the shared socket is
 * (dataplane-protocol §2; Tailscale magicsock packetLooksLike). STUN replies go to netcheck, disco to the path
 * layer, Geneve to the (absent) peer-relay layer, WireGuard to the WireGuard device; junk is dropped and counted.
 *
 * Checks, in Tailscale's order (first match wins):
 *
 *   stun       ≥ 20 bytes, byte0 & 0xC0 == 0, bytes 4..7 = 21 12 A4 42 (cookie), byte1 == 0x01 (binding method:
 *              request 0x0001 or success 0x0101). Other STUN methods/classes are not ours → junk.
 *   geneve     ≥ 8 bytes, byte0 & 0xC0 == 0 (version 0), byte1 & 0x3F == 0 (reserved), byte7 == 0 (reserved), and
 *              u16 BE at 2..3 = 0x7A12 (WireGuard inside) or 0x7A11 (disco inside; the payload at offset 8 must itself
 *              look like disco, otherwise Tailscale falls back to "naked WireGuard", which here ends up as junk).
 *   disco      ≥ 38 bytes and starts with 54 53 F0 9F 92 AC.
 *   wireguard  little-endian u32 message type 1..4, so byte0 ∈ 1..4 and bytes 1..3 == 0, with the lengths
 *              wireguard-go accepts: 1 initiation = 148, 2 response = 92, 3 cookie reply = 64, 4 transport ≥ 32.
 *   junk       everything else (Tailscale hands these to WireGuard, which drops them; we drop them here).
 *
 * Why the patterns cannot collide (so the order of checks does not matter):
 *
 *   byte:      0            1              2..3               4..7
 *   stun       00xxxxxx     0x01           length             21 12 A4 42
 *   geneve     00xxxxxx     xx000000       7A 11 | 7A 12      ...
 *   disco      0x54         0x53           F0 9F              ...
 *   wireguard  01..04       0x00           00 00              ...
 *
 *   - STUN vs Geneve: STUN byte1 is 0x01, whose low bit is one of Geneve's must-be-zero reserved bits.
 *   - STUN vs WireGuard: WireGuard byte1 is always 0x00, never 0x01.
 *   - STUN vs disco: disco byte0 0x54 has its top bits 01, STUN needs 00 (and disco byte1 is 0x53, not 0x01).
 *   - Geneve vs disco: disco byte0 0x54 fails Geneve's version check, and F0 9F is not a Geneve protocol value.
 *   - Geneve vs WireGuard: WireGuard bytes 2..3 are 00 00, never 7A 11 / 7A 12.
 *   - Disco vs WireGuard: byte0 0x54 is not a WireGuard type 1..4.
 *
 * Pure and allocation-free; never throws.
 */
import { looksLikeDisco } from '../../protocol/wire/disco.ts';
import { isStun } from '../../protocol/wire/stun.ts';

export type DatagramKind = 'stun' | 'disco' | 'geneve' | 'wireguard' | 'junk';

const STUN_METHOD_BINDING = 0x01;
const GENEVE_FIXED_HEADER_LEN = 8;
const GENEVE_PROTOCOL_DISCO = 0x7a11;
const GENEVE_PROTOCOL_WIREGUARD = 0x7a12;

const WG_INITIATION = 1;
const WG_RESPONSE = 2;
const WG_COOKIE_REPLY = 3;
const WG_TRANSPORT = 4;
const WG_INITIATION_LEN = 148;
const WG_RESPONSE_LEN = 92;
const WG_COOKIE_REPLY_LEN = 64;
/** Transport header (type 4 + receiver index 4 + counter 8) + Poly1305 tag 16; a keepalive is exactly this. */
const WG_TRANSPORT_MIN_LEN = 32;

/** Reports whether `b` is a well-formed WireGuard message header with a length wireguard-go would accept. */
function looksLikeWireGuard(b: Uint8Array): boolean {
  if (b.length < 4 || b[1] !== 0 || b[2] !== 0 || b[3] !== 0) return false;
  switch (b[0]) {
    case WG_INITIATION:
      return b.length === WG_INITIATION_LEN;
    case WG_RESPONSE:
      return b.length === WG_RESPONSE_LEN;
    case WG_COOKIE_REPLY:
      return b.length === WG_COOKIE_REPLY_LEN;
    case WG_TRANSPORT:
      return b.length >= WG_TRANSPORT_MIN_LEN;
    default:
      return false;
  }
}

/** Classifies one inbound datagram from the shared UDP socket. */
export function classifyDatagram(b: Uint8Array): DatagramKind {
  if (isStun(b) && b[1] === STUN_METHOD_BINDING) return 'stun';

  if (b.length >= GENEVE_FIXED_HEADER_LEN && (b[0]! & 0xc0) === 0 && (b[1]! & 0x3f) === 0 && b[7] === 0) {
    const protocol = (b[2]! << 8) | b[3]!;
    if (protocol === GENEVE_PROTOCOL_WIREGUARD) return 'geneve';
    if (protocol === GENEVE_PROTOCOL_DISCO && looksLikeDisco(b, GENEVE_FIXED_HEADER_LEN)) return 'geneve';
    // Other protocol values (or Geneve-disco without disco inside) fall through, as in Tailscale.
  }

  if (looksLikeDisco(b)) return 'disco';
  if (looksLikeWireGuard(b)) return 'wireguard';
  return 'junk';
}
