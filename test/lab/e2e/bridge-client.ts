/**
 * A Node client of the dev bridge for the end-to-end test: one request/response over the same wire format as the
 * renderer (src-renderer/src/ipc/ws-api.ts). Connects without an Origin header, which the bridge allows for
 * non-browser clients. Bounded: every step has a time limit.
 */
import { WebSocket } from 'ws';
import { parseResponse, type IpcResult, type MethodName, type MethodRequest, type MethodResponse } from '../../../src-shared/ipc/contract.ts';

export async function bridgeCall<M extends MethodName>(url: string, method: M, payload: MethodRequest<M>, timeoutMs = 10_000): Promise<IpcResult<MethodResponse<M>>> {
  const ws = new WebSocket(url, { handshakeTimeout: timeoutMs });
  try {
    return await new Promise<IpcResult<MethodResponse<M>>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`bridge ${method}: no answer within ${timeoutMs} ms`)), timeoutMs);
      ws.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      ws.once('open', () => ws.send(JSON.stringify({ id: 1, method, payload })));
      ws.on('message', (data: Buffer) => {
        const msg = JSON.parse(data.toString('utf8')) as { id?: unknown; result?: { ok?: unknown; value?: unknown; error?: unknown } };
        if (msg.id !== 1 || !msg.result) return; // events
        clearTimeout(timer);
        if (msg.result.ok === true) resolve(parseResponse(method, msg.result.value));
        else resolve(msg.result as IpcResult<MethodResponse<M>>);
      });
    });
  } finally {
    ws.terminate();
  }
}
