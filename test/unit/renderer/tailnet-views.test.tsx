// @vitest-environment jsdom
/**
 * The tailnet in the views, rendered in jsdom: DNS names that copy, subnet routes and exit nodes of a peer, the
 * MagicDNS and subnet route toggles calling settings:set, the LAN-overlap warning and the access card.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Settings } from '../../../src-shared/ipc/contract.ts';
import { AccessCard } from '../../../src-renderer/src/features/device/AccessCard.tsx';
import { DeviceCard } from '../../../src-renderer/src/features/device/DeviceCard.tsx';
import { PeerDetail } from '../../../src-renderer/src/features/peer-detail/PeerDetail.tsx';
import { PeerList } from '../../../src-renderer/src/features/peer-list/PeerList.tsx';
import { SettingsView } from '../../../src-renderer/src/features/settings/SettingsView.tsx';
import { weftStore } from '../../../src-renderer/src/store/index.ts';
import { clockTime } from '../../../src-renderer/src/store/selectors/tailnet.ts';
import { FakeApi, ok } from './support/fake-client.ts';
import { direct, peer, snapshot, tailnet } from './support/fixtures.ts';
import { mount, resetStore, type Mounted } from './support/render.tsx';

const nas = peer({ id: 'nas', name: 'nas', path: direct(4), routes: ['10.20.0.0/16', '192.168.1.0/24'], exitNode: true });
const phone = peer({ id: 'phone', name: 'phone', path: direct(9) });
const SETTINGS: Settings = { autoStart: false, startMinimised: false, notifications: true, profiles: [], activeProfile: null, acceptRoutes: false, acceptDns: true };

let view: Mounted | null = null;
const st = () => weftStore.getState();

beforeEach(() => {
  resetStore();
  st().setSnapshot(snapshot([nas, phone], { tailnet: tailnet() }));
});
afterEach(() => {
  view?.unmount();
  view = null;
});

describe('peer DNS names, routes and exit nodes', () => {
  it('shows the FQDN in the detail and copies it', async () => {
    view = await mount(<PeerDetail id="nas" />);
    const fqdn = view.byTestId('peer-fqdn');
    expect(fqdn.textContent).toBe('nas.tailnet.example.com');
    await view.click(fqdn);
    expect(view.copied).toEqual(['nas.tailnet.example.com']);
    expect(st().notice).toMatchObject({ tone: 'info', text: 'Copied nas.tailnet.example.com' });
  });

  it('lists the routes the peer offers, whether this device uses them, and the exit node badge', async () => {
    view = await mount(<PeerDetail id="nas" />);
    expect(view.byTestId('peer-exit-node').textContent).toBe('exit node');
    expect(view.allByTestId('peer-route').map((r) => [r.querySelector('code')?.textContent, r.dataset['state']])).toEqual([
      ['10.20.0.0/16', 'in-use'],
      ['192.168.1.0/24', 'not-used'],
    ]);
    expect(view.allByTestId('peer-route')[1]!.textContent).toContain('overlaps your LAN');
  });

  it('a peer without routes or exit node shows neither', async () => {
    view = await mount(<PeerDetail id="phone" />);
    expect(view.byTestId('peer-fqdn').textContent).toBe('phone.tailnet.example.com');
    expect(view.allByTestId('peer-exit-node')).toEqual([]);
    expect(view.allByTestId('peer-route')).toEqual([]);
  });

  it('copies the FQDN from the peer list without opening the peer', async () => {
    view = await mount(<PeerList />);
    const buttons = view.allByTestId('peer-copy-fqdn');
    expect(buttons.map((b) => b.textContent)).toEqual(['nas.tailnet.example.com', 'phone.tailnet.example.com']);
    await view.click(buttons[0]!);
    expect(view.copied).toEqual(['nas.tailnet.example.com']);
    expect(st().selectedPeerId).toBeNull();
    expect(view.allByTestId('peer-exit-node')).toHaveLength(1);
    expect(view.byTestId('peer-routes').textContent).toBe('2 routes');
  });
});

describe('the MagicDNS and subnet route toggles', () => {
  function settingsApi(): FakeApi {
    return new FakeApi().answer('settings:set', (patch) => ok({ ...SETTINGS, ...(patch as Partial<Settings>) }));
  }

  it('reflect the settings and call settings:set with the one key changed', async () => {
    st().setSettings(SETTINGS);
    view = await mount(<SettingsView />, settingsApi());
    const dns = view.byTestId('toggle-accept-dns') as HTMLInputElement;
    const routes = view.byTestId('toggle-accept-routes') as HTMLInputElement;
    expect([dns.checked, routes.checked]).toEqual([true, false]);
    expect(view.container.textContent).toContain('Use MagicDNS');
    expect(view.container.textContent).toContain('Use subnet routes');

    await view.click(routes);
    expect(view.fake.calls).toEqual([{ method: 'settings:set', request: { acceptRoutes: true } }]);
    expect(st().settings?.acceptRoutes).toBe(true);
    expect((view.byTestId('toggle-accept-routes') as HTMLInputElement).checked).toBe(true);

    await view.click(view.byTestId('toggle-accept-dns'));
    expect(view.fake.calls[1]).toEqual({ method: 'settings:set', request: { acceptDns: false } });
    expect(st().settings?.acceptDns).toBe(false);
  });

  it("shows the service's refusal and keeps the setting", async () => {
    st().setSettings(SETTINGS);
    const fake = new FakeApi().answer('settings:set', () => ({ ok: false, error: { code: 'permission-denied', message: 'only root or members of weft may change this', retryable: false } }));
    view = await mount(<SettingsView />, fake);
    await view.click(view.byTestId('toggle-accept-routes'));
    expect(view.container.querySelector('[role="alert"]')).not.toBeNull();
    expect(st().settings?.acceptRoutes).toBe(false);
    expect((view.byTestId('toggle-accept-routes') as HTMLInputElement).checked).toBe(false);
  });
});

describe('this device: LAN overlaps, MagicDNS, and who can reach it', () => {
  it('shows each LAN-overlap note and nothing for other skipped routes', async () => {
    view = await mount(<DeviceCard />);
    const notes = view.allByTestId('route-overlap');
    expect(notes.map((n) => n.textContent)).toEqual(['route 192.168.1.0/24 from nas overlaps your LAN (eth0 192.168.1.0/24); your LAN wins']);
    expect(view.byTestId('self-fqdn').textContent).toBe('laptop.tailnet.example.com');
    expect(view.byTestId('dns-line').dataset['mode']).toBe('resolved');
    expect(view.byTestId('dns-line').textContent).toContain('tailnet.example.com');
    expect(view.byTestId('routes-line').textContent).toBe('On · 1 of 2 in use');
    // The access card is part of the device view.
    expect(view.allByTestId('access-card')).toHaveLength(1);
  });

  it('drops the warning when the overlap is gone', async () => {
    view = await mount(<DeviceCard />);
    const t = tailnet();
    await view.update(() => st().applyDelta({ tailnet: { ...t, routes: { ...t.routes, skipped: [] } } }));
    expect(view.allByTestId('route-overlap')).toEqual([]);
  });

  it('renders one row per grant with who, protocols and port ranges, and the filter state', async () => {
    view = await mount(<AccessCard />);
    const card = view.byTestId('access-card');
    expect(card.textContent).toContain('Who can reach this device');
    expect(view.byTestId('access-filter').textContent).toBe(`ACL applied ${clockTime('2026-11-22T12:03:04Z')}, 3 rules`);
    const rows = view.allByTestId('access-grant');
    expect(rows).toHaveLength(3);
    expect(rows[0]!.textContent).toContain('desktop, nas');
    expect(rows[1]!.textContent).toContain('Anyone in the tailnet');
    expect(rows[1]!.dataset['anyone']).toBe('true');
    expect(rows[1]!.textContent).toContain('tcp, udp');
    expect(view.allByTestId('access-port').map((p) => p.textContent)).toEqual(['22', '80-443', 'all ports']);
  });

  it('says nobody can connect when the applied filter grants nothing', async () => {
    st().setSnapshot(snapshot([nas], { tailnet: tailnet({ access: [] }) }));
    view = await mount(<AccessCard />);
    expect(view.byTestId('access-empty').textContent).toBe('Nobody in the tailnet can open connections to this device');
    expect(view.allByTestId('access-grant')).toEqual([]);
  });

  it('before the first filter, and after a failed one', async () => {
    const t = tailnet();
    st().setSnapshot(snapshot([nas], { tailnet: { ...t, access: [], filter: { ...t.filter, state: 'none', ruleCount: 0, appliedAt: null } } }));
    view = await mount(<AccessCard />);
    expect(view.byTestId('access-filter').textContent).toBe('No filter yet: nothing can connect');
    expect(view.allByTestId('access-empty')).toEqual([]);
    await view.update(() => st().applyDelta({ tailnet: { ...t, filter: { ...t.filter, state: 'error', error: 'nft: Operation not permitted' } } }));
    expect(view.byTestId('access-filter').textContent).toMatch(/^nft: Operation not permitted; keeping the last good filter/);
    expect(view.byTestId('access-filter').dataset['tone']).toBe('error');
    expect(view.allByTestId('access-grant')).toHaveLength(3);
  });

  it('without tailnet information says so', async () => {
    st().setSnapshot(snapshot([nas]));
    view = await mount(<AccessCard />);
    expect(view.byTestId('access-card').textContent).toContain('No access information yet');
    expect(view.allByTestId('access-filter')).toEqual([]);
  });
});
