/**
 * NoiseConn: a Node Duplex over a TCP/TLS socket that speaks TS2021 record frames (protocol/crypto/noise.ts).
 * Writes are sealed into ≤ 4077-byte records; reads are reassembled, opened and pushed as plaintext.
 * Shared by the control client (engine/control/transport.ts) and `weft server` (server/control/upgrade.ts),
 * which is why it lives with the I/O adapters rather than in engine/control.
 *
 * On the client side (`expectEarly`, the default) the server's first plaintext may be the early payload
 * (control-protocol.md §4.4):
 *   FF FF FF 54 53 | u32 BE length | JSON {"nodeKeyChallenge": "chalpub:…"}
 * It is stripped here and reported through `early`; everything after it (HTTP/2) is pushed to the reader.
 * If the first 9 bytes are not the magic they are the server's HTTP/2 SETTINGS header and go through as is.
 */
import { Duplex } from 'node:stream';
import { FrameReader, MSG_RECORD, type NoiseCipher } from '../../protocol/crypto/noise.ts';

const EARLY_MAGIC = [0xff, 0xff, 0xff, 0x54, 0x53];
const EARLY_HEADER_LEN = 9;
const EARLY_MAX_JSON = 10 << 20; // the Go client refuses more than 10 MiB

export interface EarlyPayload {
  nodeKeyChallenge?: string;
}

/** The early payload as the server writes it: magic, u32 BE length, JSON (one plaintext write). */
export function encodeEarlyPayload(p: EarlyPayload): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(p));
  const out = new Uint8Array(EARLY_HEADER_LEN + json.length);
  out.set(EARLY_MAGIC);
  new DataView(out.buffer).setUint32(5, json.length);
  out.set(json, EARLY_HEADER_LEN);
  return out;
}

export class NoiseConn extends Duplex {
  private readonly reader = new FrameReader();
  /** Plaintext held back until the early payload has been recognised or ruled out. */
  private pre: Uint8Array | null = new Uint8Array(0);
  private resolveEarly!: (e: EarlyPayload | null) => void;
  /** Resolves with the early payload, or null when the server sent none. */
  readonly early: Promise<EarlyPayload | null> = new Promise((r) => (this.resolveEarly = r));

  constructor(
    /** The raw TCP/TLS socket (any byte Duplex: the server gets one from the http 'upgrade' event). */
    private readonly socket: Duplex,
    private readonly tx: NoiseCipher,
    private readonly rx: NoiseCipher,
    initial: Uint8Array,
    opts: { expectEarly?: boolean } = {},
  ) {
    super();
    if (opts.expectEarly === false) {
      // The server side: the client never sends an early payload, so every plaintext byte is HTTP/2.
      this.pre = null;
      this.resolveEarly(null);
    }
    socket.on('data', (d: Buffer) => this.onCipherData(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)));
    socket.on('end', () => this.push(null));
    socket.on('error', (e) => this.destroy(e));
    socket.on('close', () => {
      if (!this.destroyed) this.destroy();
    });
    if (initial.length > 0) this.onCipherData(initial);
  }

  private onCipherData(d: Uint8Array): void {
    const frames = this.reader.push(d);
    if (!Array.isArray(frames)) {
      this.destroy(new Error(frames.reason));
      return;
    }
    for (const f of frames) {
      if (f.type !== MSG_RECORD) {
        this.destroy(new Error(`noise: unexpected frame type ${f.type} after the handshake`));
        return;
      }
      const p = this.rx.open(f.body);
      if (!(p instanceof Uint8Array)) {
        this.destroy(new Error(p.reason));
        return;
      }
      this.onPlaintext(p);
    }
  }

  private onPlaintext(p: Uint8Array): void {
    if (this.pre === null) {
      if (p.length > 0 && !this.push(p)) this.socket.pause();
      return;
    }
    const buf = new Uint8Array(this.pre.length + p.length);
    buf.set(this.pre);
    buf.set(p, this.pre.length);
    this.pre = buf;
    if (buf.length < EARLY_HEADER_LEN) return;
    if (!EARLY_MAGIC.every((b, i) => buf[i] === b)) {
      this.pre = null;
      this.resolveEarly(null);
      this.onPlaintext(buf);
      return;
    }
    const len = new DataView(buf.buffer, buf.byteOffset).getUint32(5);
    if (len > EARLY_MAX_JSON) {
      this.destroy(new Error(`noise: early payload of ${len} bytes is too large`));
      return;
    }
    if (buf.length < EARLY_HEADER_LEN + len) return;
    let early: EarlyPayload;
    try {
      early = JSON.parse(new TextDecoder().decode(buf.subarray(EARLY_HEADER_LEN, EARLY_HEADER_LEN + len))) as EarlyPayload;
    } catch {
      this.destroy(new Error('noise: early payload is not JSON'));
      return;
    }
    this.pre = null;
    this.resolveEarly(early);
    this.onPlaintext(buf.subarray(EARLY_HEADER_LEN + len));
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    try {
      const frames = this.tx.sealAll(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      this.socket.write(Buffer.concat(frames), cb);
    } catch (e) {
      cb(e as Error);
    }
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.socket.end(cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.resolveEarly(null);
    this.socket.destroy();
    cb(err);
  }
}
