/**
 * The IPC contract over a WebSocket, for the renderer running in a plain browser against the dev bridge
 * (`weft dev-bridge`, src-main/devbridge/server.ts) instead of Electron's preload.
 *
 * Wire format (JSON text frames):
 *   UI → bridge   { id, method, payload }        one request; `id` is a number unique on this connection
 *   bridge → UI   { id, result }                 `result` is the IpcResult for that request
 *   bridge → UI   { event, payload }             a push event
 *
 * Behaviour:
 *  - Calls made before the socket is open wait for it (at most `connectWaitMs`), then fail with a retryable
 *    'internal' error. Calls already sent fail with a retryable 'internal' error when the connection drops.
 *  - The socket reconnects by itself with a bounded exponential backoff (with jitter).
 *  - Every response and push is validated against the contract (parseResponse / parseEvent); a malformed one
 *    becomes an 'invalid-payload' error (responses) or is dropped with a warning (pushes).
 *  - After a reconnect, mesh:delta listeners would have missed deltas, so the client fetches a fresh snapshot and
 *    emits it as one delta that replaces everything (peers no longer present are removed).
 *
 * Uses only the WebSocket API (no eval, no inline code), so it runs under a strict CSP as long as connect-src
 * allows the bridge's ws:// origin.
 */
import {
  isEventName,
  parseEvent,
  parseResponse,
  SerializedErrorSchema,
  type EventName,
  type EventPayload,
  type IpcError,
  type IpcResult,
  type MethodName,
  type MethodRequest,
  type MethodResponse,
  type WeftApi,
} from '../../../src-shared/ipc/contract.ts';
import type { MeshSnapshot } from '../../../src-shared/model/mesh.ts';

/** The subset of the WHATWG WebSocket this client uses (the browser's, or `ws` in Node tests). */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
}

export interface WsApiOptions {
  /** Creates the socket; default `new WebSocket(url)` from the global scope. */
  createSocket?: (url: string) => SocketLike;
  /** How long a call waits for the connection before failing. @default 15000 */
  connectWaitMs?: number;
  /** First reconnect delay; doubles per failed attempt up to `maxBackoffMs`. @default 250 */
  minBackoffMs?: number;
  /** @default 5000 */
  maxBackoffMs?: number;
  /** Warnings (malformed frames); default console.warn. */
  warn?: (message: string) => void;
}

/** A WeftApi that can also be closed (tests, page unload) and tells whether it is connected. */
export interface WsWeftApi extends WeftApi {
  readonly connected: boolean;
  /** Stops reconnecting, closes the socket, fails every pending call. */
  close(): void;
}

const OPEN = 1;
/** Requests never need more; the bridge enforces its own limit too. */
const MAX_REQUEST_CHARS = 256 * 1024;

type AnyListener = (payload: never) => void;

interface Pending {
  method: MethodName;
  resolve: (r: IpcResult<unknown>) => void;
}

interface Waiting {
  frame: string;
  id: number;
  pending: Pending;
  timer: ReturnType<typeof setTimeout>;
}

