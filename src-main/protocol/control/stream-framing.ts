/**
 * Framing of the `POST /machine/map` response stream (control-protocol §8.3; HS: hscontrol/poll.go
 * `writeMap`; TS: control/controlclient/direct.go, which reads the length with binary.LittleEndian).
 *
 * The body of a streaming map response is an endless sequence of messages:
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |        body length L, uint32 LITTLE-endian (of the body as sent)   |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |  L bytes: JSON MapResponse, or one zstd frame holding it when    |
 *   |  the MapRequest said "Compress":"zstd"                           |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Messages are usually larger than one Noise record or HTTP/2 DATA frame, so `MapStreamDecoder` reassembles
 * them from arbitrary chunks. A length above the configured maximum ends the stream with an error result
 * instead of buffering without bound.
 *
 * `decodeMapBody` undoes the optional zstd compression. headscale's frames come from Tailscale's zstdframe
 * (single segment, content size in the header, checksum on). Before decompressing, the frame headers and
 * block headers are walked to bound the output size, so a small hostile body cannot make the decompressor
 * allocate more than the maximum ("zip bomb"). The pure-JS `fzstd` decoder does not verify the content
 * checksum; the Noise AEAD already authenticates every byte, so the checksum would only catch a compressor bug.
 *
 * `encodeZstdStored` is the server's side (`weft server`): it wraps a body in a valid zstd frame made of raw
 * ("stored") blocks, so a client that asked for `Compress:"zstd"` and decodes every message as zstd (the Go
 * client, and Weft's) can read it, without a compressor dependency. The bytes are not smaller; map messages are
 * small next to the link, and any standard zstd decoder accepts raw blocks (RFC 8878 §3.1.1.2).
 *
 * Pure: bytes in, bytes out; never throws on input.
 */
import { decompress } from 'fzstd';

export const MAP_FRAME_HEADER_LEN = 4;
/** Largest message accepted by default (compressed size in the stream, and decompressed size). */
export const DEFAULT_MAX_MAP_MESSAGE_BYTES = 64 * 1024 * 1024;

export interface MapStreamError {
  kind: 'too-large';
  reason: string;
  length: number;
  max: number;
}

export interface MapStreamDecoderInit {
  /** @default DEFAULT_MAX_MAP_MESSAGE_BYTES */
  maxMessageBytes?: number;
}

/**
 * Incremental decoder of the length-prefixed map stream. Feed it chunks as they arrive; it returns each
 * completed message body. A body that lies wholly inside one pushed chunk is returned as a view of that
 * chunk (no copy), so the caller must not reuse chunk buffers while holding bodies.
 *
 * After an oversize length, `push` returns the error (now and on every later call) and the stream must be
 * abandoned; bodies completed earlier in the same chunk are dropped with it.
 */
export class MapStreamDecoder {
  readonly #max: number;
  // Owned by this instance: the partial header, the partial body, and a sticky failure.
  readonly #header = new Uint8Array(MAP_FRAME_HEADER_LEN);
  #headerFill = 0;
  /** Length of the body being read, or -1 while reading a header. */
  #need = -1;
  #parts: Uint8Array[] = [];
  #partsLen = 0;
  #error: MapStreamError | null = null;

  constructor(init: MapStreamDecoderInit = {}) {
    this.#max = init.maxMessageBytes ?? DEFAULT_MAX_MAP_MESSAGE_BYTES;
  }

  /** Bytes held for a message not yet complete (header bytes included). */
  get buffered(): number {
    return this.#need < 0 ? this.#headerFill : MAP_FRAME_HEADER_LEN + this.#partsLen;
  }

