import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  NatPmpResult,
  encodeNatPmpRequest,
  encodeNatPmpResponse,
  natpmpResultText,
  parseNatPmpRequest,
  parseNatPmpResponse,
  type NatPmpRequest,
  type NatPmpResponse,
} from '../../../../src-main/protocol/wire/natpmp.ts';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

// Hand-built from the RFC 6886 §3.2 / §3.3 layouts.
const requestCases: { name: string; hex: string; msg: NatPmpRequest }[] = [
  { name: 'external address request', hex: '00 00', msg: { kind: 'externalAddressRequest' } },
  {
    name: 'UDP map, port 41641, any external, 7200 s',
    hex: '00 01 0000  a2a9 0000  00001c20',
    msg: { kind: 'mapRequest', protocol: 'udp', internalPort: 41641, suggestedExternalPort: 0, lifetimeS: 7200 },
  },
  {
    name: 'TCP map, suggested 8080, 3600 s',
    hex: '00 02 0000  0050 1f90  00000e10',
    msg: { kind: 'mapRequest', protocol: 'tcp', internalPort: 80, suggestedExternalPort: 8080, lifetimeS: 3600 },
  },
  {
    name: 'UDP delete (lifetime 0, external 0)',
    hex: '00 01 0000  a2a9 0000  00000000',
    msg: { kind: 'mapRequest', protocol: 'udp', internalPort: 41641, suggestedExternalPort: 0, lifetimeS: 0 },
  },
];

const responseCases: { name: string; hex: string; msg: NatPmpResponse }[] = [
  {
    name: 'external address OK, epoch 4660, 203.0.113.7',
    hex: '00 80 0000  00001234  cb007107',
    msg: { kind: 'externalAddressResponse', resultCode: 0, epoch: 4660, externalIp: '203.0.113.7' },
  },
  {
    name: 'external address network failure (full length, zero address)',
    hex: '00 80 0003  00000005  00000000',
    msg: { kind: 'externalAddressResponse', resultCode: 3, epoch: 5, externalIp: '0.0.0.0' },
  },
  {
    name: 'UDP map OK 41641 -> 54321 for 7200 s',
    hex: '00 81 0000  00001234  a2a9 d431  00001c20',
    msg: { kind: 'mapResponse', protocol: 'udp', resultCode: 0, epoch: 4660, internalPort: 41641, externalPort: 54321, lifetimeS: 7200 },
  },
  {
    name: 'TCP map out of resources',
    hex: '00 82 0004  ffffffff  0050 0000  00000000',
    msg: { kind: 'mapResponse', protocol: 'tcp', resultCode: 4, epoch: 0xffffffff, internalPort: 80, externalPort: 0, lifetimeS: 0 },
  },
];

describe('NAT-PMP requests', () => {
  it.each(requestCases)('encodes and parses $name', ({ hex: h, msg }) => {
    expect(toHex(encodeNatPmpRequest(msg))).toBe(toHex(hex(h)));
    expect(parseNatPmpRequest(hex(h))).toEqual(msg);
  });

  it.each([
    ['empty', ''],
    ['one byte', '00'],
    ['version 1', '01 00'],
    ['PCP packet', '02 00 0000'],
    ['a response', '00 80 0000 00000000 00000000'],
    ['unknown opcode', '00 07'],
    ['truncated map request', '00 01 0000 a2a9 0000 0000'],
  ])('rejects %s', (_name, h) => {
    expect(parseNatPmpRequest(hex(h)).kind).toBe('malformed');
  });

  it('rejects out-of-range fields on encode', () => {
    expect(() => encodeNatPmpRequest({ kind: 'mapRequest', protocol: 'udp', internalPort: 70000, suggestedExternalPort: 0, lifetimeS: 1 })).toThrow(RangeError);
    expect(() => encodeNatPmpRequest({ kind: 'mapRequest', protocol: 'udp', internalPort: 1, suggestedExternalPort: 0, lifetimeS: -1 })).toThrow(RangeError);
  });
});

