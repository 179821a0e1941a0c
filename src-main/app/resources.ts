/**
 * Where the app's resources (tray icons, app icon) are on disk, in development and packaged. No electron
 * import: main.ts passes app.getAppPath().
 *
 * Packaged, resources/** is unpacked from the asar (electron-builder.yml asarUnpack), because the Linux tray
 * (AppIndicator) and the notification daemon read icon files from outside the process.
 */
import { join, sep } from 'node:path';
import type { TrayState } from '../host/tray-state.ts';

export type IconVariant = 'light' | 'dark';

/** `appPath` with an `app.asar` segment turned into `app.asar.unpacked`. */
export function unpackedPath(appPath: string): string {
  return appPath
    .split(sep)
    .map((seg) => (seg === 'app.asar' ? 'app.asar.unpacked' : seg))
    .join(sep);
}

export function resourcesDir(appPath: string): string {
  return join(unpackedPath(appPath), 'resources');
}

/**
 * The tray icon file for a state: 16×16 at 1x, with `…@2x.png` (32×32) beside it, which Electron picks on HiDPI.
 * `dark` is drawn for dark panels (light strokes), `light` for light ones.
 */
export function trayIconPath(dir: string, state: TrayState, variant: IconVariant): string {
  return join(dir, 'tray', `${state}-${variant}.png`);
}
