import { describe, expect, it } from 'vitest';
import { diffConfig, type WgConfig } from '../../../../src-main/engine/wg/config.ts';
import { UapiEncodeError } from '../../../../src-main/engine/wg/uapi.ts';
import { keyFromBase64, keyToBase64, parseWgDump, wgSetCommand } from '../../../../src-main/engine/wg/wg-tools.ts';

const key = (b: number): Uint8Array => new Uint8Array(32).fill(b);
const B = (b: number): string => Buffer.from(key(b)).toString('base64');

describe('wg-tools keys', () => {
  it('round-trips base64 keys and refuses anything that is not 32 bytes', () => {
    expect(keyToBase64(key(1))).toBe('AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=');
    expect(keyFromBase64(keyToBase64(key(0xab)))).toEqual(key(0xab));
    expect(keyFromBase64('AQEB')).toBeNull();
    expect(keyFromBase64('AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQF=')).toBeNull(); // non-zero padding bits
    expect(() => keyToBase64(new Uint8Array(31))).toThrow(UapiEncodeError);
  });
});

describe('wgSetCommand: the engine diff as one wg set', () => {
  const a: WgConfig = {
    privateKey: key(9),
    listenPort: 41641,
    peers: [
      { publicKey: key(1), endpoint: { ip: '198.51.100.7', port: 41641 }, allowedIPs: ['100.64.0.2/32', 'fd7a:115c:a1e0::2/128'] },
      { publicKey: key(2), endpoint: null, allowedIPs: ['100.64.0.3/32'], persistentKeepalive: 25 },
    ],
  };

  it('a fresh device: key in a file (never in argv), port, every peer with its full allowed-IPs list', () => {
    const cmd = wgSetCommand('weft0', diffConfig(null, a)!, [], '/run/k/key');
    expect(cmd).toEqual({
      argv: [
        'set', 'weft0', 'listen-port', '41641', 'private-key', '/run/k/key',
        'peer', B(1), 'endpoint', '198.51.100.7:41641', 'persistent-keepalive', 'off', 'allowed-ips', '100.64.0.2/32,fd7a:115c:a1e0::2/128',
        'peer', B(2), 'persistent-keepalive', '25', 'allowed-ips', '100.64.0.3/32',
      ],
      keyFileText: `${B(9)}\n`,
    });
    expect(cmd!.argv.join(' ')).not.toContain(B(9));
  });

  it('replace_peers removes every peer the device has before adding the named ones, as UAPI does', () => {
    const cmd = wgSetCommand('weft0', diffConfig(null, a)!, [key(1), key(7)], '/run/k/key');
    const i = cmd!.argv.indexOf('peer');
    expect(cmd!.argv.slice(i, i + 8)).toEqual(['peer', B(1), 'remove', 'peer', B(7), 'remove', 'peer', B(1)]);
    expect(cmd!.argv.filter((x) => x === 'remove')).toHaveLength(2);
  });

  it('a change: only what changed, removals, IPv6 endpoints bracketed; nothing to do is null', () => {
    const b: WgConfig = {
      ...a,
      peers: [{ ...a.peers[0]!, endpoint: { ip: '2001:db8::1', port: 5 } }, { publicKey: key(3), endpoint: null, allowedIPs: [] }],
    };
    expect(wgSetCommand('weft0', diffConfig(a, b)!)).toEqual({
      argv: ['set', 'weft0', 'peer', B(2), 'remove', 'peer', B(1), 'endpoint', '[2001:db8::1]:5', 'peer', B(3), 'persistent-keepalive', 'off', 'allowed-ips', ''],
      keyFileText: null,
    });
    expect(diffConfig(a, a)).toBeNull();
    expect(wgSetCommand('weft0', { peers: [] })).toBeNull();
  });

  it('keepalive 0 is off, fwmark 0 is off; allowed IPs without replace are refused (Debian 12 wg cannot add to the list)', () => {
    expect(wgSetCommand('weft0', { fwmark: 0, peers: [{ publicKey: key(1), replaceAllowedIPs: true, allowedIPs: ['10.0.0.0/8', '10.1.0.0/16'], persistentKeepalive: 0 }] })!.argv).toEqual([
      'set', 'weft0', 'fwmark', 'off', 'peer', B(1), 'persistent-keepalive', 'off', 'allowed-ips', '10.0.0.0/8,10.1.0.0/16',
    ]);
    expect(() => wgSetCommand('weft0', { peers: [{ publicKey: key(1), allowedIPs: ['10.0.0.0/8'] }] })).toThrow(UapiEncodeError);
  });

  it('refuses what cannot be expressed: a bad prefix, a bad port, fields beside remove', () => {
    expect(() => wgSetCommand('weft0', { peers: [{ publicKey: key(1), allowedIPs: ['10.0.0.0/33'] }] })).toThrow(UapiEncodeError);
    expect(() => wgSetCommand('weft0', { listenPort: 70000, peers: [] })).toThrow(UapiEncodeError);
    expect(() => wgSetCommand('weft0', { peers: [{ publicKey: key(1), remove: true, endpoint: { ip: '1.2.3.4', port: 1 } }] })).toThrow(UapiEncodeError);
    expect(() => wgSetCommand('weft0', { peers: [{ publicKey: key(1), endpoint: { ip: 'host.example', port: 1 } }] })).toThrow(UapiEncodeError);
  });
});

