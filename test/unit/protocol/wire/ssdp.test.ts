import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  SSDP_ST_IGD1,
  buildMSearch,
  encodeMSearch,
  isInternetGatewayDevice,
  parseSsdpResponse,
  type SsdpResponse,
} from '../../../../src-main/protocol/wire/ssdp.ts';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

function mustParse(s: string): SsdpResponse {
  const r = parseSsdpResponse(enc(s));
  if (r.kind !== 'response') throw new Error(`expected response, got ${r.reason}`);
  return r;
}

const MINIUPNPD_IGD =
  'HTTP/1.1 200 OK\r\n' +
  'CACHE-CONTROL: max-age=120\r\n' +
  'ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n' +
  'USN: uuid:3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n' +
  'EXT:\r\n' +
  'SERVER: Linux/5.10 UPnP/1.1 MiniUPnPd/2.3.3\r\n' +
  'LOCATION: http://192.168.1.1:5000/rootDesc.xml\r\n' +
  'OPT: "http://schemas.upnp.org/upnp/1/0/"; ns=01\r\n' +
  '01-NLS: 1\r\n' +
  'BOOTID.UPNP.ORG: 1\r\n' +
  'CONFIGID.UPNP.ORG: 1337\r\n' +
  '\r\n';

describe('M-SEARCH', () => {
  it('builds the spec §8.1 request by default', () => {
    expect(buildMSearch()).toBe('M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: ssdp:all\r\nMAN: "ssdp:discover"\r\nMX: 2\r\n\r\n');
  });

  it('builds an IGD search and encodes it as ASCII bytes', () => {
    const text = buildMSearch({ st: SSDP_ST_IGD1 });
    expect(text).toContain('\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n');
    expect(Buffer.from(encodeMSearch({ st: SSDP_ST_IGD1 })).toString('latin1')).toBe(text);
  });

  it('refuses header injection and silly MX', () => {
    expect(() => buildMSearch({ st: 'ssdp:all\r\nX: y' })).toThrow(RangeError);
    expect(() => buildMSearch({ host: 'a\nb' })).toThrow(RangeError);
    expect(() => buildMSearch({ mx: 0 })).toThrow(RangeError);
  });
});

describe('SSDP response parsing', () => {
  it('parses a miniupnpd IGD answer', () => {
    const r = mustParse(MINIUPNPD_IGD);
    expect(r.statusCode).toBe(200);
    expect(r.location).toBe('http://192.168.1.1:5000/rootDesc.xml');
    expect(r.st).toBe(SSDP_ST_IGD1);
    expect(r.server).toBe('Linux/5.10 UPnP/1.1 MiniUPnPd/2.3.3');
    expect(r.headers['ext']).toBe('');
    expect(r.headers['01-nls']).toBe('1');
    expect(r.headers['cache-control']).toBe('max-age=120');
    expect(isInternetGatewayDevice(r)).toBe(true);
  });

  it.each([
    ['IGD:2 in ST', 'HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:2\r\nLocation: http://10.0.0.1/d.xml\r\n\r\n', true],
    ['IGD only in USN, bare LF, lower-case names', 'HTTP/1.1 200 OK\nst: uuid:x\nusn: uuid:x::urn:schemas-upnp-org:device:InternetGatewayDevice:1\n\n', true],
    ['root device only', 'HTTP/1.1 200 OK\r\nST: upnp:rootdevice\r\nUSN: uuid:x::upnp:rootdevice\r\n\r\n', false],
    ['a media renderer', 'HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:MediaRenderer:1\r\n\r\n', false],
    ['IGD with a non-200 status', 'HTTP/1.1 404 Not Found\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n', false],
    ['IGD word only in SERVER', 'HTTP/1.1 200 OK\r\nSERVER: x:InternetGatewayDevice:y\r\n\r\n', false],
  ])('%s -> IGD %s', (_name, text, igd) => {
    expect(isInternetGatewayDevice(mustParse(text))).toBe(igd);
  });

  it('keeps the first of repeated headers, trims values, ignores a body', () => {
    const r = mustParse('HTTP/1.1 200 OK\r\nLocation:   http://a/  \r\nLOCATION: http://b/\r\n\r\nbody: here\r\n');
    expect(r.location).toBe('http://a/');
    expect(r.headers['body']).toBeUndefined();
  });

  it('accepts a status line without a reason phrase and no terminating blank line', () => {
    expect(mustParse('HTTP/1.1 200\r\nST: x').st).toBe('x');
  });

  it('is safe against prototype-named headers', () => {
    const r = mustParse('HTTP/1.1 200 OK\r\n__proto__: polluted\r\nconstructor: x\r\n\r\n');
    expect(r.headers['__proto__']).toBe('polluted');
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(r.location).toBeNull();
  });

  it.each([
    ['empty', ''],
    ['an M-SEARCH request', buildMSearch()],
    ['a NOTIFY', 'NOTIFY * HTTP/1.1\r\nNT: upnp:rootdevice\r\n\r\n'],
    ['a header without colon', 'HTTP/1.1 200 OK\r\nLOCATION http://x/\r\n\r\n'],
    ['a header name with spaces', 'HTTP/1.1 200 OK\r\nLO CATION: http://x/\r\n\r\n'],
    ['binary junk', '\u0000\u0001\u0002'],
    ['HTTP/2', 'HTTP/2 200 OK\r\n\r\n'],
  ])('rejects %s', (_name, text) => {
    expect(parseSsdpResponse(enc(text)).kind).toBe('malformed');
  });

  it('rejects oversized datagrams', () => {
    expect(parseSsdpResponse(enc('HTTP/1.1 200 OK\r\nX: ' + 'a'.repeat(9000) + '\r\n\r\n')).kind).toBe('malformed');
  });
});

const headerName = fc.stringMatching(/^[A-Za-z][A-Za-z0-9.-]{0,15}$/);
const headerValue = fc.stringMatching(/^[!-~]([ -~]{0,30}[!-~])?$/);

describe('SSDP properties', () => {
  it('never throws on random bytes or random text', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.string({ maxLength: 200 }).map((s) => enc('HTTP/1.1 200 OK\r\n' + s))), (b) => {
        const r = parseSsdpResponse(b);
        expect(['malformed', 'response']).toContain(r.kind);
        if (r.kind === 'response') expect(typeof isInternetGatewayDevice(r)).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });

  it('recovers every generated header (first occurrence, lower-cased)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(headerName, headerValue), { maxLength: 12 }), fc.boolean(), (hs, crlf) => {
        const nl = crlf ? '\r\n' : '\n';
        const text = 'HTTP/1.1 200 OK' + nl + hs.map(([k, v]) => `${k}: ${v}${nl}`).join('') + nl;
        const r = mustParse(text);
        const expected = new Map<string, string>();
        for (const [k, v] of hs) if (!expected.has(k.toLowerCase())) expected.set(k.toLowerCase(), v);
        expect(new Map(Object.entries(r.headers))).toEqual(expected);
      }),
    );
  });
});
