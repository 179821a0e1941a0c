/**
 * `weft ping PEER [--count N] [--until-direct] [--state-dir DIR]`: disco pings through the running `weft up`,
 * printing each reply's path and latency, like `tailscale ping`. PEER is a name, 100.x address or node key.
 */
import { defaultStateDir } from '../../engine/state/store.ts';
import { CliError, parseFlags, type Command } from '../command.ts';
import { askRunning } from './status.ts';

const usage = `usage: weft ping PEER [--count N] [--until-direct] [--timeout MS] [--state-dir DIR]`;

interface PingAnswer {
  peer?: string;
  reply?: { from: string; latencyMs: number } | null;
  error?: string;
}

export const pingCommand: Command = {
  summary: 'disco-ping a peer',
  async run(argv) {
    const { values, positionals } = parseFlags(
      argv,
      { count: { type: 'string' }, 'until-direct': { type: 'boolean' }, timeout: { type: 'string' }, 'state-dir': { type: 'string' }, help: { type: 'boolean' } },
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
    const stateDir = values['state-dir'] ?? defaultStateDir();
    let lastOk = false;
    for (let i = 0; i < count; i++) {
      const t0 = Date.now();
      const r = (await askRunning(stateDir, { cmd: 'ping', peer, timeoutMs })) as PingAnswer;
      if (r.error) throw new CliError(r.error, 1);
      if (r.reply) {
        lastOk = true;
        process.stdout.write(`pong from ${r.peer ?? peer} via ${r.reply.from} in ${r.reply.latencyMs}ms\n`);
        if (values['until-direct']) return 0;
      } else {
        lastOk = false;
        process.stdout.write(`ping to ${r.peer ?? peer} timed out after ${timeoutMs}ms (no direct path yet)\n`);
      }
      const wait = 1000 - (Date.now() - t0);
      if (i < count - 1 && wait > 0) await new Promise((res) => setTimeout(res, wait));
    }
    if (values['until-direct'] && !lastOk) throw new CliError(`direct connection not established after ${count} pings`, 1);
    return lastOk ? 0 : 1;
  },
};
