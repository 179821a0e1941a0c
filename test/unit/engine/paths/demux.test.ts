import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { classifyDatagram, type DatagramKind } from '../../../../src-main/engine/paths/demux.ts';
import { concatBytes, fromHex } from '../../../../src-main/protocol/wire/hex.ts';
import { StunType, encodeStun, encodeTailscaleRequest } from '../../../../src-main/protocol/wire/stun.ts';
import { loadVectors, vec } from '../../../support/vectors.ts';

const STUN = loadVectors('stun.txt');
const DISCO = loadVectors('disco.txt');
const DISCO_WIRES = ['ping', 'ping_padded', 'ping_nokey', 'pong_ipv4', 'pong_ipv6', 'callmemaybe', 'callmemaybe_empty'].map((n) =>
  fromHex(vec(DISCO, `${n}.wire`)),
);
const discoPing = DISCO_WIRES[0]!;

/** A WireGuard message: little-endian u32 type, then `len - 4` bytes of `fill`. */
function wg(type: number, len: number, fill = 0xab): Uint8Array {
  const b = new Uint8Array(len).fill(fill);
  b.set([type, 0, 0, 0]);
  return b;
}

/** An 8-byte Geneve header (no options) as Tailscale's peer relay sends it. */
function geneve(protocol: number, opts: { control?: boolean; byte0?: number; byte1?: number; byte7?: number } = {}): Uint8Array {
  const b = new Uint8Array(8);
  b[0] = opts.byte0 ?? 0;
  b[1] = opts.byte1 ?? (opts.control ? 0x40 : 0);
  b[2] = protocol >> 8;
  b[3] = protocol & 0xff;
  b.set([0x00, 0x12, 0x34], 4); // VNI
  b[7] = opts.byte7 ?? 0;
  return b;
}

const txid = fromHex(vec(STUN, 'txid'));
const cookie = [0x21, 0x12, 0xa4, 0x42];

const TABLE: [string, Uint8Array, DatagramKind][] = [
  // STUN (real messages from vectors/stun.txt)
  ['Tailscale binding request (vector)', fromHex(vec(STUN, 'request')), 'stun'],
  ['Tailscale binding request (encoder)', encodeTailscaleRequest(txid), 'stun'],
  ['binding response IPv4 (vector)', fromHex(vec(STUN, 'response_ipv4')), 'stun'],
  ['binding response IPv6 (vector)', fromHex(vec(STUN, 'response_ipv6')), 'stun'],
  ['RFC 5769 2.1 request', fromHex(vec(STUN, 'rfc5769_2_1_request')), 'stun'],
  ['RFC 5769 2.2 response IPv4', fromHex(vec(STUN, 'rfc5769_2_2_response_ipv4')), 'stun'],
  ['RFC 5769 2.3 response IPv6', fromHex(vec(STUN, 'rfc5769_2_3_response_ipv6')), 'stun'],
  ['RFC 5769 2.4 long-term request', fromHex(vec(STUN, 'rfc5769_2_4_request_longterm')), 'stun'],
  ['STUN binding error (0x0111, not method-binding byte)', encodeStun(StunType.BindingError, txid, []), 'junk'],
  ['STUN binding indication (0x0011)', encodeStun(StunType.BindingIndication, txid, []), 'junk'],
  ['STUN header cut to 19 bytes', fromHex(vec(STUN, 'request')).subarray(0, 19), 'junk'],
  ['STUN with a bad cookie', concatBytes(new Uint8Array([0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x43]), txid), 'junk'],
  // Disco (wire packets from vectors/disco.txt)
  ...DISCO_WIRES.map((w, i): [string, Uint8Array, DatagramKind] => [`disco wire vector #${i + 1} (${w.length} bytes)`, w, 'disco']),
  ['disco magic + sender key only (38 bytes)', discoPing.subarray(0, 38), 'disco'],
  ['disco cut to 37 bytes', discoPing.subarray(0, 37), 'junk'],
  ['disco with the last magic byte wrong', concatBytes(discoPing.subarray(0, 5), new Uint8Array([0xad]), discoPing.subarray(6)), 'junk'],
  // WireGuard
  ['WG handshake initiation (148)', wg(1, 148), 'wireguard'],
  ['WG handshake response (92)', wg(2, 92), 'wireguard'],
  ['WG cookie reply (64)', wg(3, 64), 'wireguard'],
  ['WG transport keepalive (32)', wg(4, 32), 'wireguard'],
  ['WG transport data (1452)', wg(4, 1452), 'wireguard'],
  ['WG initiation whose sender index is the STUN cookie', (() => { const b = wg(1, 148); b.set(cookie, 4); return b; })(), 'wireguard'],
  ['WG transport whose body is disco magic', concatBytes(wg(4, 4), discoPing.subarray(0, 60)), 'wireguard'],
  ['WG initiation, wrong length 147', wg(1, 147), 'junk'],
  ['WG initiation, wrong length 149', wg(1, 149), 'junk'],
  ['WG response, wrong length 93', wg(2, 93), 'junk'],
  ['WG cookie reply, wrong length 63', wg(3, 63), 'junk'],
  ['WG transport, 31 bytes', wg(4, 31), 'junk'],
  ['WG type 5', wg(5, 148), 'junk'],
  ['WG type 0', wg(0, 148), 'junk'],
  ['WG type with byte1 set', (() => { const b = wg(1, 148); b[1] = 1; return b; })(), 'junk'],
  ['WG type with byte3 set', (() => { const b = wg(4, 64); b[3] = 0x80; return b; })(), 'junk'],
  // Geneve (peer relay, §9.2)
  ['Geneve WireGuard (0x7A12) + transport', concatBytes(geneve(0x7a12), wg(4, 64)), 'geneve'],
  ['Geneve WireGuard (0x7A12), bare header', geneve(0x7a12), 'geneve'],
  ['Geneve disco (0x7A11) + disco, control bit', concatBytes(geneve(0x7a11, { control: true }), discoPing), 'geneve'],
  ['Geneve disco (0x7A11) + disco, O bit', concatBytes(geneve(0x7a11, { byte1: 0x80 }), discoPing), 'geneve'],
  ['Geneve disco (0x7A11) + 38-byte disco header', concatBytes(geneve(0x7a11), discoPing.subarray(0, 38)), 'geneve'],
  ['Geneve disco (0x7A11) without disco inside', concatBytes(geneve(0x7a11), wg(4, 64)), 'junk'],
  ['Geneve disco (0x7A11) with 37 disco bytes', concatBytes(geneve(0x7a11), discoPing.subarray(0, 37)), 'junk'],
  ['Geneve with version bits set', concatBytes(geneve(0x7a12, { byte0: 0x40 }), wg(4, 64)), 'junk'],
  ['Geneve with reserved bits in byte1', concatBytes(geneve(0x7a12, { byte1: 0x01 }), wg(4, 64)), 'junk'],
  ['Geneve with reserved byte7 set', concatBytes(geneve(0x7a12, { byte7: 1 }), wg(4, 64)), 'junk'],
  ['Geneve with another protocol (0x6558 Ethernet)', concatBytes(geneve(0x6558), wg(4, 64)), 'junk'],
  ['Geneve header cut to 7 bytes', geneve(0x7a12).subarray(0, 7), 'junk'],
  // Junk
  ['empty', new Uint8Array(0), 'junk'],
  ['one byte', new Uint8Array([1]), 'junk'],
  ['ASCII text', new TextEncoder().encode('hello, this is not a packet at all, honest'), 'junk'],
  ['all 0xff', new Uint8Array(200).fill(0xff), 'junk'],
  ['all zero', new Uint8Array(200), 'junk'],
  ['DNS query header', fromHex('abcd01000001000000000000076578616d706c6503636f6d0000010001'), 'junk'],
];

