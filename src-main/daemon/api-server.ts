/**
 * weftd's local API: the IPC contract (src-shared/ipc/contract.ts) over two Unix sockets in the run directory.
 *
 *   weftd.sock        mode 0666            reads only (status, snapshot, netcheck, logs, ping): any local user
 *   weftd-op.sock     mode 0660 root:weft  reads and writes (join, leave, preferences, profiles): root and operators
 *   op-<uid>.sock     mode 0600 uid:root   reads and writes, for each operator user named to weftd (the app's set-up
 *                                          names its user, who then need not log in again to gain the group)
 *
 * Who may write is decided by who can open the socket: the kernel checks the socket file's owner, group and mode on
 * connect, so there is no credential for a client to forge. A write that arrives on the read-only socket is answered
 * with 'permission-denied', and nothing runs. When the operator group does not exist, the operator socket is 0600
 * (root only) and the log says so.
 *
 * Wire format: one JSON object per line, in both directions.
 *   weftd  → client  {"hello":{"api":1,"access":"read"|"write","pid":N}}     first, on every connection
 *   client → weftd   {"id":1,"method":"engine:status","payload":{}}          a request (frames.ts)
 *   weftd  → client  {"id":1,"result":{"ok":true,"value":...}}               its answer
 *   client → weftd   {"subscribe":true}                                        stream every contract event from now on
 *   weftd  → client  {"event":"mesh:delta","payload":...}
 *
 * Bounds: a line is at most 64 KiB (a longer one closes the connection), at most 64 connections, 32 unanswered
 * requests per connection, and a subscriber that stops reading is dropped at 4 MiB of unread output.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, chown, lstat, mkdir, unlink } from 'node:fs/promises';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { DAEMON_API_VERSION, WRITE_METHODS, isMethodName, type EventName, type IpcResult } from '../../src-shared/ipc/contract.ts';
import { isSocketLive } from '../engine/io/unix-socket.ts';
import type { Logf } from '../engine/sys/log.ts';
import { checkBackendResult, parseClientFrame, type RequestId } from '../host/frames.ts';

export const READ_SOCKET = 'weftd.sock';
export const OPERATOR_SOCKET = 'weftd-op.sock';
export const DEFAULT_RUN_DIR = '/run/weft';
export const DEFAULT_OPERATOR_GROUP = 'weft';

const MAX_LINE = 64 * 1024;
/** Per socket, so readers can never crowd out operators (each operator socket has its own allowance). */
const MAX_CONNECTIONS = { read: 48, write: 32 } as const;
const MAX_IN_FLIGHT = 32;
const MAX_BUFFERED = 4 * 1024 * 1024;
/** A read-only connection that neither asks nor subscribes for this long is closed. */
const READ_IDLE_MS = 60_000;
/** Reads that make weftd send packets (netcheck, disco ping), in flight at once from all read-only connections. */
const MAX_PROBES = 4;
const PROBES = new Set(['netcheck:run', 'engine:ping']);

export type Access = 'read' | 'write';

/** What the API serves: the host's validated dispatcher and its event stream (the dev bridge's backend shape). */
export interface ApiBackend {
  dispatch(method: unknown, payload: unknown): Promise<IpcResult<unknown>>;
  onEvent(listener: (event: EventName, payload: unknown) => void): () => void;
}

export interface ApiServerOptions {
  backend: ApiBackend;
  /** Directory of the two sockets; created 0755 when missing. */
  runDir: string;
  /** Group whose members may write. @default 'weft' */
  operatorGroup?: string;
  /** Users who may write through a socket of their own (names; unknown users are logged and skipped). */
  operatorUsers?: readonly string[];
  logf: Logf;
}

export interface ApiServer {
  readonly readPath: string;
  readonly operatorPath: string;
  /** The operator group's id, or null when the group does not exist (operator socket: root only). */
  readonly operatorGid: number | null;
  close(): Promise<void>;
}

/** The answer to a write on the read-only socket (what `weft` and the app show as is). */
function permissionDenied(method: string, group: string): IpcResult<never> {
  return {
    ok: false,
    error: {
      code: 'permission-denied',
      message: `${method} changes the Weft service, which needs root or membership in the "${group}" group (this connection is read-only); run it with sudo, or ask an administrator to run: usermod -aG ${group} YOUR-NAME`,
      retryable: false,
    },
  };
}

