/**
 * The real-headscale harness in the NAT lab, for each pinned version: it starts inside srv with nothing reaching
 * outside the lab, answers GET /key from behind a NAT, the CLI wrapper creates users and pre-auth keys and
 * registers/lists/deletes nodes, and a stop/start keeps the database.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, type Lab, type LabProcess, listNamespaces, pidAlive } from './lab.ts';
import { startEgressSniffer, type EgressSniffer } from './services.ts';
import { HEADSCALE_VERSIONS, labHttpGet, startHeadscale, type Headscale } from './headscale.ts';

const labNamespaces = (prefix: string): string[] => listNamespaces().filter((n) => n.startsWith(prefix));

describe.each(HEADSCALE_VERSIONS)('headscale %s in the lab', (version) => {
  let lab: Lab;
  let hs: Headscale;
  let sniffer: EgressSniffer;
  const procs: LabProcess[] = [];

  beforeAll(async () => {
    lab = await createLab();
    // Everything srv sends toward a destination that is not a lab network (update checks, DERP map or logtail
    // downloads, DNS to the host's resolver) crosses inet's i-srv; record it.
    sniffer = await startEgressSniffer(lab, 'i-srv');
    hs = await startHeadscale(lab, version);
    procs.push(hs.proc);
  }, 60_000);

  afterAll(async () => {
    const prefix = lab?.prefix;
    await lab?.destroy();
    if (prefix !== undefined) expect(labNamespaces(prefix)).toEqual([]);
    for (const p of procs) expect(pidAlive(p.pid), `headscale pid ${p.pid} still alive`).toBe(false);
  });

  it('serves GET /key?v=130 to a client behind a NAT', async () => {
    expect(hs.url).toBe('http://203.0.113.10:8080');
    const r = await labHttpGet(lab, 'a1', `${hs.url}/key?v=130`, { timeoutMs: 10_000 });
    expect(r.status).toBe(200);
    const body = JSON.parse(r.body) as { publicKey?: unknown };
    expect(body.publicKey).toMatch(/^mkey:[0-9a-f]{64}$/);
    expect(body.publicKey).not.toBe(`mkey:${'0'.repeat(64)}`);
  });

  it('creates a user and a reusable pre-auth key; no nodes yet', async () => {
    const user = await hs.createUser('alice');
    expect(user.name).toBe('alice');
    expect(user.id).toBeGreaterThan(0);
    const key = await hs.createPreauthKey(user, { reusable: true });
    expect(key.length).toBeGreaterThanOrEqual(24);
    if (version === '0.29.2') expect(key).toMatch(/^hskey-auth-/);
    expect(await hs.listNodes()).toEqual([]);
  });

  it('registers a pending node (version-specific CLI), lists it normalised, deletes it', async () => {
    const [user] = (await hs.listUsers()).filter((u) => u.name === 'alice');
    expect(user).toBeDefined();
    const authId = await hs.debugCreateNode(user!, 'box1');
    expect(await hs.listNodes()).toEqual([]);
    await hs.registerNode(user!, authId);
    const nodes = await hs.listNodes();
    expect(nodes).toHaveLength(1);
    const n = nodes[0]!;
    expect(n).toMatchObject({ name: 'box1', givenName: 'box1', online: false, user: 'alice' });
    expect(n.id).toBeGreaterThan(0);
    expect(n.machineKey).toMatch(/^mkey:[0-9a-f]{64}$/);
    expect(n.nodeKey).toMatch(/^nodekey:[0-9a-f]{64}$/);
    expect(n.ipAddresses).toEqual(['100.64.0.1', 'fd7a:115c:a1e0::1']);
    expect(n.expiry).toBeUndefined();
    await hs.deleteNode(n.id);
    expect(await hs.listNodes()).toEqual([]);
  });

  it('keeps its data across stop() and start()', async () => {
    const before = await hs.listUsers();
    const oldPid = hs.proc.pid;
    await hs.stop();
    expect(pidAlive(oldPid)).toBe(false);
    const down = await labHttpGet(lab, 'srv', `${hs.url}/health`, { timeoutMs: 2_000 });
    expect(down.status).toBe(0);
    await hs.start();
    procs.push(hs.proc);
    expect(hs.proc.pid).not.toBe(oldPid);
    expect(await hs.listUsers()).toEqual(before);
    expect(before.map((u) => u.name)).toContain('alice');
  });

  it('sent nothing toward outside the lab and logged no outside fetch', async () => {
    expect(sniffer.packets()).toEqual([]);
    for (const p of procs) {
      expect(p.output()).toMatch(/listening and serving HTTP on: 203\.0\.113\.10:8080/);
      expect(p.output()).not.toMatch(/controlplane\.tailscale\.com|api\.github\.com|updated version|log\.tailscale\.(io|com)|fetching derp/i);
    }
    // The sniffer does see such traffic: one datagram to a non-lab address (dropped by inet, which has no route out).
    const probe = "const s = require('node:dgram').createSocket('udp4'); s.send('x', 9, '1.1.1.1', () => s.close());";
    expect((await lab.exec('srv', [process.execPath, '-e', probe], { timeoutMs: 10_000 })).code).toBe(0);
    await sniffer.proc.waitForOutput(/IP 203\.0\.113\.\d+\.\d+ > 1\.1\.1\.1\.9: UDP/, 5_000);
  });
});
