/**
 * Control transport (control-protocol.md §3–§6):
 *   1. GET {server}/key?v=<capver> over ordinary HTTP(S) (TLS validated): the server's Noise static key;
 *   2. POST /ts2021 with Upgrade: tailscale-control-protocol and the initiation in X-Tailscale-Handshake → 101;
 *   3. read the 51-byte response from the raw socket and finish Noise IK;
 *   4. HTTP/2 with prior knowledge over the NoiseConn (Node's http2 with createConnection).
 * Failures become MeshErrors with codes the CLI and UI can act on.
 */
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type { Socket } from 'node:net';
import { MeshError } from '../../../src-shared/errors.ts';
import { isZeroKey, parseKeyText } from '../../protocol/crypto/keys.ts';
import { HEADER_LEN, MSG_ERROR, initiate } from '../../protocol/crypto/noise.ts';
import { NoiseConn, type EarlyPayload } from '../io/noise-conn.ts';

export const UPGRADE_PROTOCOL = 'tailscale-control-protocol';

/** Validates a login-server URL: http(s) only, no credentials. */
export function parseServerUrl(text: string): URL {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new MeshError('bad-url', `"${text}" is not a URL (expected http://host:port or https://host)`, false);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new MeshError('bad-url', `login server must be http:// or https://, got ${u.protocol}`, false);
  if (u.username || u.password) throw new MeshError('bad-url', 'login server URL must not contain credentials', false);
  return u;
}

function netError(e: unknown, what: string): MeshError {
  const code = (e as NodeJS.ErrnoException).code ?? '';
  return new MeshError('unreachable', `${what}: ${code || (e as Error).message}`, true, { cause: e });
}

/** GET /key: returns the server's Noise public key (32 bytes). */
export async function fetchServerKey(server: URL, capver: number, timeoutMs = 10_000): Promise<Uint8Array> {
  const url = new URL(`/key?v=${capver}`, server);
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'error' });
  } catch (e) {
    const cause = (e as Error & { cause?: unknown }).cause ?? e;
    throw netError(cause, `cannot reach ${server.origin}`);
  }
  const text = await res.text().catch(() => '');
  if (res.status !== 200) {
    throw new MeshError('not-control-server', `${server.origin} is not a Tailscale control server: GET /key answered ${res.status}${text ? ` (${text.trim().slice(0, 80)})` : ''}`, false);
  }
  let key: unknown;
  try {
    key = (JSON.parse(text) as { publicKey?: unknown }).publicKey;
  } catch {
    throw new MeshError('not-control-server', `${server.origin} is not a Tailscale control server: /key did not return JSON`, false);
  }
  const k = typeof key === 'string' ? parseKeyText('mkey', key) : null;
  if (!k || isZeroKey(k)) throw new MeshError('not-control-server', `${server.origin} has no Noise key (control server too old, or not one)`, false);
  return k;
}

export interface ControlConn {
  session: http2.ClientHttp2Session;
  early: EarlyPayload | null;
  close(): void;
}

/** Performs the upgrade and the Noise handshake, and opens HTTP/2 over it. */
export async function dialControl(o: { server: URL; capver: number; machinePriv: Uint8Array; serverPub: Uint8Array; timeoutMs?: number; localAddress?: string }): Promise<ControlConn> {
  const timeoutMs = o.timeoutMs ?? 15_000;
  const pending = initiate({ version: o.capver, machinePriv: o.machinePriv, serverPub: o.serverPub });
  const secure = o.server.protocol === 'https:';
  const lib = secure ? https : http;
  const { socket, head } = await new Promise<{ socket: Socket; head: Buffer }>((resolve, reject) => {
    const req = lib.request({
      host: o.server.hostname.replace(/^\[|\]$/g, ''),
      port: o.server.port || (secure ? 443 : 80),
      method: 'POST',
      path: '/ts2021',
      headers: {
        Upgrade: UPGRADE_PROTOCOL,
        Connection: 'upgrade',
        'X-Tailscale-Handshake': Buffer.from(pending.message).toString('base64'),
        'Content-Length': '0',
      },
      timeout: timeoutMs,
      ...(o.localAddress ? { localAddress: o.localAddress } : {}),
      ...(secure ? { ALPNProtocols: ['http/1.1'], servername: o.server.hostname } : {}),
    });
    req.on('upgrade', (res, sock, hd) => {
      if (String(res.headers['upgrade'] ?? '').toLowerCase() !== UPGRADE_PROTOCOL) {
        sock.destroy();
        reject(new MeshError('not-control-server', `server upgraded to "${res.headers['upgrade']}", not ${UPGRADE_PROTOCOL}`, false));
        return;
      }
      resolve({ socket: sock, head: hd });
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body = (body + c).slice(0, 300)));
      // A busy server (429, 5xx: e.g. weft server's connection limits) is worth retrying; anything else is not a
      // control server.
      const code = res.statusCode ?? 0;
      const busy = code === 429 || code >= 500;
      res.on('end', () =>
        reject(new MeshError(busy ? 'unreachable' : 'not-control-server', `${o.server.origin} refused the Noise upgrade: HTTP ${code}${body ? ` (${body.trim()})` : ''}`, busy)),
      );
    });
    req.on('timeout', () => req.destroy(new MeshError('unreachable', `timed out connecting to ${o.server.origin}`, true)));
    req.on('error', (e) => reject(e instanceof MeshError ? e : netError(e, `cannot reach ${o.server.origin}`)));
    req.end();
  });

  // Read the handshake response (or an error frame) from the raw socket; "101 then EOF" is a rejection.
  const { response, rest } = await new Promise<{ response: Uint8Array; rest: Uint8Array }>((resolve, reject) => {
    let buf = new Uint8Array(head);
    const timer = setTimeout(() => fail(new MeshError('handshake-rejected', 'no Noise handshake response from the server', true)), timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onErr);
    };
    const fail = (e: Error): void => {
      cleanup();
      socket.destroy();
      reject(e);
    };
    const tryParse = (): void => {
      if (buf.length < HEADER_LEN) return;
      const len = (buf[1]! << 8) | buf[2]!;
      if (buf.length < HEADER_LEN + len) return;
      cleanup();
      socket.pause();
      if (buf[0] === MSG_ERROR) {
        socket.destroy();
        reject(new MeshError('handshake-rejected', `server refused the handshake: ${new TextDecoder().decode(buf.subarray(HEADER_LEN, HEADER_LEN + len))}`, false));
        return;
      }
      resolve({ response: buf.slice(0, HEADER_LEN + len), rest: buf.slice(HEADER_LEN + len) });
    };
    const onData = (d: Buffer): void => {
      const n = new Uint8Array(buf.length + d.length);
      n.set(buf);
      n.set(d, buf.length);
      buf = n;
      tryParse();
    };
    const onEnd = (): void =>
      fail(new MeshError('handshake-rejected', 'the server closed the connection after the upgrade (101 then EOF): it rejected the handshake, usually a capability version below its minimum or a wrong server key', false));
    const onErr = (e: Error): void => fail(netError(e, 'connection lost during the handshake'));
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onErr);
    tryParse();
  });

  const sess = pending.finish(response);
  if (sess.kind === 'malformed') {
    socket.destroy();
    throw new MeshError('handshake-rejected', sess.reason, false);
  }
  const conn = new NoiseConn(socket, sess.tx, sess.rx, rest);
  socket.resume();
  const session = http2.connect(`http://${o.server.host}`, { createConnection: () => conn });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new MeshError('protocol', 'HTTP/2 over Noise did not come up', true)), timeoutMs);
    session.once('connect', () => {
      clearTimeout(timer);
      resolve();
    });
    session.once('error', (e) => {
      clearTimeout(timer);
      reject(new MeshError('protocol', `HTTP/2 over Noise failed: ${e.message}`, true, { cause: e }));
    });
  });
  session.on('error', () => {}); // later errors surface through the streams and 'close'
  const early = await Promise.race([conn.early, new Promise<null>((r) => setTimeout(() => r(null), 0))]);
  return {
    session,
    early,
    close: () => {
      session.destroy();
      conn.destroy();
    },
  };
}

