/**
 * A real Tailscale derper (v1.100.0) in the NAT lab, as the only DERP region of a real headscale 0.29.2: it serves
 * DERP over TLS on 203.0.113.11:443 with a self-signed certificate for its IP and Tailscale-style STUN on
 * 203.0.113.11:3478, and two official tailscaled clients behind symmetric NATs (na and nb both endpoint-dependent
 * mapping, so no direct path can open) use it as their home DERP and talk to each other only through it.
 *
 * tailscaled runs without TS_DEBUG_USE_DERP_HTTP: DERP is dialled over TLS, and the DERP map's `insecurefortests`
 * makes the client skip certificate verification for this node. derper's STUN server only answers Tailscale's own
 * binding requests (SOFTWARE "tailnode" + FINGERPRINT; net/stun.ParseBindingRequest), so a generic STUN client gets
 * no answer; STUN is checked with `tailscale netcheck`.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, type Lab, listNamespaces, pidAlive } from './lab.ts';
import { startEgressSniffer, type EgressSniffer } from './services.ts';
import { startDerper, type Derper } from './derper.ts';
import { derpMapYaml, startHeadscale, type Headscale } from './headscale.ts';
import { startTailscaled, TAILSCALE_VERSION, type Tailscaled } from './tailscaled.ts';

const labNamespaces = (prefix: string): string[] => listNamespaces().filter((n) => n.startsWith(prefix));

async function waitFor<T>(f: () => Promise<T>, ok: (v: T) => boolean, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (ok(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The `derp` expvar group of derper's /debug/vars, numbers only. */
async function derpVars(d: Derper): Promise<Record<string, number>> {
  const v = await d.debugVars();
  const derp = v.derp;
  if (typeof derp !== 'object' || derp === null) throw new Error(`no "derp" in /debug/vars: ${JSON.stringify(v).slice(0, 500)}`);
  const out: Record<string, number> = {};
  for (const [k, x] of Object.entries(derp)) if (typeof x === 'number') out[k] = x;
  return out;
}

