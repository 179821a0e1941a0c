import { describe, expect, it } from 'vitest';
import { canonicalAllowedIPs, cloneConfig, diffConfig, forgetPeerEndpoint, type WgConfig, type WgPeer } from '../../../../src-main/engine/wg/config.ts';
import { encodeSetRequest, UapiEncodeError } from '../../../../src-main/engine/wg/uapi.ts';
import { FakeWgInterface } from '../../../../src-main/engine/wg/fake.ts';

const key = (b: number): Uint8Array => new Uint8Array(32).fill(b);
const hex = (b: number): string => b.toString(16).padStart(2, '0').repeat(32);

const P1: WgPeer = { publicKey: key(1), endpoint: { ip: '192.168.1.3', port: 51820 }, allowedIPs: ['100.64.0.2/32'] };
const P2: WgPeer = { publicKey: key(2), endpoint: null, allowedIPs: ['100.64.0.3/32', 'fd7a:115c:a1e0::3/128'], persistentKeepalive: 25 };
const BASE: WgConfig = { privateKey: key(9), listenPort: 41641, peers: [P1, P2] };

const text = (prev: WgConfig | null, next: WgConfig): string | null => {
  const d = diffConfig(prev, next);
  return d && encodeSetRequest(d);
};

describe('diffConfig', () => {
  it('a fresh device gets the whole config with replace_peers', () => {
    expect(text(null, BASE)).toBe(
      [
        'set=1',
        `private_key=${hex(9)}`,
        'listen_port=41641',
        'replace_peers=true',
        `public_key=${hex(1)}`,
        'endpoint=192.168.1.3:51820',
        'persistent_keepalive_interval=0',
        'replace_allowed_ips=true',
        'allowed_ip=100.64.0.2/32',
        `public_key=${hex(2)}`,
        'persistent_keepalive_interval=25',
        'replace_allowed_ips=true',
        'allowed_ip=100.64.0.3/32',
        'allowed_ip=fd7a:115c:a1e0::3/128',
        '',
        '',
      ].join('\n'),
    );
  });

  it('the same config (peers reordered, allowed IPs reordered and spelled differently) is no change', () => {
    const same: WgConfig = {
      ...BASE,
      peers: [{ ...P2, allowedIPs: ['FD7A:115C:A1E0:0::3/128', '100.64.0.3/32'] }, { ...P1, persistentKeepalive: 0 }],
    };
    expect(diffConfig(BASE, same)).toBeNull();
    expect(diffConfig(BASE, cloneConfig(BASE))).toBeNull();
  });

  it('only the changed peer, with only its changed fields', () => {
    const next: WgConfig = { ...BASE, peers: [{ ...P1, endpoint: { ip: '198.51.100.2', port: 1234 } }, P2] };
    expect(text(BASE, next)).toBe(`set=1\npublic_key=${hex(1)}\nupdate_only=true\nendpoint=198.51.100.2:1234\n\n`);
  });

  it('after the device roamed (forgetPeerEndpoint), the same wanted endpoint is sent again, and nothing else', () => {
    const applied = cloneConfig(BASE);
    expect(diffConfig(applied, BASE)).toBeNull();
    forgetPeerEndpoint(applied, key(1));
    expect(text(applied, BASE)).toBe(`set=1\npublic_key=${hex(1)}\nupdate_only=true\nendpoint=192.168.1.3:51820\n\n`);
    // An unknown key, or no config yet: nothing to forget.
    forgetPeerEndpoint(applied, key(7));
    forgetPeerEndpoint(null, key(1));
    expect(BASE.peers[0]!.endpoint).toEqual({ ip: '192.168.1.3', port: 51820 });
  });

  it('allowed IPs are replaced only when the set changed', () => {
    const next: WgConfig = { ...BASE, peers: [P1, { ...P2, allowedIPs: ['100.64.0.3/32', '10.0.0.0/24'] }] };
    expect(text(BASE, next)).toBe(`set=1\npublic_key=${hex(2)}\nupdate_only=true\nreplace_allowed_ips=true\nallowed_ip=10.0.0.0/24\nallowed_ip=100.64.0.3/32\n\n`);
  });

  it('keepalive changes are sent, absent meaning 0', () => {
    const next: WgConfig = { ...BASE, peers: [{ ...P1, persistentKeepalive: 5 }, { ...P2, persistentKeepalive: undefined }] };
    expect(text(BASE, next)).toBe(
      `set=1\npublic_key=${hex(1)}\nupdate_only=true\npersistent_keepalive_interval=5\npublic_key=${hex(2)}\nupdate_only=true\npersistent_keepalive_interval=0\n\n`,
    );
  });

  it('removed peers get remove=true, new peers their full config', () => {
    const P3: WgPeer = { publicKey: key(3), endpoint: { ip: '10.0.0.3', port: 1 }, allowedIPs: ['100.64.0.4/32'] };
    const next: WgConfig = { ...BASE, peers: [P1, P3] };
    expect(text(BASE, next)).toBe(
      `set=1\npublic_key=${hex(2)}\nremove=true\npublic_key=${hex(3)}\nendpoint=10.0.0.3:1\npersistent_keepalive_interval=0\nreplace_allowed_ips=true\nallowed_ip=100.64.0.4/32\n\n`,
    );
  });

  it('device fields: private key and listen port', () => {
    expect(text(BASE, { ...BASE, privateKey: key(8), listenPort: 0 })).toBe(`set=1\nprivate_key=${hex(8)}\nlisten_port=0\n\n`);
  });

  it('an endpoint that goes away removes and re-adds the peer (UAPI cannot clear an endpoint)', () => {
    const next: WgConfig = { ...BASE, peers: [{ ...P1, endpoint: null }, P2] };
    expect(text(BASE, next)).toBe(
      `set=1\npublic_key=${hex(1)}\nremove=true\npublic_key=${hex(1)}\npersistent_keepalive_interval=0\nreplace_allowed_ips=true\nallowed_ip=100.64.0.2/32\n\n`,
    );
  });

  it('an endpoint that appears is set on the existing peer', () => {
    const next: WgConfig = { ...BASE, peers: [P1, { ...P2, endpoint: { ip: '10.1.1.1', port: 9 } }] };
    expect(text(BASE, next)).toBe(`set=1\npublic_key=${hex(2)}\nupdate_only=true\nendpoint=10.1.1.1:9\n\n`);
  });

  it('refuses duplicate peers and malformed allowed IPs', () => {
    expect(() => diffConfig(null, { ...BASE, peers: [P1, P1] })).toThrow(UapiEncodeError);
    expect(() => diffConfig(BASE, { ...BASE, peers: [{ ...P1, allowedIPs: ['10.0.0.0/8\nx=1'] }] })).toThrow(UapiEncodeError);
  });
});

