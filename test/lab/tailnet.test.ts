/**
 * Weft in a real tailnet (issue 12), against real headscale 0.29.2 and 0.26.1 and official tailscaled, set up as
 * people run one: MagicDNS on, a policy (database mode, so it changes at runtime), a split-DNS route, an extra
 * record, and a tailscaled node that is both an approved exit node and a subnet router. Upstream DNS is dnsmasq
 * from Debian on the lab's server.
 *
 *   srv  headscale, dnsmasq 203.0.113.11 (the hosts' own resolver) and 203.0.113.12 (corp.weft.test)
 *   a1   Weft under test (LAN 192.168.1.0/24), TCP listeners on 8022 (allowed by the ACL) and 8023 (not)
 *   a2   Weft with --accept-routes on the same LAN
 *   b1   Weft peer;  d1  tailscaled peer
 *   c1   tailscaled exit node and subnet router for 192.168.3.0/24 (behind it: nc, 192.168.3.1) and for a1's own
 *        LAN prefix 192.168.1.0/24 (which must never take a1's LAN traffic)
 *
 * Checks: routes by kind (no route in the main table, subnet routes only with --accept-routes, the LAN wins), the
 * ACL from Weft and tailscaled peers, a policy change enforced within 10 s, fail-closed across SIGKILL and restart,
 * MagicDNS through the namespace's resolver (getent), resolv.conf restored byte for byte, and PingRequest (0.29.2).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StatusReport } from '../../src-shared/model/status.ts';
import { HEADSCALE_VERSIONS, startHeadscale, type Headscale, type HeadscaleVersion } from './headscale.ts';
import { createLab, NETNS_ETC, type HostName, type Lab, type LabProcess } from './lab.ts';
import { PeerKit, probeTcp, TCP_LISTENER_JS, WEFT, type TsPeerNode, type WeftPeer } from './peers.ts';
import { PLAIN_HTTP_DERP_ENV } from './tailscaled.ts';
import { eventually } from '../support/eventually.ts';

const BASE = 'tailnet.weft.test';
const UPSTREAM_DNS = '203.0.113.11';
const CORP_DNS = '203.0.113.12';
const ENV = { WEFT_DEBUG_DERP_HTTP: '1' };
const ORIGINAL_RESOLV = `# the lab host's own resolver (a1)\nnameserver ${UPSTREAM_DNS}\noptions timeout:2 attempts:2\n`;

/** The policy: pings anywhere, TCP 8022 to everyone, the subnets and the internet through the exit node. */
function policy(extraPorts: string[] = []): unknown {
  return {
    acls: [
      { action: 'accept', proto: 'icmp', src: ['*'], dst: ['*:*'] },
      { action: 'accept', src: ['*'], dst: ['*:8022', ...extraPorts.map((p) => `*:${p}`)] },
      { action: 'accept', src: ['*'], dst: ['192.168.3.0/24:*', '192.168.1.0/24:*'] },
      { action: 'accept', src: ['*'], dst: ['autogroup:internet:*'] },
    ],
  };
}

/** Probes ip:port from `from` again and again for `ms`, counting connections that got through. */
const HAMMER = `
const net = require('node:net');
const [ip, port, ms] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const end = Date.now() + ms;
let open = 0, tries = 0;
function once() {
  if (Date.now() > end) { console.log(JSON.stringify({ open, tries })); process.exit(0); }
  tries++;
  const s = net.connect({ host: ip, port });
  const t = setTimeout(() => { s.destroy(); once(); }, 300);
  s.on('data', () => { open++; clearTimeout(t); s.destroy(); setTimeout(once, 50); });
  s.on('error', () => { clearTimeout(t); setTimeout(once, 50); });
}
once();
`;

