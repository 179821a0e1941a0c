/**
 * The kernel WireGuard backend: a WgInterface backed by a `type wireguard` link (Linux ≥ 5.6, or the backported
 * module), configured with WireGuard's own `wg` tool (wg-tools.ts) and with `ip` for MTU, addresses and routes
 * (link.ts). Packets never leave the kernel, so it carries more than any userspace device for less CPU; it is what
 * tailscaled and NetBird use when the kernel has it.
 *
 *   startKernelWireguard(name)   ip link add dev name type wireguard; ip link set dev name alias weft-owner=<pid:start>
 *   up / routes                  link.ts
 *   set(cfg)                     the diff of config.ts as one `wg set` (the private key in a 0600 file, removed after)
 *   stats()                      wg show name dump
 *   close()                      ip route del …; ip link del dev name (a kernel link outlives its creator, so the
 *                                owner alias lets stale.ts delete a crashed run's link at the next start)
 *
 * chooseWgBackend picks the backend once per daemon: kernel when a probe link can be created and `wg` runs, unless
 * WEFT_WG_BACKEND=wireguard-go; otherwise wireguard-go (wireguard-go.ts), with the reason.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CommandRunner } from '../io/exec.ts';
import { describeFailure, execRunner, runChecked } from '../io/exec.ts';
import type { Logf } from '../sys/log.ts';
import { discardLogf } from '../sys/log.ts';
import type { WgConfig } from './config.ts';
import { cloneConfig, diffConfig, forgetPeerEndpoint } from './config.ts';
import type { PeerStats, WgInterface, WgUpOptions } from './iface.ts';
import { isWeftInterfaceName, peerStatsOf, WEFT_IFACE_RE, wgFailed, WgError } from './iface.ts';
import { LinkState } from './link.ts';
import { listLinks, OWNER_ALIAS_PREFIX, ownerToken } from './stale.ts';
import type { UapiDeviceState, UapiSetRequest } from './uapi.ts';
import { parseWgDump, wgSetCommand } from './wg-tools.ts';

export interface KernelWireguardComponents {
  runner: CommandRunner;
  logf: Logf;
}

/**
 * A device's WireGuard configuration through `wg` (set and stats of WgInterface). It works on any device `wg` can
 * reach: a kernel link over netlink, or a wireguard-go one over its UAPI socket (how the lab tests it here).
 */
export class WgToolsConfigurator {
  private applied: WgConfig | null = null;

  constructor(
    readonly name: string,
    private readonly runner: CommandRunner,
  ) {}

  private async dump(): Promise<UapiDeviceState> {
    // Its first field is the private key: a failure message never quotes stdout.
    const d = parseWgDump(await runChecked(this.runner, ['wg', 'show', this.name, 'dump'], wgFailed, { secretStdout: true }));
    if (!d.ok) throw new WgError('failed', `wg show ${this.name} dump: ${d.error.kind === 'malformed' ? d.error.reason : `errno ${d.error.errno}`}`);
    return d.value;
  }

  async set(cfg: WgConfig): Promise<void> {
    const req = diffConfig(this.applied, cfg);
    if (req === null) return;
    try {
      await this.applySet(req);
    } catch (e) {
      this.applied = null; // the device state is now unknown: the next set() sends the full config
      throw e;
    }
    this.applied = cloneConfig(cfg);
  }

  forgetEndpoint(publicKey: Uint8Array): void {
    forgetPeerEndpoint(this.applied, publicKey);
  }

  private async applySet(req: UapiSetRequest): Promise<void> {
    const current = req.replacePeers ? (await this.dump()).peers.map((p) => p.publicKey) : [];
    // The private key goes to wg in a file that only root can read, in a directory of its own, removed at once.
    const dir = req.privateKey ? await mkdtemp(join(tmpdir(), 'weft-wg-')) : null;
    try {
      const keyFile = dir ? join(dir, 'key') : undefined;
      let cmd: ReturnType<typeof wgSetCommand>;
      try {
        cmd = wgSetCommand(this.name, req, current, keyFile);
      } catch (e) {
        throw new WgError('invalid', (e as Error).message, { cause: e });
      }
      if (!cmd) return;
      if (keyFile && cmd.keyFileText !== null) await writeFile(keyFile, cmd.keyFileText, { mode: 0o600, flag: 'wx' });
      await runChecked(this.runner, ['wg', ...cmd.argv], wgFailed);
    } finally {
      if (dir) await rm(dir, { recursive: true, force: true });
    }
  }

  async stats(): Promise<PeerStats[]> {
    return (await this.dump()).peers.map(peerStatsOf);
  }
}

