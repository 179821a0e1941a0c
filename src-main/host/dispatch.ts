/**
 * The validated dispatcher: the one place where an untrusted `(method, payload)` pair from a UI becomes a call of
 * a host handler. Both transports use it: the Electron IPC server (src-main/app/ipc-server.ts) and the dev
 * bridge's WebSocket (src-main/devbridge/). It never throws:
 *
 *   method not in the contract        → { ok: false, error: { code: 'unknown-method' } }
 *   payload fails the request schema  → { ok: false, error: { code: 'invalid-payload' } }
 *   handler throws MeshError/HostError → { ok: false, error: { code: <its code> } }
 *   handler throws anything else      → { ok: false, error: { code: 'internal' } }
 *   handler answers off-contract      → { ok: false, error: { code: 'internal' } } (the response is checked too)
 *   otherwise                         → { ok: true, value }
 *
 * Electron-free (no electron import); see style.md §2 items 10 and 12.
 */
import type { z } from 'zod';
import { MeshError } from '../../src-shared/errors.ts';
import {
  isMethodName,
  parseRequest,
  parseResponse,
  type IpcError,
  type IpcErrorCode,
  type IpcResult,
  type MethodName,
  type MethodResponse,
  type Methods,
} from '../../src-shared/ipc/contract.ts';

/** An error a host handler throws with an IPC-level code that MeshError does not have (e.g. 'helper-denied'). */
export class HostError extends Error {
  constructor(
    readonly code: IpcErrorCode,
    message: string,
    readonly retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'HostError';
  }

  toJSON(): IpcError {
    return { code: this.code, message: this.message, retryable: this.retryable };
  }
}

/** The parsed request a handler receives (defaults applied, unknown keys refused by the contract). */
export type MethodRequestParsed<M extends MethodName> = z.output<Methods[M]['request']>;

export type Handler<M extends MethodName> = (request: MethodRequestParsed<M>) => Promise<MethodResponse<M>>;

/** One handler per contract method; the host implements all of them. */
export type Handlers = { [M in MethodName]: Handler<M> };

/** What a transport calls with whatever arrived from the UI. */
export type Dispatch = (method: unknown, payload: unknown) => Promise<IpcResult<MethodResponse<MethodName>>>;

export interface DispatcherOptions {
  /** Where unexpected handler failures are logged (the UI only sees a short message). */
  logf?: (line: string) => void;
}

/** Maps any thrown value to the error that crosses the boundary. */
export function toIpcError(e: unknown): IpcError {
  if (e instanceof HostError || e instanceof MeshError) return { code: e.code, message: e.message, retryable: e.retryable };
  const message = e instanceof Error ? e.message : String(e);
  return { code: 'internal', message: `internal error: ${message.slice(0, 300)}`, retryable: false };
}

export function createDispatcher(handlers: Handlers, opts: DispatcherOptions = {}): Dispatch {
  const logf = opts.logf ?? ((): void => {});
  async function call<M extends MethodName>(method: M, payload: unknown): Promise<IpcResult<MethodResponse<M>>> {
    const req = parseRequest(method, payload);
    if (!req.ok) return req;
    const handler: Handler<M> = handlers[method];
    let value: MethodResponse<M>;
    try {
      value = await handler(req.value);
    } catch (e) {
      const error = toIpcError(e);
      if (error.code === 'internal') logf(`dispatch: ${method} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      return { ok: false, error };
    }
    const checked = parseResponse(method, value);
    if (!checked.ok) {
      logf(`dispatch: ${method} answered off-contract: ${checked.error.message}`);
      return { ok: false, error: { code: 'internal', message: `internal error: ${method} produced an invalid response`, retryable: false } };
    }
    return checked;
  }
  return async (method, payload) => {
    if (!isMethodName(method)) {
      const name = typeof method === 'string' ? JSON.stringify(method.slice(0, 80)) : typeof method;
      return { ok: false, error: { code: 'unknown-method', message: `unknown method ${name}`, retryable: false } };
    }
    return call(method, payload);
  };
}
