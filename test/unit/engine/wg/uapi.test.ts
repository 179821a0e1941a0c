import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  encodeSetRequest,
  keyFromHex,
  keyFromNodeKey,
  keyToHex,
  nodeKeyFromKey,
  parseErrnoReply,
  parseGetReply,
  parseSetRequest,
  UAPI_GET_REQUEST,
  UapiEncodeError,
  type UapiSetRequest,
} from '../../../../src-main/engine/wg/uapi.ts';
import { fromHex } from '../../../../src-main/protocol/wire/hex.ts';

const K1 = 'a04faa5dc31265e52410861415c331100e3eb381450e18e61dfc809d72f1c670';
const K2 = '514de1762f28dfce8c374dc4f51e9b4975641adfec8c427b0d4c60fe178fd115';
const K3 = '85e0ac1200682c8a13f0c297eef30e26aa1bc3515d7e43ed897d8727fd39c6f0';

// A reply captured from wireguard-go v0.0.20220316 (natlab machine), plus a second peer with a handshake.
const GET_REPLY = [
  `private_key=${K1}`,
  'listen_port=51999',
  `public_key=${K2}`,
  'preshared_key=0000000000000000000000000000000000000000000000000000000000000000',
  'protocol_version=1',
  'endpoint=1.2.3.4:5',
  'last_handshake_time_sec=0',
  'last_handshake_time_nsec=0',
  'tx_bytes=0',
  'rx_bytes=0',
  'persistent_keepalive_interval=25',
  'allowed_ip=10.0.0.0/24',
  'allowed_ip=fd00::/64',
  `public_key=${K3}`,
  'protocol_version=1',
  'endpoint=[fd00::1]:7',
  'last_handshake_time_sec=1700000000',
  'last_handshake_time_nsec=123456789',
  'tx_bytes=1234',
  'rx_bytes=5678',
  'persistent_keepalive_interval=0',
  'errno=0',
  '',
  '',
].join('\n');

describe('keys', () => {
  it('hex and nodekey: texts carry the same 32 bytes', () => {
    const k = fromHex(K2);
    expect(keyToHex(k)).toBe(K2);
    expect(nodeKeyFromKey(k)).toBe(`nodekey:${K2}`);
    expect(keyFromNodeKey(`nodekey:${K2.toUpperCase()}`)).toEqual(k);
    expect(keyFromHex(K2)).toEqual(k);
  });

  it.each([
    ['too short', K2.slice(2)],
    ['not hex', `${K2.slice(2)}zz`],
    ['prefixed', `nodekey:${K2}`],
  ])('rejects %s hex', (_n, text) => {
    expect(keyFromHex(text)).toBeNull();
  });

  it('rejects a node key with another prefix', () => {
    expect(keyFromNodeKey(`discokey:${K2}`)).toBeNull();
  });

  it('refuses to encode a key that is not 32 bytes', () => {
    expect(() => keyToHex(new Uint8Array(31))).toThrow(UapiEncodeError);
  });
});