export interface Http2Reply {
  status: number;
  body: Uint8Array;
}

/** One request/response on the control session with a JSON body; the whole reply is buffered (≤ limit). */
export function postJson(session: http2.ClientHttp2Session, path: string, body: unknown, opts: { timeoutMs?: number; signal?: AbortSignal; limit?: number } = {}): Promise<Http2Reply> {
  return new Promise((resolve, reject) => {
    const payload = Buffer.from(JSON.stringify(body));
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/json', 'content-length': String(payload.length) }, opts.signal ? { signal: opts.signal } : {});
    } catch (e) {
      reject(new MeshError('unreachable', `control connection is closed: ${(e as Error).message}`, true, { cause: e }));
      return;
    }
    const limit = opts.limit ?? 4 << 20;
    const chunks: Buffer[] = [];
    let size = 0;
    let status = 0;
    if (opts.timeoutMs) stream.setTimeout(opts.timeoutMs, () => stream.close(http2.constants.NGHTTP2_CANCEL));
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        stream.close(http2.constants.NGHTTP2_CANCEL);
        reject(new MeshError('protocol', `reply to ${path} exceeds ${limit} bytes`, true));
        return;
      }
      chunks.push(c);
    });
    stream.on('end', () => resolve({ status, body: new Uint8Array(Buffer.concat(chunks)) }));
    stream.on('close', () => {
      if (!stream.readableEnded) reject(new MeshError(opts.signal?.aborted ? 'cancelled' : 'unreachable', `request ${path} did not complete`, true));
    });
    stream.on('error', (e) => reject(new MeshError('unreachable', `request ${path} failed: ${e.message}`, true, { cause: e })));
    stream.end(payload);
  });
}

/** Opens a long-lived POST whose response body is delivered chunk by chunk (the map stream). */
export function openStream(
  session: http2.ClientHttp2Session,
  path: string,
  body: unknown,
  handlers: { onStatus(status: number): void; onData(chunk: Uint8Array): void; onEnd(err: Error | null): void },
): { cancel(): void } {
  const payload = Buffer.from(JSON.stringify(body));
  let stream: http2.ClientHttp2Stream;
  try {
    stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/json', 'content-length': String(payload.length) });
  } catch (e) {
    queueMicrotask(() => handlers.onEnd(e as Error));
    return { cancel: () => {} };
  }
  let ended = false;
  const end = (err: Error | null): void => {
    if (ended) return;
    ended = true;
    handlers.onEnd(err);
  };
  // Node can emit DATA before 'response' for a stream whose headers and first data arrive together, so
  // data is held until the status is known; callers always see onStatus first.
  let queued: Uint8Array[] | null = [];
  stream.on('response', (h) => {
    handlers.onStatus(Number(h[':status']));
    const q = queued ?? [];
    queued = null;
    for (const c of q) handlers.onData(c);
  });
  stream.on('data', (c: Buffer) => {
    const chunk = new Uint8Array(c.buffer, c.byteOffset, c.byteLength);
    if (queued) queued.push(chunk);
    else handlers.onData(chunk);
  });
  stream.on('end', () => end(null));
  stream.on('error', (e) => end(e));
  stream.on('close', () => end(new Error('map stream closed')));
  stream.end(payload);
  return {
    cancel: () => {
      ended = true;
      stream.close(http2.constants.NGHTTP2_CANCEL);
    },
  };
}
