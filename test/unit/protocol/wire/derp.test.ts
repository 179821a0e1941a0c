import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { keyPairFromPrivate } from '../../../../src-main/protocol/crypto/keys.ts';
import { seal } from '../../../../src-main/protocol/crypto/nacl-box.ts';
import { bytesToIp, isV4Mapped } from '../../../../src-main/protocol/wire/addr.ts';
import {
  DerpFrameReader,
  FrameType,
  MAGIC,
  MAX_CLIENT_INFO_LEN,
  MAX_PACKET_SIZE,
  MAX_RECV_FRAME_LEN,
  PeerGoneReason,
  PeerPresentFlag,
  SEND_PACKET_OVERHEAD,
  encodeClientInfoJson,
  encodeFrame,
  encodeFrameHeader,
  encodeServerInfoJson,
  frameTypeName,
  goJsonString,
  openClientInfo,
  openServerInfo,
  parseClientInfoJson,
  parseFrame,
  parseServerInfoJson,
  sealClientInfo,
  sealServerInfo,
  writeSendPacketFrame,
  type ClientInfoFrame,
  type DerpFrame,
  type Malformed,
  type RawFrame,
  type ServerInfoFrame,
} from '../../../../src-main/protocol/wire/derp.ts';
import { openDiscoPacket } from '../../../../src-main/protocol/wire/disco.ts';
import { bytesEqual, concatBytes, fromHex, toHex } from '../../../../src-main/protocol/wire/hex.ts';
import { loadVectors, vec } from '../../../support/vectors.ts';

const V = loadVectors('derp.txt');
/** Every vector name the tests read; the last test checks that none in derp.txt went unused. */
const used = new Set<string>();
const v = (name: string): string => {
  used.add(name);
  return vec(V, name);
};
const b = (name: string): Uint8Array => fromHex(v(name));

const clientPriv = b('client_priv');
const clientPub = b('client_pub');
const serverPriv = b('server_priv');
const serverPub = b('server_pub');
const peerPub = b('peer_pub');
const pingData = b('ping_data');
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Cuts a byte stream into raw frames, failing on a malformed result. */
function readAll(bytes: Uint8Array, chunkSizes?: number[]): RawFrame[] {
  const r = new DerpFrameReader();
  const out: (RawFrame | Malformed)[] = [];
  if (!chunkSizes) out.push(...r.push(bytes));
  else {
    let off = 0;
    for (const n of chunkSizes) {
      out.push(...r.push(bytes.subarray(off, off + n)));
      off += n;
    }
    out.push(...r.push(bytes.subarray(off)));
  }
  expect(r.buffered).toBe(0);
  return out.map((x) => {
    if (x.kind !== 'frame') throw new Error(`unexpected ${x.reason}`);
    return x;
  });
}

function mustParse(type: number, body: Uint8Array): DerpFrame {
  const f = parseFrame(type, body);
  if (f.kind === 'malformed') throw new Error(`malformed: ${f.reason}`);
  return f;
}

function expectMalformed(r: object, why?: RegExp): void {
  expect('kind' in r && r.kind).toBe('malformed');
  if (why && 'reason' in r) expect(r.reason).toMatch(why);
}

describe('keys (vectors)', () => {
  it('derives the client and server public keys from their private keys', () => {
    expect(toHex(keyPairFromPrivate(clientPriv).pub)).toBe(v('client_pub'));
    expect(toHex(keyPairFromPrivate(serverPriv).pub)).toBe(v('server_pub'));
    expect(peerPub.length).toBe(32);
  });
});

/** Frames whose bytes do not depend on a box: each must encode byte for byte and parse back to itself. */
const PLAIN: { name: string; frame: () => DerpFrame; type: number }[] = [
  { name: 'server_key_frame', type: FrameType.ServerKey, frame: () => ({ kind: 'server-key', serverPub }) },
  { name: 'send_packet_frame', type: FrameType.SendPacket, frame: () => ({ kind: 'send-packet', dst: peerPub, packet: b('send_packet.payload_bytes') }) },
  {
    name: 'send_packet_disco_frame',
    type: FrameType.SendPacket,
    frame: () => ({ kind: 'send-packet', dst: peerPub, packet: b('send_packet_disco.payload_bytes') }),
  },
  { name: 'recv_packet_frame', type: FrameType.RecvPacket, frame: () => ({ kind: 'recv-packet', src: peerPub, packet: b('recv_packet.payload_bytes') }) },
  { name: 'keep_alive_frame', type: FrameType.KeepAlive, frame: () => ({ kind: 'keep-alive' }) },
  { name: 'client_ping_frame', type: FrameType.Ping, frame: () => ({ kind: 'ping', data: pingData }) },
  { name: 'client_pong_frame', type: FrameType.Pong, frame: () => ({ kind: 'pong', data: pingData }) },
  { name: 'server_ping_frame', type: FrameType.Ping, frame: () => ({ kind: 'ping', data: pingData }) },
  { name: 'server_pong_frame', type: FrameType.Pong, frame: () => ({ kind: 'pong', data: pingData }) },
  { name: 'note_preferred_frame', type: FrameType.NotePreferred, frame: () => ({ kind: 'note-preferred', preferred: true }) },
  { name: 'peer_gone_frame', type: FrameType.PeerGone, frame: () => ({ kind: 'peer-gone', peer: peerPub, reason: PeerGoneReason.NotHere }) },
];

