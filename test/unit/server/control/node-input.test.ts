/** node-input.ts: the endpoint and Hostinfo caps applied before a node's report is stored. */
import { describe, expect, it } from 'vitest';
import { MAX_ENDPOINTS, MAX_HOSTINFO_BYTES } from '../../../../src-main/server/control/constants.ts';
import { cleanEndpoints, cleanHostinfo } from '../../../../src-main/server/control/node-input.ts';

describe('cleanEndpoints', () => {
  it('keeps valid IPv4 and IPv6 endpoints in order, canonical and once each', () => {
    expect(cleanEndpoints(['192.0.2.1:41641', '[2001:db8:0::1]:41641', '192.0.2.1:41641', '[2001:db8::1]:41641', '10.0.0.1:1'])).toEqual({
      endpoints: ['192.0.2.1:41641', '[2001:db8::1]:41641', '10.0.0.1:1'],
      dropped: 2,
    });
  });

  it.each([['no port', '192.0.2.1'], ['port 0', '192.0.2.1:0'], ['port too big', '192.0.2.1:70000'], ['a name', 'example.com:1'], ['junk', '<script>'], ['bad IPv4', '300.1.1.1:1'], ['unbracketed IPv6', '2001:db8::1:1'], ['too long', `192.0.2.1:1${' '.repeat(80)}`]])(
    'drops %s',
    (_n, e) => {
      expect(cleanEndpoints([e])).toEqual({ endpoints: [], dropped: 1 });
    },
  );

  it(`caps the list at ${MAX_ENDPOINTS}`, () => {
    const many = Array.from({ length: 100 }, (_, i) => `198.51.100.${i}:${i + 1}`);
    const r = cleanEndpoints(many);
    expect(r.endpoints).toEqual(many.slice(0, MAX_ENDPOINTS));
    expect(r.dropped).toBe(100 - MAX_ENDPOINTS);
  });
});

describe('cleanHostinfo', () => {
  it('stores a normal Hostinfo as is', () => {
    const h = { Hostname: 'laptop', OS: 'linux', Services: [{ Proto: 'tcp', Port: 22 }] };
    expect(cleanHostinfo(h)).toEqual({ kind: 'ok', json: JSON.stringify(h), trimmed: false });
  });

  it('drops the Services list when it alone makes the Hostinfo too big', () => {
    const services = Array.from({ length: 5000 }, (_, i) => ({ Proto: 'tcp', Port: i, Description: 'x' }));
    expect(cleanHostinfo({ Hostname: 'srv', Services: services })).toEqual({ kind: 'ok', json: JSON.stringify({ Hostname: 'srv' }), trimmed: true });
  });

  it('refuses a Hostinfo that is too big without its Services too', () => {
    const r = cleanHostinfo({ Hostname: 'x', DeviceModel: 'y'.repeat(MAX_HOSTINFO_BYTES) });
    expect(r.kind).toBe('refused');
    expect(r.kind === 'refused' && r.reason).toMatch(/over the 16384-byte limit/);
  });

  it('counts bytes, not characters', () => {
    const multi = '€'.repeat(Math.ceil(MAX_HOSTINFO_BYTES / 3)); // 3 bytes each in UTF-8
    expect(cleanHostinfo({ Hostname: multi }).kind).toBe('refused');
  });
});
