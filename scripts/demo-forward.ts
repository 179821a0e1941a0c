/**
 * The in-namespace half of `npm run demo`'s UI path (scripts/demo.ts): runs inside the UI node's lab namespace and
 * forwards each Unix socket to a TCP port on that namespace's loopback (the dev bridge's Vite page and its
 * WebSocket). Unix sockets belong to the file system, not to a network namespace, so this connects the host's
 * loopback to the namespace's loopback without any network link between them.
 *
 *   node --import tsx scripts/demo-forward.ts /tmp/weft-lab-…/ui.sock=5173 /tmp/weft-lab-…/bridge.sock=41000
 *
 * Prints `demo-forward: ready` once every socket listens; on SIGTERM/SIGINT closes them (the sockets are removed).
 */
import { rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';

function pipeBoth(a: Socket, b: Socket): void {
  const done = (): void => {
    a.destroy();
    b.destroy();
  };
  a.on('error', done).on('close', done);
  b.on('error', done).on('close', done);
  a.pipe(b);
  b.pipe(a);
}

async function main(): Promise<void> {
  const pairs = process.argv.slice(2).map((arg) => {
    const m = /^(\/.+)=(\d{1,5})$/.exec(arg);
    if (!m) throw new Error(`demo-forward: expected SOCKET=PORT, got ${arg}`);
    return { path: m[1]!, port: Number(m[2]) };
  });
  const servers: Server[] = [];
  for (const { path, port } of pairs) {
    rmSync(path, { force: true });
    const s = createServer((c) => pipeBoth(c, connect(port, '127.0.0.1')));
    await new Promise<void>((res, rej) => {
      s.once('error', rej);
      s.listen(path, () => res());
    });
    servers.push(s);
  }
  process.stdout.write('demo-forward: ready\n');
  const stop = (): void => {
    for (const s of servers) s.close();
    for (const { path } of pairs) rmSync(path, { force: true });
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