describe.each(PLAIN)('vector $name', ({ name, frame, type }) => {
  it('encodes byte for byte (header ‖ payload)', () => {
    const wire = encodeFrame(frame());
    expect(toHex(wire)).toBe(v(name));
    expect(toHex(wire.subarray(0, 5))).toBe(v(`${name}.header`));
    expect(toHex(encodeFrameHeader(type, wire.length - 5))).toBe(v(`${name}.header`));
    const payload = V.has(`${name}.payload`) ? v(`${name}.payload`) : '';
    expect(toHex(wire.subarray(5))).toBe(payload);
    expect(v(`${name}.header`) + payload).toBe(v(name));
  });

  it('reads and parses back to the same frame', () => {
    const raws = readAll(b(name));
    expect(raws).toHaveLength(1);
    expect(raws[0]!.type).toBe(type);
    expect(mustParse(raws[0]!.type, raws[0]!.body)).toEqual(frame());
  });
});

describe('SendPacket carrying disco (vector)', () => {
  it('carries disco.txt callmemaybe.wire unchanged, and that packet opens as CallMeMaybe', () => {
    const D = loadVectors('disco.txt');
    expect(v('send_packet_disco.payload_bytes')).toBe(vec(D, 'callmemaybe.wire'));
    const f = mustParse(FrameType.SendPacket, b('send_packet_disco_frame').subarray(5));
    if (f.kind !== 'send-packet') throw new Error(f.kind);
    const shared = fromHex(vec(D, 'disco_ab_box_key'));
    const r = openDiscoPacket(f.packet, () => shared);
    expect(r.kind === 'disco' && r.msg.kind).toBe('call-me-maybe');
  });
});

describe('ClientInfo (vectors)', () => {
  const CASES = [
    { name: 'client_info', canAckPings: true },
    { name: 'client_info_noack', canAckPings: false },
  ];

  describe.each(CASES)('$name', ({ name, canAckPings }) => {
    const info = { version: 2, canAckPings };
    const nonce = (): Uint8Array => b(`${name}.nonce`);

    it('encodes the JSON byte for byte, in Go key order', () => {
      expect(toHex(encodeClientInfoJson(info))).toBe(v(`${name}.json`));
      expect(new TextDecoder().decode(b(`${name}.json`))).toBe(`{"version":2,"CanAckPings":${canAckPings}}`);
    });

    it('seals the frame byte for byte (client pub ‖ nonce ‖ box)', () => {
      const frame = sealClientInfo({ clientPriv, serverPub, info, nonce: nonce() });
      expect(toHex(frame.clientPub)).toBe(v('client_pub'));
      expect(toHex(frame.sealed.subarray(0, 24))).toBe(v(`${name}.nonce`));
      const wire = encodeFrame(frame);
      expect(toHex(wire)).toBe(v(`${name}_frame`));
      expect(toHex(wire.subarray(0, 5))).toBe(v(`${name}_frame.header`));
      expect(toHex(wire.subarray(5))).toBe(v(`${name}_frame.payload`));
      expect(v(`${name}_frame.header`) + v(`${name}_frame.payload`)).toBe(v(`${name}_frame`));
      // The box is NaCl crypto_box of the JSON: check with the one-shot primitive.
      expect(toHex(frame.sealed)).toBe(toHex(seal(serverPub, clientPriv, b(`${name}.json`), nonce())));
    });

    it('is read, parsed and opened by the server', () => {
      const raws = readAll(b(`${name}_frame`));
      expect(raws).toHaveLength(1);
      const f = mustParse(raws[0]!.type, raws[0]!.body);
      expect(f.kind).toBe('client-info');
      const opened = openClientInfo({ serverPriv, frame: f as ClientInfoFrame });
      expect(opened).toEqual({
        kind: 'opened',
        clientPub,
        info: { version: 2, canAckPings, meshKey: null, isProber: false, appName: '' },
      });
    });

    it('rejects every 1-bit change of the frame body (client key, nonce, box)', () => {
      const body = b(`${name}_frame`).subarray(5);
      for (let bit = 0; bit < body.length * 8; bit++) {
        const t = body.slice();
        t[bit >> 3]! ^= 1 << (bit & 7);
        const f = mustParse(FrameType.ClientInfo, t) as ClientInfoFrame;
        const r = openClientInfo({ serverPriv, frame: f });
        if (bit === 31 * 8 + 7) {
          // X25519 ignores the top bit of a public key (RFC 7748), in Go as here: the box still opens, and the
          // result names the key as sent. Not a forgery: only the holder of the private key can produce it.
          expect(r).toEqual({ kind: 'opened', clientPub: t.subarray(0, 32), info: expect.anything() });
          continue;
        }
        expectMalformed(r, /box did not open/);
      }
    });

    it('does not open with the wrong server key, nor when truncated', () => {
      const f = mustParse(FrameType.ClientInfo, b(`${name}_frame`).subarray(5)) as ClientInfoFrame;
      expectMalformed(openClientInfo({ serverPriv: clientPriv, frame: f }), /box/);
      expectMalformed(openClientInfo({ serverPriv, frame: { ...f, sealed: f.sealed.subarray(0, f.sealed.length - 1) } }), /box/);
      expectMalformed(openClientInfo({ serverPriv, frame: { ...f, sealed: f.sealed.subarray(0, 39) } }), /box/);
      expectMalformed(openClientInfo({ serverPriv, frame: { ...f, clientPub: new Uint8Array(32) } }), /box/);
      expectMalformed(openClientInfo({ serverPriv: new Uint8Array(31), frame: f }), /key length/);
    });
  });
});

