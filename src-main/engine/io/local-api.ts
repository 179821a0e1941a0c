/**
 * The local API: a unix socket in the state directory (mode 0600) on which a running `weft up` answers
 * one JSON request per connection with one JSON line. `weft status` and `weft logout` are its clients.
 * Only the owner can connect: the socket is created under a 0177 umask inside a 0700 directory.
 */
import { chmod, unlink } from 'node:fs/promises';
import net from 'node:net';
import { isSocketLive } from './unix-socket.ts';

const MAX_REQUEST = 64 * 1024;

export interface LocalApiServer {
  close(): Promise<void>;
}

export async function serveLocalApi(path: string, handle: (req: unknown) => Promise<unknown>): Promise<LocalApiServer> {
  if (await isSocketLive(path)) throw new Error(`another weft is already running with this state directory (${path} answers)`);
  await unlink(path).catch(() => {});
  const server = net.createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.setTimeout(10_000, () => sock.destroy());
    sock.on('error', () => {});
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length > MAX_REQUEST) {
        sock.end(`${JSON.stringify({ error: 'request too large' })}\n`);
        return;
      }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      let req: unknown;
      try {
        req = JSON.parse(buf.slice(0, nl));
      } catch {
        sock.end(`${JSON.stringify({ error: 'request is not JSON' })}\n`);
        return;
      }
      handle(req)
        .then((res) => sock.end(`${JSON.stringify(res)}\n`))
        .catch((e: unknown) => sock.end(`${JSON.stringify({ error: (e as Error).message })}\n`));
    });
  });
  const old = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
  } finally {
    process.umask(old);
  }
  await chmod(path, 0o600);
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        unlink(path).catch(() => {});
      }),
  };
}

/** Sends one request; resolves with the parsed reply. Rejects with ENOENT/ECONNREFUSED when nothing runs. */
export function callLocalApi(path: string, req: unknown, timeoutMs = 10_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const c = net.connect(path);
    let buf = '';
    c.setEncoding('utf8');
    c.setTimeout(timeoutMs, () => c.destroy(new Error('the running weft did not answer in time')));
    c.on('connect', () => c.write(`${JSON.stringify(req)}\n`));
    c.on('data', (d: string) => (buf += d));
    c.on('end', () => {
      try {
        resolve(JSON.parse(buf));
      } catch {
        reject(new Error('the running weft sent a malformed reply'));
      }
    });
    c.on('error', reject);
  });
}
