import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { autostartDir, desktopEntry, setLinuxAutostart } from '../../../src-main/host/autostart.ts';

describe('Linux autostart', () => {
  it('writes an XDG entry whose Exec quotes odd arguments, and removes it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weft-autostart-'));
    try {
      await setLinuxAutostart(true, ['/home/me/Apps/Weft 1.0.AppImage', '--x=$HOME'], join(dir, 'autostart'));
      const text = await readFile(join(dir, 'autostart', 'weft.desktop'), 'utf8');
      expect(text).toContain('Exec="/home/me/Apps/Weft 1.0.AppImage" "--x=\\$HOME"\n');
      expect(text.startsWith('[Desktop Entry]\nType=Application\nName=Weft\n')).toBe(true);
      await setLinuxAutostart(false, [], join(dir, 'autostart'));
      await expect(stat(join(dir, 'autostart', 'weft.desktop'))).rejects.toThrow();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('escapes % and refuses newlines', () => {
    expect(desktopEntry(['/opt/weft', '100%'])).toContain('Exec=/opt/weft "100%%"\n');
    expect(() => desktopEntry(['/opt/weft\nX-Evil=1'])).toThrow();
  });

  it('uses $XDG_CONFIG_HOME', () => {
    expect(autostartDir({ XDG_CONFIG_HOME: '/cfg' })).toBe('/cfg/autostart');
  });
});
