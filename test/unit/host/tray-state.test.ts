import { describe, expect, it } from 'vitest';
import type { MeshSnapshot, PeerView } from '../../../src-shared/model/mesh.ts';
import type { PeerPath } from '../../../src-shared/model/status.ts';
import { trayMenuModel, trayState, TRAY_STATES, type TrayMenuItem } from '../../../src-main/host/tray-state.ts';

function pv(id: string, path: PeerPath): PeerView {
  return {
    id,
    name: `peer${id}`,
    fqdn: `peer${id}.tailnet.example.com`,
    nodeKey: `nodekey:${id}`,
    addresses: [`100.64.0.${id}`, `fd7a:115c:a1e0::${id}`],
    os: null,
    online: true,
    lastSeen: null,
    keyExpiry: null,
    homeRegion: 1,
    endpoints: [],
    path,
    lastHandshake: null,
    rxBytes: 0,
    txBytes: 0,
    netInfo: null,
    disco: null,
    routes: [],
    exitNode: false,
  };
}

const direct: PeerPath = { kind: 'direct', endpoint: '192.0.2.1:41641', latencyMs: 3 };
const relay: PeerPath = { kind: 'relay', region: 1 };

function snap(state: NonNullable<MeshSnapshot['control']>['state'] | null, peers: PeerView[] = [], authUrl: string | null = null): MeshSnapshot {
  return {
    control: state ? { state, url: 'https://hs.example.com', error: null, authUrl } : null,
    self: state ? { name: 'laptop', fqdn: 'laptop.tailnet.example.com', nodeKey: 'nodekey:a', addresses: ['100.64.0.1'], keyExpiry: null, homeRegion: 1 } : null,
    peers,
    regions: [{ id: 1, code: 'fra', name: 'Frankfurt' }],
    netcheck: null,
    tailnet: null,
  };
}

describe('trayState', () => {
  it.each([
    ['no network', snap(null), 'disconnected'],
    ['connecting', snap('connecting'), 'connecting'],
    ['connected, no peers', snap('connected'), 'connected'],
    ['connected, all direct', snap('connected', [pv('2', direct), pv('3', direct)]), 'connected'],
    ['connected, one direct one relayed', snap('connected', [pv('2', direct), pv('3', relay)]), 'some-relayed'],
    ['connected, all relayed', snap('connected', [pv('2', relay)]), 'some-relayed'],
    ['connected, peers still connecting or offline', snap('connected', [pv('2', { kind: 'connecting' }), pv('3', { kind: 'offline' })]), 'connected'],
    ['needs login', snap('needs-login'), 'needs-login'],
    ['key expired', snap('expired'), 'needs-login'],
    ['error', snap('error'), 'error'],
  ] as const)('%s → %s', (_name, s, want) => {
    expect(trayState(s)).toBe(want);
  });

  it('has one icon state per case', () => {
    expect(TRAY_STATES).toEqual(['disconnected', 'connecting', 'connected', 'some-relayed', 'needs-login', 'error']);
  });
});

const labels = (items: TrayMenuItem[]): string[] => items.map((i) => (i.kind === 'separator' ? '---' : i.label));

describe('trayMenuModel', () => {
  it('connected: Disconnect, this device (click copies its IP), peers with direct/relay marks, Open, Quit', () => {
    const m = trayMenuModel(snap('connected', [pv('2', direct), pv('3', relay), pv('4', { kind: 'offline' })]), { hasProfile: true, profileName: 'home' });
    expect(m.state).toBe('some-relayed');
    expect(m.tooltip).toBe('Weft: Connected (some peers relayed) (100.64.0.1)');
    expect(labels(m.items)).toEqual(['Weft: Connected (some peers relayed) — home', 'Disconnect', '---', 'This device: laptop (100.64.0.1)', 'Peers (1 direct, 1 relayed)', '---', 'Open Weft', 'Quit Weft']);
    expect(m.items[3]).toEqual({ kind: 'copy', label: 'This device: laptop (100.64.0.1)', copy: '100.64.0.1' });
    const peers = m.items[4];
    expect(peers?.kind).toBe('submenu');
    if (peers?.kind !== 'submenu') return;
    expect(peers.items).toEqual([
      { kind: 'copy', label: '● peer2 — direct  100.64.0.2', copy: '100.64.0.2', mark: 'direct' },
      { kind: 'copy', label: '◐ peer3 — relay (fra)  100.64.0.3', copy: '100.64.0.3', mark: 'relay' },
      { kind: 'copy', label: '· peer4 — offline  100.64.0.4', copy: '100.64.0.4', mark: 'offline' },
    ]);
    expect(m.items.filter((i) => i.kind === 'action').map((i) => i.kind === 'action' && i.action)).toEqual(['disconnect', 'open', 'quit']);
  });

  it('disconnected: Connect (or Connect… to join when nothing is saved), no device line, an empty Peers menu', () => {
    const m = trayMenuModel(snap(null), { hasProfile: false });
    expect(labels(m.items)).toEqual(['Weft: Disconnected', 'Connect…', '---', 'Peers', '---', 'Open Weft', 'Quit Weft']);
    expect(m.items[3]).toEqual({ kind: 'submenu', label: 'Peers', enabled: false, items: [{ kind: 'label', label: 'No peers' }] });
    expect(labels(trayMenuModel(snap(null), { hasProfile: true }).items)[1]).toBe('Connect');
  });

  it('needs login: offers Log in… when there is a URL', () => {
    const m = trayMenuModel(snap('needs-login', [], 'https://hs.example.com/register/x'), { hasProfile: true });
    expect(m.items[1]).toEqual({ kind: 'action', action: 'login', label: 'Log in…', enabled: true });
  });

  it('caps the peer list', () => {
    const many = Array.from({ length: 50 }, (_, i) => pv(String(i + 2), direct));
    const m = trayMenuModel(snap('connected', many), { hasProfile: true, maxPeers: 10 });
    const sub = m.items.find((i) => i.kind === 'submenu');
    expect(sub?.kind === 'submenu' && sub.items.length).toBe(11);
    expect(sub?.kind === 'submenu' && sub.items.at(-1)).toEqual({ kind: 'label', label: 'and 40 more…' });
  });
});