describe('ServerInfo (vectors)', () => {
  const info = { version: 2, tokenBucketBytesPerSecond: 0, tokenBucketBytesBurst: 0 };

  it('encodes the JSON byte for byte', () => {
    expect(toHex(encodeServerInfoJson(info))).toBe(v('server_info.json'));
    expect(new TextDecoder().decode(b('server_info.json'))).toBe('{"version":2}');
  });

  it('seals the frame byte for byte (nonce ‖ box)', () => {
    const frame = sealServerInfo({ serverPriv, clientPub, info, nonce: b('server_info.nonce') });
    const wire = encodeFrame(frame);
    expect(toHex(wire)).toBe(v('server_info_frame'));
    expect(toHex(wire.subarray(0, 5))).toBe(v('server_info_frame.header'));
    expect(toHex(wire.subarray(5))).toBe(v('server_info_frame.payload'));
    expect(v('server_info_frame.header') + v('server_info_frame.payload')).toBe(v('server_info_frame'));
    expect(toHex(frame.sealed.subarray(0, 24))).toBe(v('server_info.nonce'));
  });

  it('is read, parsed and opened by the client', () => {
    const raws = readAll(b('server_info_frame'));
    const f = mustParse(raws[0]!.type, raws[0]!.body);
    expect(f.kind).toBe('server-info');
    expect(openServerInfo({ clientPriv, serverPub, frame: f as ServerInfoFrame })).toEqual({ kind: 'opened', info });
  });

  it('rejects every 1-bit change of the body, the wrong keys, and truncation', () => {
    const body = b('server_info_frame').subarray(5);
    for (let bit = 0; bit < body.length * 8; bit++) {
      const t = body.slice();
      t[bit >> 3]! ^= 1 << (bit & 7);
      const f = mustParse(FrameType.ServerInfo, t) as ServerInfoFrame;
      expectMalformed(openServerInfo({ clientPriv, serverPub, frame: f }), /box did not open/);
    }
    const f = mustParse(FrameType.ServerInfo, body) as ServerInfoFrame;
    expectMalformed(openServerInfo({ clientPriv, serverPub: peerPub, frame: f }), /box/);
    expectMalformed(openServerInfo({ clientPriv: serverPriv, serverPub, frame: f }), /box/);
    expectMalformed(openServerInfo({ clientPriv, serverPub, frame: { kind: 'server-info', sealed: body.subarray(0, 24) } }), /box/);
    expectMalformed(openServerInfo({ clientPriv, serverPub: new Uint8Array(33), frame: f }), /key length/);
  });
});

describe('server → client stream (vector)', () => {
  const expected = (): DerpFrame[] => [
    { kind: 'server-key', serverPub },
    { kind: 'server-info', sealed: b('server_info_frame.payload') },
    { kind: 'recv-packet', src: peerPub, packet: b('recv_packet.payload_bytes') },
    { kind: 'keep-alive' },
    { kind: 'ping', data: pingData },
    { kind: 'pong', data: pingData },
    { kind: 'peer-gone', peer: peerPub, reason: PeerGoneReason.NotHere },
  ];

  it('is the concatenation of the server frames', () => {
    const parts = ['server_key_frame', 'server_info_frame', 'recv_packet_frame', 'keep_alive_frame', 'server_ping_frame', 'server_pong_frame', 'peer_gone_frame'];
    expect(parts.map((p) => v(p)).join('')).toBe(v('server_to_client_stream'));
    expect(toHex(concatBytes(...expected().map(encodeFrame)))).toBe(v('server_to_client_stream'));
  });

  it('reads to the same frames whole and one byte at a time', () => {
    const stream = b('server_to_client_stream');
    for (const chunks of [undefined, Array.from({ length: stream.length }, () => 1)]) {
      const frames = readAll(stream, chunks).map((r) => mustParse(r.type, r.body));
      expect(frames).toEqual(expected());
    }
    const frames = readAll(stream).map((r) => mustParse(r.type, r.body));
    expect(openServerInfo({ clientPriv, serverPub, frame: frames[1] as ServerInfoFrame }).kind).toBe('opened');
  });

  it('reads to the same frames under any re-chunking', () => {
    const stream = b('server_to_client_stream');
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 64 }), { maxLength: 40 }), (sizes) => {
        expect(readAll(stream, sizes).map((r) => mustParse(r.type, r.body))).toEqual(expected());
      }),
    );
  });
});