describe('encodeSetRequest', () => {
  const table: { name: string; req: UapiSetRequest; text: string }[] = [
    {
      name: 'full config',
      req: {
        privateKey: fromHex(K1),
        listenPort: 51820,
        replacePeers: true,
        peers: [
          {
            publicKey: fromHex(K2),
            endpoint: { ip: '192.168.1.3', port: 51820 },
            persistentKeepalive: 0,
            replaceAllowedIPs: true,
            allowedIPs: ['10.77.0.2/32', 'fd7a:115c:a1e0::2/128'],
          },
        ],
      },
      text: `set=1\nprivate_key=${K1}\nlisten_port=51820\nreplace_peers=true\npublic_key=${K2}\nendpoint=192.168.1.3:51820\npersistent_keepalive_interval=0\nreplace_allowed_ips=true\nallowed_ip=10.77.0.2/32\nallowed_ip=fd7a:115c:a1e0::2/128\n\n`,
    },
    {
      name: 'removal and an update-only IPv6 endpoint',
      req: {
        peers: [
          { publicKey: fromHex(K2), remove: true },
          { publicKey: fromHex(K3), updateOnly: true, endpoint: { ip: 'FD00:0::1', port: 7 } },
        ],
      },
      text: `set=1\npublic_key=${K2}\nremove=true\npublic_key=${K3}\nupdate_only=true\nendpoint=[fd00::1]:7\n\n`,
    },
    { name: 'empty', req: { peers: [] }, text: 'set=1\n\n' },
  ];
  it.each(table)('$name', ({ req, text }) => {
    expect(encodeSetRequest(req)).toBe(text);
  });

  it.each<[string, UapiSetRequest]>([
    ['an allowed IP with an injected line', { peers: [{ publicKey: fromHex(K2), allowedIPs: [`10.0.0.0/8\nprivate_key=${K1}`] }] }],
    ['a hostname endpoint', { peers: [{ publicKey: fromHex(K2), endpoint: { ip: 'example.com', port: 1 } }] }],
    ['port 0 endpoint', { peers: [{ publicKey: fromHex(K2), endpoint: { ip: '1.2.3.4', port: 0 } }] }],
    ['listen port 70000', { listenPort: 70000, peers: [] }],
    ['a 31-byte key', { privateKey: new Uint8Array(31), peers: [] }],
    ['remove with fields', { peers: [{ publicKey: fromHex(K2), remove: true, allowedIPs: ['10.0.0.1/32'] }] }],
  ])('refuses %s', (_n, req) => {
    expect(() => encodeSetRequest(req)).toThrow(UapiEncodeError);
  });

  it('the get request is get=1 and a blank line', () => {
    expect(UAPI_GET_REQUEST).toBe('get=1\n\n');
  });
});

describe('parseGetReply', () => {
  it('parses the device and every peer', () => {
    const r = parseGetReply(GET_REPLY);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.privateKey).toEqual(fromHex(K1));
    expect(r.value.listenPort).toBe(51999);
    expect(r.value.peers).toEqual([
      {
        publicKey: fromHex(K2),
        endpoint: { ip: '1.2.3.4', port: 5 },
        allowedIPs: ['10.0.0.0/24', 'fd00::/64'],
        rxBytes: 0,
        txBytes: 0,
        lastHandshakeUnixMs: null,
        persistentKeepalive: 25,
      },
      {
        publicKey: fromHex(K3),
        endpoint: { ip: 'fd00::1', port: 7 },
        allowedIPs: [],
        rxBytes: 5678,
        txBytes: 1234,
        lastHandshakeUnixMs: 1_700_000_000_123,
        persistentKeepalive: 0,
      },
    ]);
  });

  it('a device without key or peers', () => {
    expect(parseGetReply('listen_port=0\nerrno=0\n\n')).toEqual({ ok: true, value: { privateKey: null, listenPort: 0, fwmark: 0, peers: [] } });
  });

  it('ignores unknown keys (forward compatibility)', () => {
    const r = parseGetReply(`listen_port=1\nfuture_key=x\npublic_key=${K2}\nfuture_peer_key=y\nerrno=0\n\n`);
    expect(r.ok && r.value.peers.length).toBe(1);
  });

  it.each([
    ['a non-zero errno', 'errno=-22\n\n', { kind: 'errno', errno: -22 }],
    ['a truncated reply', `private_key=${K1}\nlisten_port=1\n`, { kind: 'malformed', reason: 'truncated reply' }],
    ['no errno', 'listen_port=1\n\n', { kind: 'malformed', reason: 'reply without errno=' }],
  ])('reports %s', (_n, text, error) => {
    expect(parseGetReply(text)).toEqual({ ok: false, error });
  });

  it.each([
    ['a bad key', 'public_key=xyz\nerrno=0\n\n'],
    ['a bad endpoint', `public_key=${K2}\nendpoint=nowhere\nerrno=0\n\n`],
    ['a bad allowed IP', `public_key=${K2}\nallowed_ip=10.0.0.0/33\nerrno=0\n\n`],
    ['a line without =', 'listen_port\nerrno=0\n\n'],
    ['data after errno', 'errno=0\nlisten_port=1\n\n'],
  ])('rejects %s', (_n, text) => {
    const r = parseGetReply(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.kind).toBe('malformed');
  });
});