export class KernelWireguardInterface implements WgInterface {
  private readonly link: LinkState;
  private readonly config: WgToolsConfigurator;
  private closing: Promise<void> | null = null;

  constructor(
    readonly name: string,
    private readonly c: KernelWireguardComponents,
  ) {
    this.link = new LinkState(name, c.runner);
    this.config = new WgToolsConfigurator(name, c.runner);
  }

  private assertOpen(): void {
    if (this.closing) throw new WgError('not-found', `${this.name} is closed`);
  }

  async up(opts: WgUpOptions): Promise<void> {
    this.assertOpen();
    await this.link.up(opts);
  }

  async set(cfg: WgConfig): Promise<void> {
    this.assertOpen();
    await this.config.set(cfg);
  }

  forgetEndpoint(publicKey: Uint8Array): void {
    this.config.forgetEndpoint(publicKey);
  }

  async routes(prefixes: string[]): Promise<void> {
    this.assertOpen();
    await this.link.routes(prefixes);
  }

  async stats(): Promise<PeerStats[]> {
    this.assertOpen();
    return this.config.stats();
  }

  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    const { runner, logf } = this.c;
    await this.link.dropRoutes(logf);
    if ((await listLinks(runner)).includes(this.name)) {
      const argv = ['ip', 'link', 'del', 'dev', this.name];
      const r = await runner(argv);
      if (r.code !== 0) logf(`close: ${describeFailure(argv, r)}`);
    }
  }
}

/** Creates the kernel WireGuard link `name` in this network namespace, marked with this process as its owner. */
export async function startKernelWireguard(name: string, components: Partial<KernelWireguardComponents> = {}): Promise<KernelWireguardInterface> {
  const c: KernelWireguardComponents = { runner: components.runner ?? execRunner, logf: components.logf ?? discardLogf };
  if (!isWeftInterfaceName(name)) throw new WgError('invalid', `interface name must match ${String(WEFT_IFACE_RE)}: ${JSON.stringify(name)}`);
  if ((await listLinks(c.runner)).includes(name)) throw new WgError('exists', `a link named ${name} already exists in this namespace`);
  const add = ['ip', 'link', 'add', 'dev', name, 'type', 'wireguard'];
  const r = await c.runner(add);
  if (r.code !== 0) throw new WgError('failed', describeFailure(add, r));
  const dev = new KernelWireguardInterface(name, c);
  const alias = ['ip', 'link', 'set', 'dev', name, 'alias', `${OWNER_ALIAS_PREFIX}${await ownerToken()}`];
  const ra = await c.runner(alias);
  if (ra.code !== 0) {
    await dev.close();
    throw new WgError('failed', describeFailure(alias, ra));
  }
  c.logf(`wg: kernel WireGuard link ${name} created`);
  return dev;
}

/** Reports whether this kernel can create WireGuard links (`ip link add <probe> type wireguard`). */
export async function detectKernelWireguard(runner: CommandRunner = execRunner, probeName = `weftp${process.pid.toString(36)}`): Promise<boolean> {
  // A probe that a crash left behind (the same PID again, as in a container) must not read as "no WireGuard".
  await runner(['ip', 'link', 'del', 'dev', probeName]);
  const r = await runner(['ip', 'link', 'add', 'dev', probeName, 'type', 'wireguard']);
  if (r.code !== 0) return false;
  await runner(['ip', 'link', 'del', 'dev', probeName]);
  return true;
}

export type WgBackendKind = 'kernel' | 'wireguard-go';

export interface WgBackendChoice {
  kind: WgBackendKind;
  reason: string;
}

/** The environment switch: `wireguard-go` never uses the kernel module; anything else (or unset) prefers it. */
export const WG_BACKEND_ENV = 'WEFT_WG_BACKEND';

/** Picks the device backend: kernel WireGuard when the kernel has it and `wg` runs, else wireguard-go. */
export async function chooseWgBackend(runner: CommandRunner = execRunner, env: NodeJS.ProcessEnv = process.env): Promise<WgBackendChoice> {
  if (env[WG_BACKEND_ENV] === 'wireguard-go') return { kind: 'wireguard-go', reason: `${WG_BACKEND_ENV}=wireguard-go` };
  if (!(await detectKernelWireguard(runner))) {
    return { kind: 'wireguard-go', reason: 'the kernel has no WireGuard support (ip link add type wireguard failed)' };
  }
  const v = await runner(['wg', '--version']);
  if (v.code !== 0) return { kind: 'wireguard-go', reason: 'the kernel has WireGuard, but wireguard-tools (wg) is not installed' };
  return { kind: 'kernel', reason: 'the kernel has WireGuard' };
}
