import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sameAddr } from '../../../../src-main/protocol/wire/addr.ts';
import { fromHex, toHex } from '../../../../src-main/protocol/wire/hex.ts';
import {
  Attr,
  StunType,
  addressAttr,
  attr,
  changeRequestAttr,
  encodeStun,
  encodeTailscaleRequest,
  encodeTailscaleResponse,
  errorCodeAttr,
  isStun,
  longTermKey,
  mappedAddress,
  parseBindingResponse,
  parseStun,
  parseTailscaleBindingRequest,
  shortTermKey,
  softwareAttr,
  verifyFingerprint,
  verifyMessageIntegrity,
  type StunMessage,
} from '../../../../src-main/protocol/wire/stun.ts';
import { loadVectors, vec } from '../../../support/vectors.ts';

const V = loadVectors('stun.txt');
const txid = fromHex(vec(V, 'txid'));

function mustParse(b: Uint8Array): StunMessage {
  const m = parseStun(b);
  if (m.kind !== 'stun') throw new Error(`unexpected malformed: ${m.reason}`);
  return m;
}

describe('Tailscale STUN vectors', () => {
  it('builds the 40-byte tailnode binding request byte for byte', () => {
    const req = encodeTailscaleRequest(txid);
    expect(req.length).toBe(40);
    expect(toHex(req)).toBe(vec(V, 'request'));
    expect(toHex(req.subarray(36))).toBe(vec(V, 'request.fingerprint'));
    const parsed = parseTailscaleBindingRequest(req);
    expect(parsed.kind).toBe('request');
    if (parsed.kind === 'request') expect(toHex(parsed.txid)).toBe(vec(V, 'txid'));
  });

  it.each([
    ['response_ipv4', { ip: '203.0.113.45', port: 51820 }],
    ['response_ipv6', { ip: '2001:db8:1234:5678:9abc:def0:fedc:ba98', port: 41641 }],
  ])('builds and parses %s', (name, addr) => {
    expect(toHex(encodeTailscaleResponse(txid, addr))).toBe(vec(V, name));
    const r = parseBindingResponse(fromHex(vec(V, name)));
    expect(r.kind).toBe('response');
    if (r.kind === 'response') {
      expect(r.mapped).toEqual(addr);
      expect(toHex(r.txid)).toBe(vec(V, 'txid'));
    }
  });

  const samples = ['rfc5769_2_1_request', 'rfc5769_2_2_response_ipv4', 'rfc5769_2_3_response_ipv6', 'rfc5769_2_4_request_longterm'];
  it.each(samples)('gives Tailscale verdicts on %s', (name) => {
    const b = fromHex(vec(V, name));
    expect(isStun(b) ? '01' : '00').toBe(vec(V, `${name}.is_stun`));
    const resp = parseBindingResponse(b);
    expect(resp.kind === 'response' ? '01' : '00').toBe(vec(V, `${name}.parse_response_ok`));
    const req = parseTailscaleBindingRequest(b);
    expect(req.kind === 'request' ? '01' : '00').toBe(vec(V, `${name}.parse_binding_request_ok`));
    if (resp.kind === 'response') {
      expect(toHex(resp.txid)).toBe(vec(V, `${name}.parsed_txid`));
      const ipHex = vec(V, `${name}.parsed_ip`);
      const expectedIp = ipHex.length === 8 ? '192.0.2.1' : '2001:db8:1234:5678:11:2233:4455:6677';
      expect(resp.mapped.ip).toBe(expectedIp);
      expect(resp.mapped.port).toBe(parseInt(vec(V, `${name}.parsed_port`), 16));
    }
  });
});