describe('canonicalAllowedIPs and cloneConfig', () => {
  it('canonical, sorted, de-duplicated', () => {
    expect(canonicalAllowedIPs(['10.0.0.1/32', 'FD00::1/128', '10.0.0.1/32'])).toEqual(['10.0.0.1/32', 'fd00::1/128']);
  });

  it('a clone does not share mutable state', () => {
    const c = cloneConfig(BASE);
    c.peers[0]!.allowedIPs.push('1.1.1.1/32');
    c.privateKey[0] = 0;
    expect(BASE.peers[0]!.allowedIPs).toEqual(['100.64.0.2/32']);
    expect(BASE.privateKey[0]).toBe(9);
  });
});

describe('FakeWgInterface', () => {
  it('records only changing sets, and refuses a default route', async () => {
    const f = new FakeWgInterface('weft0');
    await f.up({ addresses: ['100.64.0.1/32'] });
    await f.set(BASE);
    await f.set(cloneConfig(BASE));
    await f.set({ ...BASE, listenPort: 1 });
    expect(f.diffs.map((d) => d.listenPort)).toEqual([41641, 1]);
    await f.routes(['100.64.0.2/32', '100.64.0.0/10']);
    expect(f.installedRoutes).toEqual(['100.64.0.2/32', '100.64.0.0/10']);
    await expect(f.routes(['0.0.0.0/0'])).rejects.toThrow(/default route/);
    await f.close();
    await expect(f.stats()).rejects.toThrow(/closed/);
  });
});
