import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { boxBeforenm, sealWithShared } from '../../../../src-main/protocol/crypto/nacl-box.ts';
import { bytesToIp, isV4Mapped, type UdpAddr } from '../../../../src-main/protocol/wire/addr.ts';
import {
  DiscoType,
  MAGIC,
  MIN_PACKET_LEN,
  discoSenderPub,
  encodeDiscoMessage,
  looksLikeDisco,
  looksLikeDiscoWrapper,
  openDiscoPacket,
  parseDiscoMessage,
  sealDiscoPacket,
  type DiscoMessage,
  type OpenDiscoResult,
} from '../../../../src-main/protocol/wire/disco.ts';
import { bytesEqual, concatBytes, fromHex, toHex } from '../../../../src-main/protocol/wire/hex.ts';
import { loadVectors, vec } from '../../../support/vectors.ts';

const V = loadVectors('disco.txt');
const aPriv = fromHex(vec(V, 'disco_a_priv'));
const aPub = fromHex(vec(V, 'disco_a_pub'));
const bPriv = fromHex(vec(V, 'disco_b_priv'));
const bPub = fromHex(vec(V, 'disco_b_pub'));
const shared = fromHex(vec(V, 'disco_ab_box_key'));
const txid = fromHex(vec(V, 'txid'));
const nodeKey = fromHex(vec(V, 'node_key_pub'));
const v4: UdpAddr = { ip: '192.0.2.1', port: 41641 };
const v6: UdpAddr = { ip: '2001:db8:1234:5678:9abc:def0:fedc:ba98', port: 41641 };

/** Receiver B's view: it knows A's disco key and shares `shared` with it. */
const lookupAtB = (sender: Uint8Array): Uint8Array | null => (bytesEqual(sender, aPub) ? shared : null);

function mustOpen(r: OpenDiscoResult): DiscoMessage {
  if (r.kind !== 'disco') throw new Error(`expected an opened disco packet, got ${r.kind}`);
  return r.msg;
}

const CASES: { name: string; msg: DiscoMessage; wireLen: number }[] = [
  { name: 'ping', msg: { kind: 'ping', txid, nodeKey, padding: 0 }, wireLen: 124 },
  { name: 'ping_padded', msg: { kind: 'ping', txid, nodeKey, padding: 16 }, wireLen: 140 },
  { name: 'ping_nokey', msg: { kind: 'ping', txid, nodeKey: null, padding: 0 }, wireLen: 92 },
  { name: 'pong_ipv4', msg: { kind: 'pong', txid, src: v4 }, wireLen: 110 },
  { name: 'pong_ipv6', msg: { kind: 'pong', txid, src: v6 }, wireLen: 110 },
  { name: 'callmemaybe', msg: { kind: 'call-me-maybe', endpoints: [v4, v6] }, wireLen: 116 },
  { name: 'callmemaybe_empty', msg: { kind: 'call-me-maybe', endpoints: [] }, wireLen: 80 },
];

describe('disco keys (vectors)', () => {
  it('derives the shared box key from both sides', () => {
    expect(toHex(boxBeforenm(bPub, aPriv))).toBe(vec(V, 'disco_ab_box_key'));
    expect(toHex(boxBeforenm(aPub, bPriv))).toBe(vec(V, 'disco_ab_box_key'));
  });
});

describe.each(CASES)('vector $name', ({ name, msg, wireLen }) => {
  const plaintext = vec(V, `${name}.plaintext`);
  const nonceHex = vec(V, `${name}.nonce`);
  const wire = vec(V, `${name}.wire`);

  it('encodes the plaintext byte for byte and parses it back', () => {
    expect(toHex(encodeDiscoMessage(msg))).toBe(plaintext);
    expect(parseDiscoMessage(fromHex(plaintext))).toEqual(msg);
  });

  it('seals the wire packet byte for byte (magic ‖ sender ‖ nonce ‖ box)', () => {
    const pkt = sealDiscoPacket({ senderPub: aPub, shared, msg, nonce: fromHex(nonceHex) });
    expect(toHex(pkt)).toBe(wire);
    expect(pkt.length).toBe(wireLen);
    expect(wire).toBe(toHex(MAGIC) + vec(V, 'disco_a_pub') + nonceHex + vec(V, `${name}.box`));
    // Sealing from the other side's precomputation gives the same bytes (the key is symmetric).
    expect(toHex(sealDiscoPacket({ senderPub: aPub, shared: boxBeforenm(aPub, bPriv), msg, nonce: fromHex(nonceHex) }))).toBe(wire);
  });

  it('opens at the receiver with the sender key and message', () => {
    const r = openDiscoPacket(fromHex(wire), lookupAtB);
    expect(r.kind).toBe('disco');
    if (r.kind === 'disco') expect(toHex(r.senderPub)).toBe(vec(V, 'disco_a_pub'));
    expect(mustOpen(r)).toEqual(msg);
    expect(looksLikeDisco(fromHex(wire))).toBe(true);
    expect(looksLikeDiscoWrapper(fromHex(wire))).toBe(true);
    expect(toHex(discoSenderPub(fromHex(wire)) ?? new Uint8Array())).toBe(vec(V, 'disco_a_pub'));
  });

  it('rejects every 1-bit change of the wire packet', () => {
    const pkt = fromHex(wire);
    const kinds = new Set<string>();
    for (let bit = 0; bit < pkt.length * 8; bit++) {
      const t = pkt.slice();
      t[bit >> 3]! ^= 1 << (bit & 7);
      const r = openDiscoPacket(t, lookupAtB);
      const byte = bit >> 3;
      const want = byte < 6 ? 'malformed' : byte < 38 ? 'unknown-sender' : 'bad-box';
      expect(r.kind).toBe(want);
      kinds.add(r.kind);
    }
    expect([...kinds].sort()).toEqual(['bad-box', 'malformed', 'unknown-sender']);
  });
});