describe('parseErrnoReply', () => {
  it('errno=0 is success, anything else an errno error', () => {
    expect(parseErrnoReply('errno=0\n\n')).toEqual({ ok: true, value: undefined });
    expect(parseErrnoReply('errno=-22\n\n')).toEqual({ ok: false, error: { kind: 'errno', errno: -22 } });
    expect(parseErrnoReply('errno=1\n\n')).toEqual({ ok: false, error: { kind: 'errno', errno: 1 } });
  });

  it.each(['', 'errno=x\n\n', 'listen_port=1\nerrno=0\n\n', 'nonsense\n\n'])('rejects %j', (text) => {
    const r = parseErrnoReply(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.kind).toBe('malformed');
  });
});

describe('parseSetRequest', () => {
  it.each([
    ['get=1', 'get=1\n\n', /starts with set=1/],
    ['an unknown device key', 'set=1\nprivate_key_file=/etc/shadow\n\n', /unknown device key/],
    ['an unknown peer key', `set=1\npublic_key=${K2}\npreshared_key=${K1}\n\n`, /unknown peer key/],
    ['two requests', 'set=1\n\nset=1\n\n', /exactly one/],
    ['no terminator', 'set=1\nlisten_port=1\n', /blank line/],
    ['remove with other fields', `set=1\npublic_key=${K2}\nremove=true\nallowed_ip=10.0.0.1/32\n\n`, /remove=true/],
    ['replace_peers=false', 'set=1\nreplace_peers=false\n\n', /must be true/],
    ['a bad allowed IP', `set=1\npublic_key=${K2}\nallowed_ip=10.0.0.1/40\n\n`, /bad allowed_ip/],
  ])('refuses %s', (_n, text, why) => {
    const r = parseSetRequest(text);
    expect(r.ok).toBe(false);
    if (!r.ok && r.error.kind === 'malformed') expect(r.error.reason).toMatch(why);
  });

  const key = fc.uint8Array({ minLength: 32, maxLength: 32 });
  const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((b) => b.join('.'));
  const prefix = fc.tuple(v4, fc.nat(32)).map(([ip, bits]) => `${ip}/${bits}`);
  const peer = fc.oneof(
    key.map((publicKey) => ({ publicKey, remove: true as const })),
    fc.record(
      {
        publicKey: key,
        updateOnly: fc.constant(true as const),
        endpoint: fc.record({ ip: v4, port: fc.integer({ min: 1, max: 65535 }) }),
        persistentKeepalive: fc.nat(65535),
        replaceAllowedIPs: fc.constant(true as const),
        allowedIPs: fc.array(prefix, { minLength: 1, maxLength: 4 }),
      },
      { requiredKeys: ['publicKey'] },
    ),
  );
  const request = fc.record(
    {
      privateKey: key,
      listenPort: fc.nat(65535),
      replacePeers: fc.constant(true as const),
      peers: fc.array(peer, { maxLength: 5 }),
    },
    { requiredKeys: ['peers'] },
  );

  it('round-trips every encodable request (encode -> parse -> encode)', () => {
    fc.assert(
      fc.property(request, (req) => {
        const text = encodeSetRequest(req);
        const back = parseSetRequest(text);
        expect(back.ok).toBe(true);
        if (back.ok) expect(encodeSetRequest(back.value)).toBe(text);
      }),
    );
  });
});
