/**
 * The request frames every local transport of the IPC contract shares (the dev bridge's WebSocket, weftd's Unix
 * socket): `{ id, method, payload }` in, `{ id, result }` out. Pure; nothing here throws on bad input.
 */
import { isMethodName, type IpcError, type IpcResult } from '../../src-shared/ipc/contract.ts';

export type RequestId = number | string;

/** A parsed client frame: a request to dispatch, or an error to answer right away. */
export type ClientFrame =
  | { kind: 'request'; id: RequestId; method: string; payload: unknown }
  | { kind: 'reject'; id: RequestId | null; error: IpcError };

function invalid(message: string): IpcError {
  return { code: 'invalid-payload', message, retryable: false };
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function validId(x: unknown): x is RequestId {
  return (typeof x === 'number' && Number.isSafeInteger(x)) || (typeof x === 'string' && x.length > 0 && x.length <= 64);
}

/**
 * Parses one client frame (pure). Never throws: anything that is not `{id, method: string, payload}` in a text
 * frame within `maxBytes` becomes a reject with 'invalid-payload' (or 'unknown-method' for a name outside the
 * contract), keeping the id when one could be read.
 */
export function parseClientFrame(data: Buffer | string, isBinary: boolean, maxBytes: number): ClientFrame {
  const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
  if (isBinary) return { kind: 'reject', id: null, error: invalid('binary frames are not accepted; send JSON text') };
  if (size > maxBytes) return { kind: 'reject', id: null, error: invalid(`message of ${size} bytes exceeds the limit of ${maxBytes}`) };
  let msg: unknown;
  try {
    msg = JSON.parse(typeof data === 'string' ? data : data.toString('utf8'));
  } catch {
    return { kind: 'reject', id: null, error: invalid('message is not JSON') };
  }
  if (!isRecord(msg)) return { kind: 'reject', id: null, error: invalid('message is not a JSON object') };
  const id = validId(msg['id']) ? msg['id'] : null;
  if (id === null) return { kind: 'reject', id: null, error: invalid('message needs an id (a safe integer or a short string)') };
  const method = msg['method'];
  if (typeof method !== 'string') return { kind: 'reject', id, error: invalid('message needs a method name') };
  if (!isMethodName(method)) return { kind: 'reject', id, error: { code: 'unknown-method', message: `unknown method ${method.slice(0, 80)}`, retryable: false } };
  return { kind: 'request', id, method, payload: msg['payload'] };
}

/** Checks that the backend answered an IpcResult; anything else becomes 'internal'. */
export function checkBackendResult(r: unknown): IpcResult<unknown> {
  if (isRecord(r) && r['ok'] === true && 'value' in r) return { ok: true, value: r['value'] };
  if (isRecord(r) && r['ok'] === false && isRecord(r['error'])) {
    const e = r['error'];
    if (typeof e['code'] === 'string' && typeof e['message'] === 'string' && typeof e['retryable'] === 'boolean') {
      return { ok: false, error: r['error'] as IpcError };
    }
  }
  return { ok: false, error: { code: 'internal', message: 'the host answered something that is not an IpcResult', retryable: false } };
}