describe('parseDiscoMessage edge cases (Tailscale disco.Parse semantics)', () => {
  const hdr = (type: number, version = 0): Uint8Array => new Uint8Array([type, version]);

  it.each([
    ['empty', new Uint8Array(0), /header/],
    ['one byte', new Uint8Array([1]), /header/],
    ['ping with 11-byte body', concatBytes(hdr(1), new Uint8Array(11)), /ping body/],
    ['pong with 29-byte body', concatBytes(hdr(2), new Uint8Array(29)), /pong body/],
    ['type 0x00', concatBytes(hdr(0), new Uint8Array(40)), /unknown message type 0x00/],
    ['type 0x0a', concatBytes(hdr(0x0a), new Uint8Array(40)), /unknown message type 0x0a/],
    ['type 0xff', hdr(0xff), /unknown message type 0xff/],
  ])('%s is malformed', (_name, b, why) => {
    const r = parseDiscoMessage(b);
    expect(r.kind).toBe('malformed');
    if (r.kind === 'malformed') expect(r.reason).toMatch(why);
  });

  it('reads a ping without a node key when fewer than 44 body bytes remain (rest is padding)', () => {
    expect(parseDiscoMessage(concatBytes(hdr(1), txid, new Uint8Array(31)))).toEqual({ kind: 'ping', txid, nodeKey: null, padding: 31 });
    expect(parseDiscoMessage(concatBytes(hdr(1), txid))).toEqual({ kind: 'ping', txid, nodeKey: null, padding: 0 });
  });

  it('treats an all-zero node key as absent, both ways (Go NodeKey.IsZero)', () => {
    const zero = new Uint8Array(32);
    expect(toHex(encodeDiscoMessage({ kind: 'ping', txid, nodeKey: zero, padding: 0 }))).toBe(vec(V, 'ping_nokey.plaintext'));
    expect(parseDiscoMessage(concatBytes(hdr(1), txid, zero, new Uint8Array(2)))).toEqual({ kind: 'ping', txid, nodeKey: null, padding: 2 });
  });

  it('accepts trailing bytes after a ping key and a pong (forward compatibility), and ignores the version', () => {
    expect(parseDiscoMessage(concatBytes(hdr(1, 7), txid, nodeKey, new Uint8Array([5, 6, 7])))).toEqual({
      kind: 'ping',
      txid,
      nodeKey,
      padding: 3,
    });
    const pong = fromHex(vec(V, 'pong_ipv6.plaintext'));
    expect(parseDiscoMessage(concatBytes(pong, new Uint8Array([1, 2, 3])))).toEqual({ kind: 'pong', txid, src: v6 });
  });

  it('reads a v4-mapped address as IPv4 and a ::ffff: text address encodes the same as IPv4', () => {
    const mapped = encodeDiscoMessage({ kind: 'pong', txid, src: { ip: '::ffff:192.0.2.1', port: 41641 } });
    expect(toHex(mapped)).toBe(vec(V, 'pong_ipv4.plaintext'));
  });

  it('is lenient with CallMeMaybe: bad version, ragged length → no endpoints, not an error', () => {
    const body = fromHex(vec(V, 'callmemaybe.plaintext')).subarray(2);
    expect(parseDiscoMessage(concatBytes(hdr(3, 1), body))).toEqual({ kind: 'call-me-maybe', endpoints: [] });
    expect(parseDiscoMessage(concatBytes(hdr(3), body, new Uint8Array([0])))).toEqual({ kind: 'call-me-maybe', endpoints: [] });
    expect(parseDiscoMessage(concatBytes(hdr(3), body.subarray(0, 17)))).toEqual({ kind: 'call-me-maybe', endpoints: [] });
    expect(parseDiscoMessage(concatBytes(hdr(3), body.subarray(0, 18)))).toEqual({ kind: 'call-me-maybe', endpoints: [v4] });
  });

  it.each([
    ['BindUDPRelayEndpoint', DiscoType.BindUDPRelayEndpoint, 72],
    ['BindUDPRelayEndpointChallenge', DiscoType.BindUDPRelayEndpointChallenge, 72],
    ['BindUDPRelayEndpointAnswer', DiscoType.BindUDPRelayEndpointAnswer, 72],
    ['CallMeMaybeVia', DiscoType.CallMeMaybeVia, 124 + 18],
    ['AllocateUDPRelayEndpointRequest', DiscoType.AllocateUDPRelayEndpointRequest, 68],
    ['AllocateUDPRelayEndpointResponse', DiscoType.AllocateUDPRelayEndpointResponse, 4 + 124 + 18],
  ])('parses peer-relay %s as unsupported (dropped silently), also sealed inside a packet', (_name, type, bodyLen) => {
    const body = new Uint8Array(bodyLen).map((_, i) => i);
    const msg: DiscoMessage = { kind: 'unsupported', type, version: 0, body };
    expect(parseDiscoMessage(concatBytes(hdr(type), body))).toEqual(msg);
    const pkt = sealDiscoPacket({ senderPub: aPub, shared, msg });
    expect(mustOpen(openDiscoPacket(pkt, lookupAtB))).toEqual(msg);
  });
});