describe('classifyDatagram', () => {
  it.each(TABLE)('%s → %s', (_name, b, want) => {
    expect(classifyDatagram(b)).toBe(want);
  });

  it('covers every kind in the table', () => {
    expect(new Set(TABLE.map((r) => r[2]))).toEqual(new Set(['stun', 'disco', 'geneve', 'wireguard', 'junk']));
  });
});

// Generators for each family with everything that the classifier does not pin left random: if the patterns could
// collide, some random instance would land in the wrong class.
const rest = (min: number, max: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ minLength: min, maxLength: max });
const arbStun = fc
  .tuple(fc.constantFrom(0x00, 0x01), rest(2, 2), rest(12, 200))
  .map(([b0, len, tail]) => concatBytes(new Uint8Array([b0, 0x01]), len, new Uint8Array(cookie), tail));
const arbDisco = rest(32, 300).map((tail) => concatBytes(discoPing.subarray(0, 6), tail));
const arbWg = fc.oneof(
  rest(144, 144).map((t) => concatBytes(new Uint8Array([1, 0, 0, 0]), t)),
  rest(88, 88).map((t) => concatBytes(new Uint8Array([2, 0, 0, 0]), t)),
  rest(60, 60).map((t) => concatBytes(new Uint8Array([3, 0, 0, 0]), t)),
  rest(28, 1500).map((t) => concatBytes(new Uint8Array([4, 0, 0, 0]), t)),
);
const arbGeneve = fc
  .tuple(fc.integer({ min: 0, max: 0x3f }), fc.integer({ min: 0, max: 3 }), rest(3, 3), fc.oneof(arbWg, arbDisco), fc.boolean())
  .map(([optLen, oc, vni, inner, wgProto]) => {
    const isDisco = inner[0] === 0x54;
    const proto = isDisco && !wgProto ? 0x7a11 : 0x7a12;
    return concatBytes(new Uint8Array([optLen, oc << 6, proto >> 8, proto & 0xff]), vni, new Uint8Array([0]), inner);
  });

describe('classifyDatagram properties', () => {
  it('never throws and always answers one of the five kinds', () => {
    fc.assert(
      fc.property(rest(0, 400), (b) => {
        expect(['stun', 'disco', 'geneve', 'wireguard', 'junk']).toContain(classifyDatagram(b));
      }),
      { numRuns: 2000 },
    );
  });

  it.each([
    ['stun', arbStun],
    ['disco', arbDisco],
    ['wireguard', arbWg],
    ['geneve', arbGeneve],
  ] as const)('classifies every random %s-shaped datagram as %s (no collisions)', (kind, arb) => {
    fc.assert(
      fc.property(arb, (b) => {
        expect(classifyDatagram(b)).toBe(kind);
      }),
      { numRuns: 1000 },
    );
  });
});
