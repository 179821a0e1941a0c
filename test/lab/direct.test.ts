/**
 * Direct WireGuard links through NATs (issue 4), against real headscale in the NAT lab, Weft↔Weft and
 * Weft↔tailscaled (official v1.100.0). Each case: a ping over the tunnel (100.x addresses) works and both
 * sides report a direct path (Weft: path.kind "direct"; tailscaled: CurAddr set). EDM↔EDM never claims
 * direct and goes through the DERP relay. iperf3 runs 10 s through a tunnel; weft ping reports the path; after weft up exits or is killed,
 * nothing of Weft's is left in the namespace.
 *
 * The kernel data path (issue 13) is on in every case: status says `kernel`, and WireGuard itself points at the
 * peer's public address. Two more cases: both hosts behind a stateful host firewall (policy drop, established
 * accepted) still go direct; and where nft cannot load the data path's table, the proxy design carries the same
 * direct link and status says `proxy` with the reason.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, type HostName, type Lab, type RouterName, type RouterProfile } from './lab.ts';
import { startHeadscale, type Headscale } from './headscale.ts';
import { PLAIN_HTTP_DERP_ENV } from './tailscaled.ts';
import { PeerKit, WEFT, type Peer, type WeftPeer } from './peers.ts';
import { eventually } from '../support/eventually.ts';

let lab: Lab;
let hs: Headscale;
let kit: PeerKit;

beforeAll(async () => {
  lab = await createLab();
  // headscale's embedded DERP gives the DERP map a STUN server (203.0.113.10:3478), which both Weft and
  // tailscaled use to learn their public endpoints, and a relay for EDM <-> EDM.
  hs = await startHeadscale(lab, '0.29.2', { embeddedDerp: true });
  const user = await hs.createUser('direct');
  const key = await hs.createPreauthKey(user, { reusable: true, expiration: '1h' });
  // The embedded DERP serves plain HTTP, as for tailscaled's TS_DEBUG_USE_DERP_HTTP.
  kit = new PeerKit({ lab, loginServer: hs.url, authKey: key, weftEnv: { WEFT_DEBUG_DERP_HTTP: '1' }, tsEnv: { ...PLAIN_HTTP_DERP_ENV } });
});

afterAll(async () => {
  await lab?.destroy();
});

const isDirect = async (a: Peer, b: Peer): Promise<boolean> => (await a.linkTo(b)).kind === 'direct';

/**
 * A host firewall as a careful user runs one: inbound policy drop; loopback, replies (conntrack) and the VPN
 * interfaces accepted (as `firewall-cmd --zone=trusted --add-interface=…` does; Weft's own ACL table decides what
 * the tunnel admits). Nothing opens WireGuard's or disco's UDP port: only their own outbound packets do.
 */
async function hostFirewall(host: HostName): Promise<() => Promise<void>> {
  const nft = async (cmd: string): Promise<void> => {
    const r = await lab.exec(host, ['nft', cmd]);
    if (r.code !== 0) throw new Error(`nft ${cmd}: ${r.stderr}`);
  };
  await nft('add table inet labhostfw');
  await nft('add chain inet labhostfw input { type filter hook input priority 0; policy drop; }');
  await nft('add rule inet labhostfw input iif lo accept');
  await nft('add rule inet labhostfw input ct state established,related accept');
  await nft('add rule inet labhostfw input iifname "weft*" accept');
  await nft(`add rule inet labhostfw input iifname "${lab.prefix}t*" accept`);
  await nft('add rule inet labhostfw input icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept');
  await nft('add rule inet labhostfw input counter');
  return () => nft('delete table inet labhostfw');
}

/**
 * Weft in a1 (with `env`) and `otherKind` in b1, both behind EIM+APDF NATs: a tunnel ping works both ways and
 * both sides go direct; then `check` looks at the Weft side, and both are stopped (nothing left behind).
 */
