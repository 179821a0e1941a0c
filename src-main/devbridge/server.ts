/**
 * Dev bridge: the IPC contract (src-shared/ipc/contract.ts) over a WebSocket on 127.0.0.1, so the renderer can run
 * in a plain browser (Vite dev server, Playwright) against a real engine. Electron-free.
 *
 * Wire format (JSON text frames), the counterpart of src-renderer/src/ipc/ws-api.ts:
 *   client → bridge  { id, method, payload }   id: a safe integer or a string of at most 64 characters
 *   bridge → client  { id, result }            result: the backend's IpcResult (id null when the request had none)
 *   bridge → client  { event, payload }        every backend event, to every client
 *
 * Guards: only loopback listening; the connection URL must carry the bridge's random per-run token
 * (`ws://127.0.0.1:PORT/?token=…`, printed once by `weft dev-bridge`), whatever the client, Origin or not, so another
 * local process or user cannot drive the engine through it; the Host header must name the bridge (DNS rebinding); a
 * browser's Origin must be allowed (the Vite dev server's origin); at most
 * `maxConnections` clients and `maxInFlight` unanswered requests per client; frames over `maxMessageBytes` get an
 * 'invalid-payload' reply (far larger ones close the socket, enforced by ws's maxPayload); binary frames, bad
 * JSON and malformed requests get 'invalid-payload'; a backend that throws or answers garbage gets 'internal'.
 * Nothing a client sends can crash the process.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { isEventName, type EventName, type IpcResult } from '../../src-shared/ipc/contract.ts';
import { checkBackendResult, parseClientFrame, type RequestId } from '../host/frames.ts';

export { checkBackendResult, parseClientFrame, type ClientFrame, type RequestId } from '../host/frames.ts';

/** What the bridge needs from the host: the validated dispatcher and its event stream. */
export interface BridgeBackend {
  /** Validates `method` and `payload` and answers; should never throw (the bridge turns a throw into 'internal'). */
  dispatch(method: unknown, payload: unknown): Promise<IpcResult<unknown>>;
  /** Subscribes to every contract event the host emits; returns the unsubscribe function. */
  onEvent(listener: (event: EventName, payload: unknown) => void): () => void;
}

export interface DevBridgeOptions {
  backend: BridgeBackend;
  /** The per-run secret every connection must present as `?token=`. At least 16 characters. */
  token: string;
  /** Loopback address to listen on. @default '127.0.0.1' */
  host?: string;
  /** TCP port; 0 picks a free one. @default 0 */
  port?: number;
  /**
   * Whether a browser Origin may connect (e.g. the Vite dev server's `http://127.0.0.1:5173`). A request without
   * an Origin header (not a browser) is always allowed. @default no browser origin is allowed
   */
  allowOrigin?: (origin: string) => boolean;
  /** Request frames above this get an 'invalid-payload' reply. @default 64 KiB */
  maxMessageBytes?: number;
  /** @default 8 */
  maxConnections?: number;
  /** Unanswered requests per client; more get a retryable 'internal' reply. @default 32 */
  maxInFlight?: number;
  /** A client that does not answer a ping within this is dropped. @default 15000 */
  heartbeatMs?: number;
  logf?: (line: string) => void;
}

export interface DevBridge {
  readonly port: number;
  /** ws://127.0.0.1:PORT/?token=TOKEN: what a page needs to connect. */
  readonly url: string;
  readonly clientCount: number;
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);
/** A client this far behind on reading its events is dropped rather than buffered without limit. */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

