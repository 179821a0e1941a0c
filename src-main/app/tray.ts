/**
 * The tray icon and menu: host/tray-state.ts computes both from the snapshot; this turns the model into Electron
 * objects, and only when it changed (a Menu rebuild on every stats tick would flicker an open menu).
 */
import { clipboard, Menu, nativeImage, nativeTheme, Tray, type MenuItemConstructorOptions } from 'electron';
import type { Host } from '../host/host.ts';
import { trayMenuModel, type TrayAction, type TrayMenuItem } from '../host/tray-state.ts';
import { trayIconPath } from './resources.ts';

export interface TrayOptions {
  host: Pick<Host, 'snapshot' | 'settings' | 'onSnapshot' | 'onSettings'>;
  resourcesDir: string;
  onAction: (action: TrayAction) => void;
}

function template(items: readonly TrayMenuItem[], onAction: (a: TrayAction) => void): MenuItemConstructorOptions[] {
  return items.map((it): MenuItemConstructorOptions => {
    switch (it.kind) {
      case 'separator':
        return { type: 'separator' };
      case 'label':
        return { label: it.label, enabled: false };
      case 'action':
        return { label: it.label, enabled: it.enabled, click: () => onAction(it.action) };
      case 'copy':
        return { label: it.label, toolTip: `Copy ${it.copy}`, click: () => clipboard.writeText(it.copy) };
      case 'submenu':
        return { label: it.label, enabled: it.enabled, submenu: template(it.items, onAction) };
      default: {
        const never: never = it;
        return never;
      }
    }
  });
}

export function createTray(o: TrayOptions): { destroy(): void } {
  const variant = (): 'light' | 'dark' => (nativeTheme.shouldUseDarkColors ? 'dark' : 'light');
  const model = () => {
    const s = o.host.settings();
    const profile = s.profiles.find((p) => p.id === s.activeProfile) ?? null;
    return trayMenuModel(o.host.snapshot(), { hasProfile: profile !== null, profileName: profile?.name ?? null });
  };
  const first = model();
  const tray = new Tray(nativeImage.createFromPath(trayIconPath(o.resourcesDir, first.state, variant())));
  let lastIcon = '';
  let lastMenu = '';
  const render = (): void => {
    const m = model();
    const icon = trayIconPath(o.resourcesDir, m.state, variant());
    if (icon !== lastIcon) {
      tray.setImage(nativeImage.createFromPath(icon));
      lastIcon = icon;
    }
    const key = JSON.stringify(m);
    if (key === lastMenu) return;
    lastMenu = key;
    tray.setToolTip(m.tooltip);
    tray.setContextMenu(Menu.buildFromTemplate(template(m.items, o.onAction)));
  };
  render();
  tray.on('click', () => o.onAction('open'));
  const offs = [o.host.onSnapshot(render), o.host.onSettings(render)];
  nativeTheme.on('updated', render);
  return {
    destroy() {
      offs.forEach((off) => off());
      nativeTheme.off('updated', render);
      tray.destroy();
    },
  };
}
