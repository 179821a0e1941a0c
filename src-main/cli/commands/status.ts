/** `weft status [--json] [--socket-dir DIR | --state-dir DIR]`: asks the running engine (weftd or `weft up`). */
import { parseFlags, type Command } from '../command.ts';
import { RUN_DIR_FLAGS, RUN_DIR_USAGE, callDaemon, runDirOf } from '../daemon-call.ts';

const usage = `usage: weft status [--json] [--socket-dir DIR | --state-dir DIR]

${RUN_DIR_USAGE}`;

export const statusCommand: Command = {
  summary: 'show the connection and peers',
  async run(argv) {
    const { values } = parseFlags(argv, { json: { type: 'boolean' }, ...RUN_DIR_FLAGS, help: { type: 'boolean' } }, usage);
    if (values.help) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    const s = await callDaemon(runDirOf(values), 'engine:status', {});
    if (values.json) {
      process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
      return 0;
    }
    const lines = [`control: ${s.control.state} ${s.control.url}${s.control.error ? ` (${s.control.error})` : ''}`];
    if (s.control.authUrl) lines.push(`login:   ${s.control.authUrl}`);
    if (s.self) lines.push(`self:    ${s.self.name} ${s.self.addresses.join(' ')}`);
    if (s.dataPath) lines.push(`data:    ${s.dataPath.mode}${s.dataPath.reason ? ` (${s.dataPath.reason})` : ''}`);
    const wg = s.dataPath?.wireguardGo;
    if (s.dataPath?.device?.kind === 'kernel') lines.push(`wg:      kernel WireGuard (${s.dataPath.device.reason})`);
    else if (wg) lines.push(`wg:      wireguard-go ${wg.version === null ? '(version unknown)' : `v${wg.version}`}${wg.pinned ? '' : ' (not the pinned build: older and slower)'} ${wg.path}`);
    if (s.dataPlaneError) lines.push(`warning: ${s.dataPlaneError}`);
    for (const p of s.peers) lines.push(`${p.addresses[0] ?? '-'}\t${p.name}\t${p.online ? 'online' : 'offline'}\t${p.path.kind}`);
    process.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  },
};