function rawBytes(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** A fresh per-run token: 32 random bytes, base64url (URL-safe, no padding). */
export function newBridgeToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Whether the request URL's `token` parameter is the bridge's token (compared in constant time). */
export function tokenOk(url: string | undefined, token: string): boolean {
  let given: string | null;
  try {
    given = new URL(url ?? '/', 'http://bridge.invalid').searchParams.get('token');
  } catch {
    return false;
  }
  if (given === null) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Whether the Host header names this server on loopback (a DNS-rebinding guard). */
export function hostHeaderOk(host: string | undefined, port: number): boolean {
  if (!host) return false;
  let u: URL;
  try {
    u = new URL(`http://${host}`);
  } catch {
    return false;
  }
  const name = u.hostname.replace(/^\[|\]$/g, '');
  return LOOPBACK.has(name) && (u.port === '' ? 80 : Number(u.port)) === port;
}

function refuse(socket: Duplex, status: number, text: string): void {
  socket.on('error', () => undefined);
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
}

interface Client {
  ws: WebSocket;
  inFlight: number;
  alive: boolean;
}

/** Starts the bridge; resolves once it listens. */
export async function startDevBridge(o: DevBridgeOptions): Promise<DevBridge> {
  const host = o.host ?? '127.0.0.1';
  if (!LOOPBACK.has(host)) throw new Error(`dev bridge: refusing to listen on ${host}; only loopback is allowed`);
  if (o.token.length < 16) throw new Error('dev bridge: the token must be at least 16 characters');
  const maxBytes = o.maxMessageBytes ?? 64 * 1024;
  const maxConnections = o.maxConnections ?? 8;
  const maxInFlight = o.maxInFlight ?? 32;
  const heartbeatMs = o.heartbeatMs ?? 15_000;
  const logf = o.logf ?? (() => undefined);
  const allowOrigin = o.allowOrigin ?? (() => false);

  const clients = new Set<Client>();
  // Frames up to 4× the limit are read and answered with an error; bigger ones close the socket (1009).
  const wss = new WebSocketServer({ noServer: true, maxPayload: maxBytes * 4, perMessageDeflate: false });
  const http: Server = createServer((_req, res) => {
    res.writeHead(426, { 'Content-Type': 'text/plain', Connection: 'close' });
    res.end('weft dev bridge: WebSocket only\n');
  });
  http.on('clientError', (_e, socket) => refuse(socket, 400, 'Bad Request'));

  let port = 0;
  let stopping = false;
  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    if (stopping) return refuse(socket, 503, 'Closing');
    if (!tokenOk(req.url, o.token)) {
      logf('dev bridge: refused a connection without the right token');
      return refuse(socket, 403, 'Forbidden: the bridge URL printed at start (with its token) is needed');
    }
    if (!hostHeaderOk(req.headers.host, port)) return refuse(socket, 403, 'Forbidden host');
    const origin = req.headers.origin;
    if (origin !== undefined && !allowOrigin(origin)) {
      logf(`dev bridge: refused a connection from origin ${origin}`);
      return refuse(socket, 403, 'Forbidden origin');
    }
    if (clients.size >= maxConnections) return refuse(socket, 503, 'Too many connections');
    wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws));
  });

  const send = (c: Client, frame: unknown): void => {
    if (c.ws.readyState !== c.ws.OPEN) return;
    if (c.ws.bufferedAmount > MAX_BUFFERED_BYTES) {
      logf('dev bridge: dropping a client that does not read its messages');
      c.ws.terminate();
      return;
    }
    let text: string;
    try {
      text = JSON.stringify(frame);
    } catch (e) {
      logf(`dev bridge: cannot serialise a frame: ${(e as Error).message}`);
      return;
    }
    c.ws.send(text);
  };

  const reply = (c: Client, id: RequestId | null, result: IpcResult<unknown>): void => {
    try {
      JSON.stringify(result);
    } catch (e) {
      result = { ok: false, error: { code: 'internal', message: `the result is not serialisable: ${(e as Error).message}`, retryable: false } };
    }
    send(c, { id, result });
  };

  const handle = async (c: Client, data: RawData, isBinary: boolean): Promise<void> => {
    const f = parseClientFrame(rawBytes(data), isBinary, maxBytes);
    if (f.kind === 'reject') return reply(c, f.id, { ok: false, error: f.error });
    if (c.inFlight >= maxInFlight) {
      return reply(c, f.id, { ok: false, error: { code: 'internal', message: `more than ${maxInFlight} requests in flight`, retryable: true } });
    }
    c.inFlight++;
    let result: IpcResult<unknown>;
    try {
      result = checkBackendResult(await o.backend.dispatch(f.method, f.payload));
    } catch (e) {
      logf(`dev bridge: ${f.method} threw: ${(e as Error).stack ?? String(e)}`);
      result = { ok: false, error: { code: 'internal', message: `${f.method} failed: ${(e as Error).message}`, retryable: false } };
    } finally {
      c.inFlight--;
    }
    reply(c, f.id, result);
  };

  const onConnection = (ws: WebSocket): void => {
    const c: Client = { ws, inFlight: 0, alive: true };
    clients.add(c);
    ws.on('pong', () => {
      c.alive = true;
    });
    ws.on('message', (data, isBinary) => {
      void handle(c, data, isBinary).catch((e: unknown) => logf(`dev bridge: handling a message failed: ${(e as Error).message}`));
    });
    ws.on('error', (e) => logf(`dev bridge: client error: ${e.message}`));
    ws.on('close', () => clients.delete(c));
  };

  const unsubscribe = o.backend.onEvent((event, payload) => {
    if (!isEventName(event)) return;
    for (const c of clients) send(c, { event, payload });
  });

  const heartbeat = setInterval(() => {
    for (const c of clients) {
      if (!c.alive) {
        c.ws.terminate();
        continue;
      }
      c.alive = false;
      try {
        c.ws.ping();
      } catch {
        /* closing */
      }
    }
  }, heartbeatMs);
  heartbeat.unref();

  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error): void => reject(e);
    http.once('error', onError);
    http.listen(o.port ?? 0, host, () => {
      http.off('error', onError);
      resolve();
    });
  });
  port = (http.address() as AddressInfo).port;
  http.on('error', (e) => logf(`dev bridge: server error: ${e.message}`));
  const urlHost = host.includes(':') ? `[${host}]` : host;

  let closing: Promise<void> | undefined;
  return {
    port,
    url: `ws://${urlHost}:${port}/?token=${encodeURIComponent(o.token)}`,
    get clientCount() {
      return clients.size;
    },
    close() {
      closing ??= (async () => {
        stopping = true;
        clearInterval(heartbeat);
        unsubscribe();
        // Stop listening first, so a client's reconnect cannot slip in while the others close.
        const stopped = new Promise<void>((r) => http.close(() => r()));
        http.closeAllConnections();
        for (const c of clients) c.ws.close(1001, 'bridge closing');
        // Give clients a moment to close cleanly, then cut them.
        if (clients.size > 0) await new Promise((r) => setTimeout(r, 100));
        for (const c of clients) c.ws.terminate();
        wss.close();
        await stopped;
      })();
      return closing;
    },
  };
}