/** Answers one request of a connection with the given access: writes on a read-only connection never run. */
async function dispatchWithAccess(backend: ApiBackend, access: Access, group: string, method: string, payload: unknown): Promise<IpcResult<unknown>> {
  if (access === 'read' && isMethodName(method) && WRITE_METHODS.has(method)) return permissionDenied(method, group);
  try {
    return checkBackendResult(await backend.dispatch(method, payload));
  } catch (e) {
    return { ok: false, error: { code: 'internal', message: `${method} failed: ${e instanceof Error ? e.message : String(e)}`, retryable: false } };
  }
}

/** A group's or user's id via NSS (`getent group|passwd NAME`, argv only); null when it does not exist. */
function lookupId(db: 'group' | 'passwd', name: string): Promise<number | null> {
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(name)) return Promise.resolve(null);
  return new Promise((resolve) => {
    execFile('getent', [db, name], { timeout: 5000 }, (err, stdout) => {
      const id = err ? NaN : Number(String(stdout).split(':')[2]);
      resolve(Number.isInteger(id) && id >= 0 ? id : null);
    });
  });
}

export const lookupGroupId = (name: string): Promise<number | null> => lookupId('group', name);
const lookupUserId = (name: string): Promise<number | null> => lookupId('passwd', name);

/** The operator socket of one user. */
export function userSocketName(uid: number): string {
  return `op-${uid}.sock`;
}

/** Creates the run directory 0755, or checks that an existing one cannot be tampered with by other users. */
async function prepareRunDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const st = await lstat(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  const uid = process.getuid?.() ?? 0;
  if (st.uid !== uid && st.uid !== 0) throw new Error(`${dir} belongs to uid ${st.uid}, not to this service: refusing to serve there`);
  if ((st.mode & 0o022) !== 0) throw new Error(`${dir} is writable by others (mode ${(st.mode & 0o777).toString(8)}): refusing to serve there`);
}

/**
 * One engine per run directory, decided atomically: binding a Linux abstract socket named after the directory
 * fails with EADDRINUSE while another weftd holds it, and the kernel releases it when that process dies (SIGKILL
 * included), so there is no stale lock file. The check of the socket files that follows gives the clear message.
 */
async function takeLock(runDir: string): Promise<net.Server> {
  const name = `\0weftd-${createHash('sha256').update(resolve(runDir)).digest('hex').slice(0, 32)}`;
  const srv = net.createServer((s) => s.destroy());
  await new Promise<void>((ok, fail) => {
    srv.once('error', (e: NodeJS.ErrnoException) =>
      fail(e.code === 'EADDRINUSE' ? new Error(`another Weft engine is already running on this machine with ${runDir}; stop it first, or use "weft status" to talk to it`) : e),
    );
    srv.listen(name, () => ok());
  });
  return srv;
}

async function listen(server: net.Server, path: string, mode: number): Promise<void> {
  await unlink(path).catch(() => undefined);
  // Created under a strict umask, then opened up to exactly `mode`: never more open than asked, even briefly.
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
  await chmod(path, mode);
}