describe('NAT-PMP responses', () => {
  it.each(responseCases)('encodes and parses $name', ({ hex: h, msg }) => {
    expect(toHex(encodeNatPmpResponse(msg))).toBe(toHex(hex(h)));
    expect(parseNatPmpResponse(hex(h))).toEqual(msg);
  });

  it('accepts trailing bytes', () => {
    expect(parseNatPmpResponse(hex('00 80 0000  00001234  cb007107  deadbeef'))).toEqual(responseCases[0]!.msg);
  });

  it('accepts the short 8-byte error form (RFC 6886 §3.5 unsupported version)', () => {
    expect(parseNatPmpResponse(hex('00 80 0001 00000000'))).toEqual({ kind: 'externalAddressResponse', resultCode: 1, epoch: 0, externalIp: null });
    expect(parseNatPmpResponse(hex('00 81 0002 00000009'))).toEqual({
      kind: 'mapResponse',
      protocol: 'udp',
      resultCode: 2,
      epoch: 9,
      internalPort: 0,
      externalPort: 0,
      lifetimeS: 0,
    });
    expect(toHex(encodeNatPmpResponse({ kind: 'externalAddressResponse', resultCode: 1, epoch: 0, externalIp: null }))).toBe('0080000100000000');
  });

  it.each([
    ['empty', ''],
    ['7 bytes', '00 80 0000 000000'],
    ['version 2 (PCP)', '02 80 0000 00000000 00000000'],
    ['a request', '00 00 0000 00000000 00000000'],
    ['unknown opcode 0x83', '00 83 0000 00000000 00000000 00000000'],
    ['success external address cut to 8 bytes', '00 80 0000 00000001'],
    ['success map cut to 12 bytes', '00 81 0000 00000001 a2a9 d431'],
  ])('rejects %s', (_name, h) => {
    expect(parseNatPmpResponse(hex(h)).kind).toBe('malformed');
  });

  it('names result codes', () => {
    expect(natpmpResultText(NatPmpResult.NETWORK_FAILURE)).toMatch(/network failure/);
    expect(natpmpResultText(99)).toMatch(/unknown/);
  });
});

const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const ipv4 = fc.ipV4();
const proto = fc.constantFrom('udp' as const, 'tcp' as const);

const arbRequest: fc.Arbitrary<NatPmpRequest> = fc.oneof(
  fc.constant({ kind: 'externalAddressRequest' as const }),
  fc.record({ kind: fc.constant('mapRequest' as const), protocol: proto, internalPort: u16, suggestedExternalPort: u16, lifetimeS: u32 }),
);

const arbResponse: fc.Arbitrary<NatPmpResponse> = fc.oneof(
  fc.record({ kind: fc.constant('externalAddressResponse' as const), resultCode: u16, epoch: u32, externalIp: ipv4 }),
  fc.record({
    kind: fc.constant('mapResponse' as const),
    protocol: proto,
    resultCode: u16,
    epoch: u32,
    internalPort: u16,
    externalPort: u16,
    lifetimeS: u32,
  }),
);

/** Random bytes, plus random bytes behind a plausible NAT-PMP prefix so the deeper paths get exercised. */
const arbBytes = fc.oneof(
  fc.uint8Array({ maxLength: 40 }),
  fc
    .tuple(fc.constantFrom(0x00, 0x01, 0x02, 0x80, 0x81, 0x82, 0x83), fc.uint8Array({ maxLength: 24 }))
    .map(([op, rest]) => Uint8Array.from([0, op, ...rest])),
);

describe('NAT-PMP properties', () => {
  it('request round trip', () => {
    fc.assert(fc.property(arbRequest, (m) => {
      expect(parseNatPmpRequest(encodeNatPmpRequest(m))).toEqual(m);
    }));
  });

  it('response round trip', () => {
    fc.assert(fc.property(arbResponse, (m) => {
      expect(parseNatPmpResponse(encodeNatPmpResponse(m))).toEqual(m);
    }));
  });

  it('parsers never throw and return malformed or a known kind on random bytes', () => {
    fc.assert(
      fc.property(arbBytes, (b) => {
        const req = parseNatPmpRequest(b);
        expect(['malformed', 'externalAddressRequest', 'mapRequest']).toContain(req.kind);
        const resp = parseNatPmpResponse(b);
        expect(['malformed', 'externalAddressResponse', 'mapResponse']).toContain(resp.kind);
        if (resp.kind === 'malformed') expect(typeof resp.reason).toBe('string');
      }),
      { numRuns: 2000 },
    );
  });

  it('every byte of a parsed response is significant: re-encoding reproduces the parsed prefix', () => {
    fc.assert(
      fc.property(arbBytes, (b) => {
        const r = parseNatPmpResponse(b);
        if (r.kind === 'malformed') return;
        const short = b.length < (r.kind === 'externalAddressResponse' ? 12 : 16);
        const again = encodeNatPmpResponse(r, { short });
        expect(toHex(b.subarray(0, again.length))).toBe(toHex(again));
      }),
      { numRuns: 2000 },
    );
  });
});