describe('parseFrame: acceptance rules of Tailscale receivers', () => {
  const zeros = (n: number): Uint8Array => new Uint8Array(n);
  const key = (n: number): Uint8Array => peerPub.subarray(0, n);
  const serverKeyBody = concatBytes(MAGIC, serverPub);

  it('ServerKey: ≥ 40 bytes, ≤ 1 KiB, the magic; extra bytes ignored', () => {
    expect(mustParse(FrameType.ServerKey, concatBytes(serverKeyBody, zeros(984)))).toEqual({ kind: 'server-key', serverPub });
    expectMalformed(parseFrame(FrameType.ServerKey, serverKeyBody.subarray(0, 39)), /need 40/);
    expectMalformed(parseFrame(FrameType.ServerKey, concatBytes(serverKeyBody, zeros(985))), /exceeds 1024/);
    const bad = serverKeyBody.slice();
    bad[7]! ^= 1;
    expectMalformed(parseFrame(FrameType.ServerKey, bad), /magic/);
  });

  it('ClientInfo: 56 B … 256 KiB; ServerInfo: ≥ 24 B', () => {
    expect(mustParse(FrameType.ClientInfo, concatBytes(clientPub, zeros(24)))).toEqual({ kind: 'client-info', clientPub, sealed: zeros(24) });
    expectMalformed(parseFrame(FrameType.ClientInfo, zeros(55)), /need 56/);
    expect(parseFrame(FrameType.ClientInfo, zeros(MAX_CLIENT_INFO_LEN)).kind).toBe('client-info');
    expectMalformed(parseFrame(FrameType.ClientInfo, zeros(MAX_CLIENT_INFO_LEN + 1)), /exceeds/);
    expect(mustParse(FrameType.ServerInfo, zeros(24))).toEqual({ kind: 'server-info', sealed: zeros(24) });
    expectMalformed(parseFrame(FrameType.ServerInfo, zeros(23)), /need 24/);
  });

  it('SendPacket / ForwardPacket: keys present, packet ≤ 64 KiB; RecvPacket: key present, no packet cap', () => {
    expect(mustParse(FrameType.SendPacket, peerPub)).toEqual({ kind: 'send-packet', dst: peerPub, packet: zeros(0) });
    expect(parseFrame(FrameType.SendPacket, zeros(32 + MAX_PACKET_SIZE)).kind).toBe('send-packet');
    expectMalformed(parseFrame(FrameType.SendPacket, zeros(32 + MAX_PACKET_SIZE + 1)), /exceeds 65536/);
    expectMalformed(parseFrame(FrameType.SendPacket, key(31)), /need 32/);
    expect(mustParse(FrameType.ForwardPacket, concatBytes(clientPub, peerPub, text('x')))).toEqual({
      kind: 'forward-packet',
      src: clientPub,
      dst: peerPub,
      packet: text('x'),
    });
    expectMalformed(parseFrame(FrameType.ForwardPacket, zeros(63)), /need 64/);
    expectMalformed(parseFrame(FrameType.ForwardPacket, zeros(64 + MAX_PACKET_SIZE + 1)), /exceeds/);
    expect(parseFrame(FrameType.RecvPacket, zeros(32 + MAX_PACKET_SIZE + 1)).kind).toBe('recv-packet');
    expectMalformed(parseFrame(FrameType.RecvPacket, key(31)), /need 32/);
  });

  it('KeepAlive ignores a body; WatchConns must be empty; ClosePeer exactly one key', () => {
    expect(mustParse(FrameType.KeepAlive, zeros(3))).toEqual({ kind: 'keep-alive' });
    expect(mustParse(FrameType.WatchConns, zeros(0))).toEqual({ kind: 'watch-conns' });
    expectMalformed(parseFrame(FrameType.WatchConns, zeros(1)), /exactly 0/);
    expect(mustParse(FrameType.ClosePeer, peerPub)).toEqual({ kind: 'close-peer', peer: peerPub });
    expectMalformed(parseFrame(FrameType.ClosePeer, key(31)), /exactly 32/);
    expectMalformed(parseFrame(FrameType.ClosePeer, concatBytes(peerPub, zeros(1))), /exactly 32/);
  });

  it('NotePreferred: exactly one byte, any non-zero value is true', () => {
    expect(mustParse(FrameType.NotePreferred, new Uint8Array([0]))).toEqual({ kind: 'note-preferred', preferred: false });
    expect(mustParse(FrameType.NotePreferred, new Uint8Array([2]))).toEqual({ kind: 'note-preferred', preferred: true });
    expect(toHex(encodeFrame({ kind: 'note-preferred', preferred: false }))).toBe('070000000100');
    expectMalformed(parseFrame(FrameType.NotePreferred, zeros(0)), /exactly 1/);
    expectMalformed(parseFrame(FrameType.NotePreferred, zeros(2)), /exactly 1/);
  });

  it('PeerGone: no reason byte = Disconnected; extra bytes ignored; short is malformed', () => {
    expect(mustParse(FrameType.PeerGone, peerPub)).toEqual({ kind: 'peer-gone', peer: peerPub, reason: PeerGoneReason.Disconnected });
    expect(mustParse(FrameType.PeerGone, concatBytes(peerPub, new Uint8Array([1, 9, 9])))).toEqual({ kind: 'peer-gone', peer: peerPub, reason: 1 });
    expectMalformed(parseFrame(FrameType.PeerGone, key(31)), /need 32/);
  });

  it('PeerPresent: key [+ IP + port [+ flags]], v4-mapped read as IPv4, extra ignored', () => {
    const v4 = fromHex('00000000000000000000ffffc0000201a269');
    const v6 = fromHex('20010db8000000000000000000000001a269');
    const flags = PeerPresentFlag.IsRegular | PeerPresentFlag.NotIdeal;
    expect(mustParse(FrameType.PeerPresent, peerPub)).toEqual({ kind: 'peer-present', peer: peerPub, addr: null, flags: null });
    expect(mustParse(FrameType.PeerPresent, concatBytes(peerPub, v4.subarray(0, 17)))).toEqual({ kind: 'peer-present', peer: peerPub, addr: null, flags: null });
    expect(mustParse(FrameType.PeerPresent, concatBytes(peerPub, v4))).toEqual({
      kind: 'peer-present',
      peer: peerPub,
      addr: { ip: '192.0.2.1', port: 41577 },
      flags: null,
    });
    const full = { kind: 'peer-present', peer: peerPub, addr: { ip: '2001:db8::1', port: 41577 }, flags } as const;
    expect(mustParse(FrameType.PeerPresent, concatBytes(peerPub, v6, new Uint8Array([flags, 7, 7])))).toEqual(full);
    expect(toHex(encodeFrame(full))).toBe(`0900000033${toHex(peerPub)}${toHex(v6)}09`);
    expect(toHex(encodeFrame({ kind: 'peer-present', peer: peerPub, addr: { ip: '192.0.2.1', port: 41577 }, flags: 0 }))).toBe(
      `0900000033${toHex(peerPub)}${toHex(v4)}00`,
    );
    expectMalformed(parseFrame(FrameType.PeerPresent, key(31)), /need 32/);
  });

  it('Ping / Pong: ≥ 8 bytes, the first 8 used; short is malformed', () => {
    expect(mustParse(FrameType.Ping, concatBytes(pingData, zeros(992)))).toEqual({ kind: 'ping', data: pingData });
    expect(mustParse(FrameType.Pong, concatBytes(pingData, zeros(5)))).toEqual({ kind: 'pong', data: pingData });
    expectMalformed(parseFrame(FrameType.Ping, zeros(7)), /need 8/);
    expectMalformed(parseFrame(FrameType.Pong, zeros(7)), /need 8/);
  });

  it('Health: the body as text (empty = healthy), invalid UTF-8 replaced, BOM kept', () => {
    expect(mustParse(FrameType.Health, zeros(0))).toEqual({ kind: 'health', problem: '' });
    expect(mustParse(FrameType.Health, text('duplicate connection'))).toEqual({ kind: 'health', problem: 'duplicate connection' });
    expect(mustParse(FrameType.Health, new Uint8Array([0xef, 0xbb, 0xbf, 0x41, 0xff]))).toEqual({ kind: 'health', problem: '\uFEFFA\uFFFD' });
    expect(toHex(encodeFrame({ kind: 'health', problem: 'é' }))).toBe('1400000002c3a9');
  });

  it('Restarting: two u32 BE milliseconds, extra ignored, short is malformed', () => {
    const f = { kind: 'restarting', reconnectInMs: 1500, tryForMs: 0xffffffff } as const;
    expect(toHex(encodeFrame(f))).toBe('1500000008000005dcffffffff');
    expect(mustParse(FrameType.Restarting, fromHex('000005dcffffffff0102'))).toEqual(f);
    expectMalformed(parseFrame(FrameType.Restarting, zeros(7)), /need 8/);
  });

  it('unknown types are reported for skipping; a type that is not a byte is malformed', () => {
    for (const t of [0x00, 0x0b, 0x0f, 0x16, 0xff]) {
      expect(mustParse(t, text('abc'))).toEqual({ kind: 'unknown', type: t, body: text('abc') });
      expect(toHex(encodeFrame({ kind: 'unknown', type: t, body: text('abc') }))).toBe(`${t.toString(16).padStart(2, '0')}00000003616263`);
    }
    expectMalformed(parseFrame(256, zeros(0)), /not a byte/);
    expectMalformed(parseFrame(-1, zeros(0)), /not a byte/);
    expect(frameTypeName(0x04)).toBe('SendPacket');
    expect(frameTypeName(0x16)).toBe('0x16');
  });
});

