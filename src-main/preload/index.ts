/**
 * Preload (sandboxed, CommonJS): exposes `window.weft`, exactly the WeftApi of src-shared/ipc/contract.ts, and
 * nothing else: no ipcRenderer, no channel names, no Node. Both directions are checked against the contract:
 * requests before they leave, responses and events before they reach the page (a bad event is dropped).
 */
import { contextBridge, ipcRenderer, type IpcRendererEvent } from 'electron';
import {
  SerializedErrorSchema,
  isEventName,
  isMethodName,
  parseEvent,
  parseRequest,
  parseResponse,
  type EventName,
  type EventPayload,
  type IpcResult,
  type MethodName,
  type MethodRequest,
  type MethodResponse,
  type WeftApi,
} from '../../src-shared/ipc/contract.ts';
import { EVENT_CHANNEL, INVOKE_CHANNEL } from './channels.ts';

type Deliver = (payload: unknown) => void;

// Owned here: the page's subscriptions, by event.
const subscribers = new Map<EventName, Set<Deliver>>();

ipcRenderer.on(EVENT_CHANNEL, (_e: IpcRendererEvent, event: unknown, payload: unknown) => {
  if (!isEventName(event)) return;
  const set = subscribers.get(event);
  if (!set || set.size === 0) return;
  const r = parseEvent(event, payload);
  if (!r.ok) return;
  for (const deliver of [...set]) {
    try {
      deliver(r.value);
    } catch {
      // A listener's failure must not stop the others.
    }
  }
});

const malformed = { code: 'internal', message: 'the main process sent a malformed reply', retryable: false } as const;

/** Checks what came back from the main process against the contract. */
function checkReply<M extends MethodName>(method: M, raw: unknown): IpcResult<MethodResponse<M>> {
  if (typeof raw !== 'object' || raw === null) return { ok: false, error: malformed };
  const r = raw as { ok?: unknown; value?: unknown; error?: unknown };
  if (r.ok === true) return parseResponse(method, r.value);
  if (r.ok === false) {
    const e = SerializedErrorSchema.safeParse(r.error);
    if (e.success) return { ok: false, error: e.data };
  }
  return { ok: false, error: malformed };
}

const weft: WeftApi = {
  async invoke<M extends MethodName>(method: M, request: MethodRequest<M>): Promise<IpcResult<MethodResponse<M>>> {
    if (!isMethodName(method)) return { ok: false, error: { code: 'unknown-method', message: `unknown method ${String(method)}`, retryable: false } };
    const req = parseRequest(method, request);
    if (!req.ok) return req;
    try {
      return checkReply(method, await ipcRenderer.invoke(INVOKE_CHANNEL, method, req.value));
    } catch {
      return { ok: false, error: { code: 'internal', message: 'the main process refused or failed the call', retryable: true } };
    }
  },
  on<E extends EventName>(event: E, listener: (payload: EventPayload<E>) => void): () => void {
    if (!isEventName(event)) throw new TypeError(`unknown event ${String(event)}`);
    if (typeof listener !== 'function') throw new TypeError('listener must be a function');
    let set = subscribers.get(event);
    if (!set) {
      set = new Set();
      subscribers.set(event, set);
    }
    const deliver: Deliver = (p) => listener(p as EventPayload<E>);
    set.add(deliver);
    return () => {
      set.delete(deliver);
    };
  },
};

contextBridge.exposeInMainWorld('weft', weft);
