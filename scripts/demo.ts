/**
 * `npm run demo` (Linux, root): the main job on a machine without a display. One command builds the NAT lab
 * (test/lab/lab.ts), starts `weft server` in it, three Weft nodes (one direct pair, one relayed pair), the app's
 * host with the dev bridge on the UI node, and prints the URL of the UI for a browser on this machine.
 *
 *   srv  203.0.113.10   weft server --derp --stun (control on :8080, DERP on /derp, STUN on :3478/udp)
 *   a1   behind na (EIM+APDF)                 the UI's node: weftd, and `weft dev-bridge --login-server … --auth-key …`
 *                                             as its client (the page gets in with the bridge's per-run token)
 *   b1   behind nb (EIM+APDF)                 `weft up`: a1 ↔ b1 goes direct (both NATs keep their mapping)
 *   c1   behind nc (EDM) behind cgn (EIM+APDF) `weft up`: a1 ↔ c1 is relayed (no hole through EIM+APDF ↔ EDM)
 *
 * The UI path (the only way in or out of the lab; everything else has no link to this machine's network):
 *
 *   browser ─▶ 127.0.0.1:P (this machine's loopback, TCP proxy in this process)
 *           ─▶ Unix socket in the lab's private temp dir (mode 0700, root only)
 *           ─▶ scripts/demo-forward.ts in a1 ─▶ 127.0.0.1:P in a1 (the dev bridge's Vite page / its WebSocket)
 *
 * Unix sockets are file-system objects, not network links: no veth, route or address joins the lab to this
 * machine's network, and only loopback listens here. The ports are the same on both sides, so the page's URL,
 * the bridge's Host check and its Origin check (src-main/devbridge/server.ts) hold unchanged.
 *
 * Prints step timings, then `weft demo: open http://127.0.0.1:P/?bridge=ws://127.0.0.1:P2/?token=T`, then the paths as
 * they form. Ctrl-C / SIGTERM: lab.destroy() stops every lab process by PID (SIGTERM, so the nodes remove their
 * interfaces; SIGKILL after 3 s) and deletes the namespaces; then whatever those processes started (wireguard-go,
 * Vite's esbuild) is waited for and, if still there after 5 s, killed by PID; the proxy closes and the demo exits 0.
 * A failed start cleans up the same way and exits 1.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { bridgeCall } from '../test/lab/e2e/bridge-client.ts';
import { BRIDGE_LINE, startWeftd } from '../test/lab/weftd.ts';
import { createLab, HOSTS, pidAlive, REPO_ROOT, type HostName, type Lab, type LabProcess } from '../test/lab/lab.ts';

const WEFT = [process.execPath, join(REPO_ROOT, 'src-main', 'cli', 'bin.mjs')];
const TSX = [process.execPath, '--import', 'tsx'];
const SERVER_IP = '203.0.113.10';
const SERVER_URL = `http://${SERVER_IP}:8080`;
/** The embedded DERP is plain HTTP in the lab (no TLS), which Weft only uses with this set. */
const NODE_ENV = { WEFT_DEBUG_DERP_HTTP: '1' };
/** Keep-alive pings run at most this long (the demo is for looking at, not for days). */
const TRAFFIC_SECONDS = 3600;