describe('parseWgDump', () => {
  const dump = [
    [B(9), B(8), '41641', 'off'].join('\t'),
    [B(1), '(none)', '198.51.100.7:41641', '100.64.0.2/32,fd7a:115c:a1e0::2/128', '1764680000', '1234', '5678', 'off'].join('\t'),
    [B(2), '(none)', '(none)', '(none)', '0', '0', '0', '25'].join('\t'),
    [B(3), '(none)', '[2001:db8::1]:5', '100.64.0.4/32', '0', '0', '0', 'off'].join('\t'),
    '',
  ].join('\n');

  it('reads the device and its peers (handshake seconds to ms, 0 = never)', () => {
    const r = parseWgDump(dump);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.privateKey).toEqual(key(9));
    expect(r.value.listenPort).toBe(41641);
    expect(r.value.fwmark).toBe(0);
    expect(r.value.peers).toEqual([
      { publicKey: key(1), endpoint: { ip: '198.51.100.7', port: 41641 }, allowedIPs: ['100.64.0.2/32', 'fd7a:115c:a1e0::2/128'], rxBytes: 1234, txBytes: 5678, lastHandshakeUnixMs: 1764680000_000, persistentKeepalive: 0 },
      { publicKey: key(2), endpoint: null, allowedIPs: [], rxBytes: 0, txBytes: 0, lastHandshakeUnixMs: null, persistentKeepalive: 25 },
      { publicKey: key(3), endpoint: { ip: '2001:db8::1', port: 5 }, allowedIPs: ['100.64.0.4/32'], rxBytes: 0, txBytes: 0, lastHandshakeUnixMs: null, persistentKeepalive: 0 },
    ]);
    const hex = parseWgDump([B(9), B(8), '0', '0x1000'].join('\t'));
    expect(hex.ok && hex.value.fwmark).toBe(0x1000);
    // A link-local peer's zone, and a u64 counter past 2^53, do not spoil the dump.
    const odd = parseWgDump([dump.split('\n')[0], [B(1), '(none)', '[fe80::1%eth0]:51820', '(none)', '0', '18446744073709551615', '0', 'off'].join('\t')].join('\n'));
    expect(odd.ok && odd.value.peers[0]!.endpoint).toEqual({ ip: 'fe80::1', port: 51820 });
    expect(odd.ok && odd.value.peers[0]!.rxBytes).toBeGreaterThan(1e19);
  });

  it('says malformed (never throws) for truncated or altered lines', () => {
    const lines = dump.split('\n');
    const bad = [
      '',
      'garbage',
      [B(9), B(8), 'x', 'off'].join('\t'),
      [lines[0], lines[1]!.split('\t').slice(0, 7).join('\t')].join('\n'),
      [lines[0], lines[1]!.replace('198.51.100.7:41641', 'nowhere')].join('\n'),
      [lines[0], lines[1]!.replace('100.64.0.2/32', '100.64.0.2/40')].join('\n'),
      [lines[0], lines[1]!.replace('1234', '-1')].join('\n'),
      [lines[0], lines[1]!.replace(B(1), 'AQEB')].join('\n'),
    ];
    for (const t of bad) {
      const r = parseWgDump(t);
      expect(r.ok, JSON.stringify(t).slice(0, 80)).toBe(false);
      if (!r.ok) expect(r.error.kind).toBe('malformed');
    }
  });
});
