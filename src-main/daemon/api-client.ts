/**
 * A client of weftd's local API (api-server.ts): what the `weft` CLI, the dev bridge and the desktop app use.
 *
 * It opens this user's own operator socket if weftd made one, else the group's operator socket when this user may
 * (root, or a member of the operator group), else the read-only socket, so reads always work and writes work exactly for operators. The daemon's hello says which one it got;
 * a hello with another API version is refused. Requests are answered in any order, matched by id; every request has a
 * deadline, and a closed connection fails whatever was pending with a clear error.
 */
import net from 'node:net';
import { join } from 'node:path';
import {
  DAEMON_API_VERSION,
  parseResponse,
  type EventName,
  type IpcError,
  type IpcResult,
  type MethodName,
  type MethodRequest,
  type MethodResponse,
  isEventName,
} from '../../src-shared/ipc/contract.ts';
import { OPERATOR_SOCKET, READ_SOCKET, userSocketName, type Access } from './api-server.ts';

const MAX_LINE = 8 * 1024 * 1024;
const MAX_PENDING = 64;

export interface DaemonClient {
  /** What the daemon granted this connection. */
  readonly access: Access;
  /** The daemon's process id (from its hello). */
  readonly daemonPid: number;
  /** Any method, with any payload (the dev bridge forwards what a page sent); never throws. */
  dispatch(method: unknown, payload: unknown, timeoutMs?: number): Promise<IpcResult<unknown>>;
  /** A typed call; the answer is checked against the contract. */
  invoke<M extends MethodName>(method: M, request: MethodRequest<M>, timeoutMs?: number): Promise<IpcResult<MethodResponse<M>>>;
  /** Every contract event the daemon streams (subscribes on first use). Returns the unsubscribe function. */
  onEvent(listener: (event: EventName, payload: unknown) => void): () => void;
  /** Called once when the connection ends (daemon stopped or restarted). */
  onClose(listener: () => void): void;
  close(): void;
}

export class DaemonUnavailable extends Error {
  readonly code = 'daemon-unavailable';
  constructor(message: string) {
    super(message);
    this.name = 'DaemonUnavailable';
  }
}

function openSocket(path: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(path);
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

const errCode = (e: unknown): string | undefined => (e as NodeJS.ErrnoException).code;

/**
 * Connects to the daemon serving `runDir`. Rejects with DaemonUnavailable when nothing serves there, and with a
 * plain Error when the daemon speaks another API version.
 */
export async function connectDaemon(runDir: string, opts: { connectTimeoutMs?: number; readOnly?: boolean } = {}): Promise<DaemonClient> {
  let sock: net.Socket;
  try {
    // readOnly: a client that only reads (or a test) takes the read socket even when it could write.
    if (opts.readOnly) throw Object.assign(new Error('read-only requested'), { code: 'EACCES' });
    const uid = process.getuid?.();
    // An operator user's own socket first (named to weftd; no group membership needed), then the group's.
    const own = uid !== undefined && uid !== 0 ? await openSocket(join(runDir, userSocketName(uid))).catch(() => null) : null;
    sock = own ?? (await openSocket(join(runDir, OPERATOR_SOCKET)));
  } catch (e) {
    const code = errCode(e);
    if (code !== 'EACCES' && code !== 'EPERM' && code !== 'ENOENT' && code !== 'ECONNREFUSED') throw e;
    try {
      sock = await openSocket(join(runDir, READ_SOCKET));
    } catch (e2) {
      const c2 = errCode(e2);
      if (c2 === 'ENOENT' || c2 === 'ECONNREFUSED') throw new DaemonUnavailable(`the Weft service is not running (nothing answers on ${join(runDir, READ_SOCKET)})`);
      throw e2;
    }
  }
  return handshake(sock, opts.connectTimeoutMs ?? 5000);
}

function handshake(sock: net.Socket, timeoutMs: number): Promise<DaemonClient> {
  return new Promise((resolve, reject) => {
    let buf = '';
    let client: ReturnType<typeof makeClient> | null = null;
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('the Weft service did not say hello in time'));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('error', (e) => {
      if (!client) {
        clearTimeout(timer);
        reject(e);
      }
    });
    sock.on('close', () => {
      if (!client) {
        clearTimeout(timer);
        reject(new DaemonUnavailable('the Weft service closed the connection'));
      } else client.closed();
    });
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length > MAX_LINE) {
        sock.destroy(new Error('the Weft service sent a line that is too long'));
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let msg: unknown;
        try {
          msg = JSON.parse(line);
        } catch {
          continue;
        }
        if (!client) {
          const hello = (msg as { hello?: { api?: unknown; access?: unknown; pid?: unknown } }).hello;
          clearTimeout(timer);
          if (!hello || (hello.access !== 'read' && hello.access !== 'write')) {
            sock.destroy();
            reject(new Error(`the Weft service did not say hello: ${line.slice(0, 120)}`));
            return;
          }
          if (hello.api !== DAEMON_API_VERSION) {
            sock.destroy();
            reject(new Error(`the Weft service speaks API version ${String(hello.api)}, this client ${DAEMON_API_VERSION}: update one of them`));
            return;
          }
          client = makeClient(sock, hello.access, typeof hello.pid === 'number' ? hello.pid : 0);
          resolve(client.api);
        } else client.message(msg);
      }
    });
  });
}