export async function startApiServer(o: ApiServerOptions): Promise<ApiServer> {
  const group = o.operatorGroup ?? DEFAULT_OPERATOR_GROUP;
  const readPath = join(o.runDir, READ_SOCKET);
  const operatorPath = join(o.runDir, OPERATOR_SOCKET);
  await prepareRunDir(o.runDir);
  const lock = await takeLock(o.runDir);
  for (const p of [operatorPath, readPath]) {
    if (await isSocketLive(p)) {
      lock.close();
      throw new Error(`another Weft engine is already running on this machine (${p} answers); stop it first, or use "weft status" to talk to it`);
    }
  }
  const gid = await lookupGroupId(group).catch(() => null);
  if (gid === null) o.logf(`weftd: no group "${group}": only root may make changes (create it with: groupadd --system ${group})`);

  interface Conn {
    sock: net.Socket;
    access: Access;
    inFlight: number;
    subscribed: boolean;
  }
  const conns = new Set<Conn>();
  let probes = 0;

  const write = (c: Conn, frame: unknown): void => {
    if (c.sock.destroyed) return;
    if (c.sock.writableLength > MAX_BUFFERED) {
      o.logf('weftd: dropping a client that does not read its messages');
      c.sock.destroy();
      return;
    }
    c.sock.write(`${JSON.stringify(frame)}\n`);
  };

  const onLine = async (c: Conn, line: string): Promise<void> => {
    let msg: unknown = null;
    try {
      msg = JSON.parse(line);
    } catch {
      /* parseClientFrame answers it */
    }
    if (typeof msg === 'object' && msg !== null && (msg as { subscribe?: unknown }).subscribe === true) {
      c.subscribed = true;
      return;
    }
    const f = parseClientFrame(line, false, MAX_LINE);
    if (f.kind === 'reject') return write(c, { id: f.id, result: { ok: false, error: f.error } });
    if (c.inFlight >= MAX_IN_FLIGHT) {
      return write(c, { id: f.id, result: { ok: false, error: { code: 'internal', message: `more than ${MAX_IN_FLIGHT} requests in flight`, retryable: true } } });
    }
    const probe = c.access === 'read' && PROBES.has(f.method);
    if (probe && probes >= MAX_PROBES) {
      return write(c, { id: f.id, result: { ok: false, error: { code: 'internal', message: `too many ${f.method} requests from read-only clients at once; try again`, retryable: true } } });
    }
    c.inFlight++;
    if (probe) probes++;
    try {
      reply(c, f.id, await dispatchWithAccess(o.backend, c.access, group, f.method, f.payload));
    } finally {
      c.inFlight--;
      if (probe) probes--;
    }
  };

  const reply = (c: Conn, id: RequestId, result: IpcResult<unknown>): void => {
    try {
      write(c, { id, result });
    } catch (e) {
      write(c, { id, result: { ok: false, error: { code: 'internal', message: `the result is not serialisable: ${(e as Error).message}`, retryable: false } } });
    }
  };

  const serve = (access: Access) => {
    const mine = new Set<Conn>();
    return net.createServer((sock) => {
      sock.on('error', () => undefined);
      if (mine.size >= MAX_CONNECTIONS[access]) {
        sock.end(`${JSON.stringify({ error: 'too many connections' })}\n`);
        return;
      }
      const c: Conn = { sock, access, inFlight: 0, subscribed: false };
      conns.add(c);
      mine.add(c);
      sock.on('close', () => {
        conns.delete(c);
        mine.delete(c);
      });
      if (access === 'read') {
        sock.setTimeout(READ_IDLE_MS, () => {
          if (!c.subscribed && c.inFlight === 0) sock.destroy();
        });
      }
      write(c, { hello: { api: DAEMON_API_VERSION, access, pid: process.pid } });
      let buf = '';
      sock.setEncoding('utf8');
      sock.on('data', (d: string) => {
        buf += d;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.trim() !== '') void onLine(c, line).catch((e: unknown) => o.logf(`weftd: a request failed: ${(e as Error).message}`));
        }
        if (buf.length > MAX_LINE) {
          write(c, { id: null, result: { ok: false, error: { code: 'invalid-payload', message: `a line over ${MAX_LINE} bytes`, retryable: false } } });
          sock.end();
          buf = '';
        }
      });
    });
  };

  const readServer = serve('read');
  const opServer = serve('write');
  const servers = [lock, opServer, readServer];
  const paths = [operatorPath, readPath];
  try {
    await listen(opServer, operatorPath, 0o600);
    // Opened to the group only once the socket belongs to it: a failed chown leaves it root-only.
    if (gid !== null) {
      await chown(operatorPath, 0, gid).then(
        () => chmod(operatorPath, 0o660),
        (e: unknown) => o.logf(`weftd: cannot give ${operatorPath} to group ${group} (it stays root-only): ${(e as Error).message}`),
      );
    }
    await listen(readServer, readPath, 0o666);
    for (const user of new Set(o.operatorUsers ?? [])) {
      const uid = await lookupUserId(user);
      if (uid === null) {
        o.logf(`weftd: no user "${user}": skipped as an operator`);
        continue;
      }
      const path = join(o.runDir, userSocketName(uid));
      const srv = serve('write');
      servers.push(srv);
      paths.push(path);
      await listen(srv, path, 0o600);
      await chown(path, uid, 0);
    }
  } catch (e) {
    for (const srv of servers) srv.close();
    throw e;
  }

  const unsubscribe = o.backend.onEvent((event, payload) => {
    for (const c of conns) if (c.subscribed) write(c, { event, payload });
  });

  let closing: Promise<void> | undefined;
  return {
    readPath,
    operatorPath,
    operatorGid: gid,
    close() {
      closing ??= (async () => {
        unsubscribe();
        const done = Promise.all(servers.map((srv) => new Promise<void>((r) => srv.close(() => r()))));
        // Requests being answered (a logout that ends a foreground run) get their answer out first, bounded.
        for (let i = 0; i < 60 && [...conns].some((c) => c.inFlight > 0); i++) await new Promise((r) => setTimeout(r, 50));
        for (const c of conns) c.sock.end();
        await new Promise((r) => setTimeout(r, 20));
        for (const c of conns) c.sock.destroy();
        await done;
        await Promise.all(paths.map((p) => unlink(p).catch(() => undefined)));
      })();
      return closing;
    },
  };
}
