/**
 * The narrow privileged helper: executes the typed op set of helper-ops.ts, and nothing else.
 *
 *   in-process (root CLI, tests)         createLocalHelper()  ── WireguardGoInterface per created name
 *   separate process (`weft helper`)     startHelperServer(path, uid)  <── unix socket 0600, owner uid ──  HelperClient
 *
 * Every request is validated (zod, helper-ops.ts) before anything runs; the helper only acts on interfaces it
 * created itself, and only through argv-array commands and the UAPI socket (no shell anywhere). Ops run one at
 * a time, in arrival order, so a set-config can never interleave with a destroy of the same interface.
 *
 * Trust: the socket is mode 0600 and owned by `uid`, so only that user (and root) can connect; put it in a
 * directory only root can write (e.g. /run/weft), so nobody can swap the socket file. Interfaces live until
 * destroy-interface or until the helper stops (close() / SIGTERM destroys them all); a client disconnecting
 * does not tear them down, so the engine can reconnect. If the helper itself is SIGKILLed, its wireguard-go
 * children keep running; cleanup-stale at the next start removes them (stale.ts).
 */
import { chmod, chown, unlink } from 'node:fs/promises';
import net from 'node:net';
import type { ZodType } from 'zod';
import { WG_HELPER_REQUEST_TIMEOUT_MS } from '../constants.ts';
import type { CommandRunner } from '../io/exec.ts';
import { execRunner } from '../io/exec.ts';
import type { Clock, TimerHandle } from '../sys/clock.ts';
import { realClock } from '../sys/clock.ts';
import type { Logf } from '../sys/log.ts';
import { discardLogf } from '../sys/log.ts';
import { toHex } from '../../protocol/wire/hex.ts';
import type { Helper, HelperOp, HelperRequest, HelperRequestOf, HelperResult } from './helper-ops.ts';
import { HELPER_MAX_LINE, HelperReply, HelperResults, parseHelperLine, parseHelperRequest } from './helper-ops.ts';
import { WgError } from './iface.ts';
import type { StaleCleanupInit } from './stale.ts';
import { cleanupStaleInterfaces } from './stale.ts';
import { parseSetRequest } from './uapi.ts';
import type { WireguardGoInit, WireguardGoInterface } from './wireguard-go.ts';
import { startWireguardGo } from './wireguard-go.ts';
import { isSocketLive } from './uapi-socket.ts';

export interface LocalHelperInit {
  /** Options for every wireguard-go this helper starts. */
  wireguardGo?: Omit<WireguardGoInit, 'name'>;
  stale?: StaleCleanupInit;
}

export interface LocalHelperComponents {
  runner: CommandRunner;
  clock: Clock;
  logf: Logf;
}

export interface LocalHelper extends Helper {
  /** Names of the interfaces this helper created and has not destroyed. */
  names(): string[];
}

function asWgError(e: unknown): WgError {
  return e instanceof WgError ? e : new WgError('failed', e instanceof Error ? e.message : String(e), { cause: e });
}

