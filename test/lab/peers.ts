/**
 * Mesh nodes for lab tests: Weft (`weft up` in a lab namespace) and official tailscaled, joined to a real
 * headscale, behind one interface so a test can pair any two. Also the checks the data-plane tests share:
 * waiting for the netmap, pinging over the tunnel, reading each side's path.
 */
import { expect } from 'vitest';
import { StatusReport } from '../../src-shared/model/status.ts';
import type { HostName, Lab, LabProcess } from './lab.ts';
import { startTailscaled, type Tailscaled } from './tailscaled.ts';

export const WEFT = ['node', 'src-main/cli/bin.mjs'];

/** Where a node's traffic to another node goes, as that node reports it. */
export type Link = { kind: 'direct'; endpoint: string } | { kind: 'relay'; region: string } | { kind: 'none' };

export interface Peer {
  kind: 'weft' | 'tailscaled';
  name: string;
  host: HostName;
  /** Tailnet IPv4 (100.x). */
  ip: string;
  /** This side's path to `other` right now. */
  linkTo(other: Peer): Promise<Link>;
  stop(): Promise<void>;
}

/** A TCP listener on each port given (node's net; the lab has no nc), printing "LISTENING" once all are bound. */
export const TCP_LISTENER_JS = `
const net = require('node:net');
const ports = process.argv.slice(1).map(Number);
let n = 0;
for (const p of ports) net.createServer((s) => { s.end('hi ' + p + '\\n'); }).listen(p, '0.0.0.0', () => { if (++n === ports.length) console.log('LISTENING'); });
setTimeout(() => process.exit(0), 900000);
`;

/** Connects to ip:port once; prints OPEN or CLOSED (refused, reset or no answer within the timeout). */
export const TCP_PROBE_JS = `
const net = require('node:net');
const [ip, port, ms] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const s = net.connect({ host: ip, port });
const t = setTimeout(() => { console.log('CLOSED timeout'); process.exit(0); }, ms);
s.on('data', () => { clearTimeout(t); console.log('OPEN'); process.exit(0); });
s.on('error', (e) => { clearTimeout(t); console.log('CLOSED ' + e.code); process.exit(0); });
`;

/** Whether a TCP connection from `from` to ip:port gets the listener's greeting within 3 s. */
export async function probeTcp(lab: Lab, from: HostName, ip: string, port: number): Promise<boolean> {
  const r = await lab.exec(from, ['node', '-e', TCP_PROBE_JS, ip, String(port), '3000'], { timeoutMs: 10_000 });
  return r.stdout.includes('OPEN');
}

/** Replies after which tunnelPing stops: enough to show the tunnel works and to keep disco busy meanwhile. */
const REPLIES_WANTED = 4;

export interface WeftPeer extends Peer {
  kind: 'weft';
  dir: string;
  iface: string;
  proc: LabProcess;
}

export interface TsPeerNode extends Peer {
  kind: 'tailscaled';
  ts: Tailscaled;
}

