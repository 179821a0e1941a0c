/**
 * Test harness for `weft server`'s control plane: a server on 127.0.0.1:0 with the in-memory store, driven by
 * Weft's own ControlClient (the same code `weft up` runs), plus raw Noise/HTTP/2 helpers for hostile input.
 */
import http from 'node:http';
import type http2 from 'node:http2';
import type { Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlClient } from '../../../../src-main/engine/control/client.ts';
import { sortedPeers } from '../../../../src-main/engine/control/map-session.ts';
import { dialControl, fetchServerKey, type ControlConn } from '../../../../src-main/engine/control/transport.ts';
import { generateKeyPair } from '../../../../src-main/protocol/crypto/keys.ts';
import { initiate, type Session } from '../../../../src-main/protocol/crypto/noise.ts';
import { MemoryStore } from '../../../../src-main/server/store/memory.ts';
import type { ServerStore } from '../../../../src-main/server/store/types.ts';
import { createServer, type WeftServer, type WeftServerInit } from '../../../../src-main/server/server.ts';

export const CAPVER = 130;

/** A client's peers by Hostinfo hostname, in node-id order. */
export const peerNames = (c: ControlClient): string[] => sortedPeers(c.netmap).map((p) => p.Hostinfo?.Hostname ?? '?');

/** Polls `fn` every 20 ms until it returns a value other than undefined, for at most `ms`. */
export async function eventually<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

export class Harness {
  store: ServerStore = new MemoryStore();
  server!: WeftServer;
  readonly noiseKey = generateKeyPair().priv;
  readonly clients: ControlClient[] = [];
  readonly conns: ControlConn[] = [];
  readonly dirs: string[] = [];
  userId = 0;
  key = '';

  async start(o: Partial<WeftServerInit> = {}, port = 0): Promise<void> {
    this.server = await createServer({
      listen: { host: '127.0.0.1', port },
      store: this.store,
      noisePrivateKey: this.noiseKey,
      ...o,
      control: { pollMs: 50, offlineGraceMs: 100, ...o.control },
    });
    if (!this.userId) {
      this.userId = this.store.createUser('alice', Date.now()).id;
      this.key = this.store.createPreAuthKey({ userId: this.userId, reusable: true, ephemeral: false, expiresAt: null }, Date.now()).key;
    }
  }

  get url(): URL {
    return this.server.url;
  }

  async stateDir(): Promise<string> {
    const d = await mkdtemp(join(tmpdir(), 'weft-server-test-'));
    this.dirs.push(d);
    return d;
  }

  /** A ControlClient that has not started yet. */
  async client(hostname: string, o: { authKey?: string | null; stateDir?: string; logf?: (line: string) => void } = {}): Promise<ControlClient> {
    const authKey = o.authKey === undefined ? this.key : o.authKey;
    const c = new ControlClient({ server: this.url, stateDir: o.stateDir ?? (await this.stateDir()), hostname, ...(authKey ? { authKey } : {}), ...(o.logf ? { logf: o.logf } : {}) });
    this.clients.push(c);
    return c;
  }

  /** A started client that also reported endpoints and a home DERP region. */
  async join(hostname: string, endpoint: string, derp = 999, logf?: (line: string) => void): Promise<ControlClient> {
    const c = await this.client(hostname, logf ? { logf } : {});
    c.setNetInfo({ PreferredDERP: derp });
    await c.start();
    await c.pushLiteUpdate([endpoint]);
    return c;
  }

  /** A raw Noise + HTTP/2 connection with a fresh machine key (from `localAddress`, e.g. 127.0.0.2, when given). */
  async dial(machinePriv = generateKeyPair().priv, localAddress?: string): Promise<ControlConn> {
    const serverPub = await fetchServerKey(this.url, CAPVER);
    const c = await dialControl({ server: this.url, capver: CAPVER, machinePriv, serverPub, ...(localAddress ? { localAddress } : {}) });
    this.conns.push(c);
    return c;
  }

  async stop(): Promise<void> {
    for (const c of this.clients) await c.stop();
    for (const c of this.conns) c.close();
    await this.server?.close();
    for (const d of this.dirs) await rm(d, { recursive: true, force: true });
  }
}

/** Sends raw bytes as a POST body and returns the status and text of the reply. */
export function rawPost(session: http2.ClientHttp2Session, path: string, body: Uint8Array | string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const s = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/json' });
    let status = 0;
    const chunks: Buffer[] = [];
    s.on('response', (h) => (status = Number(h[':status'])));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve({ status, text: Buffer.concat(chunks).toString('utf8') }));
    s.on('error', reject);
    s.end(typeof body === 'string' ? body : Buffer.from(body));
  });
}

/** A raw `POST /ts2021` with a given handshake header; resolves with the status line and what followed it. */
export function rawUpgrade(url: URL, handshake: string | null, headers: Record<string, string> = {}, localAddress?: string): Promise<{ status: number; socket: Socket | null; head: Buffer; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      ...(localAddress ? { localAddress } : {}),
      host: url.hostname,
      port: url.port,
      method: 'POST',
      path: '/ts2021',
      headers: { Upgrade: 'tailscale-control-protocol', Connection: 'upgrade', 'Content-Length': '0', ...(handshake !== null ? { 'X-Tailscale-Handshake': handshake } : {}), ...headers },
    });
    req.on('upgrade', (res, socket, head) => resolve({ status: res.statusCode ?? 0, socket, head, body: '' }));
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, socket: null, head: Buffer.alloc(0), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Collects everything a socket sends until it closes. */
export function readUntilClose(socket: Socket, initial: Buffer, ms = 3000): Promise<{ bytes: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [initial];
    const timer = setTimeout(() => resolve({ bytes: Buffer.concat(chunks), closed: false }), ms);
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ bytes: Buffer.concat(chunks), closed: true });
    });
    socket.on('error', () => {});
  });
}

/** A completed raw Noise handshake: the socket after the 51-byte response, and the session ciphers. */
export async function rawHandshake(url: URL, serverPub: Uint8Array, version = CAPVER): Promise<{ socket: Socket; session: Session; rest: Buffer }> {
  const pending = initiate({ version, machinePriv: generateKeyPair().priv, serverPub });
  const up = await rawUpgrade(url, Buffer.from(pending.message).toString('base64'));
  if (!up.socket) throw new Error(`no upgrade: ${up.status}`);
  const socket = up.socket;
  let buf = up.head;
  while (buf.length < 51) {
    const d = await new Promise<Buffer>((resolve, reject) => {
      socket.once('data', resolve);
      socket.once('close', () => reject(new Error('closed during handshake')));
    });
    buf = Buffer.concat([buf, d]);
  }
  const s = pending.finish(new Uint8Array(buf.subarray(0, 51)));
  if (s.kind !== 'session') throw new Error(s.reason);
  return { socket, session: s, rest: buf.subarray(51) };
}
