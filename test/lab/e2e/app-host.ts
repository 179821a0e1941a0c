// The desktop app's host without Electron, as a lab process: the stand-in for the app in test/lab/weftd.test.ts. It
// is exactly what src-main/app/main.ts builds (createRemoteHost over connectDaemon), driven by one command:
//
//   node --import tsx test/lab/e2e/app-host.ts RUN_DIR join URL KEY NAME   join, wait until connected, print, exit
//   node --import tsx test/lab/e2e/app-host.ts RUN_DIR show                 print the snapshot the app shows, exit
//   node --import tsx test/lab/e2e/app-host.ts RUN_DIR leave                disconnect, exit
//   node --import tsx test/lab/e2e/app-host.ts RUN_DIR probe [safe]         every write and read; print each answer
//                                                                            (safe: the only write is settings:set)
//   node --import tsx test/lab/e2e/app-host.ts RUN_DIR bridge WS_URL        the same probe through a dev bridge
//
// Prints one line `APPHOST {json}`. Exits 0 when the command ran (the test judges the answers), 1 on a failure to
// run it at all. Every wait is bounded.
import { WebSocket } from 'ws';
import { METHOD_NAMES, WRITE_METHODS, type IpcResult } from '../../../src-shared/ipc/contract.ts';
import { connectDaemon } from '../../../src-main/daemon/api-client.ts';
import { createRemoteHost } from '../../../src-main/host/remote-host.ts';

const [runDir, cmd, ...args] = process.argv.slice(2);
const out = (v: unknown): void => void process.stdout.write(`APPHOST ${JSON.stringify(v)}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The network weftd has active, read before a probe. */
let activeProfile: string | null | undefined;

/** A payload each method accepts (so an answer other than permission-denied would mean the write ran). */
function payloadFor(method: string): unknown {
  switch (method) {
    case 'session:join':
      return { serverUrl: 'http://203.0.113.99:8080', authKey: 'not-a-key-0123456789' };
    case 'session:open-auth-url':
      return { url: 'http://203.0.113.99:8080/register/x' };
    case 'settings:set':
      // weftd's part of the settings (the app keeps the user's own preferences itself), unchanged: a real write on
      // weftd's API that changes nothing.
      return { activeProfile: activeProfile ?? null };
    case 'profiles:switch':
    case 'profiles:remove':
      return { id: 'nope' };
    case 'engine:ping':
      return { peer: 'nobody-here', timeoutMs: 500 };
    default:
      return {};
  }
}

async function probe(call: (method: string, payload: unknown) => Promise<IpcResult<unknown>>, safe = false): Promise<Record<string, string>> {
  const answers: Record<string, string> = {};
  for (const m of METHOD_NAMES) {
    if (m === 'netcheck:run') continue; // slow, and a read like the others
    if (safe && WRITE_METHODS.has(m) && m !== 'settings:set') continue;
    const r = await call(m, payloadFor(m));
    answers[m] = r.ok ? 'ok' : `${r.error.code}: ${r.error.message}`;
  }
  return answers;
}

function wsCall(url: string): Promise<{ call: (m: string, p: unknown) => Promise<IpcResult<unknown>>; close: () => void }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const ws = new WebSocket(url, { headers: { Host: u.host } });
    const pending = new Map<number, (r: IpcResult<unknown>) => void>();
    let id = 0;
    ws.on('message', (d: Buffer) => {
      const m = JSON.parse(d.toString('utf8')) as { id?: number; result?: IpcResult<unknown> };
      if (typeof m.id === 'number' && m.result) pending.get(m.id)?.(m.result);
    });
    ws.once('unexpected-response', (_q, r) => reject(new Error(`bridge refused: HTTP ${r.statusCode}`)));
    ws.once('error', reject);
    ws.once('open', () =>
      resolve({
        call: (method, payload) =>
          new Promise((res) => {
            const n = ++id;
            pending.set(n, res);
            ws.send(JSON.stringify({ id: n, method, payload }));
            setTimeout(() => res({ ok: false, error: { code: 'internal', message: 'no answer in 15 s', retryable: true } }), 15_000).unref();
          }),
        close: () => ws.close(),
      }),
    );
  });
}

async function main(): Promise<number> {
  if (!runDir || !cmd) throw new Error('usage: app-host.ts RUN_DIR join|show|leave|probe|bridge ...');
  if (cmd === 'bridge') {
    const b = await wsCall(args[0]!);
    const st = await b.call('settings:get', {});
    activeProfile = st.ok ? (st.value as { activeProfile: string | null }).activeProfile : null;
    out({ answers: await probe(b.call) });
    b.close();
    return 0;
  }
  const host = createRemoteHost({ connect: () => connectDaemon(runDir), retryMs: 500 });
  await host.start();
  try {
    if (!host.link().connected) throw new Error(`weftd not reachable: ${host.link().problem}`);
    if (cmd === 'probe') {
      activeProfile = host.settings().activeProfile;
      out({ access: host.link().access, answers: await probe((m, p) => host.dispatch(m, p), args[0] === 'safe') });
      return 0;
    }
    if (cmd === 'join') {
      const [url, key, name] = args;
      const r = await host.dispatch('session:join', { serverUrl: url, authKey: key, hostname: name });
      if (!r.ok) {
        out({ joined: false, error: r.error });
        return 0;
      }
    }
    if (cmd === 'leave') {
      out({ left: await host.dispatch('session:disconnect', {}) });
      return 0;
    }
    // join and show: wait (bounded) until the app's snapshot says connected with a tunnel address.
    for (let i = 0; i < 150; i++) {
      const s = host.snapshot();
      if (s.control?.state === 'connected' && s.self?.addresses.some((a) => a.startsWith('100.'))) break;
      await sleep(200);
    }
    out({ access: host.link().access, snapshot: host.snapshot(), settings: host.settings() });
    return 0;
  } finally {
    await host.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`app-host: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