async function directPair(otherKind: 'weft' | 'tailscaled', opts: { env?: Record<string, string> }, check: (a: WeftPeer, b: Peer) => Promise<void>): Promise<void> {
  await lab.setRouter('na', { mapping: 'eim', filtering: 'apdf' });
  await lab.setRouter('nb', { mapping: 'eim', filtering: 'apdf' });
  const a = await kit.upWeft('a1', opts.env ? { env: opts.env } : {});
  const b = await kit.up(otherKind, 'b1');
  try {
    // One more discovery round if the first ping missed (expectTunnel), as for the firewalled pair below; a miss
    // says which direction failed and shows each Weft side's WireGuard state.
    await kit.expectTunnel(a, b);
    expect((await kit.waitLinks(a, b, 'direct')).map((l) => l.kind)).toEqual(['direct', 'direct']);
    await check(a, b);
  } finally {
    await b.stop();
    await a.stop();
  }
}

/** Weft's data path as its status reports it, and WireGuard's endpoint for the peer (`wg show` in its namespace). */
async function dataPathOf(a: WeftPeer): Promise<{ mode: string | undefined; wgEndpoints: string[] }> {
  const st = await kit.weftStatus(a);
  const wg = await lab.exec(a.host, ['wg', 'show', a.iface, 'endpoints']);
  return { mode: st.dataPath?.mode, wgEndpoints: wg.stdout.trim().split('\n').map((l) => l.split('\t')[1] ?? '') };
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
    const a = await kit.upWeft(ah);
    const b = await kit.up(otherKind, bh);
    try {
      // One more 10 s discovery round if the first ping missed (in expectTunnel): Weft<->tailscaled behind the
      // stateful firewall occasionally needs it after earlier cases (root cause open, noted on the issue).
      await kit.expectTunnel(a, b);
      expect((await kit.waitLinks(a, b, 'direct')).map((l) => l.kind)).toEqual(['direct', 'direct']);
      const st = (await kit.weftStatus(a)).peers.find((p) => p.name === b.name)!;
      expect(st.path.kind).toBe('direct');
      if (st.path.kind === 'direct') {
        if (ah === 'a1' && bh === 'a2') expect(st.path.endpoint).toMatch(/^192\.168\.1\./);
        expect(st.path.latencyMs).toBeGreaterThanOrEqual(0);
      }
      expect(st.rxBytes).toBeGreaterThan(0);
      expect(st.txBytes).toBeGreaterThan(0);
      expect(st.lastHandshake).not.toBeNull();
      // The kernel data path: WireGuard itself sends to the peer's direct address, not to a loopback proxy.
      const dp = await dataPathOf(a);
      expect(dp.mode).toBe('kernel');
      if (st.path.kind === 'direct') expect(dp.wgEndpoints).toContain(st.path.endpoint);
    } finally {
      await b.stop();
      await a.stop();
    }
  }, 150_000);

  it('both hosts behind a stateful host firewall (policy drop, established accepted): direct', async () => {
    const undo = [await hostFirewall('a1'), await hostFirewall('b1')];
    try {
      await directPair(otherKind, {}, async (a, b) => {
        expect((await dataPathOf(a)).mode).toBe('kernel');
        // WireGuard roams to wherever the peer's last authenticated packet came from, and one the relay delivered
        // comes from the peer's loopback proxy: behind this firewall, replies to what it then sends (through Node,
        // from another socket) are dropped, and CI saw the handshake fail for 20 s that way. Weft pins WireGuard
        // back to the direct address within a counter poll (1 s). That happens by itself here too when the peer
        // still sends through the relay, so WireGuard's endpoint is awaited, not read once. Then the device is put in
        // the roamed state by hand, and must come back.
        const path = (await kit.weftStatus(a)).peers.find((p) => p.name === b.name)?.path;
        expect(path?.kind).toBe('direct');
        const direct = path?.kind === 'direct' ? path.endpoint : '';
        const endpoints = async (): Promise<string[][]> =>
          (await lab.exec(a.host, ['wg', 'show', a.iface, 'endpoints'])).stdout
            .trim()
            .split('\n')
            .map((l) => l.split('\t'));
        const peerKey = await eventually(`WireGuard sends to ${direct}`, 10_000, async () => (await endpoints()).find(([, e]) => e === direct)?.[0], 250);
        // Meanwhile nothing from the peer gets in, so that only Weft can move WireGuard back (a packet from the peer's
        // direct address would make WireGuard roam back by itself).
        const block = await lab.exec(a.host, ['nft', '-f', '-'], {
          input: `table inet labroam {\n chain input {\n  type filter hook input priority -10; policy accept;\n  ip saddr ${direct.split(':')[0]} meta l4proto udp drop\n }\n}\n`,
        });
        expect(block.code, block.stderr).toBe(0);
        try {
          const roam = await lab.exec(a.host, ['wg', 'set', a.iface, 'peer', peerKey, 'endpoint', '127.0.0.1:9']);
          expect(roam.code, roam.stderr).toBe(0);
          await eventually('WireGuard pinned back to the direct address', 10_000, async () => ((await endpoints()).find(([k]) => k === peerKey)?.[1] === direct ? true : undefined), 250);
          // Said in the log (at most once a minute per peer: a roam Weft undid by itself just before may be the one
          // it names, so any roam target is accepted here).
          expect(a.proc.output()).toMatch(new RegExp(`WireGuard moved peer \\S+ to 127\\.0\\.0\\.1:\\d+ \\(roaming\\); pinning it back to its direct address ${direct.replace(/\./g, '\\.')}`));
        } finally {
          await lab.exec(a.host, ['nft', 'delete', 'table', 'inet', 'labroam']);
        }
        await kit.expectTunnel(a, b);
      });
    } finally {
      for (const u of undo) await u();
    }
  }, 150_000);

  it('where nft cannot load the data path, the proxy design goes direct and status says proxy', async () => {
    // An nft earlier in PATH that refuses Weft's data-path table and runs the real nft for everything else (the
    // ACL filter must still load: without it the interface stays down, fail closed).
    const bin = `${lab.tmpDir}/nft-no-datapath`;
    const nftPath = (await lab.exec('a1', ['sh', '-c', 'command -v nft'])).stdout.trim();
    await lab.exec('a1', ['mkdir', '-p', bin]);
    const script = `#!/bin/sh\ncase "$*" in *weft_dp_*) echo "Error: Could not process rule: Operation not supported (lab)" >&2; exit 1;; esac\nexec ${nftPath} "$@"\n`;
    await lab.exec('a1', ['sh', '-c', `printf '%s' "$1" > ${bin}/nft && chmod 755 ${bin}/nft`, 'sh', script]);
    await directPair(otherKind, { env: { PATH: `${bin}:${process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` } }, async (a) => {
      const st = await kit.weftStatus(a);
      expect(st.dataPath?.mode).toBe('proxy');
      expect(st.dataPath?.reason).toMatch(/lab/);
      expect((await dataPathOf(a)).wgEndpoints.every((e) => e.startsWith('127.0.0.1:'))).toBe(true);
    });
  }, 150_000);
});