describe('openDiscoPacket drop results', () => {
  const ping = fromHex(vec(V, 'ping.wire'));

  it('is malformed for short or non-magic packets, before any lookup', () => {
    const never = (): Uint8Array | null => {
      throw new Error('lookup must not run');
    };
    expect(openDiscoPacket(new Uint8Array(0), never).kind).toBe('malformed');
    expect(openDiscoPacket(ping.subarray(0, 37), never).kind).toBe('malformed');
    expect(openDiscoPacket(ping.subarray(0, MIN_PACKET_LEN - 1), never).kind).toBe('malformed');
    expect(openDiscoPacket(concatBytes(new Uint8Array([0x55]), ping.subarray(1)), never).kind).toBe('malformed');
  });

  it('reports an unknown sender and a box that does not open (wrong key, e.g. after a peer restart)', () => {
    const unknown = openDiscoPacket(ping, () => null);
    expect(unknown.kind).toBe('unknown-sender');
    if (unknown.kind === 'unknown-sender') expect(toHex(unknown.senderPub)).toBe(vec(V, 'disco_a_pub'));
    expect(openDiscoPacket(ping, () => new Uint8Array(32)).kind).toBe('bad-box');
    expect(openDiscoPacket(ping, () => new Uint8Array(3)).kind).toBe('bad-box');
  });

  it('is malformed when the box opens but the payload does not parse', () => {
    for (const raw of [new Uint8Array(0), new Uint8Array([0x2a, 0]), new Uint8Array([1, 0, 1, 2])]) {
      const pkt = concatBytes(MAGIC, aPub, sealWithShared(shared, raw));
      expect(openDiscoPacket(pkt, lookupAtB).kind).toBe('malformed');
    }
  });

  it('returns a copy of the sender key for opened packets', () => {
    const pkt = ping.slice();
    const r = openDiscoPacket(pkt, lookupAtB);
    pkt.fill(0);
    expect(r.kind === 'disco' && toHex(r.senderPub)).toBe(vec(V, 'disco_a_pub'));
  });
});

describe('encodeDiscoMessage rejects programmer errors', () => {
  it.each<[string, DiscoMessage]>([
    ['short TxID', { kind: 'ping', txid: txid.subarray(1), nodeKey: null, padding: 0 }],
    ['short node key', { kind: 'ping', txid, nodeKey: nodeKey.subarray(1), padding: 0 }],
    ['negative padding', { kind: 'ping', txid, nodeKey: null, padding: -1 }],
    ['pong with bad IP', { kind: 'pong', txid, src: { ip: 'not-an-ip', port: 1 } }],
    ['pong with bad port', { kind: 'pong', txid, src: { ip: '192.0.2.1', port: 70000 } }],
    ['CallMeMaybe with bad endpoint', { kind: 'call-me-maybe', endpoints: [v4, { ip: '1.2.3', port: 1 }] }],
    ['unsupported with a core type', { kind: 'unsupported', type: 1, version: 0, body: new Uint8Array() }],
  ])('%s throws', (_name, msg) => {
    expect(() => encodeDiscoMessage(msg)).toThrow();
  });

  it('sealDiscoPacket throws on a bad sender key', () => {
    expect(() => sealDiscoPacket({ senderPub: aPub.subarray(1), shared, msg: CASES[0]!.msg })).toThrow(/sender/);
  });
});

