import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  PCP_PROTO_UDP,
  PcpResult,
  encodePcpRequest,
  encodePcpResponse,
  parsePcpRequest,
  parsePcpResponse,
  pcpAddrBytes,
  pcpAddrText,
  pcpResultText,
  type PcpRequest,
  type PcpResponse,
} from '../../../../src-main/protocol/wire/pcp.ts';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

const NONCE_HEX = '0102030405060708090a0b0c';
const NONCE = hex(NONCE_HEX);
const V4MAPPED_192_168_1_10 = '00000000 00000000 0000ffff c0a8010a';
const V4MAPPED_ANY = '00000000 00000000 0000ffff 00000000';
const V4MAPPED_203_0_113_7 = '00000000 00000000 0000ffff cb007107';
const ZERO96 = '00000000 00000000 00000000';

// Hand-built from the RFC 6887 §7.1 / §7.2 / §11.1 layouts.
const requestCases: { name: string; hex: string; msg: PcpRequest }[] = [
  {
    name: 'ANNOUNCE from 192.168.1.10',
    hex: `02 00 0000  00000000  ${V4MAPPED_192_168_1_10}`,
    msg: { kind: 'announceRequest', clientIp: '192.168.1.10' },
  },
  {
    name: 'MAP UDP 41641, 7200 s, no suggestion',
    hex: `02 01 0000  00001c20  ${V4MAPPED_192_168_1_10}  ${NONCE_HEX}  11 000000  a2a9 0000  ${V4MAPPED_ANY}`,
    msg: {
      kind: 'mapRequest',
      clientIp: '192.168.1.10',
      lifetimeS: 7200,
      nonce: NONCE,
      protocol: PCP_PROTO_UDP,
      internalPort: 41641,
      suggestedExternalPort: 0,
      suggestedExternalIp: '0.0.0.0',
    },
  },
  {
    name: 'MAP delete suggesting 203.0.113.7:54321',
    hex: `02 01 0000  00000000  ${V4MAPPED_192_168_1_10}  ${NONCE_HEX}  11 000000  a2a9 d431  ${V4MAPPED_203_0_113_7}`,
    msg: {
      kind: 'mapRequest',
      clientIp: '192.168.1.10',
      lifetimeS: 0,
      nonce: NONCE,
      protocol: PCP_PROTO_UDP,
      internalPort: 41641,
      suggestedExternalPort: 54321,
      suggestedExternalIp: '203.0.113.7',
    },
  },
  {
    name: 'ANNOUNCE from an IPv6 client',
    hex: `02 00 0000  00000000  20010db8 00000000 00000000 00000001`,
    msg: { kind: 'announceRequest', clientIp: '2001:db8::1' },
  },
];

const responseCases: { name: string; hex: string; msg: PcpResponse }[] = [
  {
    name: 'ANNOUNCE success, epoch 1234',
    hex: `02 80 00 00  00000000  000004d2  ${ZERO96}`,
    msg: { kind: 'announceResponse', resultCode: 0, lifetimeS: 0, epoch: 1234 },
  },
  {
    name: 'ANNOUNCE ADDRESS_MISMATCH',
    hex: `02 80 00 0c  00000000  00000001  ${ZERO96}`,
    msg: { kind: 'announceResponse', resultCode: 12, lifetimeS: 0, epoch: 1 },
  },
  {
    name: 'MAP success 41641 -> 203.0.113.7:54321 for 7200 s',
    hex: `02 81 00 00  00001c20  000004d2  ${ZERO96}  ${NONCE_HEX}  11 000000  a2a9 d431  ${V4MAPPED_203_0_113_7}`,
    msg: {
      kind: 'mapResponse',
      resultCode: 0,
      lifetimeS: 7200,
      epoch: 1234,
      nonce: NONCE,
      protocol: 17,
      internalPort: 41641,
      externalPort: 54321,
      externalIp: '203.0.113.7',
    },
  },
  {
    name: 'MAP NOT_AUTHORIZED, header only',
    hex: `02 81 00 02  0000001e  000004d2  ${ZERO96}`,
    msg: { kind: 'errorResponse', opcode: 1, resultCode: 2, lifetimeS: 30, epoch: 1234 },
  },
];

describe('PCP requests', () => {
  it.each(requestCases)('encodes and parses $name', ({ hex: h, msg }) => {
    expect(toHex(encodePcpRequest(msg))).toBe(toHex(hex(h)));
    expect(parsePcpRequest(hex(h))).toEqual(msg);
  });

  it('ANNOUNCE is 24 bytes and MAP 60', () => {
    expect(encodePcpRequest(requestCases[0]!.msg)).toHaveLength(24);
    expect(encodePcpRequest(requestCases[1]!.msg)).toHaveLength(60);
  });

  it.each([
    ['empty', ''],
    ['23 bytes', `02 00 0000 00000000 ${V4MAPPED_ANY}`.slice(0, -2)],
    ['version 0', `00 00 0000 00000000 ${V4MAPPED_ANY}`],
    ['a response', `02 80 0000 00000000 ${V4MAPPED_ANY}`],
    ['PEER opcode (unsupported here)', `02 02 0000 00000000 ${V4MAPPED_ANY}`],
    ['MAP without body', `02 01 0000 00001c20 ${V4MAPPED_ANY}`],
  ])('rejects %s', (_name, h) => {
    expect(parsePcpRequest(hex(h)).kind).toBe('malformed');
  });

  it('rejects bad fields on encode', () => {
    const base = requestCases[1]!.msg;
    expect(() => encodePcpRequest({ ...base, nonce: new Uint8Array(11) } as PcpRequest)).toThrow(RangeError);
    expect(() => encodePcpRequest({ ...base, clientIp: 'nope' })).toThrow(RangeError);
    expect(() => encodePcpRequest({ ...base, internalPort: 65536 } as PcpRequest)).toThrow(RangeError);
  });
});

