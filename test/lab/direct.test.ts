/**
 * Direct WireGuard links through NATs (issue 4), against real headscale in the NAT lab, Weft↔Weft and
 * Weft↔tailscaled (official v1.100.0). Each case: a ping over the tunnel (100.x addresses) works and both
 * sides report a direct path (Weft: path.kind "direct"; tailscaled: CurAddr set). EDM↔EDM never claims
 * direct and goes through the DERP relay. iperf3 runs 10 s through a tunnel; weft ping reports the path; after weft up exits or is killed,
 * nothing of Weft's is left in the namespace.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StatusReport } from '../../src-shared/model/status.ts';
import { createLab, type HostName, type Lab, type LabProcess, type RouterName, type RouterProfile } from './lab.ts';
import { startHeadscale, type Headscale } from './headscale.ts';
import { PLAIN_HTTP_DERP_ENV, startTailscaled } from './tailscaled.ts';

const WEFT = ['node', 'src-main/cli/bin.mjs'];

let lab: Lab;
let hs: Headscale;
let key: string;
let seq = 0;

beforeAll(async () => {
  lab = await createLab();
  // headscale's embedded DERP gives the DERP map a STUN server (203.0.113.10:3478), which both Weft and
  // tailscaled use to learn their public endpoints. (Weft's DERP client comes with the relay issue.)
  hs = await startHeadscale(lab, '0.29.2', { embeddedDerp: true });
  const user = await hs.createUser('direct');
  key = await hs.createPreauthKey(user, { reusable: true, expiration: '1h' });
});

afterAll(async () => {
  await lab?.destroy();
});

interface Peer {
  kind: 'weft' | 'tailscaled';
  name: string;
  host: HostName;
  ip: string;
  /** Whether this side uses a direct path to `other` right now. */
  directTo(other: Peer): Promise<boolean>;
  stop(): Promise<void>;
}

interface WeftPeer extends Peer {
  dir: string;
  iface: string;
  proc: LabProcess;
}