const t0 = Date.now();
const timings: [string, number][] = [];
const mark = (step: string): void => void timings.push([step, Date.now() - t0]);
const secs = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;
const say = (line: string): void => void process.stdout.write(`weft demo: ${line}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let lab: Lab | null = null;
const proxies: Server[] = [];
const sockets = new Set<Socket>();

function closeProxies(): void {
  for (const s of proxies.splice(0)) s.close();
  for (const s of sockets) s.destroy();
  sockets.clear();
}

/** A TCP listener on this machine's loopback (port 0 = any free) that pipes every connection into `sockPath`. */
async function loopbackProxy(sockPath: () => string): Promise<number> {
  const s = createServer((c) => {
    const up = connect(sockPath());
    sockets.add(c).add(up);
    const done = (): void => {
      c.destroy();
      up.destroy();
      sockets.delete(c);
      sockets.delete(up);
    };
    c.on('error', done).on('close', done);
    up.on('error', done).on('close', done);
    c.pipe(up);
    up.pipe(c);
  });
  await new Promise<void>((res, rej) => {
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => res());
  });
  proxies.push(s);
  const a = s.address();
  if (typeof a !== 'object' || !a) throw new Error('proxy has no address');
  return a.port;
}

async function run(l: Lab, host: HostName, argv: string[], what: string): Promise<string> {
  const r = await l.exec(host, argv, { timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`${what} failed (code ${String(r.code)}): ${r.stderr.trim()}`);
  return r.stdout;
}

async function weftUp(l: Lab, host: HostName, name: string, authKey: string, n: number): Promise<{ proc: LabProcess; ip: string }> {
  const iface = `weft${l.prefix.replace(/[^0-9a-z]/g, '').slice(-5)}${n}`;
  const proc = l.spawn(
    host,
    [...WEFT, 'up', '--login-server', SERVER_URL, '--auth-key', authKey, '--hostname', name, '--state-dir', join(l.tmpDir, name), '--iface', iface],
    { env: NODE_ENV },
  );
  const m = await proc.waitForOutput(/weft: connected as \S+ \["(100\.[0-9.]+)\/32"/, 40_000);
  return { proc, ip: m[1]! };
}

/** Pings `to` from `host` once a second (bounded by -w), so the path forms and stays warm while the demo runs. */
function keepAlive(l: Lab, host: HostName, to: string): void {
  l.spawn(host, ['ping', '-q', '-i', '1', '-W', '2', '-w', String(TRAFFIC_SECONDS), to]);
}

async function main(): Promise<void> {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) throw new Error('the demo runs on Linux as root (it builds network namespaces)');
  const l = (lab = await createLab());
  // createLab installs a last-resort SIGINT/SIGTERM handler that SIGKILLs everything at once; the demo stops
  // gracefully instead (shutdown below). The lab's exit handler stays as the safety net.
  for (const sig of SIGNALS) for (const h of process.listeners(sig)) if (h !== onSignal) process.removeListener(sig, h);
  say(`lab prefix ${l.prefix} (namespaces ${l.nsName('srv')} …, temp dir ${l.tmpDir})`);
  await Promise.all([
    l.setRouter('na', { mapping: 'eim', filtering: 'apdf' }),
    l.setRouter('nb', { mapping: 'eim', filtering: 'apdf' }),
    l.setRouter('cgn', { mapping: 'eim', filtering: 'apdf' }),
    l.setRouter('nc', { mapping: 'edm', filtering: 'apdf' }),
  ]);
  mark('lab');

  // The UI path's two loopback ports, picked here first: the same ports are used inside a1.
  const uiSock = join(l.tmpDir, 'ui.sock');
  const bridgeSock = join(l.tmpDir, 'bridge.sock');
  const uiPort = await loopbackProxy(() => uiSock);
  const bridgePort = await loopbackProxy(() => bridgeSock);

  // weft server, a user and a reusable key.
  const dataDir = join(l.tmpDir, 'server');
  mkdirSync(dataDir, { recursive: true });
  const server = l.spawn('srv', [...WEFT, 'server', '--listen', `${SERVER_IP}:8080`, '--data', dataDir, '--derp', '--stun', `${SERVER_IP}:3478`]);
  await server.waitForOutput(/weft server: ready/, 30_000);
  await run(l, 'srv', [...WEFT, 'server', 'users', 'create', 'demo', '--data', dataDir], 'users create');
  const keyJson = await run(l, 'srv', [...WEFT, 'server', 'preauthkeys', 'create', '--user', 'demo', '--reusable', '--expiration', '24h', '-o', 'json', '--data', dataDir], 'preauthkeys create');
  const authKey = (JSON.parse(keyJson) as { key?: unknown }).key;
  if (typeof authKey !== 'string') throw new Error(`preauthkeys create answered no key: ${keyJson}`);
  mark('server');

  // The three nodes at once: two `weft up`, and the UI node (weftd, then the dev bridge + Vite as its client, which
  // joins through weftd by itself).
  const iface = `weft${l.prefix.replace(/[^0-9a-z]/g, '').slice(-5)}ui`;
  const daemon = await startWeftd(l, 'a1', { name: 'app-a1', iface, env: NODE_ENV });
  const ui = l.spawn(
    'a1',
    [
      ...WEFT, 'dev-bridge', '--socket-dir', daemon.runDir, '--vite-cache', join(l.tmpDir, 'vite-cache'),
      '--listen', `127.0.0.1:${bridgePort}`, '--ui-port', String(uiPort),
      '--login-server', SERVER_URL, '--auth-key', authKey, '--hostname', 'demo-ui',
    ],
    { env: NODE_ENV },
  );
  const forward = l.spawn('a1', [...TSX, join(REPO_ROOT, 'scripts', 'demo-forward.ts'), `${uiSock}=${uiPort}`, `${bridgeSock}=${bridgePort}`]);
  const [direct, relayed, [url, bridgeUrl]] = await Promise.all([
    weftUp(l, 'b1', 'direct-b1', authKey, 1),
    weftUp(l, 'c1', 'relayed-c1', authKey, 2),
    (async () => {
      const m = await ui.waitForOutput(BRIDGE_LINE, 50_000);
      const joined = await ui.waitForOutput(/weft dev bridge: (joined|join failed.*)/, 40_000);
      if (joined[1] !== 'joined') throw new Error(`the UI node did not join: ${joined[1]}`);
      await forward.waitForOutput(/demo-forward: ready/, 20_000);
      return [m[1]!, m[2]!] as const;
    })(),
  ]);
  mark('nodes');

  // The UI node's tunnel address, through the UI path itself (which also proves the path works).
  let selfIp: string | undefined;
  for (let i = 0; i < 40 && !selfIp; i++) {
    const s = await bridgeCall(bridgeUrl, 'mesh:snapshot', {}).catch(() => null);
    selfIp = s?.ok ? s.value.self?.addresses.find((a) => a.startsWith('100.')) : undefined;
    if (!selfIp) await sleep(250);
  }
  if (!selfIp) throw new Error('the UI node has no tunnel address');
  for (const p of [{ host: 'b1' as const, ip: direct.ip }, { host: 'c1' as const, ip: relayed.ip }]) {
    keepAlive(l, 'a1', p.ip);
    keepAlive(l, p.host, selfIp);
  }
  mark('traffic');

  say(`timings ${timings.map(([k, v]) => `${k} ${secs(v)}`).join(', ')}`);
  say(`nodes demo-ui ${selfIp} (a1, the UI), direct-b1 ${direct.ip}, relayed-c1 ${relayed.ip}; server ${SERVER_URL}`);
  say(`open ${url}`);
  say(`ready in ${secs(Date.now() - t0)}; Ctrl-C stops everything`);

  // Report the paths as they form (bounded), then just wait for a signal.
  let last = '';
  for (let i = 0; i < 60; i++) {
    const s = await bridgeCall(bridgeUrl, 'mesh:snapshot', {}).catch(() => null);
    if (s?.ok) {
      const now = s.value.peers.map((p) => `${p.name} ${p.path.kind}`).sort().join(', ');
      if (now !== last) say(`paths: ${now}`);
      last = now;
      if (/direct-b1 direct/.test(now) && /relayed-c1 relay/.test(now)) break;
    }
    await sleep(1000);
  }
}

/** Every process running in the lab's namespaces (the tracked ones and whatever they started). */
function labPids(l: Lab): number[] {
  const pids: number[] = [];
  for (const h of HOSTS) {
    const r = spawnSync('ip', ['netns', 'pids', l.nsName(h)], { encoding: 'utf8', timeout: 5000 });
    for (const line of (r.stdout ?? '').split('\n')) if (/^\d+$/.test(line.trim())) pids.push(Number(line.trim()));
  }
  return pids.filter((p) => p !== process.pid);
}

let stopping: Promise<void> | null = null;
async function shutdown(code: number): Promise<never> {
  stopping ??= (async () => {
    closeProxies();
    const l = lab;
    if (l) {
      const pids = labPids(l);
      await l.destroy().catch((e: unknown) => say(`cleanup: ${e instanceof Error ? e.message : String(e)}`));
      for (let i = 0; i < 50 && pids.some(pidAlive); i++) await sleep(100);
      for (const pid of pids.filter(pidAlive)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone meanwhile */
        }
      }
    }
    say('stopped; lab removed');
  })();
  await stopping;
  process.exit(code);
}

const SIGNALS = ['SIGINT', 'SIGTERM'] as const;
function onSignal(): void {
  void shutdown(0);
}
for (const sig of SIGNALS) process.on(sig, onSignal);

main().catch(async (e: unknown) => {
  say(`failed after ${secs(Date.now() - t0)}: ${e instanceof Error ? e.message : String(e)}`);
  await shutdown(1);
});
