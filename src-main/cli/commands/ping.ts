/**
 * `weft ping PEER [--count N] [--until-direct] [--state-dir DIR]`: disco pings through the running `weft up`,
 * printing each reply's path and latency, like `tailscale ping`. PEER is a name, 100.x address or node key.
 */
import { CliError, parseFlags, type Command } from '../command.ts';
import { RUN_DIR_FLAGS, RUN_DIR_USAGE, connectOrExplain, runDirOf } from '../daemon-call.ts';

const usage = `usage: weft ping PEER [--count N] [--until-direct] [--timeout MS] [--socket-dir DIR | --state-dir DIR]

${RUN_DIR_USAGE}`;

export const pingCommand: Command = {
  summary: 'disco-ping a peer',
  async run(argv) {
    const { values, positionals } = parseFlags(
      argv,
      { count: { type: 'string' }, 'until-direct': { type: 'boolean' }, timeout: { type: 'string' }, ...RUN_DIR_FLAGS, help: { type: 'boolean' } },
      usage,
    );
    if (values.help) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    const peer = positionals[0];
    if (!peer) throw new CliError(`missing PEER\n\n${usage}`);
    const count = values.count === undefined ? 10 : Number(values.count);
    if (!Number.isInteger(count) || count < 1 || count > 1000) throw new CliError('--count must be 1-1000');
    const timeoutMs = values.timeout === undefined ? 5000 : Number(values.timeout);
    if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 30_000) throw new CliError('--timeout must be 100-30000 ms');
    const daemon = await connectOrExplain(runDirOf(values));
    try {
      return await pingLoop(peer, count, timeoutMs, !!values['until-direct'], async () => {
        const a = await daemon.invoke('engine:ping', { peer, timeoutMs }, timeoutMs + 5000);
        if (!a.ok) throw new CliError(a.error.message, 1);
        return a.value;
      });
    } finally {
      daemon.close();
    }
  },
};

async function pingLoop(
  peer: string,
  count: number,
  timeoutMs: number,
  untilDirect: boolean,
  once: () => Promise<{ peer: string; reply: { from: string; latencyMs: number } | null }>,
): Promise<number> {
  let lastOk = false;
  for (let i = 0; i < count; i++) {
    const t0 = Date.now();
    const r = await once();
    lastOk = r.reply !== null;
    if (r.reply) {
      process.stdout.write(`pong from ${r.peer} via ${r.reply.from} in ${r.reply.latencyMs}ms\n`);
      if (untilDirect) return 0;
    } else {
      process.stdout.write(`ping to ${r.peer} timed out after ${timeoutMs}ms (no direct path yet)\n`);
    }
    const wait = 1000 - (Date.now() - t0);
    if (i < count - 1 && wait > 0) await new Promise((res) => setTimeout(res, wait));
  }
  if (untilDirect && !lastOk) throw new CliError(`direct connection not established after ${count} pings (to ${peer})`, 1);
  return lastOk ? 0 : 1;
}
