/**
 * The UAPI unix socket of a userspace WireGuard device: /var/run/wireguard/<ifname>.sock. The directory is
 * global, not per network namespace (natlab.md G8), and the socket is root-only (srwx------). One request per
 * connection: write the request text, read until the reply's terminating blank line, close.
 */
import net from 'node:net';
import { join } from 'node:path';
import { WG_UAPI_TIMEOUT_MS } from '../constants.ts';
import type { Clock } from '../sys/clock.ts';
import { realClock } from '../sys/clock.ts';

export const UAPI_SOCKET_DIR = '/var/run/wireguard';

/** Largest reply accepted (a get lists every peer; 16 MiB is tens of thousands of peers). */
const MAX_REPLY = 16 * 1024 * 1024;

export function uapiSocketPath(name: string, dir: string = UAPI_SOCKET_DIR): string {
  return join(dir, `${name}.sock`);
}

/** Sends one UAPI request and resolves with the reply text (ending in "\n\n"). */
export function uapiExchange(path: string, request: string, opts: { timeoutMs?: number; clock?: Clock } = {}): Promise<string> {
  const clock = opts.clock ?? realClock;
  return new Promise((resolve, reject) => {
    const sock = net.connect(path);
    let buf = '';
    let done = false;
    const finish = (err: Error | null): void => {
      if (done) return;
      done = true;
      clock.clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(buf);
    };
    const timer = clock.setTimeout(() => finish(new Error(`UAPI ${path}: no reply within ${opts.timeoutMs ?? WG_UAPI_TIMEOUT_MS} ms`)), opts.timeoutMs ?? WG_UAPI_TIMEOUT_MS);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(request));
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length > MAX_REPLY) finish(new Error(`UAPI ${path}: reply too large`));
      else if (buf.endsWith('\n\n')) finish(null);
    });
    sock.on('end', () => finish(new Error(`UAPI ${path}: connection closed before the reply ended`)));
    sock.on('error', (e) => finish(e));
  });
}

export { isSocketLive } from '../io/unix-socket.ts';