describe('recognisers', () => {
  it('looksLikeDisco needs 38 bytes, looksLikeDiscoWrapper 62, both the magic', () => {
    const ping = fromHex(vec(V, 'ping.wire'));
    expect(looksLikeDisco(ping.subarray(0, 37))).toBe(false);
    expect(looksLikeDisco(ping.subarray(0, 38))).toBe(true);
    expect(looksLikeDiscoWrapper(ping.subarray(0, 61))).toBe(false);
    expect(looksLikeDiscoWrapper(ping.subarray(0, 62))).toBe(true);
    expect(discoSenderPub(ping.subarray(0, 37))).toBeNull();
    const bad = ping.slice();
    bad[5] = 0xad;
    expect(looksLikeDisco(bad)).toBe(false);
    expect(looksLikeDiscoWrapper(bad)).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Properties / fuzzing (tailscale disco_fuzzer.go)

/** Canonical text for an address the parser would produce (v4-mapped comes back as IPv4). */
const arbIp = fc.oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 16, maxLength: 16 })).map((b) =>
  b.length === 16 && isV4Mapped(b) ? bytesToIp(b.subarray(12)) : bytesToIp(b),
);
const arbAddr: fc.Arbitrary<UdpAddr> = fc.record({ ip: arbIp, port: fc.integer({ min: 0, max: 65535 }) });
const arbTxid = fc.uint8Array({ minLength: 12, maxLength: 12 });
const arbMsg: fc.Arbitrary<DiscoMessage> = fc.oneof(
  fc.record({
    kind: fc.constant('ping' as const),
    txid: arbTxid,
    nodeKey: fc.option(fc.uint8Array({ minLength: 32, maxLength: 32 }), { nil: null }),
    padding: fc.integer({ min: 0, max: 1400 }),
  }),
  fc.record({ kind: fc.constant('pong' as const), txid: arbTxid, src: arbAddr }),
  fc.record({ kind: fc.constant('call-me-maybe' as const), endpoints: fc.array(arbAddr, { maxLength: 12 }) }),
  fc.record({
    kind: fc.constant('unsupported' as const),
    type: fc.integer({ min: 4, max: 9 }),
    version: fc.integer({ min: 0, max: 255 }),
    body: fc.uint8Array({ maxLength: 200 }),
  }),
);

describe('properties', () => {
  it('round-trips random messages through encode/parse', () => {
    fc.assert(
      fc.property(arbMsg, (msg) => {
        // A keyless ping with ≥ 32 padding bytes reads back with the first 32 taken as a (zero) key slot, as in Go.
        fc.pre(!(msg.kind === 'ping' && msg.nodeKey === null && msg.padding >= 32));
        expect(parseDiscoMessage(encodeDiscoMessage(msg))).toEqual(msg);
      }),
      { numRuns: 500 },
    );
  });

  it('round-trips random messages through seal/open', () => {
    fc.assert(
      fc.property(arbMsg, fc.uint8Array({ minLength: 24, maxLength: 24 }), (msg, nonce) => {
        fc.pre(!(msg.kind === 'ping' && msg.nodeKey === null && msg.padding >= 32));
        const pkt = sealDiscoPacket({ senderPub: aPub, shared, msg, nonce });
        expect(mustOpen(openDiscoPacket(pkt, lookupAtB))).toEqual(msg);
      }),
      { numRuns: 200 },
    );
  });

  it('never throws on random payloads or packets', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        const m = parseDiscoMessage(b);
        expect(['ping', 'pong', 'call-me-maybe', 'unsupported', 'malformed']).toContain(m.kind);
        expect(['malformed', 'unknown-sender', 'bad-box']).toContain(openDiscoPacket(b, lookupAtB).kind);
        // Same bytes behind a valid header from a known sender: the lookup hits and the box must still fail.
        const framed = concatBytes(MAGIC, aPub, b);
        expect(['malformed', 'bad-box']).toContain(openDiscoPacket(framed, lookupAtB).kind);
      }),
      { numRuns: 1000 },
    );
  });

  it('never throws on random plaintexts sealed by a known sender (the parser behind a valid box)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (payload) => {
        const r = openDiscoPacket(concatBytes(MAGIC, aPub, sealWithShared(shared, payload)), lookupAtB);
        const direct = parseDiscoMessage(payload);
        if (r.kind === 'disco') expect(r.msg).toEqual(direct);
        else expect([r.kind, direct.kind]).toEqual(['malformed', 'malformed']);
      }),
      { numRuns: 500 },
    );
  });
});
