// Weft's WireGuard interfaces on real wireguard-go (Weft's pinned build) inside lab namespaces (natlab.md §4):
// - a1 and a2 become peers on their shared LAN, ping each other across the tunnel, report handshake time and byte
//   counts, and close() leaves no interface, route or UAPI socket behind;
// - routes that would capture this machine's traffic (/0, a capture-all pair) are refused;
// - after the owning process is SIGKILLed, cleanup-stale at the next start removes the orphaned wireguard-go
//   (and its TUN) and the dead socket, and leaves a live owner's interface alone.
// Run: npx vitest run --project lab test/lab/wireguard.test.ts   (root)
import { existsSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPair } from '../../src-main/protocol/crypto/keys.ts';
import { toHex } from '../../src-main/protocol/wire/hex.ts';
import { cleanupStaleInterfaces, listWireguardGo } from '../../src-main/engine/wg/stale.ts';
import { uapiSocketPath } from '../../src-main/engine/wg/uapi-socket.ts';
import { resolveWireguardGo, WIREGUARD_GO_PIN } from '../../src-main/engine/wg/resolve.ts';
import { createLab, REPO_ROOT } from './lab.ts';
import type { HostName, Lab, LabProcess } from './lab.ts';
import type { DriverCommand, DriverReply, WireConfig } from './wg-driver.ts';

const DRIVER = [process.execPath, '--import', 'tsx', join(REPO_ROOT, 'test', 'lab', 'wg-driver.ts')];

type CommandBody = DriverCommand extends infer C ? (C extends { id: number } ? Omit<C, 'id'> : never) : never;

class Driver {
  private nextId = 1;
  private parsed = 0;
  private readonly replies = new Map<number, DriverReply>();

  private constructor(readonly proc: LabProcess) {}

  static async start(lab: Lab, host: HostName, args: string[]): Promise<Driver> {
    const proc = lab.spawn(host, [...DRIVER, ...args]);
    await proc.waitForOutput(/"ready":true/, 20_000);
    return new Driver(proc);
  }

  private sync(): void {
    const out = this.proc.output();
    const lines = out.slice(this.parsed).split('\n');
    const partial = lines.pop() ?? '';
    this.parsed = out.length - partial.length;
    for (const l of lines) {
      if (!l.startsWith('{"id"')) continue;
      const r = JSON.parse(l) as DriverReply;
      this.replies.set(r.id, r);
    }
  }

  /** Sends a command and waits (bounded) for its reply. */
  async send(body: CommandBody, timeoutMs = 20_000): Promise<DriverReply> {
    const id = this.nextId++;
    this.proc.write(`${JSON.stringify({ id, ...body })}\n`);
    await this.proc.waitForOutput(new RegExp(`\\{"id":${id},`), timeoutMs);
    this.sync();
    return this.replies.get(id)!;
  }

  /** Sends a command that must succeed; returns its result. */
  async ok<T = unknown>(body: CommandBody): Promise<T> {
    const r = await this.send(body);
    if (!r.ok) throw new Error(`driver ${body.cmd} failed: ${r.error.code}: ${r.error.message}`);
    return r.result as T;
  }
}

interface StatsRow {
  publicKey: string;
  endpoint: { ip: string; port: number } | null;
  allowedIPs: string[];
  rxBytes: number;
  txBytes: number;
  lastHandshakeUnixMs: number | null;
}

let lab: Lab;
/** "weft" + this lab's prefix without punctuation: interface names must be unique across namespaces. */
let tag: string;
const ifName = (suffix: string): string => `${tag}${suffix}`;

async function linkExists(host: HostName, name: string): Promise<boolean> {
  return (await lab.exec(host, ['ip', 'link', 'show', 'dev', name])).code === 0;
}

async function wgRunning(name: string): Promise<boolean> {
  return (await listWireguardGo()).some((p) => p.name === name);
}

beforeAll(async () => {
  lab = await createLab();
  tag = `weft${lab.prefix.replace(/[^0-9a-z]/g, '').slice(1)}`;
});

afterAll(async () => {
  await lab?.destroy();
  // Orphans a test left on purpose (their owners are dead now) must not outlive the run.
  if (tag) await cleanupStaleInterfaces(tag);
});