describe('encodeFrame refuses programmer errors', () => {
  it.each<[string, () => unknown]>([
    ['short key', () => encodeFrame({ kind: 'send-packet', dst: peerPub.subarray(1), packet: new Uint8Array(0) })],
    ['oversized packet', () => encodeFrame({ kind: 'send-packet', dst: peerPub, packet: new Uint8Array(MAX_PACKET_SIZE + 1) })],
    ['oversized recv packet', () => encodeFrame({ kind: 'recv-packet', src: peerPub, packet: new Uint8Array(MAX_PACKET_SIZE + 1) })],
    ['7-byte ping', () => encodeFrame({ kind: 'ping', data: new Uint8Array(7) })],
    ['9-byte pong', () => encodeFrame({ kind: 'pong', data: new Uint8Array(9) })],
    ['flags without address', () => encodeFrame({ kind: 'peer-present', peer: peerPub, addr: null, flags: 1 })],
    ['bad address', () => encodeFrame({ kind: 'peer-present', peer: peerPub, addr: { ip: 'nope', port: 1 }, flags: null })],
    ['bad port', () => encodeFrame({ kind: 'peer-present', peer: peerPub, addr: { ip: '10.0.0.1', port: 65536 }, flags: null })],
    ['reason 256', () => encodeFrame({ kind: 'peer-gone', peer: peerPub, reason: 256 })],
    ['negative restart', () => encodeFrame({ kind: 'restarting', reconnectInMs: -1, tryForMs: 0 })],
    ['unknown with a known type', () => encodeFrame({ kind: 'unknown', type: FrameType.Ping, body: new Uint8Array(8) })],
    ['short ClientInfo', () => encodeFrame({ kind: 'client-info', clientPub, sealed: new Uint8Array(23) })],
    ['short ServerInfo', () => encodeFrame({ kind: 'server-info', sealed: new Uint8Array(23) })],
    ['health over 1 MiB', () => encodeFrame({ kind: 'health', problem: 'x'.repeat(MAX_RECV_FRAME_LEN + 1) })],
    ['header type 256', () => encodeFrameHeader(256, 0)],
    ['header length 2^32', () => encodeFrameHeader(1, 2 ** 32)],
    ['seal with a 31-byte server key', () => sealClientInfo({ clientPriv, serverPub: serverPub.subarray(1), info: { version: 2, canAckPings: true } })],
    ['seal with a 31-byte mesh key', () => encodeClientInfoJson({ version: 2, canAckPings: true, meshKey: new Uint8Array(31) })],
    ['fractional version', () => encodeServerInfoJson({ version: 2.5, tokenBucketBytesPerSecond: 0, tokenBucketBytesBurst: 0 })],
  ])('%s', (_name, f) => {
    expect(f).toThrow();
  });
});

