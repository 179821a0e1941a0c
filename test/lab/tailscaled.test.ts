/**
 * The official Tailscale client (tailscaled/tailscale v1.100.0) against real headscale 0.29.2 in the NAT lab: two
 * clients behind EIM+APDF NATs (a1 behind na, b1 behind nb) join with a pre-auth key, see each other, find the direct
 * path through both NATs (`tailscale ping --until-direct`) and carry kernel ICMP over the tunnel; a third client behind
 * a symmetric CGN (c1) only reaches a1 through DERP. Nothing leaves the lab, nothing is left behind.
 *
 * DERP/STUN: headscale's embedded DERP server (STUN on 203.0.113.10:3478, DERP at http://203.0.113.10:8080/derp) with
 * TS_DEBUG_USE_DERP_HTTP=true in tailscaled (plain-HTTP DERP, no certificate). Without STUN a client only knows its
 * LAN address, and without DERP no CallMeMaybe reaches the other side, so two APDF NATs never open (checked with the
 * harness's default placeholder DERP map: disco pings went to 192.168.2.2:41641 only, no direct path, ping failed).
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, type Lab, listNamespaces, pidAlive } from './lab.ts';
import { startEgressSniffer, type EgressSniffer } from './services.ts';
import { startHeadscale, type Headscale } from './headscale.ts';
import { PLAIN_HTTP_DERP_ENV, startTailscaled, TAILSCALE_VERSION, type Tailscaled } from './tailscaled.ts';

const TS_ENV = { ...PLAIN_HTTP_DERP_ENV };

const labNamespaces = (prefix: string): string[] => listNamespaces().filter((n) => n.startsWith(prefix));

/** PIDs of live processes whose command line mentions `needle`. */
function processesMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(needle)) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

