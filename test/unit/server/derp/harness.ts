/**
 * Loopback harness for the DERP server tests: an HTTP(S) listener on 127.0.0.1:0 that hands `/derp` upgrades
 * and the probe paths to a DerpServer (as the control server will), and a raw byte-level client for checking
 * frames exactly.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { generateKeyPair } from '../../../../src-main/protocol/crypto/keys.ts';
import { DerpFrameReader, encodeFrame, sealClientInfo, type RawFrame } from '../../../../src-main/protocol/wire/derp.ts';
import { createDerpServer, type DerpServer, type DerpServerInit } from '../../../../src-main/server/derp/server.ts';
import { pathOf } from '../../../../src-main/server/derp/http.ts';

export interface Harness {
  port: number;
  derp: DerpServer;
  serverPriv: Uint8Array;
  serverPub: Uint8Array;
  logs: string[];
  close(): Promise<void>;
}

export async function startHarness(init: Partial<DerpServerInit> = {}, tlsOpts?: { key: string; cert: string }): Promise<Harness> {
  const kp = generateKeyPair();
  const logs: string[] = [];
  const derp = createDerpServer({ privateKey: kp.priv, verifyClient: () => true, logf: (l) => logs.push(l), ...init });
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (!derp.handleRequest(req, res)) {
      res.writeHead(404);
      res.end();
    }
  };
  const srv = tlsOpts ? https.createServer(tlsOpts, onRequest) : http.createServer(onRequest);
  srv.on('upgrade', (req: http.IncomingMessage, sock: net.Socket, head: Buffer) => {
    if (pathOf(req.url) === '/derp') derp.handleUpgrade(req, sock, head);
    else sock.destroy();
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as AddressInfo).port;
  return {
    port,
    derp,
    serverPriv: kp.priv,
    serverPub: derp.publicKey,
    logs,
    close: async () => {
      await derp.close();
      srv.closeAllConnections();
      await new Promise<void>((resolve) => srv.close(() => resolve()));
    },
  };
}

/** A raw DERP client: sends the upgrade request, splits the HTTP response head from the frames. */
export class RawClient {
  readonly sock: net.Socket;
  /** The HTTP response head (up to and including the blank line), once complete. */
  head = '';
  /** Every byte received after the response head, in order. */
  readonly rawFrames: Uint8Array[] = [];
  readonly closed: Promise<void>;
  private pre = Buffer.alloc(0);
  private headDone = false;
  private readonly reader = new DerpFrameReader();
  private readonly frames: RawFrame[] = [];
  private waiters: (() => void)[] = [];
  isClosed = false;

  constructor(port: number, opts: { headers?: Record<string, string>; skipHttp?: boolean; tls?: boolean } = {}) {
    this.sock = opts.tls ? tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }) : net.connect({ host: '127.0.0.1', port });
    this.headDone = opts.skipHttp === true;
    const headers = { Host: '127.0.0.1', Upgrade: 'DERP', Connection: 'Upgrade', ...opts.headers };
    const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`);
    this.sock.write(`GET /derp HTTP/1.1\r\n${lines.join('')}\r\n`);
    this.sock.on('data', (d: Buffer) => this.onData(d));
    this.sock.on('error', () => {});
    this.closed = new Promise((resolve) =>
      this.sock.on('close', () => {
        this.isClosed = true;
        this.wake();
        resolve();
      }),
    );
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private onData(d: Buffer): void {
    let rest: Buffer = d;
    if (!this.headDone) {
      this.pre = Buffer.concat([this.pre, d]);
      const end = this.pre.indexOf('\r\n\r\n');
      if (end < 0) return;
      this.head = this.pre.subarray(0, end + 4).toString('latin1');
      rest = this.pre.subarray(end + 4);
      this.headDone = true;
    }
    if (rest.length === 0) return;
    const bytes = new Uint8Array(rest);
    this.rawFrames.push(bytes);
    for (const f of this.reader.push(bytes)) if (f.kind === 'frame') this.frames.push(f);
    this.wake();
  }

  /** The next frame (optionally of one type, skipping others), or null if the connection closes first. */
  async next(type?: number, timeoutMs = 3000): Promise<RawFrame | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.frames.findIndex((f) => type === undefined || f.type === type);
      if (i >= 0) return this.frames.splice(i, 1)[0]!;
      if (this.isClosed) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame${type === undefined ? '' : ` of type ${type}`} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  write(b: Uint8Array | string): void {
    this.sock.write(b);
  }

  /** Reads ServerKey and sends a ClientInfo for `nodePriv`. */
  async handshake(nodePriv: Uint8Array, serverPub: Uint8Array): Promise<void> {
    await this.next(0x01);
    this.write(encodeFrame(sealClientInfo({ clientPriv: nodePriv, serverPub, info: { version: 2, canAckPings: true } })));
  }

  destroy(): void {
    this.sock.destroy();
  }
}

/** Resolves when `cond()` holds, polling every 5 ms; throws after `timeoutMs`. */
export async function until(cond: () => boolean, timeoutMs = 3000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A packet that passes derper's disco check (magic "TS💬" and at least 62 bytes). */
export function discoLike(fill = 0xaa, len = 80): Uint8Array {
  const p = new Uint8Array(len).fill(fill);
  p.set([0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac], 0);
  return p;
}