describe(`derper ${TAILSCALE_VERSION} as the lab's DERP relay for tailscaled with headscale 0.29.2`, () => {
  let lab: Lab;
  let derper: Derper;
  let hs: Headscale;
  let sniffer: EgressSniffer;
  let a: Tailscaled;
  let b: Tailscaled;
  const started: Tailscaled[] = [];
  let regionCode: string;

  beforeAll(async () => {
    lab = await createLab();
    // Everything sent toward a non-lab destination crosses inet, which has no route out; record it.
    sniffer = await startEgressSniffer(lab);
    // Both homes behind symmetric NATs: hole punching cannot work, so the DERP relay is the only path.
    await Promise.all([
      lab.setRouter('na', { mapping: 'edm', filtering: 'apdf' }),
      lab.setRouter('nb', { mapping: 'edm', filtering: 'apdf' }),
    ]);
    derper = await startDerper(lab);
    regionCode = derper.node.regionCode ?? '';
    const derpMapPath = join(lab.tmpDir, 'derp-lab.yaml');
    writeFileSync(derpMapPath, derpMapYaml([derper.node]));
    hs = await startHeadscale(lab, '0.29.2', { derpMapPath });
    const user = await hs.createUser('lab');
    const key = await hs.createPreauthKey(user, { reusable: true });
    [a, b] = await Promise.all([startTailscaled(lab, 'a1'), startTailscaled(lab, 'b1')]);
    started.push(a, b);
    await Promise.all([
      a.up({ loginServer: hs.url, authKey: key, hostname: 'a1' }),
      b.up({ loginServer: hs.url, authKey: key, hostname: 'b1' }),
    ]);
  }, 90_000);

  afterAll(async () => {
    const prefix = lab?.prefix;
    await Promise.all(started.map((t) => t.stop().catch(() => undefined)));
    await derper?.stop();
    await lab?.destroy();
    if (prefix !== undefined) expect(labNamespaces(prefix)).toEqual([]);
    if (derper !== undefined) expect(pidAlive(derper.proc.pid), `derper pid ${derper.proc.pid} still alive`).toBe(false);
  });

  it('listens on its IP only (TLS 443, UDP STUN 3478), serving the self-signed certificate made for that IP', async () => {
    expect(derper).toMatchObject({ regionId: 901, ip: '203.0.113.11', url: 'https://203.0.113.11', stunPort: 3478 });
    expect(derper.node).toEqual({
      regionId: 901, regionCode: 'lab901', name: '901a', hostName: '203.0.113.11', ipv4: '203.0.113.11',
      derpPort: 443, stunPort: 3478, insecureForTests: true,
    });
    const ss = await lab.exec('srv', ['ss', '-Htulnp']);
    const mine = ss.stdout.split('\n').filter((l) => l.includes(`pid=${derper.proc.pid},`));
    expect(mine.map((l) => l.split(/\s+/).filter((x) => x !== '').slice(0, 5).join(' ')).sort()).toEqual([
      'tcp LISTEN 0 4096 203.0.113.11:443',
      'udp UNCONN 0 0 203.0.113.11:3478',
    ]);

    // A TLS handshake from inet: the certificate presented is the one in certPath (SAN IP:203.0.113.11).
    const script = `
const tls = require('node:tls');
const s = tls.connect({ host: process.argv[1], port: 443, rejectUnauthorized: false, timeout: 5000 }, () => {
  const c = s.getPeerCertificate();
  process.stdout.write(JSON.stringify({ fp: c.fingerprint256, san: c.subjectaltname, proto: s.getProtocol() }));
  s.end();
});
s.on('timeout', () => { s.destroy(); process.exit(1); });
s.on('error', (e) => { process.stderr.write(String(e)); process.exit(1); });
`;
    const r = await lab.exec('inet', [process.execPath, '-e', script, derper.ip], { timeoutMs: 15_000 });
    expect(r.code, r.stderr).toBe(0);
    const got = JSON.parse(r.stdout) as { fp: string; san: string; proto: string };
    const cert = new X509Certificate(readFileSync(derper.certPath));
    expect(got.fp).toBe(cert.fingerprint256);
    expect(got.san).toBe('IP Address:203.0.113.11');
    expect(got.proto).toMatch(/^TLSv1\.[23]$/);
    expect(cert.checkIP('203.0.113.11')).toBe('203.0.113.11');
  });

  it('both clients make it their home DERP (peer Relay = its region code); `tailscale netcheck` gets STUN answers', async () => {
    expect(regionCode).toBe('lab901');
    const [sa, sb] = await waitFor(
      () => Promise.all([a.status(), b.status()]),
      (ss) => ss.every((s) => Object.values(s.peers).some((p) => p.online && p.relay === regionCode)),
      30_000,
    );
    for (const [st, other] of [[sa, sb], [sb, sa]] as const) {
      expect(st.backendState).toBe('Running');
      const p = st.peers[other.self.publicKey];
      expect(p, JSON.stringify(st.raw.Peer)).toBeDefined();
      expect(p).toMatchObject({ relay: regionCode, online: true });
    }

    // STUN: `tailscale netcheck` from a1 (the derper is the map's only STUN server). UDP works and a1's global address
    // is na's WAN address; DERP latency for the region was measured (by STUN, or HTTPS if STUN had failed).
    // (`tailscale debug derp REGION` would be the obvious check, but its TLS test ignores insecurefortests and fails
    // with "x509: certificate signed by unknown authority", then skips its DERP and STUN tests.)
    const nc = await a.netcheck();
    expect(nc, nc).toMatch(/^\s*\* UDP: true$/m);
    expect(nc).toMatch(/^\s*\* IPv4: yes, 198\.51\.100\.2:\d+$/m);
    expect(nc).toMatch(new RegExp(`^\\s*\\* Nearest DERP: Lab ${regionCode}$`, 'm'));
    expect(nc).toMatch(new RegExp(`^\\s*- ${regionCode}: [\\d.]+(µs|ms|s) +\\(Lab ${regionCode}\\)$`, 'm'));
  });

  it('tailscale ping and kernel ICMP go through the derper (CurAddr empty, Relay = region code)', async () => {
    const before = await derpVars(derper);
    expect(before.gauge_current_connections).toBeGreaterThanOrEqual(2);
    const [aIp, bIp] = [(await a.status()).self.tailscaleIPs[0]!, (await b.status()).self.tailscaleIPs[0]!];

    const ping = await a.ping(bIp, { untilDirect: false, count: 3, timeoutMs: 30_000 });
    expect(ping.ok, ping.output).toBe(true);
    expect(ping.direct).toBe(false);
    expect(ping.output).toMatch(new RegExp(`^pong from b1 \\(${bIp.replace(/\./g, '\\.')}\\) via DERP\\(${regionCode}\\) in `, 'm'));

    const ab = await lab.exec('a1', ['ping', '-c', '3', '-i', '0.3', '-W', '3', bIp], { timeoutMs: 20_000 });
    expect(ab.stdout, ab.stdout + ab.stderr).toMatch(/3 packets transmitted, 3 received/);
    const ba = await lab.exec('b1', ['ping', '-c', '3', '-i', '0.3', '-W', '3', aIp], { timeoutMs: 20_000 });
    expect(ba.stdout, ba.stdout + ba.stderr).toMatch(/3 packets transmitted, 3 received/);

    for (const [t, ip] of [[a, bIp], [b, aIp]] as const) {
      const p = await t.peerByIp(ip);
      expect(p).toMatchObject({ curAddr: '', relay: regionCode, peerRelay: '', online: true });
      expect(p!.lastHandshake).toBeDefined();
      expect(p!.rxBytes).toBeGreaterThan(0);
    }
    // The derper relayed them: 3 disco pings and 6 ICMP packets (plus WireGuard handshakes) each way at least.
    const after = await derpVars(derper);
    expect(after.packets_received! - before.packets_received!).toBeGreaterThanOrEqual(12);
    expect(after.packets_sent! - before.packets_sent!).toBeGreaterThanOrEqual(12);
  });

  it('sent nothing toward outside the lab (other than DNS queries that die at inet)', () => {
    expect(sniffer.packets()).toEqual([]);
  });

  it('stop() ends derper', async () => {
    await derper.stop();
    expect(await derper.proc.exited).toBe(0);
    expect(pidAlive(derper.proc.pid)).toBe(false);
    const r = await lab.exec('inet', ['curl', '-sk', '--max-time', '2', `${derper.url}/derp/probe`], { timeoutMs: 10_000 });
    expect(r.code).not.toBe(0);
  });
});
