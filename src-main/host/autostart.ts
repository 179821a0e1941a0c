/**
 * Start at login on Linux, where Electron's app.setLoginItemSettings does nothing: an XDG autostart entry
 * (~/.config/autostart/weft.desktop). macOS and Windows use app.setLoginItemSettings (main.ts).
 */
import { mkdir, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../engine/state/store.ts';

export const AUTOSTART_FILE = 'weft.desktop';

/** The XDG autostart directory: $XDG_CONFIG_HOME/autostart, else ~/.config/autostart. */
export function autostartDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env['XDG_CONFIG_HOME'] || join(homedir(), '.config'), 'autostart');
}

/** One Exec argument quoted as the Desktop Entry spec requires (double quotes; \ " ` $ escaped). */
export function desktopExecArg(arg: string): string {
  if (/^[A-Za-z0-9_./:=@+,-]+$/.test(arg)) return arg;
  return `"${arg.replace(/[\\"`$]/g, (c) => `\\${c}`)}"`;
}

/** The .desktop entry that starts `argv` at login. Pure. */
export function desktopEntry(argv: readonly string[]): string {
  if (argv.some((a) => /[\n\r]/.test(a))) throw new Error('autostart command arguments must not contain newlines');
  return [
    '[Desktop Entry]',
    'Type=Application',
    'Name=Weft',
    'Comment=Mesh VPN for your headscale network',
    `Exec=${argv.map(desktopExecArg).join(' ').replace(/%/g, '%%')}`,
    'Terminal=false',
    'X-GNOME-Autostart-enabled=true',
    '',
  ].join('\n');
}

/** Creates or removes the autostart entry. */
export async function setLinuxAutostart(enabled: boolean, argv: readonly string[], dir: string = autostartDir()): Promise<void> {
  const file = join(dir, AUTOSTART_FILE);
  if (!enabled) {
    await rm(file, { force: true });
    return;
  }
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(file, desktopEntry(argv));
}
