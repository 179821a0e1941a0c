/** Shared pieces for the dev-bridge unit tests: a fake backend and contract-valid payloads. */
import type { EventName, IpcResult } from '../../../src-shared/ipc/contract.ts';
import type { MeshSnapshot, PeerView } from '../../../src-shared/model/mesh.ts';
import type { BridgeBackend } from '../../../src-main/devbridge/server.ts';

export function peer(id: string, name: string, path: PeerView['path'] = { kind: 'connecting' }): PeerView {
  return {
    id,
    name,
    fqdn: `${name}.tailnet.example.com`,
    nodeKey: `nodekey:${id.padStart(64, '0')}`,
    addresses: ['100.64.0.9'],
    os: 'linux',
    online: true,
    lastSeen: null,
    keyExpiry: null,
    homeRegion: 901,
    endpoints: ['198.51.100.18:41641'],
    path,
    lastHandshake: null,
    rxBytes: 0,
    txBytes: 0,
    netInfo: null,
    disco: null,
    routes: [],
    exitNode: false,
  };
}

export function snapshot(peers: PeerView[] = []): MeshSnapshot {
  return {
    control: { state: 'connected', url: 'http://203.0.113.10:8080', error: null, authUrl: null },
    self: { name: 'me', fqdn: 'me.tailnet.example.com', nodeKey: 'nodekey:' + '1'.repeat(64), addresses: ['100.64.0.1'], keyExpiry: null, homeRegion: 901 },
    peers,
    regions: [{ id: 901, code: 'lab901', name: 'Lab' }],
    netcheck: null,
    tailnet: null,
  };
}

/** A backend whose answers the test sets per method, and whose events the test fires. */
export class FakeBackend implements BridgeBackend {
  readonly calls: { method: unknown; payload: unknown }[] = [];
  handlers = new Map<string, (payload: unknown) => Promise<unknown> | unknown>();
  private readonly listeners = new Set<(event: EventName, payload: unknown) => void>();

  async dispatch(method: unknown, payload: unknown): Promise<IpcResult<unknown>> {
    this.calls.push({ method, payload });
    const h = typeof method === 'string' ? this.handlers.get(method) : undefined;
    if (!h) return { ok: false, error: { code: 'unknown-method', message: `no handler for ${String(method)}`, retryable: false } };
    return (await h(payload)) as IpcResult<unknown>;
  }

  onEvent(listener: (event: EventName, payload: unknown) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  fire(event: EventName, payload: unknown): void {
    for (const l of this.listeners) l(event, payload);
  }

  get listenerCount(): number {
    return this.listeners.size;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `f` every 10 ms until true, at most `ms`. */
export async function until(f: () => boolean, ms = 3000): Promise<void> {
  const t0 = Date.now();
  while (!f()) {
    if (Date.now() - t0 > ms) throw new Error('until: timed out');
    await sleep(10);
  }
}
