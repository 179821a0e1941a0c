/**
 * The dev bridge's backend: a client of weftd's local API (src-main/daemon/api-client.ts). The bridge holds no
 * engine and no privilege of its own: what a page may do is what the bridge's user may do on weftd's API (reads
 * for anyone, writes for root and operators). When weftd restarts, the backend reconnects (once a second, until
 * closed) and re-subscribes; calls made meanwhile answer 'daemon-unavailable'.
 */
import type { EventName, IpcResult } from '../../src-shared/ipc/contract.ts';
import { connectDaemon, type DaemonClient } from '../daemon/api-client.ts';
import type { BridgeBackend } from './server.ts';

export interface DaemonBackend extends BridgeBackend {
  /** The access weftd granted (read or write), of the current connection. */
  readonly access: 'read' | 'write' | null;
  close(): void;
}

const RECONNECT_MS = 1000;

export async function createDaemonBackend(runDir: string, logf: (line: string) => void): Promise<DaemonBackend> {
  let client: DaemonClient | null = await connectDaemon(runDir);
  const listeners = new Set<(event: EventName, payload: unknown) => void>();
  let closed = false;
  let timer: NodeJS.Timeout | null = null;

  const attach = (c: DaemonClient): void => {
    c.onEvent((e, p) => {
      for (const l of listeners) l(e, p);
    });
    c.onClose(() => {
      if (client === c) client = null;
      if (!closed) {
        logf('dev bridge: lost the connection to weftd; reconnecting');
        schedule();
      }
    });
  };

  const schedule = (): void => {
    if (timer || closed) return;
    timer = setTimeout(() => {
      timer = null;
      connectDaemon(runDir).then(
        (c) => {
          if (closed) return c.close();
          client = c;
          attach(c);
          logf(`dev bridge: connected to weftd again (${c.access})`);
        },
        () => schedule(),
      );
    }, RECONNECT_MS);
  };

  attach(client);
  return {
    get access() {
      return client?.access ?? null;
    },
    dispatch(method: unknown, payload: unknown): Promise<IpcResult<unknown>> {
      const c = client;
      if (!c) return Promise.resolve({ ok: false, error: { code: 'daemon-unavailable', message: 'weftd is not reachable right now; retrying', retryable: true } });
      return c.dispatch(method, payload);
    },
    onEvent(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      client?.close();
    },
  };
}