describe('Weft ↔ Weft, more', () => {
  it('EDM ↔ EDM never claims direct; the tunnel works through the DERP relay, shown with its region', async () => {
    await lab.setRouter('na', { mapping: 'edm', filtering: 'apdf' });
    await lab.setRouter('nb', { mapping: 'edm', filtering: 'apdf' });
    const a = await kit.upWeft('a1');
    const b = await kit.upWeft('b1');
    try {
      await kit.expectTunnel(a, b);
      for (let i = 0; i < 3; i++) {
        expect(await isDirect(a, b)).toBe(false);
        expect(await isDirect(b, a)).toBe(false);
        const path = (await kit.weftStatus(a)).peers.find((p) => p.name === b.name)?.path;
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
    const a = await kit.upWeft('a1');
    const b = await kit.upWeft('b1');
    try {
      await kit.settle(a, b);
      await kit.tunnelPing(a, b, 4);
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
    // Killed without a chance to clean up: the device process dies with it, and nothing stays in the namespace but
    // the fail-closed state (Weft's nftables table and its empty routing table's rule, replaced at the next start).
    await a.proc.kill('SIGKILL');
    await a.proc.exited;
    for (let i = 0; i < 20; i++) {
      const links = await lab.exec('a1', ['ip', '-o', 'link', 'show']);
      if (!links.stdout.includes(a.iface)) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    await kit.expectNothingLeft(a, { afterKill: true });
  }, 150_000);
});