describe('DerpFrameReader', () => {
  it('refuses a frame over the limit with a sticky malformed result, after the frames before it', () => {
    const r = new DerpFrameReader();
    const ka = b('keep_alive_frame');
    const out = r.push(concatBytes(ka, encodeFrameHeader(FrameType.RecvPacket, MAX_RECV_FRAME_LEN + 1), ka));
    expect(out.map((x) => x.kind)).toEqual(['frame', 'malformed']);
    expectMalformed(out[1]!, /RecvPacket frame of 1048577 bytes exceeds the 1048576-byte limit/);
    expect(r.error).toEqual(out[1]);
    expect(r.push(ka)).toEqual([out[1]]);
  });

  it('accepts a frame of exactly the limit, with a configurable limit', () => {
    const r = new DerpFrameReader({ maxFrameLen: 10 });
    const ok = concatBytes(encodeFrameHeader(0x20, 10), new Uint8Array(10));
    expect(r.push(ok)).toEqual([{ kind: 'frame', type: 0x20, body: new Uint8Array(10) }]);
    expect(r.push(encodeFrameHeader(0x20, 11))[0]!.kind).toBe('malformed');
    expect(new DerpFrameReader().maxFrameLen).toBe(MAX_RECV_FRAME_LEN);
    expect(() => new DerpFrameReader({ maxFrameLen: -1 })).toThrow();
  });

  it('keeps a partial header and body across pushes, and hands out bodies it owns', () => {
    const r = new DerpFrameReader();
    const wire = b('recv_packet_frame');
    expect(r.push(wire.subarray(0, 3))).toEqual([]);
    expect(r.buffered).toBe(3);
    expect(r.push(wire.subarray(3, 20))).toEqual([]);
    expect(r.buffered).toBe(20);
    const [f] = r.push(wire.subarray(20));
    expect(r.buffered).toBe(0);
    if (f?.kind !== 'frame') throw new Error('no frame');
    wire.fill(0);
    expect(toHex(f.body)).toBe(v('recv_packet_frame.payload'));
    expect(r.push(new Uint8Array(0))).toEqual([]);
  });

  it('lend: bodies wholly inside a chunk are views into it; a frame split across chunks is assembled in its own buffer', () => {
    const r = new DerpFrameReader({ lend: true });
    const ka = b('keep_alive_frame');
    const rp = b('recv_packet_frame');
    const chunk = concatBytes(rp, ka, rp, rp.subarray(0, 10));
    const out = r.push(chunk);
    expect(out.map((x) => x.kind === 'frame' && x.type)).toEqual([FrameType.RecvPacket, FrameType.KeepAlive, FrameType.RecvPacket]);
    const [f0, , f2] = out;
    if (f0?.kind !== 'frame' || f2?.kind !== 'frame') throw new Error('no frame');
    expect(f0.body.buffer).toBe(chunk.buffer);
    expect(f0.body.byteOffset).toBe(chunk.byteOffset + 5);
    expect(toHex(f2.body)).toBe(v('recv_packet_frame.payload'));
    expect(r.buffered).toBe(10);
    const rest = rp.slice(10);
    const [f3] = r.push(rest);
    if (f3?.kind !== 'frame') throw new Error('no frame');
    expect(f3.body.buffer).not.toBe(chunk.buffer);
    expect(f3.body.buffer).not.toBe(rest.buffer);
    expect(toHex(f3.body)).toBe(v('recv_packet_frame.payload'));
    expect(r.buffered).toBe(0);
  });

  it('lend: a whole header over the limit is the same sticky malformed result', () => {
    const r = new DerpFrameReader({ lend: true, maxFrameLen: 10 });
    const out = r.push(concatBytes(encodeFrameHeader(0x20, 10), new Uint8Array(10), encodeFrameHeader(FrameType.RecvPacket, 11)));
    expect(out.map((x) => x.kind)).toEqual(['frame', 'malformed']);
    expectMalformed(out[1]!, /RecvPacket frame of 11 bytes exceeds the 10-byte limit/);
    expect(r.push(b('keep_alive_frame'))).toEqual([out[1]]);
  });
});

describe('writeSendPacketFrame', () => {
  it("lays out encodeFrame's bytes at an offset and returns their length; refuses what encodeFrame refuses and what does not fit", () => {
    const dst = peerPub;
    const packet = new Uint8Array(100).map((_, i) => i);
    const want = encodeFrame({ kind: 'send-packet', dst, packet });
    const out = new Uint8Array(7 + want.length + 3).fill(0xee);
    expect(writeSendPacketFrame(out, 7, dst, packet)).toBe(want.length);
    expect(want.length).toBe(SEND_PACKET_OVERHEAD + packet.length);
    expect(out.subarray(7, 7 + want.length)).toEqual(want);
    expect([...out.subarray(0, 7), ...out.subarray(7 + want.length)].every((x) => x === 0xee)).toBe(true);
    const big = new Uint8Array(SEND_PACKET_OVERHEAD + MAX_PACKET_SIZE);
    expect(writeSendPacketFrame(big, 0, dst, new Uint8Array(MAX_PACKET_SIZE))).toBe(big.length);
    expect(() => writeSendPacketFrame(new Uint8Array(big.length + 1), 0, dst, new Uint8Array(MAX_PACKET_SIZE + 1))).toThrow();
    expect(() => writeSendPacketFrame(out, 0, dst.subarray(1), packet)).toThrow();
    expect(() => writeSendPacketFrame(out, 8 + 3, dst, packet)).toThrow(/no room/);
    expect(() => writeSendPacketFrame(out, -1, dst, packet)).toThrow(/no room/);
  });
});