describe('RFC 5769 sample messages, rebuilt byte for byte', () => {
  const rfcTx = fromHex('b7e7a701bc34d686fa87dfae');
  const shortKey = shortTermKey('VOkJxbRl1RmTxUk/WvJxBt');

  it('2.1 sample request (short-term MI + FINGERPRINT)', () => {
    const msg = encodeStun(
      StunType.BindingRequest,
      rfcTx,
      [attr.software('STUN test client'), attr.raw(0x0024, fromHex('6e0001ff')), attr.raw(0x8029, fromHex('932ff9b151263b36')), attr.username('evtj:h6vY')],
      { integrityKey: shortKey, fingerprint: true, padByte: 0x20 },
    );
    expect(toHex(msg)).toBe(vec(V, 'rfc5769_2_1_request'));
    const m = mustParse(msg);
    expect(verifyMessageIntegrity(m, shortKey)).toBe(true);
    expect(verifyFingerprint(m)).toBe(true);
    expect(softwareAttr(m)).toBe('STUN test client');
  });

  it.each([
    ['rfc5769_2_2_response_ipv4', { ip: '192.0.2.1', port: 32853 }],
    ['rfc5769_2_3_response_ipv6', { ip: '2001:db8:1234:5678:11:2233:4455:6677', port: 32853 }],
  ])('%s (XOR-MAPPED-ADDRESS + MI + FINGERPRINT)', (name, addr) => {
    const msg = encodeStun(StunType.BindingSuccess, rfcTx, [attr.software('test vector'), attr.xorMappedAddress(addr, rfcTx)], {
      integrityKey: shortKey,
      fingerprint: true,
      padByte: 0x20,
    });
    expect(toHex(msg)).toBe(vec(V, name));
    const m = mustParse(msg);
    expect(mappedAddress(m)).toEqual(addr);
    expect(verifyMessageIntegrity(m, shortKey)).toBe(true);
    expect(verifyMessageIntegrity(m, shortTermKey('wrong'))).toBe(false);
    expect(verifyFingerprint(m)).toBe(true);
  });

  it('2.4 sample request with long-term authentication', () => {
    const user = '\u30DE\u30C8\u30EA\u30C3\u30AF\u30B9';
    const key = longTermKey(user, 'example.org', 'TheMatrIX');
    const msg = encodeStun(
      StunType.BindingRequest,
      fromHex('78ad3433c6ad72c029da412e'),
      [attr.username(user), attr.raw(Attr.Nonce, new TextEncoder().encode('f//499k954d6OL34oL9FSTvy64sA')), attr.raw(Attr.Realm, new TextEncoder().encode('example.org'))],
      { integrityKey: key },
    );
    expect(toHex(msg)).toBe(vec(V, 'rfc5769_2_4_request_longterm'));
    const m = mustParse(msg);
    expect(verifyMessageIntegrity(m, key)).toBe(true);
    expect(verifyFingerprint(m)).toBe(false); // this sample has no FINGERPRINT
  });

  it('detects a corrupted FINGERPRINT and MESSAGE-INTEGRITY', () => {
    const b = fromHex(vec(V, 'rfc5769_2_2_response_ipv4'));
    b[30]! ^= 0x01; // flip a bit inside the mapped address
    const m = mustParse(b);
    expect(verifyFingerprint(m)).toBe(false);
    expect(verifyMessageIntegrity(m, shortKey)).toBe(false);
  });
});

