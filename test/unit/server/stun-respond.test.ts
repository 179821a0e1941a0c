import { describe, expect, it } from 'vitest';
import { fromHex, toHex } from '../../../src-main/protocol/wire/hex.ts';
import {
  Attr,
  StunType,
  addressAttr,
  attr,
  encodeStun,
  encodeTailscaleRequest,
  errorCodeAttr,
  mappedAddress,
  parseStun,
  verifyFingerprint,
  type StunMessage,
} from '../../../src-main/protocol/wire/stun.ts';
import { respond, type StunServerAddrs } from '../../../src-main/server/stun/respond.ts';
import { loadVectors, vec } from '../../support/vectors.ts';

const V = loadVectors('stun.txt');
const tx = fromHex(vec(V, 'txid'));
const client = { ip: '203.0.113.45', port: 51820 };
const primaryOnly: StunServerAddrs = { primary: { ip: '203.0.113.10', port: 3478 } };
const both: StunServerAddrs = { primary: { ip: '203.0.113.10', port: 3478 }, alt: { ip: '203.0.113.11', port: 3479 } };
const P = { altIp: false, altPort: false };

const parse = (b: Uint8Array): StunMessage => {
  const m = parseStun(b);
  if (m.kind !== 'stun') throw new Error(m.reason);
  return m;
};

describe('STUN responder', () => {
  it("answers Tailscale's request with Tailscale's exact response bytes", () => {
    const r = respond(primaryOnly, P, fromHex(vec(V, 'request')), client);
    expect(r?.via).toEqual(P);
    expect(toHex(r!.data)).toBe(vec(V, 'response_ipv4'));
  });

  it('adds RESPONSE-ORIGIN and OTHER-ADDRESS to Tailscale-form answers when it has an alternate address', () => {
    const r = respond(both, P, encodeTailscaleRequest(tx), client)!;
    const m = parse(r.data);
    expect(mappedAddress(m)).toEqual(client);
    expect(addressAttr(m, Attr.ResponseOrigin)).toEqual(both.primary);
    expect(addressAttr(m, Attr.OtherAddress)).toEqual(both.alt);
  });

  it.each([
    [{ changeIp: true, changePort: true }, { altIp: true, altPort: true }, { ip: '203.0.113.11', port: 3479 }],
    [{ changeIp: false, changePort: true }, { altIp: false, altPort: true }, { ip: '203.0.113.10', port: 3479 }],
    [{ changeIp: true, changePort: false }, { altIp: true, altPort: false }, { ip: '203.0.113.11', port: 3478 }],
  ])('CHANGE-REQUEST %o answers from the changed socket', (change, via, origin) => {
    const r = respond(both, P, encodeTailscaleRequest(tx, [attr.changeRequest(change.changeIp, change.changePort)]), client)!;
    expect(r.via).toEqual(via);
    const m = parse(r.data);
    expect(addressAttr(m, Attr.ResponseOrigin)).toEqual(origin);
    expect(addressAttr(m, Attr.OtherAddress)).toEqual(both.alt);
    expect(verifyFingerprint(m)).toBe(true);
  });

  it('OTHER-ADDRESS is relative to the socket the request arrived on', () => {
    const r = respond(both, { altIp: true, altPort: false }, encodeTailscaleRequest(tx), client)!;
    expect(addressAttr(parse(r.data), Attr.OtherAddress)).toEqual({ ip: '203.0.113.10', port: 3479 });
  });

  it('answers plain RFC 5389 clients with XOR-MAPPED, MAPPED, SOFTWARE and FINGERPRINT', () => {
    const r = respond(primaryOnly, P, encodeStun(StunType.BindingRequest, tx, []), client)!;
    const m = parse(r.data);
    expect(m.type).toBe(StunType.BindingSuccess);
    expect(mappedAddress(m)).toEqual(client);
    expect(addressAttr(m, Attr.MappedAddress)).toEqual(client);
    expect(verifyFingerprint(m)).toBe(true);
  });

  it('refuses CHANGE-REQUEST with 420 when it has no alternate address', () => {
    const r = respond(primaryOnly, P, encodeStun(StunType.BindingRequest, tx, [attr.changeRequest(true, true)]), client)!;
    const m = parse(r.data);
    expect(m.type).toBe(StunType.BindingError);
    expect(errorCodeAttr(m)?.code).toBe(420);
    expect(toHex(m.attrs.find((a) => a.type === Attr.UnknownAttributes)!.value)).toBe('0003');
  });

  it('answers the RFC 5769 ICE request (PRIORITY, USERNAME, MESSAGE-INTEGRITY)', () => {
    const r = respond(primaryOnly, P, fromHex(vec(V, 'rfc5769_2_1_request')), client)!;
    expect(parse(r.data).type).toBe(StunType.BindingSuccess);
  });

  it.each([
    ['a response', vec(V, 'response_ipv4')],
    ['a bad fingerprint', vec(V, 'request').slice(0, -2) + '00'],
    ['garbage', 'deadbeef'],
    ['an indication', toHex(encodeStun(StunType.BindingIndication, tx, []))],
  ])('stays silent on %s', (_n, hex) => {
    expect(respond(both, P, fromHex(hex), client)).toBeNull();
  });
});