describe('handshake JSON (Go encoding/json semantics; expected strings from go1.26 json.Marshal with the same struct tags)', () => {
  const mesh = Uint8Array.from({ length: 32 }, (_, i) => 0xa0 + i);

  it('ClientInfo with every field, Go string escaping, and the all-default form', () => {
    const appName = 'a<b>&"\\\n\r\t\b\f\x01\x1f\x7f\u2028\u2029é😀\uFFFD';
    const want =
      `{"meshKey":"${toHex(mesh)}","version":2,"CanAckPings":true,"IsProber":true,"AppName":` +
      String.raw`"a\u003cb\u003e\u0026\"\\\n\r\t\b\f\u0001\u001f` +
      '\x7f' +
      String.raw`\u2028\u2029` +
      'é😀\uFFFD"}';
    const json = encodeClientInfoJson({ version: 2, canAckPings: true, meshKey: mesh, isProber: true, appName });
    expect(new TextDecoder().decode(json)).toBe(want);
    expect(parseClientInfoJson(json)).toEqual({ version: 2, canAckPings: true, meshKey: mesh, isProber: true, appName });
    expect(new TextDecoder().decode(encodeClientInfoJson({ version: 0, canAckPings: false, meshKey: new Uint8Array(32), isProber: false, appName: '' }))).toBe(
      '{"CanAckPings":false}',
    );
    expect(goJsonString('\ud800x')).toBe('"\uFFFDx"');
  });

  it('ServerInfo with the token bucket fields, and zeros omitted', () => {
    const info = { version: 2, tokenBucketBytesPerSecond: 1000000, tokenBucketBytesBurst: 65536 };
    const json = encodeServerInfoJson(info);
    expect(new TextDecoder().decode(json)).toBe('{"version":2,"TokenBucketBytesPerSecond":1000000,"TokenBucketBytesBurst":65536}');
    expect(parseServerInfoJson(json)).toEqual(info);
    expect(new TextDecoder().decode(encodeServerInfoJson({ version: 0, tokenBucketBytesPerSecond: 0, tokenBucketBytesBurst: -5 }))).toBe(
      '{"TokenBucketBytesBurst":-5}',
    );
  });

  const zeroInfo = { version: 0, canAckPings: false, meshKey: null, isProber: false, appName: '' };
  it.each<[string, object]>([
    ['{"verſion":3,"canAcKpings":true,"ISPROBER":true,"appname":"x","other":[1]}', { ...zeroInfo, version: 3, canAckPings: true, isProber: true, appName: 'x' }],
    ['null', zeroInfo],
    ['{"version":null,"CanAckPings":null}', zeroInfo],
    ['{"version":2,"Version":5}', { ...zeroInfo, version: 5 }],
    [`{"MESHKEY":"${'AB'.repeat(32)}"}`, { ...zeroInfo, meshKey: new Uint8Array(32).fill(0xab) }],
    ['{"appname":"\\ud800"}', { ...zeroInfo, appName: '\uFFFD' }],
    ['{"version":-1}', { ...zeroInfo, version: -1 }],
  ])('ClientInfo JSON %s decodes as Go does', (json, want) => {
    expect(parseClientInfoJson(text(json))).toEqual(want);
  });

  it.each(['{"meshKey":null}', '{"meshKey":5}', `{"meshKey":"${'ab'.repeat(31)}"}`, '{"CanAckPings":1}', '{"version":"2"}', '[]', '"x"', '{', '', '{"version":2.5}'])(
    'ClientInfo JSON %s is malformed',
    (json) => {
      expectMalformed(parseClientInfoJson(text(json)));
    },
  );

  it('ServerInfo JSON: Go rules (wrong types malformed, unknown keys ignored)', () => {
    expect(parseServerInfoJson(text('{"version":2,"tokenbucketbytespersecond":10,"x":{}}'))).toEqual({
      version: 2,
      tokenBucketBytesPerSecond: 10,
      tokenBucketBytesBurst: 0,
    });
    expectMalformed(parseServerInfoJson(text('{"version":true}')), /not an integer/);
    expectMalformed(parseServerInfoJson(text('not json')), /invalid JSON/);
  });

  it('a box that opens but holds bad JSON is malformed on both sides', () => {
    const junk = text('{"version":');
    const ci: ClientInfoFrame = { kind: 'client-info', clientPub, sealed: seal(serverPub, clientPriv, junk) };
    expectMalformed(openClientInfo({ serverPriv, frame: ci }), /ClientInfo: invalid JSON/);
    const si: ServerInfoFrame = { kind: 'server-info', sealed: seal(clientPub, serverPriv, junk) };
    expectMalformed(openServerInfo({ clientPriv, serverPub, frame: si }), /ServerInfo: invalid JSON/);
  });

  it('seal/open round-trip a full ClientInfo and ServerInfo with random nonces', () => {
    const info = { version: 2, canAckPings: true, meshKey: mesh, isProber: true, appName: 'weft' };
    const frame = sealClientInfo({ clientPriv, serverPub, info });
    expect(openClientInfo({ serverPriv, frame })).toEqual({ kind: 'opened', clientPub, info });
    const sinfo = { version: 2, tokenBucketBytesPerSecond: 5, tokenBucketBytesBurst: 6 };
    expect(openServerInfo({ clientPriv, serverPub, frame: sealServerInfo({ serverPriv, clientPub, info: sinfo }) })).toEqual({ kind: 'opened', info: sinfo });
  });
});

// ---------------------------------------------------------------------------------------------------------
// Properties

const key32 = fc.uint8Array({ minLength: 32, maxLength: 32 });
const smallPacket = fc.uint8Array({ maxLength: 300 });
const anyPacket = fc.oneof({ weight: 9, arbitrary: smallPacket }, { weight: 1, arbitrary: fc.uint8Array({ minLength: 60000, maxLength: MAX_PACKET_SIZE }) });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const ipText = fc.oneof(
  fc.uint8Array({ minLength: 4, maxLength: 4 }).map(bytesToIp),
  fc
    .uint8Array({ minLength: 16, maxLength: 16 })
    .filter((x) => !isV4Mapped(x))
    .map(bytesToIp),
);
const KNOWN = new Set<number>(Object.values(FrameType));

const frameArb = (packet: fc.Arbitrary<Uint8Array>): fc.Arbitrary<DerpFrame> =>
  fc.oneof(
    key32.map((serverPub): DerpFrame => ({ kind: 'server-key', serverPub })),
    fc.record({ kind: fc.constant('client-info' as const), clientPub: key32, sealed: fc.uint8Array({ minLength: 24, maxLength: 200 }) }),
    fc.record({ kind: fc.constant('server-info' as const), sealed: fc.uint8Array({ minLength: 24, maxLength: 200 }) }),
    fc.record({ kind: fc.constant('send-packet' as const), dst: key32, packet }),
    fc.record({ kind: fc.constant('recv-packet' as const), src: key32, packet }),
    fc.record({ kind: fc.constant('forward-packet' as const), src: key32, dst: key32, packet }),
    fc.constant<DerpFrame>({ kind: 'keep-alive' }),
    fc.boolean().map((preferred): DerpFrame => ({ kind: 'note-preferred', preferred })),
    fc.record({ kind: fc.constant('peer-gone' as const), peer: key32, reason: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ kind: fc.constant('peer-present' as const), peer: key32, addr: fc.constant(null), flags: fc.constant(null) }),
    fc.record({
      kind: fc.constant('peer-present' as const),
      peer: key32,
      addr: fc.record({ ip: ipText, port: fc.integer({ min: 0, max: 0xffff }) }),
      flags: fc.option(fc.integer({ min: 0, max: 255 })),
    }),
    fc.constant<DerpFrame>({ kind: 'watch-conns' }),
    key32.map((peer): DerpFrame => ({ kind: 'close-peer', peer })),
    fc.record({ kind: fc.constantFrom('ping' as const, 'pong' as const), data: fc.uint8Array({ minLength: 8, maxLength: 8 }) }),
    fc.string({ unit: 'binary', maxLength: 40 }).map((problem): DerpFrame => ({ kind: 'health', problem })),
    fc.record({ kind: fc.constant('restarting' as const), reconnectInMs: u32, tryForMs: u32 }),
    fc.record({
      kind: fc.constant('unknown' as const),
      type: fc.integer({ min: 0, max: 255 }).filter((t) => !KNOWN.has(t)),
      body: fc.uint8Array({ maxLength: 100 }),
    }),
  );