async function waitFor<T>(f: () => Promise<T>, ok: (v: T) => boolean, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (ok(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe(`tailscaled ${TAILSCALE_VERSION} with headscale 0.29.2 in the lab`, () => {
  let lab: Lab;
  let hs: Headscale;
  let sniffer: EgressSniffer;
  let key: string;
  let a: Tailscaled;
  let b: Tailscaled;
  let c: Tailscaled | undefined;
  const started: Tailscaled[] = [];
  const resolvBefore = sha256('/etc/resolv.conf');
  const varLibTailscaleBefore = existsSync('/var/lib/tailscale');

  beforeAll(async () => {
    lab = await createLab();
    // Anything a lab host sends toward a non-lab address (log upload, DERP map download, update check, captive-portal
    // probe, bootstrap DNS to hard-coded servers) crosses inet, which has no route out and drops it; record it.
    // DNS queries to the host's resolver (/etc/resolv.conf is shared) are left out: they die at inet too.
    sniffer = await startEgressSniffer(lab);
    hs = await startHeadscale(lab, '0.29.2', { embeddedDerp: true });
    const user = await hs.createUser('lab');
    key = await hs.createPreauthKey(user, { reusable: true });
    [a, b] = await Promise.all([
      startTailscaled(lab, 'a1', { env: TS_ENV }),
      startTailscaled(lab, 'b1', { env: TS_ENV }),
    ]);
    started.push(a, b);
  }, 60_000);

  afterAll(async () => {
    const prefix = lab?.prefix;
    const tmp = lab?.tmpDir;
    await Promise.all(started.map((t) => t.stop().catch(() => undefined)));
    await lab?.destroy();
    if (prefix !== undefined) expect(labNamespaces(prefix)).toEqual([]);
    for (const t of started) expect(pidAlive(t.proc.pid), `tailscaled pid ${t.proc.pid} still alive`).toBe(false);
    if (tmp !== undefined) expect(processesMentioning(tmp)).toEqual([]);
    expect(sha256('/etc/resolv.conf')).toBe(resolvBefore);
    if (!varLibTailscaleBefore) expect(existsSync('/var/lib/tailscale')).toBe(false);
  });

  it('joins both clients with a pre-auth key; headscale lists them online and each status lists the other', async () => {
    await Promise.all([
      a.up({ loginServer: hs.url, authKey: key, hostname: 'a1' }),
      b.up({ loginServer: hs.url, authKey: key, hostname: 'b1' }),
    ]);
    const nodes = await waitFor(
      () => hs.listNodes(),
      (ns) => ns.length === 2 && ns.every((n) => n.online),
      15_000,
    );
    expect(nodes.map((n) => [n.givenName, n.online]).sort()).toEqual([['a1', true], ['b1', true]]);

    // Each learns of the other (and that it is online) from headscale's map updates, which may lag `up` a little.
    const [sa, sb] = await waitFor(
      () => Promise.all([a.status(), b.status()]),
      (ss) => ss.every((s) => Object.values(s.peers).some((p) => p.online)),
      10_000,
    );
    for (const [st, self, other] of [[sa, 'a1', sb], [sb, 'b1', sa]] as const) {
      expect(st.version).toMatch(/^1\.100\.0/);
      expect(st.backendState).toBe('Running');
      expect(st.tun).toBe(true);
      expect(st.self.hostName).toBe(self);
      expect(st.self.tailscaleIPs[0]).toMatch(/^100\.64\.0\.\d+$/);
      const peers = Object.values(st.peers);
      expect(peers).toHaveLength(1);
      const p = peers[0]!;
      expect(p.publicKey).toBe(other.self.publicKey);
      expect(st.peers[other.self.publicKey]).toBeDefined();
      expect(p.hostName).toBe(other.self.hostName);
      expect(p.tailscaleIPs).toEqual(other.self.tailscaleIPs);
      expect(p.online).toBe(true);
      // p.relay (the peer's home DERP region) is still "" right after up, until the peer's netcheck has reported one.
    }
    // headscale's addresses match the clients' own.
    const byName = new Map(nodes.map((n) => [n.givenName, n.ipAddresses]));
    expect(byName.get('a1')).toEqual(sa.self.tailscaleIPs);
    expect(byName.get('b1')).toEqual(sb.self.tailscaleIPs);
    // The kernel TUN in a1's namespace carries the 100.x address.
    const addr = await lab.exec('a1', ['ip', '-4', '-o', 'addr', 'show', 'dev', a.tun]);
    expect(addr.stdout).toContain(`inet ${sa.self.tailscaleIPs[0]}/32`);
  });

  it('tailscale ping --until-direct from a1 finds the direct path through both NATs', async () => {
    const bIp = (await b.status()).self.tailscaleIPs[0]!;
    const r = await a.ping(bIp, { untilDirect: true, count: 15 });
    expect(r.ok, r.output).toBe(true);
    expect(r.direct).toBe(true);
    // b1's public mapping: nb's WAN address, port preserved by the EIM masquerade.
    expect(r.endpoint).toBe(`${lab.addr.nbWan}:41641`);

    const pb = await a.peerByIp(bIp);
    expect(pb).toMatchObject({ curAddr: `${lab.addr.nbWan}:41641`, relay: 'headscale', peerRelay: '', online: true });
    expect(pb!.lastHandshake).toBeDefined();
    expect(pb!.txBytes).toBeGreaterThan(0);
    // The raw JSON, with tailscale's own field names.
    const raw = (await a.status()).raw as { Peer: Record<string, Record<string, unknown>> };
    expect(raw.Peer[pb!.publicKey]).toMatchObject({ CurAddr: `${lab.addr.nbWan}:41641`, Relay: 'headscale', PeerRelay: '' });

    // b1 sees a1 directly too (na's mapping of a1:41641).
    const aIp = (await a.status()).self.tailscaleIPs[0]!;
    const pa = await waitFor(() => b.peerByIp(aIp), (p) => p?.curAddr !== '', 10_000);
    expect(pa?.curAddr).toBe(`${lab.addr.naWan}:41641`);
  });

  it('carries kernel ICMP over the tunnel in both directions', async () => {
    const [aIp, bIp] = [(await a.status()).self.tailscaleIPs[0]!, (await b.status()).self.tailscaleIPs[0]!];
    const ab = await lab.exec('a1', ['ping', '-c', '3', '-i', '0.3', '-W', '2', bIp], { timeoutMs: 15_000 });
    expect(ab.stdout, ab.stdout + ab.stderr).toMatch(/3 packets transmitted, 3 received/);
    const ba = await lab.exec('b1', ['ping', '-c', '3', '-i', '0.3', '-W', '2', aIp], { timeoutMs: 15_000 });
    expect(ba.stdout, ba.stdout + ba.stderr).toMatch(/3 packets transmitted, 3 received/);
    const pb = await a.peerByIp(bIp);
    expect(pb!.rxBytes).toBeGreaterThan(0);
    expect(pb!.curAddr).toBe(`${lab.addr.nbWan}:41641`);
  });

  it('a client behind a symmetric CGN reaches a1 only through DERP (status: empty CurAddr, Relay set)', async () => {
    await lab.setRouter('cgn', { mapping: 'edm', filtering: 'apdf' });
    c = await startTailscaled(lab, 'c1', { env: TS_ENV });
    started.push(c);
    await c.up({ loginServer: hs.url, authKey: key, hostname: 'c1' });
    const cIp = (await c.status()).self.tailscaleIPs[0]!;
    await waitFor(() => a.peerByIp(cIp), (p) => p !== undefined, 10_000);

    const relayed = await a.ping(cIp, { untilDirect: false, count: 3 });
    expect(relayed.ok, relayed.output).toBe(true);
    expect(relayed.direct).toBe(false);
    expect(relayed.output).toMatch(/^pong from c1 \(100\.64\.0\.\d+\) via DERP\(headscale\) in /m);
    // --until-direct gives up: the harness reports ok=false.
    const untilDirect = await a.ping(cIp, { untilDirect: true, count: 2 });
    expect(untilDirect.ok, untilDirect.output).toBe(false);
    expect(untilDirect.output).toMatch(/direct connection not established/);

    const ping = await lab.exec('a1', ['ping', '-c', '2', '-i', '0.3', '-W', '3', cIp], { timeoutMs: 15_000 });
    expect(ping.stdout, ping.stdout + ping.stderr).toMatch(/2 packets transmitted, 2 received/);
    const pc = await a.peerByIp(cIp);
    expect(pc).toMatchObject({ curAddr: '', relay: 'headscale', peerRelay: '', online: true });
    expect(pc!.lastHandshake).toBeDefined();
  });

  it('sent nothing toward outside the lab (other than DNS queries that die at inet)', async () => {
    expect(sniffer.packets()).toEqual([]);
    for (const t of started) {
      expect(t.proc.output()).not.toMatch(/log\.tailscale\.(io|com)|logtail: upload/i);
    }
    // The sniffer does see such traffic: one datagram from a1 to a non-lab address (dropped by inet).
    const probe = "const s = require('node:dgram').createSocket('udp4'); s.send('x', 9, '1.1.1.1', () => s.close());";
    expect((await lab.exec('a1', [process.execPath, '-e', probe], { timeoutMs: 10_000 })).code).toBe(0);
    await sniffer.proc.waitForOutput(/IP 198\.51\.100\.2\.\d+ > 1\.1\.1\.1\.9: UDP/, 5_000);
  });

  it('stop() ends tailscaled and removes its TUN', async () => {
    for (const t of started) {
      await t.stop();
      expect(pidAlive(t.proc.pid)).toBe(false);
      const link = await lab.exec(t.host, ['ip', 'link', 'show', 'dev', t.tun]);
      expect(link.code).not.toBe(0);
    }
  });
});