describe('PCP responses', () => {
  it.each(responseCases)('encodes and parses $name', ({ hex: h, msg }) => {
    expect(toHex(encodePcpResponse(msg))).toBe(toHex(hex(h)));
    expect(parsePcpResponse(hex(h))).toEqual(msg);
  });

  it('ignores reserved bytes and trailing options', () => {
    const h = `02 81 ff 00  00001c20  000004d2  ffffffff ffffffff ffffffff  ${NONCE_HEX}  11 ffffff  a2a9 d431  ${V4MAPPED_203_0_113_7}  01 00 0004 00000000`;
    expect(parsePcpResponse(hex(h))).toEqual(responseCases[2]!.msg);
  });

  it('reports a non-mapped assigned address as IPv6 text', () => {
    const h = `02 81 00 00  00001c20  00000001  ${ZERO96}  ${NONCE_HEX}  11 000000  a2a9 d431  20010db8 00000000 00000000 00000002`;
    const r = parsePcpResponse(hex(h));
    expect(r.kind === 'mapResponse' && r.externalIp).toBe('2001:db8::2');
  });

  it.each([
    ['empty', ''],
    ['short header', '02 80 00 00 00000000'],
    ['version 0 (NAT-PMP)', `00 80 00 00 00000000 00000000 ${ZERO96}`],
    ['version 1', `01 80 00 00 00000000 00000000 ${ZERO96}`],
    ['a request', `02 00 00 00 00000000 00000000 ${ZERO96}`],
    ['successful MAP without body', `02 81 00 00 00001c20 00000000 ${ZERO96}`],
    ['successful unknown opcode', `02 85 00 00 00000000 00000000 ${ZERO96}`],
  ])('rejects %s', (_name, h) => {
    expect(parsePcpResponse(hex(h)).kind).toBe('malformed');
  });

  it('names result codes', () => {
    expect(pcpResultText(PcpResult.ADDRESS_MISMATCH)).toMatch(/ADDRESS_MISMATCH/);
    expect(pcpResultText(200)).toMatch(/unknown/);
  });

  it('maps IPv4 addresses into ::ffff:0:0/96 and back', () => {
    expect(toHex(pcpAddrBytes('192.168.1.10')!)).toBe(toHex(hex(V4MAPPED_192_168_1_10)));
    expect(pcpAddrText(hex(V4MAPPED_ANY))).toBe('0.0.0.0');
    expect(pcpAddrBytes('bogus')).toBeNull();
  });
});

const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
/** An address as the parser would print it: any 16 bytes, formatted by the codec itself. */
const addr = fc.oneof(fc.ipV4(), fc.uint8Array({ minLength: 16, maxLength: 16 }).map(pcpAddrText));
const nonce = fc.uint8Array({ minLength: 12, maxLength: 12 });

const arbRequest: fc.Arbitrary<PcpRequest> = fc.oneof(
  fc.record({ kind: fc.constant('announceRequest' as const), clientIp: addr }),
  fc.record({
    kind: fc.constant('mapRequest' as const),
    clientIp: addr,
    lifetimeS: u32,
    nonce,
    protocol: u8,
    internalPort: u16,
    suggestedExternalPort: u16,
    suggestedExternalIp: addr,
  }),
);

const arbResponse: fc.Arbitrary<PcpResponse> = fc.oneof(
  fc.record({ kind: fc.constant('announceResponse' as const), resultCode: u8, lifetimeS: u32, epoch: u32 }),
  fc.record({
    kind: fc.constant('mapResponse' as const),
    resultCode: u8,
    lifetimeS: u32,
    epoch: u32,
    nonce,
    protocol: u8,
    internalPort: u16,
    externalPort: u16,
    externalIp: addr,
  }),
  fc.record({
    kind: fc.constant('errorResponse' as const),
    opcode: fc.integer({ min: 1, max: 0x7f }),
    resultCode: fc.integer({ min: 1, max: 0xff }),
    lifetimeS: u32,
    epoch: u32,
  }),
);

const arbBytes = fc.oneof(
  fc.uint8Array({ maxLength: 80 }),
  fc
    .tuple(fc.constantFrom(0x00, 0x01, 0x02, 0x80, 0x81, 0x82), fc.uint8Array({ minLength: 20, maxLength: 70 }))
    .map(([op, rest]) => Uint8Array.from([2, op, ...rest])),
);

describe('PCP properties', () => {
  it('request round trip', () => {
    fc.assert(
      fc.property(arbRequest, (m) => {
        expect(parsePcpRequest(encodePcpRequest(m))).toEqual(m);
      }),
    );
  });

  it('response round trip', () => {
    fc.assert(
      fc.property(arbResponse, (m) => {
        expect(parsePcpResponse(encodePcpResponse(m))).toEqual(m);
      }),
    );
  });

  it('parsers never throw on random bytes, and what they accept re-encodes to the same message', () => {
    fc.assert(
      fc.property(arbBytes, (b) => {
        const req = parsePcpRequest(b);
        expect(['malformed', 'announceRequest', 'mapRequest']).toContain(req.kind);
        if (req.kind !== 'malformed') expect(parsePcpRequest(encodePcpRequest(req))).toEqual(req);
        const resp = parsePcpResponse(b);
        expect(['malformed', 'announceResponse', 'mapResponse', 'errorResponse']).toContain(resp.kind);
        if (resp.kind !== 'malformed') expect(parsePcpResponse(encodePcpResponse(resp))).toEqual(resp);
      }),
      { numRuns: 2000 },
    );
  });
});