describe('RFC 5780 and error attributes', () => {
  it('round-trips CHANGE-REQUEST, OTHER-ADDRESS, RESPONSE-ORIGIN, MAPPED-ADDRESS and ERROR-CODE', () => {
    const msg = encodeStun(
      StunType.BindingSuccess,
      txid,
      [
        attr.xorMappedAddress({ ip: '198.51.100.2', port: 40000 }, txid),
        attr.mappedAddress({ ip: '198.51.100.2', port: 40000 }),
        attr.responseOrigin({ ip: '203.0.113.11', port: 3479 }),
        attr.otherAddress({ ip: '203.0.113.11', port: 3479 }),
        attr.changeRequest(true, false),
        attr.errorCode(420, 'Unknown Attribute'),
      ],
      { fingerprint: true },
    );
    const m = mustParse(msg);
    expect(mappedAddress(m)).toEqual({ ip: '198.51.100.2', port: 40000 });
    expect(addressAttr(m, Attr.MappedAddress)).toEqual({ ip: '198.51.100.2', port: 40000 });
    expect(addressAttr(m, Attr.ResponseOrigin)).toEqual({ ip: '203.0.113.11', port: 3479 });
    expect(addressAttr(m, Attr.OtherAddress)).toEqual({ ip: '203.0.113.11', port: 3479 });
    expect(changeRequestAttr(m)).toEqual({ changeIp: true, changePort: false });
    expect(errorCodeAttr(m)).toEqual({ code: 420, reason: 'Unknown Attribute' });
    expect(verifyFingerprint(m)).toBe(true);
  });

  it('falls back to MAPPED-ADDRESS when there is no XOR-MAPPED-ADDRESS', () => {
    const m = mustParse(encodeStun(StunType.BindingSuccess, txid, [attr.mappedAddress({ ip: '192.0.2.9', port: 9 })]));
    expect(mappedAddress(m)).toEqual({ ip: '192.0.2.9', port: 9 });
  });

  it('a Tailscale request carrying CHANGE-REQUEST is still accepted by the Tailscale rules', () => {
    const req = encodeTailscaleRequest(txid, [attr.changeRequest(true, true)]);
    expect(parseTailscaleBindingRequest(req).kind).toBe('request');
  });
});

describe('malformed input', () => {
  it.each([
    ['empty', ''],
    ['short header', '000100002112a442'],
    ['top bits set', 'c00100002112a442a0a1a2a3a4a5a6a7a8a9aaab'],
    ['no cookie', '0001000000000000a0a1a2a3a4a5a6a7a8a9aaab'],
    ['length not multiple of 4', '000100032112a442a0a1a2a3a4a5a6a7a8a9aaab000000'],
    ['length past datagram', '000100082112a442a0a1a2a3a4a5a6a7a8a9aaab0000'],
    ['attribute overruns', '000100082112a442a0a1a2a3a4a5a6a7a8a9aaab80220010aaaaaaaa'],
  ])('%s → malformed', (_n, hex) => {
    const r = parseStun(fromHex(hex));
    expect(r.kind).toBe('malformed');
  });

  it('accepts trailing bytes past the header length', () => {
    const b = new Uint8Array([...fromHex(vec(V, 'response_ipv4')), 1, 2, 3]);
    const r = parseBindingResponse(b);
    expect(r.kind).toBe('response');
  });

  it('never throws on random bytes and on mutated valid messages', () => {
    const valid = fromHex(vec(V, 'rfc5769_2_1_request'));
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        const r = parseStun(b);
        if (r.kind === 'stun') mappedAddress(r);
        parseBindingResponse(b);
        parseTailscaleBindingRequest(b);
      }),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 }), (i, v) => {
        const b = valid.slice();
        b[i] = v;
        const r = parseStun(b);
        if (r.kind === 'stun') {
          verifyFingerprint(r);
          verifyMessageIntegrity(r, shortTermKey('x'));
          mappedAddress(r);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('round-trips arbitrary mapped addresses, software strings and attribute sets', () => {
    const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join('.'));
    const ipv6 = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }).filter((g) => !(g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff)).map((g) => g.map((x) => x.toString(16)).join(':'));
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 12, maxLength: 12 }), fc.oneof(ipv4, ipv6), fc.nat(65535), fc.string({ maxLength: 40 }), fc.boolean(), (tx, ip, port, sw, fp) => {
        const msg = encodeStun(StunType.BindingSuccess, tx, [attr.software(sw), attr.xorMappedAddress({ ip, port }, tx)], { fingerprint: fp });
        const m = mustParse(msg);
        const got = mappedAddress(m)!;
        expect(got.port).toBe(port);
        expect(sameAddr(got, { ip, port })).toBe(true);
        expect(softwareAttr(m)).toBe(sw);
        expect(verifyFingerprint(m)).toBe(fp);
        expect(toHex(m.txid)).toBe(toHex(tx));
      }),
      { numRuns: 500 },
    );
  });
});
