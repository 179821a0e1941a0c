/** weftd's local API in a unit test: the real host and dispatcher over fake engines, served in a temp directory. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EVENT_NAMES, type EventName } from '../../../src-shared/ipc/contract.ts';
import { startApiServer, type ApiServer } from '../../../src-main/daemon/api-server.ts';
import type { EngineInit } from '../../../src-main/engine/engine.ts';
import type { WgInterface } from '../../../src-main/engine/wg/iface.ts';
import { createDispatcher } from '../../../src-main/host/dispatch.ts';
import { createHost, type Host } from '../../../src-main/host/host.ts';
import { FakeEngine, peer } from '../host/fake-engine.ts';

export interface Rig {
  dir: string;
  runDir: string;
  host: Host;
  api: ApiServer;
  engines: FakeEngine[];
  /** Interface names the host asked for (none may be created in these tests). */
  ifaces: string[];
  stop(): Promise<void>;
}

export async function startRig(): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), 'weftd-api-'));
  const engines: FakeEngine[] = [];
  const ifaces: string[] = [];
  const host = createHost({
    dataDir: join(dir, 'data'),
    iface: 'weft0',
    autoConnect: false,
    createInterface: (name): Promise<WgInterface> => {
      ifaces.push(name);
      return Promise.reject(new Error('no interface in unit tests'));
    },
    createEngine: (init: EngineInit) => {
      const e = new FakeEngine(init);
      e.setPeers([peer('2')]);
      engines.push(e);
      return e;
    },
  });
  await host.start();
  const dispatch = createDispatcher(host.handlers);
  const runDir = join(dir, 'run');
  const api = await startApiServer({
    runDir,
    operatorGroup: 'weft-test-no-such-group',
    logf: () => undefined,
    backend: {
      dispatch,
      onEvent: (l: (e: EventName, p: unknown) => void) => {
        const offs = EVENT_NAMES.map((e) => host.on(e, (p) => l(e, p)));
        return () => offs.forEach((o) => o());
      },
    },
  });
  return {
    dir,
    runDir,
    host,
    api,
    engines,
    ifaces,
    async stop() {
      await api.close();
      await host.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