export interface PeerKitOptions {
  lab: Lab;
  loginServer: string;
  authKey: string;
  /** Extra environment for `weft up` (e.g. WEFT_DEBUG_DERP_HTTP=1 for headscale's plain-HTTP DERP). */
  weftEnv?: Record<string, string>;
  /** Extra environment for tailscaled (e.g. PLAIN_HTTP_DERP_ENV). */
  tsEnv?: Record<string, string>;
  /** Maps a DERP region id to the code tailscaled shows (Weft shows ids), so links compare across kinds. */
  regionCode?: (id: number) => string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class PeerKit {
  private seq = 0;
  constructor(private readonly o: PeerKitOptions) {}

  private get lab(): Lab {
    return this.o.lab;
  }

  async weftStatus(p: WeftPeer): Promise<StatusReport> {
    const r = await this.lab.exec(p.host, [...WEFT, 'status', '--json', '--state-dir', p.dir], { timeoutMs: 15_000 });
    if (r.code !== 0) throw new Error(`status: ${r.stderr}`);
    return StatusReport.parse(JSON.parse(r.stdout));
  }

  async upWeft(host: HostName, opts: { loginServer?: string; env?: Record<string, string>; extraArgs?: string[] } = {}): Promise<WeftPeer> {
    const name = `w${++this.seq}${host}`;
    const dir = `${this.lab.tmpDir}/${name}`;
    const iface = `weft${this.lab.prefix.replace(/[^0-9a-z]/g, '').slice(-5)}${this.seq}`;
    const proc = this.lab.spawn(
      host,
      [...WEFT, 'up', '--login-server', opts.loginServer ?? this.o.loginServer, '--auth-key', this.o.authKey, '--hostname', name, '--state-dir', dir, '--iface', iface, ...(opts.extraArgs ?? [])],
      { env: { ...this.o.weftEnv, ...opts.env } },
    );
    const m = await proc.waitForOutput(/weft: connected as \S+ \["(100\.[0-9.]+)\/32"/, 30_000);
    const p: WeftPeer = {
      kind: 'weft',
      name,
      host,
      ip: m[1]!,
      dir,
      iface,
      proc,
      linkTo: async (other) => {
        const path = (await this.weftStatus(p)).peers.find((x) => x.name === other.name)?.path;
        if (path?.kind === 'direct') return { kind: 'direct', endpoint: path.endpoint };
        if (path?.kind === 'relay') return { kind: 'relay', region: this.o.regionCode ? this.o.regionCode(path.region) : String(path.region) };
        return { kind: 'none' };
      },
      stop: async () => {
        await proc.kill('SIGTERM');
        expect(await proc.exited).toBe(0);
        await this.expectNothingLeft(p);
      },
    };
    return p;
  }

  /** `authKey`: another user's key than the kit's. */
  async upTailscaled(host: HostName, opts: { loginServer?: string; extraArgs?: string[]; authKey?: string } = {}): Promise<TsPeerNode> {
    const name = `t${++this.seq}${host}`;
    const ts = await startTailscaled(this.lab, host, { port: 41700 + this.seq, env: { ...this.o.tsEnv } });
    await ts.up({ loginServer: opts.loginServer ?? this.o.loginServer, authKey: opts.authKey ?? this.o.authKey, hostname: name, ...(opts.extraArgs ? { extraArgs: opts.extraArgs } : {}) });
    const st = await ts.status();
    const ip = st.tailscaleIPs.find((a) => a.startsWith('100.'))!;
    return {
      kind: 'tailscaled',
      name,
      host,
      ip,
      ts,
      linkTo: async (other) => {
        const s = await ts.status();
        const peer = Object.values(s.peers).find((x) => x.hostName === other.name);
        if (!peer) return { kind: 'none' };
        if (peer.curAddr !== '') return { kind: 'direct', endpoint: peer.curAddr };
        // tailscaled names the peer's home region whether or not it is used; with no direct path, traffic goes there.
        return peer.relay !== '' && peer.lastHandshake ? { kind: 'relay', region: peer.relay } : { kind: 'none' };
      },
      stop: () => ts.stop(),
    };
  }

  async up(kind: 'weft' | 'tailscaled', host: HostName, opts: { loginServer?: string } = {}): Promise<Peer> {
    return kind === 'weft' ? this.upWeft(host, opts) : this.upTailscaled(host, opts);
  }

  /** After `weft up` exits: no interface, route or socket of Weft's is left in the namespace. */
  /**
   * `afterKill`: the process was SIGKILLed, so Weft's policy rule and its nftables table stay until the next start
   * replaces them (the fail-closed state: nothing new reaches this host through a tunnel that is gone anyway).
   */
  async expectNothingLeft(p: WeftPeer, o: { afterKill?: boolean } = {}): Promise<void> {
    const links = await this.lab.exec(p.host, ['ip', '-o', 'link', 'show']);
    expect(links.stdout).not.toContain(p.iface);
    const routes = await this.lab.exec(p.host, ['ip', 'route', 'show']);
    expect(routes.stdout).not.toContain(p.iface);
    const udp = await this.lab.exec(p.host, ['ss', '-Hunlp']);
    expect(udp.stdout.split('\n').filter((l) => /:41641\b/.test(l))).toEqual([]);
    // Weft's routing table, its policy rules and its nftables table are gone too.
    const table = await this.lab.exec(p.host, ['ip', 'route', 'show', 'table', '7070']);
    expect(table.stdout.trim()).toBe('');
    const rules = await this.lab.exec(p.host, ['ip', 'rule', 'show']);
    const nft = await this.lab.exec(p.host, ['nft', 'list', 'tables']);
    if (o.afterKill) {
      expect(nft.stdout).toContain(p.iface);
    } else {
      expect(rules.stdout).not.toMatch(/lookup 7070/);
      expect(nft.stdout).not.toContain(p.iface);
    }
  }

  /** Waits until each Weft side has the other's endpoints and disco key from control (bounded). */
  async settle(a: Peer, b: Peer): Promise<void> {
    for (const w of [a, b]) {
      if (w.kind !== 'weft') continue;
      const other = w === a ? b : a;
      for (let i = 0; i < 60; i++) {
        const p = (await this.weftStatus(w as WeftPeer)).peers.find((q) => q.name === other.name);
        // A peer that has not told control its disco key yet is listed with a zero key, and Weft (like
        // Tailscale) leaves it out of the data plane until the key arrives.
        if (p && p.endpoints.length > 0 && p.discoKey !== null) break;
        await sleep(250);
      }
    }
  }

  /**
   * Pings over the tunnel from both sides at once, one every 0.5 s, for up to `count` × 0.5 s (+2 s for the last
   * replies), and stops both once each side has REPLIES_WANTED replies: both keep sending until both have them,
   * since each side's traffic triggers its disco pings. The full 20 pings (10 s) cover tailscaled's second
   * discovery round when the tunnel is slow to come up; a working tunnel costs about 2 s instead of 10.
   */
  async tunnelPing(a: Peer, b: Peer, count = 20): Promise<[boolean, boolean]> {
    const want = Math.min(count, REPLIES_WANTED);
    const pa = this.lab.spawn(a.host, ['ping', '-c', String(count), '-i', '0.5', '-W', '2', b.ip]);
    const pb = this.lab.spawn(b.host, ['ping', '-c', String(count), '-i', '0.5', '-W', '2', a.ip]);
    let doneA = false;
    let doneB = false;
    void pa.exited.then(() => (doneA = true));
    void pb.exited.then(() => (doneB = true));
    const replies = (p: LabProcess): number => (p.output().match(/ bytes from /g) ?? []).length;
    // Slack for a slow `ip netns exec` on a loaded machine; each ping exits by itself after `count` + 2 s anyway.
    const end = Date.now() + (count * 0.5 + 10) * 1000;
    while (Date.now() < end && !(doneA && doneB) && !(replies(pa) >= want && replies(pb) >= want)) await sleep(200);
    for (const p of [pa, pb]) await p.kill('SIGKILL').catch(() => undefined);
    return [replies(pa) > 0, replies(pb) > 0];
  }

  /**
   * Waits for both netmaps, then asserts that a tunnel ping works both ways, giving it one more discovery round
   * (another tunnelPing) if the first missed; the assertion message carries the Weft sides' logs.
   */
  async expectTunnel(a: Peer, b: Peer): Promise<void> {
    await this.settle(a, b);
    let [okA, okB] = await this.tunnelPing(a, b);
    if (!(okA && okB)) [okA, okB] = await this.tunnelPing(a, b);
    expect(okA && okB, `ping over the tunnel in both directions (${a.name} → ${b.name}: ${okA}, ${b.name} → ${a.name}: ${okB})\n${await this.diagnose(a, b)}`).toBe(true);
  }

  /**
   * For a failed tunnel assertion: each Weft side's last log lines, its WireGuard peers (endpoint, last handshake,
   * bytes; keys cut short) and its route to the other side.
   */
  async diagnose(a: Peer, b: Peer): Promise<string> {
    const out: string[] = [this.logs(a, b)];
    for (const [me, other] of [
      [a, b],
      [b, a],
    ] as const) {
      if (me.kind !== 'weft') continue;
      const iface = (me as WeftPeer).iface;
      const wg = await this.lab.exec(me.host, ['wg', 'show', iface, 'dump'], { timeoutMs: 5000 }).catch((e: Error) => ({ stdout: '', stderr: e.message }));
      const route = await this.lab.exec(me.host, ['ip', 'route', 'get', other.ip], { timeoutMs: 5000 }).catch((e: Error) => ({ stdout: '', stderr: e.message }));
      const dump = wg.stdout
        .split('\n')
        .slice(1)
        .filter(Boolean)
        .map((l) => {
          const [peer, , endpoint, allowed, handshake, rx, tx] = l.split('\t');
          return `  peer ${peer?.slice(0, 8)} endpoint ${endpoint} allowed ${allowed} handshake ${handshake} rx ${rx} tx ${tx}`;
        });
      out.push(`--- ${me.name}: wg show ${iface}${wg.stderr ? ` (${wg.stderr.trim()})` : ''}\n${dump.join('\n')}\n--- ${me.name}: ip route get ${other.ip}\n${route.stdout.trim()}${route.stderr.trim()}`);
    }
    return out.join('\n');
  }

  /** Polls until both sides report a link of `kind` (bounded: `rounds` × a short tunnel ping), and returns both links. */
  async waitLinks(a: Peer, b: Peer, kind: Link['kind'], rounds = 10): Promise<[Link, Link]> {
    let la: Link = { kind: 'none' };
    let lb: Link = { kind: 'none' };
    for (let i = 0; i < rounds; i++) {
      [la, lb] = await Promise.all([a.linkTo(b), b.linkTo(a)]);
      if (la.kind === kind && lb.kind === kind) break;
      await this.tunnelPing(a, b, 2);
    }
    return [la, lb];
  }

  /** The last lines of each Weft side's output, for assertion messages. */
  logs(...ps: Peer[]): string {
    return ps.map((x) => (x.kind === 'weft' ? `--- ${x.name}\n${(x as WeftPeer).proc.output().slice(-3000)}` : '')).join('\n');
  }
}

/** Parses `ping -D -O` output: the icmp_seq numbers answered, and the seconds (epoch) each reply arrived. */
export function parsePingSeqs(out: string): { seq: number; at: number }[] {
  const got: { seq: number; at: number }[] = [];
  for (const m of out.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from [^:]+: icmp_seq=(\d+)/gm)) got.push({ seq: Number(m[2]), at: Number(m[1]) });
  return got;
}
