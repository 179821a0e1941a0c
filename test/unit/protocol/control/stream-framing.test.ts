import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromHex, toHex } from '../../../../src-main/protocol/wire/hex.ts';
import {
  DEFAULT_MAX_MAP_MESSAGE_BYTES,
  MapStreamDecoder,
  decodeMapBody,
  encodeMapFrame,
  parseMapBody,
  type MapStreamError,
} from '../../../../src-main/protocol/control/stream-framing.ts';
import { fixtureBytes } from '../../engine/control/control-fixtures.ts';
import { concatBytes } from '../../../../src-main/protocol/wire/hex.ts';

const enc = new TextEncoder();
const dec = new TextDecoder();

const concat = concatBytes;

function bodies(r: Uint8Array[] | MapStreamError): Uint8Array[] {
  if (!Array.isArray(r)) throw new Error(`unexpected error: ${r.reason}`);
  return r;
}

/** Feeds `stream` to a fresh decoder in the given chunk sizes and returns the decoded bodies as hex. */
function decodeInChunks(stream: Uint8Array, cuts: number[]): string[] {
  const d = new MapStreamDecoder();
  const out: string[] = [];
  let prev = 0;
  for (const cut of [...cuts, stream.length]) {
    out.push(...bodies(d.push(stream.subarray(prev, cut))).map(toHex));
    prev = cut;
  }
  expect(d.buffered).toBe(0);
  return out;
}

describe('encodeMapFrame', () => {
  it.each([
    ['keep-alive', '{"KeepAlive":true}', '12000000' + toHex(enc.encode('{"KeepAlive":true}'))],
    ['empty body', '', '00000000'],
    ['little-endian length above 255', 'x'.repeat(0x123), '23010000' + '78'.repeat(0x123)],
  ])('%s', (_name, body, hex) => {
    expect(toHex(encodeMapFrame(enc.encode(body)))).toBe(hex);
  });
});

describe('MapStreamDecoder', () => {
  const msgs = ['{"KeepAlive":true}', '{"Node":{"ID":1}}', '', '{"PeersRemoved":[3]}'].map((s) => enc.encode(s));
  const stream = concat(...msgs.map(encodeMapFrame));
  const want = msgs.map(toHex);

  it('decodes several messages delivered in one chunk', () => {
    expect(decodeInChunks(stream, [])).toEqual(want);
  });

  it('decodes the stream split at every byte boundary', () => {
    for (let cut = 0; cut <= stream.length; cut++) expect(decodeInChunks(stream, [cut])).toEqual(want);
  });

  it('decodes the stream fed one byte at a time', () => {
    expect(decodeInChunks(stream, Array.from({ length: stream.length }, (_, i) => i))).toEqual(want);
  });

  it('reports buffered bytes of a partial message', () => {
    const d = new MapStreamDecoder();
    const frame = encodeMapFrame(enc.encode('{"KeepAlive":true}'));
    expect(bodies(d.push(frame.subarray(0, 2)))).toEqual([]);
    expect(d.buffered).toBe(2);
    expect(bodies(d.push(frame.subarray(2, 10)))).toEqual([]);
    expect(d.buffered).toBe(10);
    expect(bodies(d.push(frame.subarray(10))).map((b) => dec.decode(b))).toEqual(['{"KeepAlive":true}']);
    expect(d.buffered).toBe(0);
  });

  it('copies partial bodies, so the caller may reuse its chunk buffer', () => {
    const d = new MapStreamDecoder();
    const frame = encodeMapFrame(enc.encode('abcdef'));
    const chunk = frame.slice(0, 7);
    expect(bodies(d.push(chunk))).toEqual([]);
    chunk.fill(0);
    expect(bodies(d.push(frame.subarray(7))).map((b) => dec.decode(b))).toEqual(['abcdef']);
  });

  it('refuses a length above the limit without buffering, and stays failed', () => {
    const d = new MapStreamDecoder({ maxMessageBytes: 16 });
    const ok = encodeMapFrame(enc.encode('0123456789abcdef'));
    expect(bodies(d.push(ok)).map((b) => dec.decode(b))).toEqual(['0123456789abcdef']);
    const r = d.push(concat(fromHex('11000000'), new Uint8Array(17)));
    expect(r).toEqual({ kind: 'too-large', reason: expect.stringMatching(/17 bytes exceeds the 16-byte limit/) as unknown, length: 17, max: 16 });
    expect(d.buffered).toBe(0);
    expect(d.push(ok)).toBe(r);
  });

  it('refuses a hostile 4 GiB length under the default limit', () => {
    const r = new MapStreamDecoder().push(fromHex('ffffffff00'));
    expect(r).toMatchObject({ kind: 'too-large', length: 0xffffffff, max: DEFAULT_MAX_MAP_MESSAGE_BYTES });
  });

  it('yields the same messages however the stream is chunked (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (messages, rawCuts) => {
          const s = concat(...messages.map(encodeMapFrame));
          const cuts = [...new Set(rawCuts.map((c) => c % (s.length + 1)))].sort((a, b) => a - b);
          expect(decodeInChunks(s, cuts)).toEqual(messages.map(toHex));
        },
      ),
    );
  });
});