/** Any frame, sometimes with a packet near the 64 KiB limit. */
const arbFrame = frameArb(anyPacket);
/** Frames with small packets, for streams of many frames. */
const arbSmallFrame = frameArb(smallPacket);

describe('properties', () => {
  it('every frame round-trips: encode → read → parse', () => {
    fc.assert(
      fc.property(arbFrame, (frame) => {
        const raws = readAll(encodeFrame(frame));
        expect(raws).toHaveLength(1);
        expect(mustParse(raws[0]!.type, raws[0]!.body)).toEqual(frame);
      }),
      { numRuns: 300 },
    );
  });

  it('a stream of frames reads back the same under random re-chunking', () => {
    fc.assert(
      fc.property(fc.array(arbSmallFrame, { maxLength: 8 }), fc.array(fc.integer({ min: 0, max: 400 }), { maxLength: 30 }), (frames, sizes) => {
        const stream = concatBytes(...frames.map(encodeFrame));
        const whole = readAll(stream);
        const chunked = readAll(stream, sizes);
        expect(chunked).toEqual(whole);
        expect(chunked.map((r) => mustParse(r.type, r.body))).toEqual(frames);
      }),
      { numRuns: 200 },
    );
  });

  it('the reader never throws on arbitrary bytes, and agrees with itself however they are chunked, lending or not', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 600 }),
        fc.array(fc.integer({ min: 0, max: 50 }), { maxLength: 20 }),
        fc.integer({ min: 0, max: 300 }),
        fc.boolean(),
        (bytes, sizes, max, lend) => {
          const run = (chunks: number[] | null, lending = false): string => {
            const r = new DerpFrameReader({ maxFrameLen: max, lend: lending });
            const out: (RawFrame | Malformed)[] = [];
            let off = 0;
            for (const n of chunks ?? []) {
              out.push(...r.push(bytes.subarray(off, off + n)));
              off += n;
            }
            out.push(...r.push(bytes.subarray(off)));
            // Once failed, the result is repeated; keep only the first.
            const firstBad = out.findIndex((x) => x.kind === 'malformed');
            return JSON.stringify(firstBad < 0 ? out.map((x) => x.kind === 'frame' && [x.type, toHex(x.body)]) : out.slice(0, firstBad + 1).map((x) => (x.kind === 'frame' ? [x.type, toHex(x.body)] : x.reason)));
          };
          expect(run(sizes, lend)).toBe(run(null));
          expect(run(null, true)).toBe(run(null));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('parseFrame never throws on any type and body, and what it accepts re-encodes to a frame that parses the same', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 120 }), (type, body) => {
        const f = parseFrame(type, body);
        if (f.kind === 'malformed') return;
        const again = readAll(encodeFrame(f));
        expect(mustParse(again[0]!.type, again[0]!.body)).toEqual(f);
      }),
      { numRuns: 2000 },
    );
  });

  it('openers and JSON parsers never throw on garbage', () => {
    fc.assert(
      fc.property(key32, fc.uint8Array({ maxLength: 120 }), fc.oneof(fc.json().map(text), fc.uint8Array({ maxLength: 60 })), (pub, sealed, json) => {
        const c = openClientInfo({ serverPriv, frame: { kind: 'client-info', clientPub: pub, sealed } });
        const s = openServerInfo({ clientPriv, serverPub: pub, frame: { kind: 'server-info', sealed } });
        expect(c.kind).toBe('malformed');
        expect(s.kind).toBe('malformed');
        expect(['malformed', undefined]).toContain((parseClientInfoJson(json) as { kind?: string }).kind);
        expect(['malformed', undefined]).toContain((parseServerInfoJson(json) as { kind?: string }).kind);
      }),
      { numRuns: 200 },
    );
  });

  it('ClientInfo JSON round-trips for any field values', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -1000, max: 1000 }),
        fc.boolean(),
        fc.option(key32.filter((k) => k.some((x) => x !== 0))),
        fc.boolean(),
        fc.string({ unit: 'binary', maxLength: 30 }),
        (version, canAckPings, meshKey, isProber, appName) => {
          const info = { version, canAckPings, meshKey, isProber, appName };
          expect(parseClientInfoJson(encodeClientInfoJson(info))).toEqual(info);
          expect(JSON.parse(new TextDecoder().decode(encodeClientInfoJson(info)))).toMatchObject({ CanAckPings: canAckPings });
        },
      ),
    );
  });
});

describe('vector coverage', () => {
  it('every vector in derp.txt is reproduced or checked above', () => {
    const unused = [...V.keys()].filter((k) => !used.has(k));
    expect(unused).toEqual([]);
    expect(bytesEqual(b('client_pub'), clientPub)).toBe(true);
  });
});