function makeClient(sock: net.Socket, access: Access, daemonPid: number) {
  let nextId = 1;
  const pending = new Map<number, { resolve: (r: IpcResult<unknown>) => void; timer: NodeJS.Timeout }>();
  const eventListeners = new Set<(event: EventName, payload: unknown) => void>();
  const closeListeners = new Set<() => void>();
  let subscribed = false;
  let isClosed = false;

  const fail = (message: string): IpcError => ({ code: 'daemon-unavailable', message, retryable: true });

  const api: DaemonClient = {
    access,
    daemonPid,
    dispatch(method, payload, timeoutMs = 60_000) {
      if (isClosed) return Promise.resolve({ ok: false, error: fail('the connection to the Weft service is closed') });
      if (pending.size >= MAX_PENDING) return Promise.resolve({ ok: false, error: { code: 'internal', message: 'too many requests in flight', retryable: true } });
      const id = nextId++;
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          resolve({ ok: false, error: { code: 'internal', message: `the Weft service did not answer ${String(method)} within ${timeoutMs / 1000} s`, retryable: true } });
        }, timeoutMs);
        pending.set(id, { resolve, timer });
        sock.write(`${JSON.stringify({ id, method, payload })}\n`);
      });
    },
    async invoke(method, request, timeoutMs) {
      const r = await api.dispatch(method, request, timeoutMs);
      return r.ok ? parseResponse(method, r.value) : r;
    },
    onEvent(listener) {
      eventListeners.add(listener);
      if (!subscribed && !isClosed) {
        subscribed = true;
        sock.write(`${JSON.stringify({ subscribe: true })}\n`);
      }
      return () => eventListeners.delete(listener);
    },
    onClose(listener) {
      if (isClosed) listener();
      else closeListeners.add(listener);
    },
    close() {
      sock.end();
      sock.destroy();
    },
  };

  return {
    api,
    message(msg: unknown): void {
      if (typeof msg !== 'object' || msg === null) return;
      const m = msg as { id?: unknown; result?: unknown; event?: unknown; payload?: unknown };
      if (typeof m.id === 'number' && pending.has(m.id)) {
        const p = pending.get(m.id)!;
        pending.delete(m.id);
        clearTimeout(p.timer);
        const r = m.result as IpcResult<unknown> | undefined;
        p.resolve(r && typeof r === 'object' && 'ok' in r ? r : { ok: false, error: { code: 'internal', message: 'the Weft service sent a malformed answer', retryable: false } });
      } else if (isEventName(m.event)) {
        for (const l of eventListeners) l(m.event, m.payload);
      }
    },
    closed(): void {
      if (isClosed) return;
      isClosed = true;
      for (const [, p] of pending) {
        clearTimeout(p.timer);
        p.resolve({ ok: false, error: fail('the Weft service closed the connection') });
      }
      pending.clear();
      for (const l of closeListeners) l();
      closeListeners.clear();
    },
  };
}