function internal(message: string, retryable = true): IpcError {
  return { code: 'internal', message, retryable };
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function defaultSocket(url: string): SocketLike {
  const Ctor = (globalThis as { WebSocket?: new (url: string) => SocketLike }).WebSocket;
  if (!Ctor) throw new Error('connectWsApi: no WebSocket implementation in this environment');
  return new Ctor(url);
}

/** Connects to the dev bridge at `url` (ws:// or wss://) and returns the contract's API over it. */
export function connectWsApi(url: string, options: WsApiOptions = {}): WsWeftApi {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`connectWsApi: not a URL: ${url}`);
  }
  if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') throw new Error(`connectWsApi: not a ws:// or wss:// URL: ${url}`);

  const createSocket = options.createSocket ?? defaultSocket;
  const connectWaitMs = options.connectWaitMs ?? 15_000;
  const minBackoff = options.minBackoffMs ?? 250;
  const maxBackoff = options.maxBackoffMs ?? 5000;
  const warn = options.warn ?? ((m: string) => console.warn(m));

  const listeners = new Map<EventName, Set<AnyListener>>();
  /** Sent, awaiting `{id, result}`. */
  const inflight = new Map<number, Pending>();
  /** Not sent yet: waiting for the socket to open. */
  const waiting: Waiting[] = [];
  /** Every peer id this client has handed to the UI, so a resync can remove the ones that are gone. */
  const knownPeers = new Set<string>();

  let nextId = 1;
  let socket: SocketLike | null = null;
  let open = false;
  let closed = false;
  let everOpened = false;
  let attempt = 0;
  let reconnectTimer: ReturnType<typeof setTimeout> | null = null;

  const emit = (event: EventName, payload: unknown): void => {
    const set = listeners.get(event);
    if (!set) return;
    for (const l of [...set]) {
      try {
        (l as (p: unknown) => void)(payload);
      } catch (e) {
        warn(`weft ws-api: a ${event} listener threw: ${(e as Error).message}`);
      }
    }
  };

  const rememberPeers = (peers: readonly { id: string }[] | undefined): void => {
    for (const p of peers ?? []) knownPeers.add(p.id);
  };

  const onFrame = (data: unknown): void => {
    if (typeof data !== 'string') {
      warn('weft ws-api: ignoring a binary frame');
      return;
    }
    let msg: unknown;
    try {
      msg = JSON.parse(data);
    } catch {
      warn('weft ws-api: ignoring a frame that is not JSON');
      return;
    }
    if (!isRecord(msg)) {
      warn('weft ws-api: ignoring a frame that is not an object');
      return;
    }
    if ('event' in msg) {
      const event = msg['event'];
      if (!isEventName(event)) {
        warn(`weft ws-api: ignoring unknown event ${String(event)}`);
        return;
      }
      const r = parseEvent(event, msg['payload']);
      if (!r.ok) {
        warn(`weft ws-api: dropping ${event}: ${r.error.message}`);
        return;
      }
      if (event === 'mesh:delta') {
        const d = r.value as EventPayload<'mesh:delta'>;
        rememberPeers(d.upsertPeers);
        for (const id of d.removePeers ?? []) knownPeers.delete(id);
      }
      emit(event, r.value);
      return;
    }
    const id = msg['id'];
    if (typeof id !== 'number') {
      // The bridge answers an unparseable request with id null; nothing here is waiting for it.
      warn('weft ws-api: ignoring a response without a request id');
      return;
    }
    const p = inflight.get(id);
    if (!p) return;
    inflight.delete(id);
    p.resolve(checkResult(p.method, msg['result']));
  };

  const checkResult = (method: MethodName, result: unknown): IpcResult<unknown> => {
    if (!isRecord(result) || typeof result['ok'] !== 'boolean') {
      return { ok: false, error: { code: 'invalid-payload', message: `invalid ${method} result: not an IpcResult`, retryable: false } };
    }
    if (result['ok']) {
      const r = parseResponse(method, result['value']);
      if (r.ok && method === 'mesh:snapshot') rememberPeers((r.value as MeshSnapshot).peers);
      return r;
    }
    const e = SerializedErrorSchema.safeParse(result['error']);
    return e.success ? { ok: false, error: e.data } : { ok: false, error: { code: 'invalid-payload', message: `invalid ${method} error`, retryable: false } };
  };

  const failInflight = (why: string): void => {
    const all = [...inflight.values()];
    inflight.clear();
    for (const p of all) p.resolve({ ok: false, error: internal(why) });
  };

  const flushWaiting = (): void => {
    while (open && socket && waiting.length > 0) {
      const w = waiting.shift()!;
      clearTimeout(w.timer);
      sendNow(w.id, w.frame, w.pending);
    }
  };

  const sendNow = (id: number, frame: string, p: Pending): void => {
    inflight.set(id, p);
    try {
      socket!.send(frame);
    } catch (e) {
      inflight.delete(id);
      p.resolve({ ok: false, error: internal(`dev bridge send failed: ${(e as Error).message}`) });
    }
  };

  /** After a reconnect: one snapshot, as a delta that replaces everything the UI holds. */
  const resync = async (): Promise<void> => {
    if (!listeners.get('mesh:delta')?.size) return;
    const r = await call('mesh:snapshot', {});
    if (!r.ok) {
      warn(`weft ws-api: resync after reconnect failed: ${r.error.message}`);
      return;
    }
    const s = r.value;
    const now = new Set(s.peers.map((p) => p.id));
    const removePeers = [...knownPeers].filter((id) => !now.has(id));
    for (const id of removePeers) knownPeers.delete(id);
    emit('mesh:delta', { control: s.control, self: s.self, regions: s.regions, netcheck: s.netcheck, upsertPeers: s.peers, removePeers });
  };

  const scheduleReconnect = (): void => {
    if (closed || reconnectTimer) return;
    const base = Math.min(maxBackoff, minBackoff * 2 ** Math.min(attempt, 16));
    attempt++;
    const delay = base / 2 + Math.random() * (base / 2);
    reconnectTimer = setTimeout(() => {
      reconnectTimer = null;
      connect();
    }, delay);
  };

  const connect = (): void => {
    if (closed) return;
    let s: SocketLike;
    try {
      s = createSocket(url);
    } catch (e) {
      warn(`weft ws-api: cannot open ${url}: ${(e as Error).message}`);
      scheduleReconnect();
      return;
    }
    socket = s;
    s.onopen = () => {
      if (socket !== s) return;
      open = true;
      attempt = 0;
      const again = everOpened;
      everOpened = true;
      flushWaiting();
      if (again) void resync();
    };
    s.onmessage = (ev) => {
      if (socket === s) onFrame(ev.data);
    };
    s.onerror = () => {
      // The close event follows and does the work; browsers give no detail here.
    };
    s.onclose = () => {
      if (socket !== s) return;
      socket = null;
      open = false;
      failInflight('the connection to the dev bridge was lost');
      scheduleReconnect();
    };
  };

  function call<M extends MethodName>(method: M, request: MethodRequest<M>): Promise<IpcResult<MethodResponse<M>>> {
    return new Promise((resolve) => {
      if (closed) {
        resolve({ ok: false, error: internal('the dev bridge client is closed', false) });
        return;
      }
      const id = nextId++;
      let frame: string;
      try {
        frame = JSON.stringify({ id, method, payload: request });
      } catch (e) {
        resolve({ ok: false, error: { code: 'invalid-payload', message: `${method} request is not serialisable: ${(e as Error).message}`, retryable: false } });
        return;
      }
      if (frame.length > MAX_REQUEST_CHARS) {
        resolve({ ok: false, error: { code: 'invalid-payload', message: `${method} request too large`, retryable: false } });
        return;
      }
      const pending: Pending = { method, resolve: resolve as (r: IpcResult<unknown>) => void };
      if (open && socket?.readyState === OPEN) {
        sendNow(id, frame, pending);
        return;
      }
      const w: Waiting = {
        frame,
        id,
        pending,
        timer: setTimeout(() => {
          const i = waiting.indexOf(w);
          if (i >= 0) waiting.splice(i, 1);
          resolve({ ok: false, error: internal(`no connection to the dev bridge at ${url}`) });
        }, connectWaitMs),
      };
      waiting.push(w);
    });
  }

  connect();

  return {
    invoke: call,
    on<E extends EventName>(event: E, listener: (payload: EventPayload<E>) => void): () => void {
      let set = listeners.get(event);
      if (!set) {
        set = new Set();
        listeners.set(event, set);
      }
      const l = listener as AnyListener;
      set.add(l);
      return () => {
        listeners.get(event)?.delete(l);
      };
    },
    get connected() {
      return open;
    },
    close() {
      if (closed) return;
      closed = true;
      if (reconnectTimer) clearTimeout(reconnectTimer);
      reconnectTimer = null;
      for (const w of waiting.splice(0)) {
        clearTimeout(w.timer);
        w.pending.resolve({ ok: false, error: internal('the dev bridge client is closed', false) });
      }
      failInflight('the dev bridge client is closed');
      const s = socket;
      socket = null;
      open = false;
      s?.close(1000, 'closed');
    },
  };
}
