/**
 * STUN responder logic: decides the answer to one request. Pure; server.ts owns the sockets.
 *
 * With an alternate address configured, the server listens on four sockets (primary/alternate IP ×
 * primary/alternate port) and implements RFC 5780 behaviour discovery: CHANGE-REQUEST picks the socket the
 * answer leaves from, and every answer carries RESPONSE-ORIGIN and OTHER-ADDRESS.
 *
 *                 port P            port P'
 *   IP A      [A:P]  (primary)   [A:P']
 *   IP A'     [A':P]             [A':P']  = OTHER-ADDRESS of [A:P]
 *
 * Requests in Tailscale's form (SOFTWARE "tailnode", FINGERPRINT last, no CHANGE-REQUEST) are answered the way
 * Tailscale's servers answer: XOR-MAPPED-ADDRESS only, so derper-compatible clients see identical bytes.
 * When an alternate address exists, RESPONSE-ORIGIN and OTHER-ADDRESS follow (Tailscale's parser walks and
 * ignores them), which lets Weft's own probe discover RFC 5780 support from its Tailscale-form request.
 *
 * Other RFC 5389 clients get XOR-MAPPED-ADDRESS, MAPPED-ADDRESS (for RFC 3489-era clients), RESPONSE-ORIGIN,
 * OTHER-ADDRESS, SOFTWARE and FINGERPRINT. Unknown comprehension-required attributes get a 420 error with
 * UNKNOWN-ATTRIBUTES, as does CHANGE-REQUEST on a server without an alternate address (RFC 5780 §6.1).
 * Anything that is not a binding request, or whose FINGERPRINT is wrong, is dropped without an answer.
 */
import { sameAddr, type UdpAddr } from '../../protocol/wire/addr.ts';
import {
  Attr,
  StunType,
  TAILSCALE_SOFTWARE,
  attr,
  changeRequestAttr,
  encodeStun,
  encodeTailscaleResponse,
  findAttr,
  parseStun,
  softwareAttr,
  verifyFingerprint,
  type AttrInput,
} from '../../protocol/wire/stun.ts';

export const SERVER_SOFTWARE = 'weft-stun';

/** Socket identity: which of the (up to) four server sockets. */
export interface SocketId {
  altIp: boolean;
  altPort: boolean;
}

export interface StunServerAddrs {
  primary: UdpAddr;
  /** The alternate address (other IP and other port); enables RFC 5780. */
  alt?: UdpAddr;
}

export interface StunReply {
  via: SocketId;
  data: Uint8Array;
}

/** Comprehension-required attributes this server accepts in a request (beyond CHANGE-REQUEST). */
const UNDERSTOOD_REQUIRED = new Set<number>([
  Attr.MappedAddress,
  Attr.Username,
  Attr.MessageIntegrity,
  Attr.ErrorCode,
  Attr.UnknownAttributes,
  Attr.Realm,
  Attr.Nonce,
  Attr.XorMappedAddress,
  0x001c, // MESSAGE-INTEGRITY-SHA256 (RFC 8489): no credentials here, so it is not checked
  0x001d, // PASSWORD-ALGORITHM
  0x001e, // USERHASH
  0x0024, // PRIORITY (ICE connectivity checks)
  0x0025, // USE-CANDIDATE
]);

/** Returns the address of a server socket. */
export function socketAddr(addrs: StunServerAddrs, id: SocketId): UdpAddr {
  const alt = addrs.alt ?? addrs.primary;
  return { ip: id.altIp ? alt.ip : addrs.primary.ip, port: id.altPort ? alt.port : addrs.primary.port };
}

/** Returns the answer to a datagram received on socket `on` from `from`, or null to stay silent. */
export function respond(addrs: StunServerAddrs, on: SocketId, data: Uint8Array, from: UdpAddr): StunReply | null {
  const msg = parseStun(data);
  if (msg.kind !== 'stun' || msg.type !== StunType.BindingRequest) return null;
  const hasFp = findAttr(msg, Attr.Fingerprint) !== undefined;
  if (hasFp && !verifyFingerprint(msg)) return null;
  const txid = msg.txid;

  const change = changeRequestAttr(msg);
  const unknown = msg.attrs
    .map((a) => a.type)
    .filter((t) => t < 0x8000 && !UNDERSTOOD_REQUIRED.has(t) && !(t === Attr.ChangeRequest && addrs.alt));
  if (unknown.length > 0) {
    const err = encodeStun(StunType.BindingError, txid, [attr.errorCode(420, 'Unknown Attribute'), attr.unknownAttributes([...new Set(unknown)]), attr.software(SERVER_SOFTWARE)], {
      fingerprint: true,
    });
    return { via: on, data: err };
  }

  const via: SocketId = { altIp: on.altIp !== (change?.changeIp ?? false), altPort: on.altPort !== (change?.changePort ?? false) };
  const rfc5780: AttrInput[] = addrs.alt
    ? [attr.responseOrigin(socketAddr(addrs, via)), attr.otherAddress(socketAddr(addrs, { altIp: !on.altIp, altPort: !on.altPort }))]
    : [];

  const tailscaleForm = softwareAttr(msg) === TAILSCALE_SOFTWARE && hasFp && change === null;
  if (tailscaleForm) {
    const base = encodeTailscaleResponse(txid, from);
    if (rfc5780.length === 0) return { via, data: base };
    return { via, data: encodeStun(StunType.BindingSuccess, txid, [attr.xorMappedAddress(from, txid), ...rfc5780]) };
  }
  const reply = encodeStun(
    StunType.BindingSuccess,
    txid,
    [attr.xorMappedAddress(from, txid), attr.mappedAddress(from), ...rfc5780, attr.software(SERVER_SOFTWARE)],
    { fingerprint: true },
  );
  return { via, data: reply };
}

/** Reports whether `a` is one of the server's own socket addresses (used to refuse reflection loops). */
export function isOwnAddress(addrs: StunServerAddrs, a: UdpAddr): boolean {
  const ids: SocketId[] = [
    { altIp: false, altPort: false },
    { altIp: false, altPort: true },
    { altIp: true, altPort: false },
    { altIp: true, altPort: true },
  ];
  return ids.some((id) => sameAddr(socketAddr(addrs, id), a));
}
