/**
 * Wraps a WeftApi (preload or WebSocket) so that nothing unvalidated reaches the store: requests are checked before
 * they leave, every response and event payload is parsed against the contract, and a transport that throws or
 * answers garbage becomes a typed IpcError. Invalid payloads are also reported through `onInvalid` (the UI shows a
 * banner); events that fail validation are dropped.
 */
import {
  parseEvent,
  parseRequest,
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

export type TransportKind = 'preload' | 'ws';

/** What the rest of the renderer uses; typed end to end by the contract's method and event names. */
export interface WeftClient {
  readonly transport: TransportKind;
  call<M extends MethodName>(method: M, request: MethodRequest<M>): Promise<IpcResult<MethodResponse<M>>>;
  on<E extends EventName>(event: E, listener: (payload: EventPayload<E>) => void): () => void;
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export function guardApi(api: WeftApi, transport: TransportKind, onInvalid: (error: IpcError) => void): WeftClient {
  const invalid = (error: IpcError): { ok: false; error: IpcError } => {
    onInvalid(error);
    return { ok: false, error };
  };

  return {
    transport,

    async call(method, request) {
      const req = parseRequest(method, request);
      if (!req.ok) return { ok: false, error: req.error };
      let raw: unknown;
      try {
        raw = await api.invoke(method, request);
      } catch (e) {
        return { ok: false, error: { code: 'internal', message: `${method} failed: ${messageOf(e)}`, retryable: true } };
      }
      if (!isRecord(raw) || typeof raw['ok'] !== 'boolean') {
        return invalid({ code: 'invalid-payload', message: `invalid ${method} result: not an IpcResult`, retryable: false });
      }
      if (raw['ok'] === true) {
        const r = parseResponse(method, raw['value']);
        return r.ok ? r : invalid(r.error);
      }
      const e = SerializedErrorSchema.safeParse(raw['error']);
      return e.success ? { ok: false, error: e.data } : invalid({ code: 'invalid-payload', message: `invalid ${method} error`, retryable: false });
    },

    on(event, listener) {
      return api.on(event, (payload: unknown) => {
        const r = parseEvent(event, payload);
        if (r.ok) listener(r.value);
        else onInvalid(r.error);
      });
    },
  };
}
