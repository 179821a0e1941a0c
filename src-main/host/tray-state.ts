/**
 * What the tray shows, as pure functions of the mesh snapshot: the icon state and the menu as plain data.
 * src-main/app/tray.ts turns the model into an Electron Menu; the end-to-end test calls `trayState` on the
 * snapshot the UI received.
 *
 *   control null ─────────────────────────────▶ disconnected
 *   needs-login / expired ────────────────────▶ needs-login
 *   error ────────────────────────────────────▶ error
 *   connecting ───────────────────────────────▶ connecting
 *   connected, some peer on a relay path ─────▶ some-relayed
 *   connected otherwise ──────────────────────▶ connected
 */
import type { MeshSnapshot, PeerView } from '../../src-shared/model/mesh.ts';

export const TRAY_STATES = ['disconnected', 'connecting', 'connected', 'some-relayed', 'needs-login', 'error'] as const;
export type TrayState = (typeof TRAY_STATES)[number];

export function trayState(s: MeshSnapshot): TrayState {
  const c = s.control;
  if (!c) return 'disconnected';
  switch (c.state) {
    case 'needs-login':
    case 'expired':
      return 'needs-login';
    case 'error':
      return 'error';
    case 'connecting':
      return 'connecting';
    case 'connected':
      return s.peers.some((p) => p.path.kind === 'relay') ? 'some-relayed' : 'connected';
    default: {
      const never: never = c.state;
      return never;
    }
  }
}

export type TrayAction = 'connect' | 'disconnect' | 'login' | 'open' | 'quit';
export type PeerMark = 'direct' | 'relay' | 'connecting' | 'offline';

export type TrayMenuItem =
  | { kind: 'label'; label: string }
  | { kind: 'action'; action: TrayAction; label: string; enabled: boolean }
  /** Clicking copies `copy` to the clipboard. */
  | { kind: 'copy'; label: string; copy: string; mark?: PeerMark }
  | { kind: 'submenu'; label: string; enabled: boolean; items: TrayMenuItem[] }
  | { kind: 'separator' };

export interface TrayMenuModel {
  state: TrayState;
  tooltip: string;
  items: TrayMenuItem[];
}

export interface TrayMenuOptions {
  /** Whether a network is saved and active (else Connect opens the window to join one). */
  hasProfile: boolean;
  /** The active network's name, shown in the status line. */
  profileName?: string | null;
  /** Peers listed before "and N more". @default 40 */
  maxPeers?: number;
}

const STATE_TEXT: Record<TrayState, string> = {
  disconnected: 'Disconnected',
  connecting: 'Connecting…',
  connected: 'Connected',
  'some-relayed': 'Connected (some peers relayed)',
  'needs-login': 'Login needed',
  error: 'Error',
};

const MARK_GLYPH: Record<PeerMark, string> = { direct: '●', relay: '◐', connecting: '○', offline: '·' };

export function peerMark(p: PeerView): PeerMark {
  return p.path.kind;
}

function peerItem(p: PeerView, s: MeshSnapshot): TrayMenuItem {
  const mark = peerMark(p);
  const region = p.path.kind === 'relay' ? s.regions.find((r) => r.id === (p.path as { region: number }).region) : undefined;
  const how = mark === 'relay' ? `relay${region ? ` (${region.code})` : ''}` : mark;
  const ip = p.addresses[0];
  const label = `${MARK_GLYPH[mark]} ${p.name} — ${how}${ip ? `  ${ip}` : ''}`;
  return ip ? { kind: 'copy', label, copy: ip, mark } : { kind: 'label', label };
}

export function trayMenuModel(s: MeshSnapshot, opts: TrayMenuOptions): TrayMenuModel {
  const state = trayState(s);
  const items: TrayMenuItem[] = [];
  const where = opts.profileName ? ` — ${opts.profileName}` : '';
  items.push({ kind: 'label', label: `Weft: ${STATE_TEXT[state]}${where}` });
  if (state === 'needs-login' && s.control?.authUrl) items.push({ kind: 'action', action: 'login', label: 'Log in…', enabled: true });
  if (state === 'disconnected' || state === 'error') items.push({ kind: 'action', action: 'connect', label: opts.hasProfile ? 'Connect' : 'Connect…', enabled: true });
  else items.push({ kind: 'action', action: 'disconnect', label: 'Disconnect', enabled: true });
  items.push({ kind: 'separator' });
  if (s.self) {
    const ip = s.self.addresses[0];
    items.push(ip ? { kind: 'copy', label: `This device: ${s.self.name} (${ip})`, copy: ip } : { kind: 'label', label: `This device: ${s.self.name}` });
  }
  const max = opts.maxPeers ?? 40;
  const peers = s.peers.slice(0, max).map((p) => peerItem(p, s));
  if (s.peers.length > max) peers.push({ kind: 'label', label: `and ${s.peers.length - max} more…` });
  const relayed = s.peers.filter((p) => p.path.kind === 'relay').length;
  const direct = s.peers.filter((p) => p.path.kind === 'direct').length;
  items.push({
    kind: 'submenu',
    label: s.peers.length === 0 ? 'Peers' : `Peers (${direct} direct, ${relayed} relayed)`,
    enabled: s.peers.length > 0,
    items: peers.length > 0 ? peers : [{ kind: 'label', label: 'No peers' }],
  });
  items.push({ kind: 'separator' });
  items.push({ kind: 'action', action: 'open', label: 'Open Weft', enabled: true });
  items.push({ kind: 'action', action: 'quit', label: 'Quit Weft', enabled: true });
  const tooltip = s.self?.addresses[0] ? `Weft: ${STATE_TEXT[state]} (${s.self.addresses[0]})` : `Weft: ${STATE_TEXT[state]}`;
  return { state, tooltip, items };
}
