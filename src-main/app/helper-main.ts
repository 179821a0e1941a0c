/**
 * Second main-process entry (out/main/helper.js): `weft helper` without Electron, for the privileged helper the
 * app starts as root (host/privileged.ts) with ELECTRON_RUN_AS_NODE=1. It imports no electron.
 *
 *   electron out/main/helper.js helper --socket /var/run/weft/helper-1000.sock --uid 1000
 */
import { helperCommand } from '../cli/commands/helper.ts';
import { CliError } from '../cli/command.ts';

const [name, ...rest] = process.argv.slice(2);
if (name !== 'helper') {
  process.stderr.write('usage: helper.js helper --socket PATH --uid N\n');
  process.exitCode = 2;
} else {
  try {
    process.exitCode = await helperCommand.run(rest);
  } catch (e) {
    process.stderr.write(`weft helper: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = e instanceof CliError ? e.exitCode : 1;
  }
}
