/**
 * Direct WireGuard links through NATs (issue 4), Weft↔Weft, against real headscale in the NAT lab.
 * Each case: a ping over the tunnel (100.x addresses) works and both sides report path.kind "direct";
 * behind EDM↔EDM the path stays "connecting"; after weft up exits nothing of Weft is left in the namespace.
 */
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StatusReport } from '../../src-shared/model/status.ts';
import { createLab, type HostName, type Lab, type LabProcess, type RouterName, type RouterProfile } from './lab.ts';
import { derpMapYaml, startHeadscale, type Headscale } from './headscale.ts';
import { startCoturn, STUN } from './services.ts';

const WEFT = ['node', 'src-main/cli/bin.mjs'];

let lab: Lab;
let hs: Headscale;
let key: string;
let seq = 0;

beforeAll(async () => {
  lab = await createLab();
  await startCoturn(lab);
  const derp = `${lab.tmpDir}/derp.yaml`;
  // One region whose node does STUN (coturn); DERP itself arrives with the relay issue.
  writeFileSync(derp, derpMapYaml([{ regionId: 900, regionCode: 'lab', hostName: STUN.ip, ipv4: STUN.ip, derpPort: 443, stunPort: STUN.port }]));
  hs = await startHeadscale(lab, '0.29.2', { derpMapPath: derp });
  const user = await hs.createUser('direct');
  key = await hs.createPreauthKey(user, { reusable: true, expiration: '1h' });
});

afterAll(async () => {
  await lab?.destroy();
});

interface Node {
  name: string;
  host: HostName;
  dir: string;
  iface: string;
  proc: LabProcess;
  ip: string;
}

async function up(host: HostName): Promise<Node> {
  const name = `n${++seq}${host}`;
  const dir = `${lab.tmpDir}/${name}`;
  const iface = `weft${lab.prefix.replace(/[^0-9a-z]/g, '').slice(-5)}${seq}`;
  const proc = lab.spawn(host, [...WEFT, 'up', '--login-server', hs.url, '--auth-key', key, '--hostname', name, '--state-dir', dir, '--iface', iface]);
  const m = await proc.waitForOutput(/weft: connected as \S+ \["(100\.[0-9.]+)\/32"/, 30_000);
  return { name, host, dir, iface, proc, ip: m[1]! };
}

async function status(n: Node): Promise<StatusReport> {
  const r = await lab.exec(n.host, [...WEFT, 'status', '--json', '--state-dir', n.dir], { timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`status: ${r.stderr}`);
  return StatusReport.parse(JSON.parse(r.stdout));
}

async function pathTo(from: Node, to: Node): Promise<StatusReport['peers'][number]['path'] | undefined> {
  return (await status(from)).peers.find((p) => p.name === to.name)?.path;
}

/** Pings over the tunnel from both sides at once (each side's traffic triggers its disco pings). */
async function tunnelPing(a: Node, b: Node, count = 8): Promise<[boolean, boolean]> {
  const [ra, rb] = await Promise.all([
    lab.exec(a.host, ['ping', '-c', String(count), '-i', '0.5', '-W', '2', b.ip], { timeoutMs: 30_000 }),
    lab.exec(b.host, ['ping', '-c', String(count), '-i', '0.5', '-W', '2', a.ip], { timeoutMs: 30_000 }),
  ]);
  const ok = (out: string): boolean => /[1-9]\d* received/.test(out);
  return [ok(ra.stdout), ok(rb.stdout)];
}

async function pair(aHost: HostName, bHost: HostName, routers: [RouterName, RouterProfile][]): Promise<[Node, Node]> {
  for (const [r, p] of routers) await lab.setRouter(r, p);
  const a = await up(aHost);
  const b = await up(bHost);
  // Both must see each other with endpoints before traffic starts.
  for (const [x, y] of [
    [a, b],
    [b, a],
  ] as const) {
    for (let i = 0; i < 60; i++) {
      const p = (await status(x)).peers.find((q) => q.name === y.name);
      if (p && p.endpoints.length > 0) break;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  return [a, b];
}

async function down(...nodes: Node[]): Promise<void> {
  for (const n of nodes) {
    await n.proc.kill('SIGTERM');
    expect(await n.proc.exited).toBe(0);
    const links = await lab.exec(n.host, ['ip', '-o', 'link', 'show']);
    expect(links.stdout).not.toContain(n.iface);
  }
}

describe('Weft ↔ Weft direct paths', () => {
  it.each([
    ['both behind EIM+APDF NATs', 'a1', 'b1', [['na', { mapping: 'eim', filtering: 'apdf' }], ['nb', { mapping: 'eim', filtering: 'apdf' }]]],
    ['EDM on one side, EIM+EIF on the other', 'a1', 'b1', [['na', { mapping: 'edm', filtering: 'apdf' }], ['nb', { mapping: 'eim', filtering: 'eif' }]]],
    ['both on the same LAN (the LAN address wins)', 'a1', 'a2', [['na', { mapping: 'eim', filtering: 'apdf' }]]],
  ] as [string, HostName, HostName, [RouterName, RouterProfile][]][])('%s', async (_n, ah, bh, routers) => {
    const [a, b] = await pair(ah, bh, routers);
    try {
      const [okA, okB] = await tunnelPing(a, b);
      expect(okA && okB, 'ping over the tunnel').toBe(true);
      const pa = await pathTo(a, b);
      const pb = await pathTo(b, a);
      expect(pa?.kind).toBe('direct');
      expect(pb?.kind).toBe('direct');
      if (ah === 'a1' && bh === 'a2' && pa?.kind === 'direct') expect(pa.endpoint).toMatch(/^192\.168\.1\./);
      const st = (await status(a)).peers.find((p) => p.name === b.name)!;
      expect(st.rxBytes).toBeGreaterThan(0);
      expect(st.txBytes).toBeGreaterThan(0);
      expect(st.lastHandshake).not.toBeNull();
    } finally {
      await down(a, b);
    }
  }, 120_000);

  it('EDM ↔ EDM stays connecting and never claims direct', async () => {
    const [a, b] = await pair('a1', 'b1', [
      ['na', { mapping: 'edm', filtering: 'apdf' }],
      ['nb', { mapping: 'edm', filtering: 'apdf' }],
    ]);
    try {
      const [okA, okB] = await tunnelPing(a, b, 6);
      expect(okA || okB).toBe(false);
      expect((await pathTo(a, b))?.kind).toBe('connecting');
      expect((await pathTo(b, a))?.kind).toBe('connecting');
    } finally {
      await down(a, b);
    }
  }, 120_000);
});