/** The in-process helper: runs ops directly (the process must be root or hold CAP_NET_ADMIN). */
export function createLocalHelper(init: LocalHelperInit = {}, components: Partial<LocalHelperComponents> = {}): LocalHelper {
  const c: LocalHelperComponents = { runner: components.runner ?? execRunner, clock: components.clock ?? realClock, logf: components.logf ?? discardLogf };
  // Owned here: the devices this helper created, by name.
  const devices = new Map<string, WireguardGoInterface>();
  let queue: Promise<unknown> = Promise.resolve();
  let closed = false;

  const device = (name: string): WireguardGoInterface => {
    const d = devices.get(name);
    if (!d) throw new WgError('not-found', `${name} is not an interface this helper created`);
    return d;
  };

  const execute = async (req: HelperRequest): Promise<unknown> => {
    switch (req.op) {
      case 'create-interface': {
        if (devices.has(req.name)) throw new WgError('exists', `${req.name} already exists`);
        const d = await startWireguardGo({ ...init.wireguardGo, name: req.name }, c);
        devices.set(req.name, d);
        return { name: d.name, pid: d.pid };
      }
      case 'set-addresses':
        await device(req.name).up({ addresses: req.addresses, mtu: req.mtu });
        return {};
      case 'set-routes':
        await device(req.name).routes(req.prefixes);
        return {};
      case 'set-config': {
        const r = parseSetRequest(req.uapi);
        if (!r.ok) throw new WgError('invalid', 'UAPI text refused'); // already validated by the schema
        await device(req.name).setUapi(r.value);
        return {};
      }
      case 'get-stats': {
        const peers = await device(req.name).stats();
        return {
          peers: peers.map((p) => ({
            publicKey: toHex(p.publicKey),
            endpoint: p.endpoint,
            allowedIPs: p.allowedIPs,
            rxBytes: p.rxBytes,
            txBytes: p.txBytes,
            lastHandshakeUnixMs: p.lastHandshakeUnixMs,
          })),
        };
      }
      case 'destroy-interface': {
        const d = device(req.name);
        devices.delete(req.name);
        await d.close();
        return {};
      }
      case 'cleanup-stale':
        return cleanupStaleInterfaces(req.prefix, init.stale, c);
      default: {
        const never: never = req;
        throw new WgError('invalid', `unknown op ${JSON.stringify(never)}`);
      }
    }
  };

  /** Validates and runs one request after every earlier one finished. */
  const run = (raw: unknown): Promise<unknown> => {
    const next = queue.then(async () => {
      if (closed) throw new WgError('failed', 'the helper is closed');
      const v = parseHelperRequest(raw);
      if (!v.ok) throw v.error;
      try {
        return await execute(v.request);
      } catch (e) {
        throw asWgError(e);
      }
    });
    queue = next.catch(() => undefined);
    return next;
  };

  return {
    async call<O extends HelperOp>(req: HelperRequestOf<O>): Promise<HelperResult<O>> {
      return (await run(req)) as HelperResult<O>;
    },
    names: () => [...devices.keys()],
    async close() {
      await queue;
      closed = true;
      const all = [...devices.values()];
      devices.clear();
      await Promise.all(all.map((d) => d.close()));
    },
  };
}

// --- server --------------------------------------------------------------------------------------------

export interface HelperServer {
  readonly path: string;
  /** Stops accepting, drops connections, destroys every interface the helper created, unlinks the socket. */
  close(): Promise<void>;
}

export interface HelperServerOptions {
  /** Group of the socket file. @default unchanged (root's) */
  gid?: number;
  /** The helper to serve (not closed by close()). @default createLocalHelper(), closed with the server */
  helper?: Helper;
  logf?: Logf;
}

/** Serves the helper on a unix socket that only `uid` (and root) may connect to. */
export async function startHelperServer(path: string, uid: number, opts: HelperServerOptions = {}): Promise<HelperServer> {
  if (!Number.isInteger(uid) || uid < 0) throw new WgError('invalid', `bad uid ${uid}`);
  const logf = opts.logf ?? discardLogf;
  const helper = opts.helper ?? createLocalHelper({}, { logf });
  if (await isSocketLive(path)) throw new WgError('exists', `another helper is already listening on ${path}`);
  await unlink(path).catch(() => undefined);
  const conns = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    conns.add(sock);
    sock.on('close', () => conns.delete(sock));
    sock.on('error', () => undefined);
    sock.setEncoding('utf8');
    let buf = '';
    let chain: Promise<void> = Promise.resolve();
    const reply = (r: HelperReply): void => {
      if (!sock.destroyed) sock.write(`${JSON.stringify(r)}\n`);
    };
    sock.on('data', (d: string) => {
      buf += d;
      for (;;) {
        const nl = buf.indexOf('\n');
        if (nl < 0) break;
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.trim() === '') continue;
        const { id, parsed } = parseHelperLine(line);
        chain = chain.then(async () => {
          if (!parsed.ok) {
            logf(`helper: refused: ${parsed.error.message}`);
            reply({ id, ok: false, error: { code: parsed.error.code, message: parsed.error.message } });
            return;
          }
          try {
            const result = await helper.call(parsed.request);
            reply({ id, ok: true, result });
          } catch (e) {
            const err = asWgError(e);
            logf(`helper: op=${parsed.request.op} failed: ${err.message}`);
            reply({ id, ok: false, error: { code: err.code, message: err.message } });
          }
        });
      }
      if (buf.length > HELPER_MAX_LINE) {
        reply({ id: null, ok: false, error: { code: 'invalid', message: 'helper request line too long' } });
        sock.destroy();
      }
    });
  });
  const old = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(old);
  }
  await chmod(path, 0o600);
  await chown(path, uid, opts.gid ?? -1);
  logf(`helper: listening on ${path} for uid ${uid}`);
  let closing: Promise<void> | null = null;
  return {
    path,
    close() {
      closing ??= (async () => {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          for (const s of conns) s.destroy();
        });
        await unlink(path).catch(() => undefined);
        if (!opts.helper) await helper.close();
      })();
      return closing;
    },
  };
}

