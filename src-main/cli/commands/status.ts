/** `weft status [--json] [--state-dir DIR]`: asks the running `weft up` over its local socket. */
import { join } from 'node:path';
import { StatusReport } from '../../../src-shared/model/status.ts';
import { callLocalApi } from '../../engine/io/local-api.ts';
import { STATUS_SOCKET, defaultStateDir } from '../../engine/state/store.ts';
import { CliError, parseFlags, type Command } from '../command.ts';

const usage = `usage: weft status [--json] [--state-dir DIR]`;

export async function askRunning(stateDir: string, req: unknown): Promise<unknown> {
  try {
    return await callLocalApi(join(stateDir, STATUS_SOCKET), req);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') throw new CliError(`weft up is not running (no answer on ${join(stateDir, STATUS_SOCKET)})`, 1);
    throw new CliError((e as Error).message, 1);
  }
}

export const statusCommand: Command = {
  summary: 'show the connection and peers',
  async run(argv) {
    const { values } = parseFlags(argv, { json: { type: 'boolean' }, 'state-dir': { type: 'string' }, help: { type: 'boolean' } }, usage);
    if (values.help) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    const raw = await askRunning(values['state-dir'] ?? defaultStateDir(), { cmd: 'status' });
    const parsed = StatusReport.safeParse(raw);
    if (!parsed.success) throw new CliError(`the running weft sent an unexpected status: ${JSON.stringify(raw).slice(0, 200)}`, 1);
    const s = parsed.data;
    if (values.json) {
      process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
      return 0;
    }
    const lines = [`control: ${s.control.state} ${s.control.url}${s.control.error ? ` (${s.control.error})` : ''}`];
    if (s.control.authUrl) lines.push(`login:   ${s.control.authUrl}`);
    if (s.self) lines.push(`self:    ${s.self.name} ${s.self.addresses.join(' ')}`);
    for (const p of s.peers) lines.push(`${p.addresses[0] ?? '-'}\t${p.name}\t${p.online ? 'online' : 'offline'}\t${p.path.kind}`);
    process.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  },
};