describe('decodeMapBody', () => {
  const json = fixtureBytes('initial-map.json');

  it('passes an uncompressed body through', () => {
    expect(decodeMapBody(json, false)).toBe(json);
  });

  it.each([
    ['single-segment frame with content size (zstd CLI on a file, like zstdframe)', 'initial-map.json.zst'],
    ['streaming frame without content size (zstd CLI on stdin)', 'initial-map.stdin.json.zst'],
  ])('decompresses a %s', (_name, file) => {
    const out = decodeMapBody(fixtureBytes(file), true);
    expect(out).toBeInstanceOf(Uint8Array);
    expect(dec.decode(out as Uint8Array)).toBe(dec.decode(json));
  });

  it('parses a compressed stream message end to end', () => {
    const d = new MapStreamDecoder();
    const [body] = bodies(d.push(encodeMapFrame(fixtureBytes('initial-map.json.zst'))));
    const r = parseMapBody(body!, true);
    expect(r.kind).toBe('ok');
    expect(r).toHaveProperty('value.Node.ID', 1);
  });

  // Hand-built frames: magic, frame header descriptor, [window descriptor], [content size], blocks.
  const MAGIC = '28b52ffd';
  /** A 3-byte little-endian block header. */
  const block = (size: number, type: 0 | 1 | 2 | 3, last: boolean): string => {
    const v = (size << 3) | (type << 1) | (last ? 1 : 0);
    return toHex(new Uint8Array([v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff]));
  };

  it('decodes RLE and raw blocks the way the bound walker reads them', () => {
    // No single segment, no content size, window 1 KiB; RLE 1000 × "a", then raw "xyz".
    const frame = fromHex(MAGIC + '00' + '00' + block(1000, 1, false) + '61' + block(3, 0, true) + toHex(enc.encode('xyz')));
    const out = decodeMapBody(frame, true);
    expect(dec.decode(out as Uint8Array)).toBe('a'.repeat(1000) + 'xyz');
  });

  it('skips a skippable frame before the real one', () => {
    const skippable = '5a2a4d18' + '03000000' + 'aabbcc';
    const frame = fromHex(skippable + MAGIC + '20' + '05' + block(5, 0, true) + toHex(enc.encode('hello')));
    expect(dec.decode(decodeMapBody(frame, true) as Uint8Array)).toBe('hello');
  });

  it.each([
    // 40 RLE blocks of 2 MiB - 1 from a ~170-byte body: an 80 MiB "zip bomb".
    ['RLE blocks adding up past the limit', MAGIC + '00' + '58' + Array.from({ length: 40 }, (_, i) => block(0x1fffff, 1, i === 39) + '00').join(''), /over the \d+-byte limit/],
    // Single segment with an 8-byte content size of 1 GiB: the decoder would allocate it up front.
    ['a declared content size of 1 GiB', MAGIC + 'e0' + '0000004000000000' + block(1, 1, true) + '00', /over the \d+-byte limit/],
    ['not zstd at all', toHex(enc.encode('{"KeepAlive":true}')), /not a zstd frame/],
    ['an empty body', '', /empty body/],
    ['a truncated block', MAGIC + '20' + '05' + block(5, 0, true) + '6865', /truncated block/],
    ['a reserved block type', MAGIC + '20' + '05' + block(5, 3, true), /reserved block type/],
    ['a reserved header bit', MAGIC + '28' + '05', /reserved bit/],
    ['a truncated header', MAGIC, /truncated frame header/],
  ])('refuses %s', (_name, hex, reason) => {
    expect(decodeMapBody(fromHex(hex), true)).toEqual({ kind: 'malformed', reason: expect.stringMatching(reason) as unknown });
  });

  it('honours a smaller output limit', () => {
    const r = decodeMapBody(fixtureBytes('initial-map.json.zst'), true, 1024);
    expect(r).toEqual({ kind: 'malformed', reason: expect.stringMatching(/over the 1024-byte limit/) as unknown });
  });

  it('turns a decoder error into a malformed result', () => {
    // Valid headers but a compressed block full of garbage.
    const frame = fromHex(MAGIC + '20' + '40' + block(8, 2, true) + 'ffffffffffffffff');
    const r = decodeMapBody(frame, true);
    expect(r).toMatchObject({ kind: 'malformed' });
  });

  it('never throws on arbitrary bytes (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (b, withMagic) => {
        const body = withMagic ? concat(fromHex(MAGIC), b) : b;
        const r = decodeMapBody(body, true, 1 << 20);
        expect(r instanceof Uint8Array || r.kind === 'malformed').toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});

describe('parseMapBody', () => {
  it.each([
    ['invalid UTF-8', fromHex('7bff7d'), /not JSON/],
    ['truncated JSON', enc.encode('{"KeepAlive":'), /not JSON/],
  ])('refuses %s', (_name, bytes, reason) => {
    expect(parseMapBody(bytes, false)).toEqual({ kind: 'malformed', reason: expect.stringMatching(reason) as unknown });
  });

  it('parses a keep-alive', () => {
    expect(parseMapBody(enc.encode('{"KeepAlive":true}'), false)).toEqual({ kind: 'ok', value: { KeepAlive: true } });
  });
});