describe('WireGuard interfaces on wireguard-go', () => {
  it.each([
    ['over UAPI (wireguard-go.ts)', 'uapi'],
    ["with wg set and wg show (kernel.ts: the kernel backend's configuration channel, here on wireguard-go)", 'wg'],
  ] as const)('two LAN hosts become peers, ping across the tunnel, report stats, and close without leftovers: configured %s', async (_n, via) => {
    const A = generateKeyPair();
    const B = generateKeyPair();
    const nameA = ifName('a');
    const nameB = ifName('b');
    const port = 51820;

    const a = await Driver.start(lab, 'a1', ['local']);
    const b = await Driver.start(lab, 'a2', ['local']);

    const cfgA: WireConfig = {
      privateKey: toHex(A.priv),
      listenPort: port,
      peers: [{ publicKey: toHex(B.pub), endpoint: { ip: lab.addr.a2, port }, allowedIPs: ['10.77.0.2/32'] }],
    };
    const cfgB: WireConfig = {
      privateKey: toHex(B.priv),
      listenPort: port,
      peers: [{ publicKey: toHex(A.pub), endpoint: { ip: lab.addr.a1, port }, allowedIPs: ['10.77.0.1/32'] }],
    };
    await a.ok({ cmd: 'create', name: nameA, configVia: via });
    await b.ok({ cmd: 'create', name: nameB, configVia: via });
    // The device runs Weft's pinned build (resources/bin, which test/setup/ensure-deps.sh builds), not Debian's.
    const dev = (await listWireguardGo()).find((p) => p.name === nameA);
    expect(dev).toBeDefined();
    expect(readlinkSync(`/proc/${dev!.pid}/exe`)).toBe(join(REPO_ROOT, 'resources', 'bin', 'wireguard-go'));
    expect(await resolveWireguardGo()).toMatchObject({ source: 'bundled', version: WIREGUARD_GO_PIN.version, pinned: true });
    await a.ok({ cmd: 'up', name: nameA, addresses: ['10.77.0.1/32'] }); // MTU defaults to 1280
    await b.ok({ cmd: 'up', name: nameB, addresses: ['10.77.0.2'], mtu: 1280 });
    await a.ok({ cmd: 'set', name: nameA, config: cfgA });
    await b.ok({ cmd: 'set', name: nameB, config: cfgB });
    await a.ok({ cmd: 'set', name: nameA, config: cfgA }); // idempotent: no change, nothing sent
    await a.ok({ cmd: 'routes', name: nameA, prefixes: ['10.77.0.2/32'] });
    await b.ok({ cmd: 'routes', name: nameB, prefixes: ['10.77.0.1/32'] });

    const link = await lab.exec('a1', ['ip', '-o', 'link', 'show', 'dev', nameA]);
    expect(link.stdout).toMatch(/mtu 1280 /);
    expect(link.stdout).toMatch(/[<,]UP[,>]/);
    expect((await lab.exec('a1', ['ip', 'route', 'show', 'dev', nameA])).stdout).toMatch(/^10\.77\.0\.2 /m);
    expect((await lab.exec('a1', ['ip', '-o', 'addr', 'show', 'dev', nameA])).stdout).toContain('inet 10.77.0.1/32');

    const before = Date.now();
    const ping = await lab.exec('a1', ['ping', '-c', '3', '-W', '2', '10.77.0.2'], { timeoutMs: 20_000 });
    expect(ping.code, ping.stdout + ping.stderr).toBe(0);
    const back = await lab.exec('a2', ['ping', '-c', '3', '-W', '2', '10.77.0.1'], { timeoutMs: 20_000 });
    expect(back.code, back.stdout + back.stderr).toBe(0);

    for (const [d, name, peer, ep] of [
      [a, nameA, B.pub, lab.addr.a2],
      [b, nameB, A.pub, lab.addr.a1],
    ] as const) {
      const stats = await d.ok<StatsRow[]>({ cmd: 'stats', name });
      expect(stats).toHaveLength(1);
      const s = stats[0]!;
      expect(s.publicKey).toBe(toHex(peer));
      expect(s.endpoint).toEqual({ ip: ep, port });
      expect(s.lastHandshakeUnixMs).not.toBeNull();
      expect(s.lastHandshakeUnixMs!).toBeGreaterThanOrEqual(before - 2000);
      expect(s.lastHandshakeUnixMs!).toBeLessThanOrEqual(Date.now() + 2000);
      expect(s.rxBytes).toBeGreaterThan(0);
      expect(s.txBytes).toBeGreaterThan(0);
    }

    // A peer removed from the config is removed from the device: the tunnel stops carrying traffic.
    await a.ok({ cmd: 'set', name: nameA, config: { ...cfgA, peers: [] } });
    expect(await a.ok<StatsRow[]>({ cmd: 'stats', name: nameA })).toEqual([]);
    const noPeer = await lab.exec('a1', ['ping', '-c', '1', '-W', '1', '10.77.0.2'], { timeoutMs: 10_000 });
    expect(noPeer.code).not.toBe(0);

    // Routes that would take this machine's traffic are refused, and the routes in place stay.
    for (const prefixes of [['0.0.0.0/0'], ['0.0.0.0/1', '128.0.0.0/1'], ['::/0'], ['1.2.3']]) {
      const r = await b.send({ cmd: 'routes', name: nameB, prefixes });
      expect(r.ok, JSON.stringify(prefixes)).toBe(false);
      if (!r.ok) expect(r.error.message).toMatch(/default route|wider than|not an IP prefix/);
    }
    expect((await lab.exec('a2', ['ip', 'route', 'show', 'dev', nameB])).stdout).toMatch(/^10\.77\.0\.1 /m);

    await a.ok({ cmd: 'close', name: nameA });
    await b.ok({ cmd: 'close', name: nameB });
    for (const [host, name] of [
      ['a1', nameA],
      ['a2', nameB],
    ] as const) {
      expect(await linkExists(host, name), `${name} link`).toBe(false);
      expect((await lab.exec(host, ['ip', 'route', 'show'])).stdout).not.toMatch(/10\.77\.0\./);
      expect(existsSync(uapiSocketPath(name)), `${name} socket`).toBe(false);
      expect(await wgRunning(name), `${name} process`).toBe(false);
    }
  });

  it('cleanup-stale at the next start removes what a SIGKILLed owner left, and spares a live owner', async () => {
    const K = generateKeyPair();
    const peer = generateKeyPair();
    const cfg: WireConfig = {
      privateKey: toHex(K.priv),
      listenPort: 0,
      peers: [{ publicKey: toHex(peer.pub), endpoint: { ip: lab.addr.b1, port: 51820 }, allowedIPs: ['10.78.0.2/32'] }],
    };
    const orphan = ifName('k');
    const deadSock = ifName('g');
    const live = ifName('l');

    // Three processes in a1: d2 will die with its device, d1 will die alone, d3 is the "next start".
    const d1 = await Driver.start(lab, 'a1', ['local']);
    const d2 = await Driver.start(lab, 'a1', ['local']);
    const d3 = await Driver.start(lab, 'a1', ['local']);

    // 1. A live owner's interface, which the cleanup must leave alone.
    await d3.ok({ cmd: 'create', name: live });

    // 2. Owner and device die together (process group): the socket file stays behind without a listener.
    await d2.ok({ cmd: 'create', name: deadSock });
    await d2.proc.kill('SIGKILL');
    for (let i = 0; i < 50 && (await wgRunning(deadSock)); i++) await new Promise((r) => setTimeout(r, 20));
    expect(await wgRunning(deadSock)).toBe(false);
    expect(existsSync(uapiSocketPath(deadSock))).toBe(true);

    // 3. Only the owner dies (SIGKILL): wireguard-go runs under setpriv --pdeathsig, so it dies with its owner
    //    and its TUN and route go with it. Only the socket file can stay behind.
    const selfClean = ifName('s');
    await d1.ok({ cmd: 'create', name: selfClean });
    await d1.ok({ cmd: 'up', name: selfClean, addresses: ['10.78.0.1/32'] });
    await d1.ok({ cmd: 'set', name: selfClean, config: cfg });
    await d1.ok({ cmd: 'routes', name: selfClean, prefixes: ['10.78.0.2/32'] });
    process.kill(d1.proc.pid, 'SIGKILL');
    await d1.proc.exited;
    for (let i = 0; i < 100 && (await wgRunning(selfClean)); i++) await new Promise((r) => setTimeout(r, 20));
    expect(await wgRunning(selfClean), 'the device dies with its owner').toBe(false);
    expect(await linkExists('a1', selfClean)).toBe(false);

    // 3b. A device whose owner token names a dead process (left by a Weft on a host without setpriv, or an
    //     older version): a real orphan that keeps its TUN. It exists only for milliseconds before the cleanup
    //     (any Weft starting on this machine would rightly remove it too).
    const orphanProc = lab.spawn('a1', [(await resolveWireguardGo()).path, '-f', orphan], { env: { WEFT_OWNER: `${d1.proc.pid}:1` } });
    for (let i = 0; i < 100 && !(await linkExists('a1', orphan)); i++) await new Promise((r) => setTimeout(r, 20));
    expect(await wgRunning(orphan), 'the orphan runs without its owner').toBe(true);
    expect(await linkExists('a1', orphan)).toBe(true);

    // 4. The next start cleans up.
    const report = await d3.ok<{ killed: { name: string; pid: number }[]; removedSockets: string[]; removedLinks: string[] }>({
      cmd: 'cleanup',
      prefix: tag,
    });
    expect(report.killed.map((k) => k.name)).toEqual([orphan]);
    expect(report.removedSockets).toContain(uapiSocketPath(deadSock));

    await orphanProc.exited;
    for (const name of [orphan, deadSock, selfClean]) {
      expect(await wgRunning(name), `${name} process`).toBe(false);
      expect(existsSync(uapiSocketPath(name)), `${name} socket`).toBe(false);
      expect(await linkExists('a1', name), `${name} link`).toBe(false);
    }
    expect((await lab.exec('a1', ['ip', 'route', 'show'])).stdout).not.toMatch(/10\.78\.0\./);

    // The live owner's interface is untouched.
    expect(await wgRunning(live)).toBe(true);
    expect(await d3.ok<StatsRow[]>({ cmd: 'stats', name: live })).toEqual([]);
    await d3.ok({ cmd: 'close', name: live });
    expect(existsSync(uapiSocketPath(live))).toBe(false);
  });
});