async function weftStatus(p: WeftPeer): Promise<StatusReport> {
  const r = await lab.exec(p.host, [...WEFT, 'status', '--json', '--state-dir', p.dir], { timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`status: ${r.stderr}`);
  return StatusReport.parse(JSON.parse(r.stdout));
}

async function upWeft(host: HostName): Promise<WeftPeer> {
  const name = `w${++seq}${host}`;
  const dir = `${lab.tmpDir}/${name}`;
  const iface = `weft${lab.prefix.replace(/[^0-9a-z]/g, '').slice(-5)}${seq}`;
  // The lab's DERP (headscale's embedded one) serves plain HTTP, as for tailscaled's TS_DEBUG_USE_DERP_HTTP.
  const proc = lab.spawn(host, [...WEFT, 'up', '--login-server', hs.url, '--auth-key', key, '--hostname', name, '--state-dir', dir, '--iface', iface], {
    env: { WEFT_DEBUG_DERP_HTTP: '1' },
  });
  const m = await proc.waitForOutput(/weft: connected as \S+ \["(100\.[0-9.]+)\/32"/, 30_000);
  const p: WeftPeer = {
    kind: 'weft',
    name,
    host,
    ip: m[1]!,
    dir,
    iface,
    proc,
    directTo: async (other) => (await weftStatus(p)).peers.find((x) => x.name === other.name)?.path.kind === 'direct',
    stop: async () => {
      await proc.kill('SIGTERM');
      expect(await proc.exited).toBe(0);
      await expectNothingLeft(p);
    },
  };
  return p;
}

async function upTailscaled(host: HostName): Promise<Peer> {
  const name = `t${++seq}${host}`;
  const ts = await startTailscaled(lab, host, { port: 41700 + seq, env: { ...PLAIN_HTTP_DERP_ENV } });
  await ts.up({ loginServer: hs.url, authKey: key, hostname: name });
  const st = await ts.status();
  const ip = st.tailscaleIPs.find((a) => a.startsWith('100.'))!;
  return {
    kind: 'tailscaled',
    name,
    host,
    ip,
    directTo: async (other) => {
      const s = await ts.status();
      const peer = Object.values(s.peers).find((x) => x.hostName === other.name);
      return !!peer && peer.curAddr !== '';
    },
    stop: () => ts.stop(),
  };
}

async function expectNothingLeft(p: WeftPeer): Promise<void> {
  const links = await lab.exec(p.host, ['ip', '-o', 'link', 'show']);
  expect(links.stdout).not.toContain(p.iface);
  const routes = await lab.exec(p.host, ['ip', 'route', 'show']);
  expect(routes.stdout).not.toContain(p.iface);
  const udp = await lab.exec(p.host, ['ss', '-Hunlp']);
  expect(udp.stdout.split('\n').filter((l) => /:41641\b/.test(l))).toEqual([]);
}

/** Waits until each Weft side has the other's endpoints and disco key from control (bounded). */
async function settle(a: Peer, b: Peer): Promise<void> {
  for (const w of [a, b]) {
    if (w.kind !== 'weft') continue;
    const other = w === a ? b : a;
    for (let i = 0; i < 60; i++) {
      const p = (await weftStatus(w as WeftPeer)).peers.find((q) => q.name === other.name);
      // A peer that has not told control its disco key yet is listed with a zero key, and Weft (like
      // Tailscale) leaves it out of the data plane until the key arrives.
      if (p && p.endpoints.length > 0 && p.discoKey !== null) break;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/**
 * Pings over the tunnel from both sides at once for 10 s; each side's traffic triggers its disco pings.
 * 10 s covers tailscaled's second discovery round (its pings repeat every 5 s, and without a DERP link to
 * Weft it cannot send CallMeMaybe to speed that up).
 */
async function tunnelPing(a: Peer, b: Peer, count = 20): Promise<[boolean, boolean]> {
  const [ra, rb] = await Promise.all([
    lab.exec(a.host, ['ping', '-c', String(count), '-i', '0.5', '-W', '2', b.ip], { timeoutMs: 40_000 }),
    lab.exec(b.host, ['ping', '-c', String(count), '-i', '0.5', '-W', '2', a.ip], { timeoutMs: 40_000 }),
  ]);
  const ok = (out: string): boolean => /[1-9]\d* received/.test(out);
  return [ok(ra.stdout), ok(rb.stdout)];
}

/** Polls until both sides report direct (bounded), re-pinging so the sessions stay active. */
async function bothDirect(a: Peer, b: Peer): Promise<[boolean, boolean]> {
  let da = false;
  let db = false;
  for (let i = 0; i < 10 && !(da && db); i++) {
    [da, db] = await Promise.all([a.directTo(b), b.directTo(a)]);
    if (!(da && db)) await tunnelPing(a, b, 2);
  }
  return [da, db];
}

const CASES: [string, HostName, HostName, [RouterName, RouterProfile][]][] = [
  ['both behind EIM+APDF NATs', 'a1', 'b1', [['na', { mapping: 'eim', filtering: 'apdf' }], ['nb', { mapping: 'eim', filtering: 'apdf' }]]],
  ['EDM on one side, EIM+EIF on the other', 'a1', 'b1', [['na', { mapping: 'edm', filtering: 'apdf' }], ['nb', { mapping: 'eim', filtering: 'eif' }]]],
  ['both on the same LAN (the LAN address wins)', 'a1', 'a2', [['na', { mapping: 'eim', filtering: 'apdf' }]]],
  [
    'two homes behind the same CGNAT with hairpin on',
    'c1',
    'd1',
    [
      ['cgn', { mapping: 'eim', filtering: 'apdf', hairpin: true }],
      ['nc', { mapping: 'eim', filtering: 'apdf' }],
      ['nd', { mapping: 'eim', filtering: 'apdf' }],
    ],
  ],
  ['a public address behind a stateful firewall', 'e1', 'b1', [['fw', { mapping: 'none', filtering: 'apdf', forward: 'stateful' }], ['nb', { mapping: 'eim', filtering: 'apdf' }]]],
];

describe.each(['weft', 'tailscaled'] as const)('Weft ↔ %s', (otherKind) => {
  it.each(CASES)('%s: tunnel ping works and both sides are direct', async (_n, ah, bh, routers) => {
    for (const [r, p] of routers) await lab.setRouter(r, p);
    const a = await upWeft(ah);
    const b = otherKind === 'weft' ? await upWeft(bh) : await upTailscaled(bh);
    try {
      await settle(a, b);
      let [okA, okB] = await tunnelPing(a, b);
      // One more 10 s discovery round if the first missed: Weft<->tailscaled behind the stateful firewall
      // occasionally needs it after earlier cases (root cause open, noted on the issue).
      if (!(okA && okB)) [okA, okB] = await tunnelPing(a, b);
      const logs = (): string => [a, b].map((x) => ('proc' in x ? `--- ${x.name}\n${(x as WeftPeer).proc.output().slice(-3000)}` : '')).join('\n');
      expect(okA && okB, `ping over the tunnel in both directions\n${logs()}`).toBe(true);
      expect(await bothDirect(a, b)).toEqual([true, true]);
      const st = (await weftStatus(a)).peers.find((p) => p.name === b.name)!;
      expect(st.path.kind).toBe('direct');
      if (st.path.kind === 'direct') {
        if (ah === 'a1' && bh === 'a2') expect(st.path.endpoint).toMatch(/^192\.168\.1\./);
        expect(st.path.latencyMs).toBeGreaterThanOrEqual(0);
      }
      expect(st.rxBytes).toBeGreaterThan(0);
      expect(st.txBytes).toBeGreaterThan(0);
      expect(st.lastHandshake).not.toBeNull();
    } finally {
      await b.stop();
      await a.stop();
    }
  }, 150_000);
});

describe('Weft ↔ Weft, more', () => {
  it('EDM ↔ EDM never claims direct; the tunnel works through the DERP relay, shown with its region', async () => {
    await lab.setRouter('na', { mapping: 'edm', filtering: 'apdf' });
    await lab.setRouter('nb', { mapping: 'edm', filtering: 'apdf' });
    const a = await upWeft('a1');
    const b = await upWeft('b1');
    try {
      await settle(a, b);
      const [okA, okB] = await tunnelPing(a, b);
      expect(okA && okB, 'ping over the tunnel through DERP').toBe(true);
      for (let i = 0; i < 3; i++) {
        expect(await a.directTo(b)).toBe(false);
        expect(await b.directTo(a)).toBe(false);
        const path = (await weftStatus(a)).peers.find((p) => p.name === b.name)?.path;
        expect(path).toEqual({ kind: 'relay', region: 999 }); // headscale's embedded DERP region
      }
    } finally {
      await b.stop();
      await a.stop();
    }
  }, 120_000);

  it('carries a 10 s iperf3 TCP run, weft ping reports the direct path, and SIGKILL leaves nothing behind', async () => {
    await lab.setRouter('na', { mapping: 'eim', filtering: 'apdf' });
    await lab.setRouter('nb', { mapping: 'eim', filtering: 'apdf' });
    const a = await upWeft('a1');
    const b = await upWeft('b1');
    try {
      await settle(a, b);
      await tunnelPing(a, b, 4);
      const ping = await lab.exec('a1', [...WEFT, 'ping', b.name, '--count', '3', '--state-dir', a.dir], { timeoutMs: 30_000 });
      expect(ping.code, ping.stderr).toBe(0);
      expect(ping.stdout).toMatch(new RegExp(`pong from ${b.name} via 198\\.51\\.100\\.18:\\d+ in [0-9.]+ms`));

      const server = lab.spawn('b1', ['iperf3', '-s', '-1', '--forceflush', '-B', b.ip, '-p', '5201']);
      await server.waitForOutput(/Server listening/, 10_000);
      const run = await lab.exec('a1', ['iperf3', '-c', b.ip, '-p', '5201', '-t', '10', '-J'], { timeoutMs: 40_000 });
      expect(run.code, run.stderr).toBe(0);
      const res = JSON.parse(run.stdout) as { error?: string; end: { sum_received: { bits_per_second: number; bytes: number } } };
      expect(res.error).toBeUndefined();
      expect(res.end.sum_received.bytes).toBeGreaterThan(1_000_000);
      expect(res.end.sum_received.bits_per_second).toBeGreaterThan(1_000_000);
      await server.exited;
    } finally {
      await b.stop();
    }
    // Killed without a chance to clean up: the device process dies with it, and nothing stays in the namespace.
    await a.proc.kill('SIGKILL');
    await a.proc.exited;
    for (let i = 0; i < 20; i++) {
      const links = await lab.exec('a1', ['ip', '-o', 'link', 'show']);
      if (!links.stdout.includes(a.iface)) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    await expectNothingLeft(a);
  }, 150_000);
});