  push(chunk: Uint8Array): Uint8Array[] | MapStreamError {
    if (this.#error) return this.#error;
    const out: Uint8Array[] = [];
    let off = 0;
    while (off < chunk.length) {
      if (this.#need < 0) {
        const take = Math.min(MAP_FRAME_HEADER_LEN - this.#headerFill, chunk.length - off);
        this.#header.set(chunk.subarray(off, off + take), this.#headerFill);
        this.#headerFill += take;
        off += take;
        if (this.#headerFill < MAP_FRAME_HEADER_LEN) break;
        const len = new DataView(this.#header.buffer).getUint32(0, true);
        this.#headerFill = 0;
        if (len > this.#max) {
          this.#error = { kind: 'too-large', reason: `map message of ${len} bytes exceeds the ${this.#max}-byte limit`, length: len, max: this.#max };
          this.#parts = [];
          this.#partsLen = 0;
          return this.#error;
        }
        this.#need = len;
      }
      const missing = this.#need - this.#partsLen;
      const avail = chunk.length - off;
      if (this.#partsLen === 0 && avail >= missing) {
        // The whole body is inside this chunk: hand out a view.
        out.push(chunk.subarray(off, off + missing));
        off += missing;
        this.#need = -1;
        continue;
      }
      const take = Math.min(missing, avail);
      // Copy partial pieces: the chunk may be reused by its owner once push returns.
      this.#parts.push(chunk.slice(off, off + take));
      this.#partsLen += take;
      off += take;
      if (this.#partsLen === this.#need) {
        out.push(concat(this.#parts, this.#partsLen));
        this.#parts = [];
        this.#partsLen = 0;
        this.#need = -1;
      }
    }
    return out;
  }
}

/** One stream message: the 4-byte little-endian length, then `body`. */
export function encodeMapFrame(body: Uint8Array): Uint8Array {
  if (body.length > 0xffffffff) throw new RangeError('map message too large to frame');
  const out = new Uint8Array(MAP_FRAME_HEADER_LEN + body.length);
  new DataView(out.buffer).setUint32(0, body.length, true);
  out.set(body, MAP_FRAME_HEADER_LEN);
  return out;
}

export interface Malformed {
  kind: 'malformed';
  reason: string;
}

/**
 * The JSON bytes of a message body: `body` itself when uncompressed, else the zstd frame(s) decompressed,
 * refusing output larger than `maxBytes`.
 */
export function decodeMapBody(body: Uint8Array, compressed: boolean, maxBytes: number = DEFAULT_MAX_MAP_MESSAGE_BYTES): Uint8Array | Malformed {
  if (!compressed) return body;
  const bound = zstdOutputBound(body);
  if (typeof bound !== 'number') return bound;
  if (bound > maxBytes) return { kind: 'malformed', reason: `zstd body would decompress to up to ${bound} bytes, over the ${maxBytes}-byte limit` };
  let out: Uint8Array;
  try {
    out = decompress(body);
  } catch (e) {
    return { kind: 'malformed', reason: `zstd: ${e instanceof Error ? e.message : String(e)}` };
  }
  if (out.length > maxBytes) return { kind: 'malformed', reason: `zstd body decompressed to ${out.length} bytes, over the ${maxBytes}-byte limit` };
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A message body (decompressed if needed) parsed as JSON, ready for `applyMapResponse`. */
export function parseMapBody(body: Uint8Array, compressed: boolean, maxBytes?: number): { kind: 'ok'; value: unknown } | Malformed {
  const bytes = decodeMapBody(body, compressed, maxBytes);
  if (!(bytes instanceof Uint8Array)) return bytes;
  try {
    return { kind: 'ok', value: JSON.parse(utf8.decode(bytes)) as unknown };
  } catch (e) {
    return { kind: 'malformed', reason: `map message is not JSON: ${e instanceof Error ? e.message : String(e)}` };
  }
}

/**
 * One zstd frame holding `data` uncompressed: magic, a single-segment frame header with a 4-byte content size,
 * then raw blocks of at most 128 KiB, the last one flagged. No checksum (the flag is optional).
 *
 *   [28 b5 2f fd][FHD=0xa0][content size u32 LE]([block header u24 LE: last|type=raw<<1|size<<3][size bytes])+
 */
export function encodeZstdStored(data: Uint8Array): Uint8Array {
  if (data.length > 0xffffffff) throw new RangeError('zstd: body too large for a 4-byte content size');
  const blocks = Math.max(1, Math.ceil(data.length / BLOCK_MAX));
  const out = new Uint8Array(4 + 1 + 4 + blocks * 3 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, ZSTD_MAGIC, true);
  out[4] = (2 << 6) | (1 << 5); // FCS field 4 bytes, single segment, no checksum, no dictionary
  dv.setUint32(5, data.length, true);
  let o = 9;
  for (let i = 0; i < blocks; i++) {
    const part = data.subarray(i * BLOCK_MAX, (i + 1) * BLOCK_MAX);
    const header = ((i === blocks - 1 ? 1 : 0) | (BLOCK_RAW << 1) | (part.length << 3)) >>> 0;
    out[o] = header & 0xff;
    out[o + 1] = (header >>> 8) & 0xff;
    out[o + 2] = (header >>> 16) & 0xff;
    out.set(part, o + 3);
    o += 3 + part.length;
  }
  return out;
}

// --- zstd frame walking (RFC 8878 §3.1) --------------------------------------------------------------------

const ZSTD_MAGIC = 0xfd2fb528;
const SKIPPABLE_MAGIC_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
/** Block_Maximum_Size is min(Window_Size, 128 KiB) for both compressed and regenerated block sizes. */
const BLOCK_MAX = 128 * 1024;
const BLOCK_RAW = 0;
const BLOCK_RLE = 1;
const BLOCK_COMPRESSED = 2;

/**
 * An upper bound on the decompressed size of a sequence of zstd frames, found from the headers alone, or
 * why the data is malformed. Each frame's buffer allocation (content size, else window size) counts too,
 * since that is what the decoder allocates up front.
 */
function zstdOutputBound(d: Uint8Array): number | Malformed {
  const bad = (reason: string): Malformed => ({ kind: 'malformed', reason: `zstd: ${reason}` });
  const dv = new DataView(d.buffer, d.byteOffset, d.byteLength);
  let off = 0;
  let total = 0;
  if (d.length === 0) return bad('empty body');
  while (off < d.length) {
    if (d.length - off < 4) return bad('truncated frame magic');
    const magic = dv.getUint32(off, true);
    if ((magic & SKIPPABLE_MAGIC_MASK) >>> 0 === SKIPPABLE_MAGIC) {
      if (d.length - off < 8) return bad('truncated skippable frame');
      off += 8 + dv.getUint32(off + 4, true);
      if (off > d.length) return bad('truncated skippable frame');
      continue;
    }
    if (magic !== ZSTD_MAGIC) return bad('not a zstd frame');
    off += 4;
    if (off >= d.length) return bad('truncated frame header');
    const fhd = d[off++]!;
    const fcsFlag = fhd >> 6;
    const singleSegment = (fhd >> 5) & 1;
    const checksum = (fhd >> 2) & 1;
    const dictFlag = fhd & 3;
    if (fhd & 0x08) return bad('reserved bit set');
    let windowSize = 0;
    if (!singleSegment) {
      if (off >= d.length) return bad('truncated frame header');
      const wd = d[off++]!;
      const base = 2 ** (10 + (wd >> 3));
      windowSize = base + (base / 8) * (wd & 7);
    }
    off += [0, 1, 2, 4][dictFlag]!;
    const fcsLen = [singleSegment, 2, 4, 8][fcsFlag]!;
    if (off + fcsLen > d.length) return bad('truncated frame header');
    let contentSize: number | null = null;
    if (fcsLen === 1) contentSize = d[off]!;
    else if (fcsLen === 2) contentSize = dv.getUint16(off, true) + 256;
    else if (fcsLen === 4) contentSize = dv.getUint32(off, true);
    else if (fcsLen === 8) contentSize = dv.getUint32(off, true) + dv.getUint32(off + 4, true) * 2 ** 32;
    off += fcsLen;
    if (singleSegment) windowSize = contentSize ?? 0;
    const blockMax = Math.min(windowSize, BLOCK_MAX);
    let frameBound = 0;
    for (;;) {
      if (off + 3 > d.length) return bad('truncated block header');
      const bh = d[off]! | (d[off + 1]! << 8) | (d[off + 2]! << 16);
      off += 3;
      const last = bh & 1;
      const type = (bh >> 1) & 3;
      const size = bh >>> 3;
      if (type === BLOCK_RAW) {
        frameBound += size;
        off += size;
      } else if (type === BLOCK_RLE) {
        frameBound += size;
        off += 1;
      } else if (type === BLOCK_COMPRESSED) {
        if (size > blockMax) return bad('compressed block larger than the block maximum');
        frameBound += blockMax;
        off += size;
      } else return bad('reserved block type');
      if (off > d.length) return bad('truncated block');
      if (last) break;
    }
    if (checksum) off += 4;
    if (off > d.length) return bad('truncated checksum');
    // The decoder allocates the declared content size (else the window) before reading any block.
    total += Math.max(frameBound, contentSize ?? windowSize);
  }
  return total;
}

function concat(parts: Uint8Array[], len: number): Uint8Array {
  const out = new Uint8Array(len);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