describe.each(HEADSCALE_VERSIONS)('Weft in a real tailnet, headscale %s', (version: HeadscaleVersion) => {
  let lab: Lab;
  let hs: Headscale;
  let kit: PeerKit;
  let key: string;
  let a1: LabProcess | null = null;
  let a1Dir = '';
  let a1Ip = '';
  let b1: WeftPeer;
  let a2: WeftPeer;
  let c1: TsPeerNode;
  let d1: TsPeerNode;
  const iface = (): string => `weft${lab.prefix.replace(/[^0-9a-z]/g, '').slice(-5)}t`;
  const resolvPath = (h: HostName): string => join(NETNS_ETC, lab.nsName(h), 'resolv.conf');

  const probe = (from: HostName, ip: string, port: number): Promise<boolean> => probeTcp(lab, from, ip, port);
  const status = async (): Promise<StatusReport> => {
    const r = await lab.exec('a1', [...WEFT, 'status', '--json', '--state-dir', a1Dir], { timeoutMs: 15_000 });
    if (r.code !== 0) throw new Error(`weft status: ${r.stderr}`);
    return StatusReport.parse(JSON.parse(r.stdout));
  };
  const startA1 = async (extra: string[] = []): Promise<LabProcess> => {
    const p = lab.spawn('a1', [...WEFT, 'up', '--login-server', hs.url, '--auth-key', key, '--hostname', 'weft-a1', '--state-dir', a1Dir, '--iface', iface(), ...extra], { env: ENV });
    const m = await p.waitForOutput(/weft: connected as \S+ \["(100\.[0-9.]+)\/32"/, 40_000);
    a1Ip = m[1]!;
    return p;
  };

  beforeAll(async () => {
    lab = await createLab();
    await lab.setRouter('na', { mapping: 'eim', filtering: 'apdf' });
    await lab.setRouter('nb', { mapping: 'eim', filtering: 'apdf' });
    // The hosts' own upstream resolver and the split-DNS one, on the server.
    for (const [ip, rec] of [
      [UPSTREAM_DNS, '/upstream.weft.test/192.0.2.7'],
      [CORP_DNS, '/corp.weft.test/192.0.2.8'],
    ] as const) {
      const d = lab.spawn('srv', ['dnsmasq', '--no-daemon', '--no-resolv', '--no-hosts', '--conf-file=/dev/null', '--pid-file=', '--bind-interfaces', `--listen-address=${ip}`, '--port=53', `--address=${rec}`, '--user=root']);
      await d.waitForOutput(/started, version/, 10_000);
    }
    writeFileSync(resolvPath('a1'), ORIGINAL_RESOLV);
    hs = await startHeadscale(lab, version, {
      embeddedDerp: true,
      tailnet: {
        baseDomain: BASE,
        policy: policy(),
        policyMode: 'database',
        splitResolvers: { 'corp.weft.test': [CORP_DNS] },
        extraRecords: [{ name: `grafana.${BASE}`, type: 'A', value: '100.100.0.9' }],
      },
    });
    const user = await hs.createUser('tailnet');
    key = await hs.createPreauthKey(user, { reusable: true, expiration: '1h' });
    kit = new PeerKit({ lab, loginServer: hs.url, authKey: key, weftEnv: ENV, tsEnv: { ...PLAIN_HTTP_DERP_ENV } });
    a1Dir = `${lab.tmpDir}/a1`;
  }, 180_000);

  afterAll(async () => {
    await a1?.kill('SIGTERM').catch(() => undefined);
    await lab?.destroy();
  });

  it('an approved exit node and subnet routes never break the mesh: routes by kind, in a table of its own', async () => {
    // c1: an official exit node and subnet router (its LAN, and a1's LAN prefix), forwarding with SNAT.
    await lab.exec('c1', ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
    const snat = await lab.exec('c1', ['nft', '-f', '-'], { input: 'table ip labsnat {\n chain post {\n  type nat hook postrouting priority 100;\n  oifname "eth0" masquerade\n }\n}\n' });
    expect(snat.code, snat.stderr).toBe(0);
    c1 = await kit.upTailscaled('c1', { extraArgs: ['--advertise-exit-node', '--advertise-routes=192.168.3.0/24,192.168.1.0/24'] });
    const c1Node = await eventually('c1 is listed', 20_000, async () => (await hs.listNodes()).find((n) => n.name === c1.name));
    await hs.approveRoutes(c1Node.id, ['0.0.0.0/0', '::/0', '192.168.3.0/24', '192.168.1.0/24']);
    d1 = await kit.upTailscaled('d1');
    b1 = await kit.upWeft('b1');
    a2 = await kit.upWeft('a2', { extraArgs: ['--accept-routes'] });

    const listener = lab.spawn('a1', ['node', '-e', TCP_LISTENER_JS, '8022', '8023']);
    await listener.waitForOutput(/LISTENING/, 10_000);
    a1 = await startA1();

    const st = await eventually('a1 sees c1 with its exit and subnet routes', 40_000, async () => {
      const s = await status();
      const c = s.peers.find((p) => p.name === c1.name);
      return c?.allowedIPs.includes('0.0.0.0/0') && c.allowedIPs.includes('192.168.3.0/24') && s.peers.some((p) => p.name === b1.name && p.discoKey) ? s : undefined;
    });
    // Weft↔Weft and Weft↔tailscaled still ping with the exit node approved.
    const me = { kind: 'weft' as const, name: 'weft-a1', host: 'a1' as const, ip: a1Ip, dir: a1Dir, iface: iface(), proc: a1!, linkTo: async () => ({ kind: 'none' as const }), stop: async () => undefined };
    for (const other of [b1, c1]) await kit.expectTunnel(me, other);
    // Nothing of Weft's in the main table; peers' addresses in Weft's own, reached by its rule.
    const main = (await lab.exec('a1', ['ip', 'route', 'show', 'table', 'main'])).stdout;
    expect(main).not.toContain(iface());
    const own = (await lab.exec('a1', ['ip', 'route', 'show', 'table', '7070'])).stdout;
    expect(own).toContain(`${b1.ip} dev ${iface()}`);
    expect(own).toContain(`src ${a1Ip}`);
    expect(own).not.toMatch(/^default|192\.168\.3\.0\/24/m);
    expect((await lab.exec('a1', ['ip', 'rule', 'show'])).stdout).toMatch(/^5300:\s+from all lookup 7070/m);
    // The exit node's /0s and the subnet route are not used without --accept-routes, and status says why.
    const skipped = st.tailnet!.routes.skipped;
    expect(skipped.find((k) => k.peer === c1.name && k.reason === 'exit-route')).toBeTruthy();
    expect(skipped.find((k) => k.prefix === '192.168.3.0/24' && k.reason === 'accept-routes-off')).toBeTruthy();
    expect(st.tailnet!.routes.acceptRoutes).toBe(false);
    const lan = await lab.exec('a1', ['ping', '-c', '2', '-W', '1', '192.168.3.1'], { timeoutMs: 10_000 });
    expect(lan.stdout).toMatch(/ 0 received/);
  });

  it('with --accept-routes the subnet behind the router is reachable, and the LAN keeps winning', async () => {
    await eventually('a2 installs the subnet route', 30_000, async () => {
      const r = (await lab.exec('a2', ['ip', 'route', 'show', 'table', '7070'])).stdout;
      return r.includes('192.168.3.0/24') ? r : undefined;
    });
    const ping = await lab.exec('a2', ['ping', '-c', '3', '-i', '0.5', '-W', '2', '192.168.3.1'], { timeoutMs: 20_000 });
    expect(ping.stdout, `${ping.stdout}\n${kit.logs(a2)}`).toMatch(/[1-9]\d* received/);
    // c1 also advertises a2's own LAN: the route is not installed, the LAN still answers, and status says so.
    expect((await lab.exec('a2', ['ip', 'route', 'show', 'table', '7070'])).stdout).not.toContain('192.168.1.0/24');
    expect((await lab.exec('a2', ['ip', 'route', 'get', '192.168.1.2'])).stdout).toMatch(/dev eth0/);
    expect((await lab.exec('a2', ['ping', '-c', '2', '-W', '1', '192.168.1.2'], { timeoutMs: 10_000 })).stdout).toMatch(/[1-9]\d* received/);
    const st = await kit.weftStatus(a2);
    const overlap = st.tailnet!.routes.skipped.find((k) => k.reason === 'lan-overlap');
    expect(overlap?.note).toMatch(/route 192\.168\.1\.0\/24 from \S+ overlaps your LAN \(eth0 192\.168\.1\.0\/24\); your LAN wins/);
  });

  it('enforces the ACL from Weft and tailscaled peers, and a runtime policy change within 10 s', async () => {
    for (const from of [b1, d1]) {
      expect(await probe(from.host, a1Ip, 8022), `${from.name} → a1:8022`).toBe(true);
      expect(await probe(from.host, a1Ip, 8023), `${from.name} → a1:8023`).toBe(false);
    }
    const st = await status();
    expect(st.tailnet!.filter.state).toBe('applied');
    expect(st.tailnet!.filter.ruleCount).toBeGreaterThan(0);
    expect(Date.parse(st.tailnet!.filter.appliedAt!)).toBeGreaterThan(0);
    expect(st.tailnet!.access.some((g) => g.anyone && g.protocols.includes('tcp') && g.ports.some((p) => p.first === 8022 && p.last === 8022))).toBe(true);

    await hs.setPolicy(policy(['8023']));
    const t0 = Date.now();
    await eventually('8023 opens after the policy change', 10_000, async () => ((await probe(b1.host, a1Ip, 8023)) ? true : undefined));
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(await probe(d1.host, a1Ip, 8023)).toBe(true);
    await hs.setPolicy(policy());
    await eventually('8023 closes again', 10_000, async () => ((await probe(b1.host, a1Ip, 8023)) ? undefined : true));
  });

  it('MagicDNS answers through the namespace resolver: names, short names, reverse, upstream and split DNS', async () => {
    const conf = readFileSync(resolvPath('a1'), 'utf8');
    expect(conf).toMatch(/^nameserver 100\.100\.100\.100$/m);
    expect(conf).toMatch(new RegExp(`^search .*${BASE.replace(/\./g, '\\.')}`, 'm'));
    const getent = async (name: string): Promise<string> => (await lab.exec('a1', ['getent', 'hosts', name], { timeoutMs: 15_000 })).stdout.trim();
    expect(await getent(`${b1.name}.${BASE}`)).toMatch(new RegExp(`^${b1.ip.replace(/\./g, '\\.')}\\s`));
    expect(await getent(b1.name)).toMatch(new RegExp(`^${b1.ip.replace(/\./g, '\\.')}\\s`));
    expect(await getent(c1.name)).toMatch(new RegExp(`^${c1.ip.replace(/\./g, '\\.')}\\s`));
    expect(await getent(b1.ip)).toContain(`${b1.name}.${BASE}`);
    expect(await getent(`grafana.${BASE}`)).toMatch(/^100\.100\.0\.9\s/);
    expect(await getent('upstream.weft.test')).toMatch(/^192\.0\.2\.7\s/);
    expect(await getent('db.corp.weft.test')).toMatch(/^192\.0\.2\.8\s/);
    expect(await getent(`nobody-here.${BASE}`)).toBe('');
    const st = await status();
    expect(st.tailnet!.dns).toMatchObject({ acceptDns: true, mode: 'direct', suffix: BASE, serving: true, error: null });
    // Peers cannot use this node's resolver (tailscaled never counts 100.100.100.100 as a local net).
    expect(st.peers.find((p) => p.name === b1.name)?.fqdn).toBe(`${b1.name}.${BASE}`);
  });

  it.runIf(version === '0.29.2')('answers headscale’s PingRequest (the debug ping page)', async () => {
    const node = await eventually('a1 is listed', 10_000, async () => (await hs.listNodes()).find((n) => n.name === 'weft-a1'));
    const r = await hs.debugPing(String(node.id));
    expect(r.status, r.body).toBe(200);
    expect(r.body.toLowerCase()).toMatch(/success|pong|latency|responded/);
    expect(r.body.toLowerCase()).not.toMatch(/timeout|timed out|failed/);
  });

  it('stays closed across SIGKILL and restart, and gives resolv.conf and the kernel back as they were', async () => {
    // b1 knocks on the closed port during the whole crash and restart window: nothing may get through.
    const hammer = lab.exec('b1', ['node', '-e', HAMMER, a1Ip, '8023', '12000'], { timeoutMs: 30_000 });
    await a1!.kill('SIGKILL');
    // The filter outlives the process (the fail-closed state) until the next start replaces it.
    expect((await lab.exec('a1', ['nft', 'list', 'tables'])).stdout).toContain(iface());
    a1 = await startA1();
    const knocks = JSON.parse((await hammer).stdout.trim()) as { open: number; tries: number };
    expect(knocks.tries).toBeGreaterThan(5);
    expect(knocks.open).toBe(0);
    expect(await probe('b1', a1Ip, 8022)).toBe(true);
    // A clean exit gives the original resolv.conf back, byte for byte.
    await a1.kill('SIGTERM');
    expect(await a1.exited).toBe(0);
    expect(readFileSync(resolvPath('a1'), 'utf8')).toBe(ORIGINAL_RESOLV);
    // SIGKILL with Weft's resolv.conf in place: the next start (here without MagicDNS) restores the original first.
    a1 = await startA1();
    await eventually('Weft points resolv.conf at MagicDNS', 10_000, async () => (/^nameserver 100\.100\.100\.100$/m.test(readFileSync(resolvPath('a1'), 'utf8')) ? true : undefined));
    await a1.kill('SIGKILL');
    expect(readFileSync(resolvPath('a1'), 'utf8')).toMatch(/^nameserver 100\.100\.100\.100$/m);
    a1 = await startA1(['--accept-dns=false']);
    await eventually('the original resolv.conf is back', 10_000, async () => (readFileSync(resolvPath('a1'), 'utf8') === ORIGINAL_RESOLV ? true : undefined));
    expect((await status()).tailnet!.dns).toMatchObject({ acceptDns: false, mode: 'off' });
    // The OS is no longer pointed at MagicDNS: a peer's short name does not resolve through the system resolver.
    const direct = await lab.exec('a1', ['getent', 'hosts', b1.name], { timeoutMs: 10_000 });
    expect(direct.stdout.trim()).toBe('');
    await a1.kill('SIGTERM');
    expect(await a1.exited).toBe(0);
    a1 = null;
    expect(readFileSync(resolvPath('a1'), 'utf8')).toBe(ORIGINAL_RESOLV);
    expect((await lab.exec('a1', ['ip', 'rule', 'show'])).stdout).not.toMatch(/lookup 7070/);
    expect((await lab.exec('a1', ['ip', 'route', 'show', 'table', 'all'])).stdout).not.toContain(iface());
    expect((await lab.exec('a1', ['nft', 'list', 'tables'])).stdout).not.toContain(iface());
  });
});