// --- client --------------------------------------------------------------------------------------------

interface Pending {
  op: HelperOp;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: TimerHandle;
}

/** The engine's side of the helper socket: one connection, requests pipelined by id. */
export class HelperClient implements Helper {
  // Owned by this object: the requests awaiting a reply, by id.
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private buf = '';
  private failure: Error | null = null;

  private constructor(
    private readonly sock: net.Socket,
    private readonly clock: Clock,
    private readonly timeoutMs: number,
  ) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => this.onData(d));
    sock.on('error', (e) => this.fail(new WgError('failed', `helper connection: ${e.message}`, { cause: e })));
    sock.on('close', () => this.fail(new WgError('failed', 'helper connection closed')));
  }

  static connect(path: string, opts: { timeoutMs?: number; clock?: Clock } = {}): Promise<HelperClient> {
    return new Promise((resolve, reject) => {
      const sock = net.connect(path);
      sock.once('connect', () => {
        sock.off('error', reject);
        resolve(new HelperClient(sock, opts.clock ?? realClock, opts.timeoutMs ?? WG_HELPER_REQUEST_TIMEOUT_MS));
      });
      sock.once('error', (e) => reject(new WgError('failed', `cannot reach the helper at ${path}: ${e.message}`, { cause: e })));
    });
  }

  call<O extends HelperOp>(req: HelperRequestOf<O>): Promise<HelperResult<O>> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<HelperResult<O>>((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        this.pending.delete(id);
        reject(new WgError('failed', `helper did not answer ${req.op} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(id, { op: req.op, resolve: (v) => resolve(v as HelperResult<O>), reject, timer });
      this.sock.write(`${JSON.stringify({ id, ...req })}\n`);
    });
  }

  private onData(d: string): void {
    this.buf += d;
    for (;;) {
      const nl = this.buf.indexOf('\n');
      if (nl < 0) break;
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      let parsed: HelperReply;
      try {
        parsed = HelperReply.parse(JSON.parse(line));
      } catch {
        this.fail(new WgError('failed', 'helper sent a malformed reply'));
        this.sock.destroy();
        return;
      }
      if (parsed.id === null) continue;
      const p = this.pending.get(parsed.id);
      if (!p) continue;
      this.pending.delete(parsed.id);
      this.clock.clearTimeout(p.timer);
      if (!parsed.ok) {
        p.reject(new WgError(parsed.error.code, parsed.error.message));
        continue;
      }
      const schema: ZodType | undefined = HelperResults[p.op];
      if (!schema) {
        p.reject(new WgError('failed', `helper answered an unknown op ${p.op}`));
        continue;
      }
      const r = schema.safeParse(parsed.result);
      if (r.success) p.resolve(r.data);
      else p.reject(new WgError('failed', `helper sent a malformed ${p.op} result`));
    }
  }

  private fail(e: Error): void {
    this.failure ??= e;
    for (const [id, p] of this.pending) {
      this.clock.clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(e);
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.fail(new WgError('failed', 'helper client closed'));
      if (this.sock.destroyed) resolve();
      else this.sock.end(() => resolve());
    });
  }
}
