/**
 * The wireguard-go backend: a WgInterface backed by a `wireguard-go -f <name>` child process, configured over
 * its UAPI socket, with addresses, MTU and routes set by `ip` through an argv-only CommandRunner. Needs root
 * (or CAP_NET_ADMIN): it is what the privileged helper (helper.ts) runs, and what a root CLI can use directly.
 *
 * The device is created in the network namespace of the current process (wireguard-go opens /dev/net/tun
 * where it runs), but its UAPI socket path is global, so names must be unique machine-wide (natlab.md G8).
 *
 *   startWireguardGo(name)                 spawn wireguard-go -f name (env WEFT_OWNER for stale cleanup); which
 *                                          wireguard-go: resolve.ts (env, Weft's pinned build, PATH)
 *     └─ wait for /var/run/wireguard/name.sock to answer get=1 (bounded; fails early if the child exits)
 *   up({addresses, mtu})                   ip link set dev name mtu M; ip addr replace A dev name; ip link set up
 *   set(cfg) / setUapi(req)                UAPI set=1 (a diff, config.ts)
 *   routes(prefixes)                       ip route replace P dev name; ip route del for the ones dropped
 *   stats()                                UAPI get=1
 *   close()                                ip route del ...; SIGTERM (SIGKILL after a bound); then remove any
 *                                          socket or link the process left behind
 *
 * Kernel WireGuard, when the kernel has it, is the other backend (kernel.ts, chosen by its chooseWgBackend).
 */
import { existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { unlink } from 'node:fs/promises';
import { WG_START_POLL_MS, WG_START_TIMEOUT_MS, WG_STOP_TIMEOUT_MS, WG_UAPI_TIMEOUT_MS } from '../constants.ts';
import type { CommandRunner } from '../io/exec.ts';
import { describeFailure, execRunner } from '../io/exec.ts';
import type { Clock } from '../sys/clock.ts';
import { realClock, sleep } from '../sys/clock.ts';
import type { Logf } from '../sys/log.ts';
import { discardLogf } from '../sys/log.ts';
import type { WgConfig } from './config.ts';
import { cloneConfig, diffConfig, forgetPeerEndpoint } from './config.ts';
import type { PeerStats, WgInterface, WgUpOptions } from './iface.ts';
import { isWeftInterfaceName, peerStatsOf, WEFT_IFACE_RE, WgError } from './iface.ts';
import { listLinks, OWNER_ENV, ownerToken } from './stale.ts';
import type { UapiError, UapiSetRequest } from './uapi.ts';
import { LinkState } from './link.ts';
import { defaultWireguardGo } from './resolve.ts';
import { encodeSetRequest, parseErrnoReply, parseGetReply, UAPI_GET_REQUEST } from './uapi.ts';
import { isSocketLive, UAPI_SOCKET_DIR, uapiExchange, uapiSocketPath } from './uapi-socket.ts';

/** util-linux setpriv, used for --pdeathsig when present. */
const SETPRIV = '/usr/bin/setpriv';

export interface WireguardGoInit {
  name: string;
  /** The program to run. @default the process-wide choice of resolve.ts (env, Weft's pinned build, then PATH) */
  binary?: string;
  /** Where wireguard-go puts its socket (compiled in; only change it for a differently built binary). @default '/var/run/wireguard' */
  socketDir?: string;
  /** wireguard-go's LOG_LEVEL (error | verbose | silent). @default 'error' */
  logLevel?: 'error' | 'verbose' | 'silent';
  /** @default WG_START_TIMEOUT_MS */
  startTimeoutMs?: number;
  /** @default WG_STOP_TIMEOUT_MS */
  stopTimeoutMs?: number;
  /** @default WG_UAPI_TIMEOUT_MS */
  uapiTimeoutMs?: number;
}

export interface WireguardGoComponents {
  runner: CommandRunner;
  clock: Clock;
  logf: Logf;
}

const OUTPUT_TAIL = 4096;

function uapiErrorText(e: UapiError): string {
  return e.kind === 'errno' ? `errno=${e.errno}` : `malformed reply: ${e.reason}`;
}

export class WireguardGoInterface implements WgInterface {
  /** Resolves with the exit code (null when killed by a signal) once wireguard-go is gone. */
  readonly exited: Promise<number | null>;
  // Owned by this object; changed only by its own methods.
  private output = '';
  private exitCode: number | null | undefined = undefined;
  private applied: WgConfig | null = null;
  private readonly link: LinkState;
  private closing: Promise<void> | null = null;

  constructor(
    readonly name: string,
    private readonly child: ChildProcess,
    private readonly init: Required<Omit<WireguardGoInit, 'name' | 'binary' | 'logLevel'>>,
    private readonly c: WireguardGoComponents,
  ) {
    this.link = new LinkState(name, c.runner);
    const onData = (d: Buffer): void => {
      this.output = (this.output + d.toString('utf8')).slice(-OUTPUT_TAIL);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code) => {
        this.exitCode = code;
        if (!this.closing) c.logf(`wireguard-go if=${name} exited unexpectedly code=${String(code)}: ${this.output.trim().slice(-300)}`);
        resolve(code);
      });
      child.once('error', (err) => {
        this.output += `\nspawn error: ${err.message}`;
        this.exitCode = null;
        resolve(null);
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get socketPath(): string {
    return uapiSocketPath(this.name, this.init.socketDir);
  }

  /** Reports whether the wireguard-go process has exited. */
  get dead(): boolean {
    return this.exitCode !== undefined;
  }

  /** The last few KiB of wireguard-go's output (for error messages). */
  get outputTail(): string {
    return this.output;
  }

  private assertAlive(): void {
    if (this.closing) throw new WgError('not-found', `${this.name} is closed`);
    if (this.dead) throw new WgError('failed', `wireguard-go for ${this.name} exited (code ${String(this.exitCode)}): ${this.output.trim().slice(-300)}`);
  }

  private async uapi(request: string): Promise<string> {
    this.assertAlive();
    try {
      return await uapiExchange(this.socketPath, request, { timeoutMs: this.init.uapiTimeoutMs, clock: this.c.clock });
    } catch (e) {
      throw new WgError('failed', `UAPI ${this.name}: ${(e as Error).message}`, { cause: e });
    }
  }

  async up(opts: WgUpOptions): Promise<void> {
    this.assertAlive();
    await this.link.up(opts);
  }

  async set(cfg: WgConfig): Promise<void> {
    const req = diffConfig(this.applied, cfg);
    if (req === null) return;
    await this.applyUapi(req);
    this.applied = cloneConfig(cfg);
  }

  forgetEndpoint(publicKey: Uint8Array): void {
    forgetPeerEndpoint(this.applied, publicKey);
  }

  /** Applies a raw set request (the helper's set-config). The last applied config is then unknown. */
  async setUapi(req: UapiSetRequest): Promise<void> {
    this.applied = null;
    await this.applyUapi(req);
  }

  private async applyUapi(req: UapiSetRequest): Promise<void> {
    let text: string;
    try {
      text = encodeSetRequest(req);
    } catch (e) {
      throw new WgError('invalid', (e as Error).message, { cause: e });
    }
    try {
      const r = parseErrnoReply(await this.uapi(text));
      if (!r.ok) throw new WgError('failed', `UAPI set on ${this.name} failed: ${uapiErrorText(r.error)}`);
    } catch (e) {
      this.applied = null; // the device state is now unknown: the next set() sends the full config
      throw e;
    }
  }

  async routes(prefixes: string[]): Promise<void> {
    this.assertAlive();
    await this.link.routes(prefixes);
  }

  async stats(): Promise<PeerStats[]> {
    const r = parseGetReply(await this.uapi(UAPI_GET_REQUEST));
    if (!r.ok) throw new WgError('failed', `UAPI get on ${this.name} failed: ${uapiErrorText(r.error)}`);
    return r.value.peers.map(peerStatsOf);
  }

  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    const { runner, clock, logf } = this.c;
    if (!this.dead) await this.link.dropRoutes(logf);
    else this.link.forgetRoutes();
    for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
      if (this.dead) break;
      this.child.kill(sig);
      let t: ReturnType<Clock['setTimeout']> | undefined;
      const bound = new Promise<void>((r) => (t = clock.setTimeout(r, this.init.stopTimeoutMs)));
      await Promise.race([this.exited, bound]);
      if (t) clock.clearTimeout(t);
    }
    // SIGTERM makes wireguard-go remove its TUN and socket; after SIGKILL (or a crash) they may remain.
    if (!(await isSocketLive(this.socketPath))) await unlink(this.socketPath).catch(() => undefined);
    if ((await listLinks(runner)).includes(this.name)) {
      const r = await runner(['ip', 'link', 'del', 'dev', this.name]);
      if (r.code !== 0) logf(`close: ${describeFailure(['ip', 'link', 'del', 'dev', this.name], r)}`);
    }
  }
}

/** Spawns wireguard-go for `name` and resolves once its UAPI socket answers. */
export async function startWireguardGo(init: WireguardGoInit, components: Partial<WireguardGoComponents> = {}): Promise<WireguardGoInterface> {
  const c: WireguardGoComponents = { runner: components.runner ?? execRunner, clock: components.clock ?? realClock, logf: components.logf ?? discardLogf };
  const name = init.name;
  if (!isWeftInterfaceName(name)) throw new WgError('invalid', `interface name must match ${String(WEFT_IFACE_RE)}: ${JSON.stringify(name)}`);
  const resolved = {
    socketDir: init.socketDir ?? UAPI_SOCKET_DIR,
    startTimeoutMs: init.startTimeoutMs ?? WG_START_TIMEOUT_MS,
    stopTimeoutMs: init.stopTimeoutMs ?? WG_STOP_TIMEOUT_MS,
    uapiTimeoutMs: init.uapiTimeoutMs ?? WG_UAPI_TIMEOUT_MS,
  };
  const sock = uapiSocketPath(name, resolved.socketDir);
  if (await isSocketLive(sock)) throw new WgError('exists', `${name} already exists (${sock} answers)`);
  if ((await listLinks(c.runner)).includes(name)) throw new WgError('exists', `a link named ${name} already exists in this namespace`);

  // With util-linux's setpriv (it execs in place, so the pid stays wireguard-go's), the kernel kills the
  // device process when its parent dies, even by SIGKILL: the TUN, its addresses and routes go with it.
  const bin = init.binary ?? (await defaultWireguardGo(c.logf)).path;
  const [cmd, args] = existsSync(SETPRIV) ? [SETPRIV, ['--pdeathsig', 'KILL', bin, '-f', name]] : [bin, ['-f', name]];
  const child = spawn(cmd, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LOG_LEVEL: init.logLevel ?? 'error', [OWNER_ENV]: await ownerToken() },
    shell: false,
  });
  const dev = new WireguardGoInterface(name, child, resolved, c);
  const deadline = c.clock.now() + resolved.startTimeoutMs;
  for (;;) {
    if (dev.dead) {
      throw new WgError('failed', `wireguard-go ${name} exited during start: ${dev.outputTail.trim().slice(-500) || 'no output'}`);
    }
    try {
      const r = parseGetReply(await uapiExchange(sock, UAPI_GET_REQUEST, { timeoutMs: resolved.uapiTimeoutMs, clock: c.clock }));
      if (r.ok) break;
    } catch {
      /* not listening yet */
    }
    if (c.clock.now() >= deadline) {
      await dev.close();
      throw new WgError('failed', `wireguard-go ${name}: no UAPI socket at ${sock} after ${resolved.startTimeoutMs} ms`);
    }
    await sleep(c.clock, WG_START_POLL_MS);
  }
  c.logf(`wireguard-go if=${name} pid=${dev.pid} up (${bin})`);
  return dev;
}
