/** The tailnet selectors: access rows, the filter and MagicDNS lines, LAN overlaps, and each peer's routes. */
import { describe, expect, it } from 'vitest';
import { MeshSnapshot } from '../../../src-shared/model/mesh.ts';
import type { AccessGrant, DnsStatus, FilterStatus } from '../../../src-shared/model/tailnet.ts';
import { createWeftStore } from '../../../src-renderer/src/store/index.ts';
import { filterPeers } from '../../../src-renderer/src/store/selectors/mesh.ts';
import {
  accessCard,
  accessRow,
  clockTime,
  dnsLine,
  filterLine,
  lanOverlaps,
  peerRoutes,
  portRangeText,
  routesLine,
  selectAccessCard,
  selectLanOverlaps,
  whoText,
} from '../../../src-renderer/src/store/selectors/tailnet.ts';
import { NO_FILTERS } from '../../../src-renderer/src/store/slices/ui.ts';
import { peer, snapshot, tailnet } from './support/fixtures.ts';

/** UTC "HH:MM:SS", so the tests do not depend on the machine's time zone. */
const utc = (iso: string): string => iso.slice(11, 19);

const grant = (over: Partial<AccessGrant> = {}): AccessGrant => ({ peers: ['nas'], anyone: false, sources: ['100.64.0.3/32'], protocols: ['tcp'], ports: [{ first: 22, last: 22 }], ...over });
const filter = (over: Partial<FilterStatus> = {}): FilterStatus => ({ state: 'applied', ruleCount: 3, nftRuleCount: 9, appliedAt: '2026-11-22T12:03:04Z', error: null, skipped: [], ...over });
const dns = (over: Partial<DnsStatus> = {}): DnsStatus => ({ acceptDns: true, mode: 'resolved', suffix: 'tailnet.example.com', serving: true, error: null, ...over });

describe('fixtures', () => {
  it('a snapshot with the fixture tailnet passes the contract', () => {
    expect(MeshSnapshot.safeParse(snapshot([peer({ name: 'nas', routes: ['10.20.0.0/16'], exitNode: true })], { tailnet: tailnet() })).success).toBe(true);
  });
});

describe('access rows', () => {
  it('writes port ranges as 22, 80-443 and all ports', () => {
    expect(portRangeText({ first: 22, last: 22 })).toBe('22');
    expect(portRangeText({ first: 80, last: 443 })).toBe('80-443');
    expect(portRangeText({ first: 0, last: 65535 })).toBe('all ports');
    expect(portRangeText({ first: 0, last: 1023 })).toBe('0-1023');
  });

  it('names who: the peers, anyone, or nobody now', () => {
    expect(whoText(grant({ peers: ['desktop', 'nas'] }))).toBe('desktop, nas');
    expect(whoText(grant({ anyone: true, peers: ['desktop', 'nas'] }))).toBe('Anyone in the tailnet');
    expect(whoText(grant({ peers: [] }))).toBe('No device in the tailnet now');
    expect(whoText(grant({ peers: ['a', 'b', 'c', 'd'] }), 2)).toBe('a, b and 2 more');
  });

  it('sums up protocols and ports per grant', () => {
    expect(accessRow(grant(), 0)).toMatchObject({ who: 'nas', protocols: 'tcp', ports: ['22'], summary: 'tcp 22' });
    expect(accessRow(grant({ protocols: ['tcp', 'udp'], ports: [{ first: 80, last: 443 }] }), 0).summary).toBe('tcp, udp 80-443');
    expect(accessRow(grant({ protocols: ['tcp', 'udp', 'icmp'], ports: [{ first: 0, last: 65535 }] }), 0).summary).toBe('tcp, udp, icmp all ports');
    expect(accessRow(grant({ protocols: ['tcp'], ports: [{ first: 22, last: 22 }, { first: 8000, last: 8080 }] }), 0).ports).toEqual(['22', '8000-8080']);
    // ICMP has no ports.
    expect(accessRow(grant({ protocols: ['icmp'], ports: [{ first: 0, last: 65535 }] }), 0)).toMatchObject({ ports: [], summary: 'icmp' });
  });
});

describe('the filter line', () => {
  it('applied, none yet, or an error with the last good filter kept', () => {
    expect(filterLine(filter(), utc)).toEqual({ tone: 'ok', text: 'ACL applied 12:03:04, 3 rules' });
    expect(filterLine(filter({ ruleCount: 1 }), utc).text).toBe('ACL applied 12:03:04, 1 rule');
    expect(filterLine(filter({ state: 'none', ruleCount: 0, appliedAt: null }), utc)).toEqual({ tone: 'warn', text: 'No filter yet: nothing can connect' });
    expect(filterLine(filter({ state: 'error', error: 'nft: Operation not permitted' }), utc)).toEqual({
      tone: 'error',
      text: 'nft: Operation not permitted; keeping the last good filter (applied 12:03:04, 3 rules)',
    });
    expect(filterLine(filter({ state: 'error', appliedAt: null, error: 'nft missing' }), utc)).toEqual({ tone: 'error', text: 'nft missing; nothing can connect' });
  });

  it('formats local clock time', () => {
    const d = new Date(2026, 10, 22, 9, 5, 7);
    expect(clockTime(d.toISOString())).toBe('09:05:07');
    expect(clockTime('garbage')).toBe('garbage');
  });
});

describe('the access card', () => {
  it('rows from the fixture, with the filter line', () => {
    const c = accessCard(tailnet(), utc);
    expect(c.known).toBe(true);
    expect(c.filter?.text).toBe('ACL applied 12:03:04, 3 rules');
    expect(c.rows.map((r) => [r.who, r.summary])).toEqual([
      ['desktop, nas', 'tcp 22'],
      ['Anyone in the tailnet', 'tcp, udp 80-443'],
      ['admin', 'tcp, udp, icmp all ports'],
    ]);
    expect(c.empty).toBeNull();
  });

  it('says nobody can connect when the applied filter grants nothing, and nothing more before a filter', () => {
    expect(accessCard(tailnet({ access: [] }), utc).empty).toBe('Nobody in the tailnet can open connections to this device');
    const none = accessCard(tailnet({ access: [], filter: filter({ state: 'none', ruleCount: 0, appliedAt: null }) }), utc);
    expect([none.empty, none.filter?.text]).toEqual([null, 'No filter yet: nothing can connect']);
    expect(accessCard(null)).toEqual({ known: false, filter: null, rows: [], empty: null, skipped: [] });
  });

  it('is memoised on the tailnet status', () => {
    const store = createWeftStore();
    store.getState().setSnapshot(snapshot([], { tailnet: tailnet() }));
    const a = selectAccessCard(store.getState());
    store.getState().selectPeer('x');
    expect(selectAccessCard(store.getState())).toBe(a);
    expect(selectLanOverlaps(store.getState()).map((o) => o.prefix)).toEqual(['192.168.1.0/24']);
  });
});

describe('routes', () => {
  it('lists only the LAN overlaps', () => {
    expect(lanOverlaps(tailnet()).map((o) => o.note)).toEqual(['route 192.168.1.0/24 from nas overlaps your LAN (eth0 192.168.1.0/24); your LAN wins']);
    expect(lanOverlaps(null)).toEqual([]);
  });

  it("tells what became of each route a peer offers", () => {
    const nas = peer({ name: 'nas', routes: ['10.20.0.0/16', '192.168.1.0/24', '172.16.0.0/12'] });
    expect(peerRoutes(nas, tailnet()).map((r) => [r.prefix, r.state, r.text])).toEqual([
      ['10.20.0.0/16', 'in-use', 'in use'],
      ['192.168.1.0/24', 'not-used', 'not used: overlaps your LAN'],
      ['172.16.0.0/12', 'unknown', 'offered'],
    ]);
    const off = tailnet({ routes: { ...tailnet().routes, acceptRoutes: false, installed: [], skipped: [{ prefix: '10.20.0.0/16', peer: 'nas', reason: 'accept-routes-off', note: 'route 10.20.0.0/16 from nas: subnet routes are off' }] } });
    expect(peerRoutes(nas, off).map((r) => r.text)).toEqual(['not used: Use subnet routes is off', 'not used: Use subnet routes is off', 'not used: Use subnet routes is off']);
    expect(peerRoutes(nas, null).every((r) => r.state === 'unknown')).toBe(true);
  });

  it('sums routes up for this device', () => {
    const peers = [peer({ name: 'nas', routes: ['10.20.0.0/16', '192.168.1.0/24'] })];
    expect(routesLine(tailnet(), peers).text).toBe('On · 1 of 2 in use');
    expect(routesLine(tailnet(), []).text).toBe('On · none offered');
    expect(routesLine(tailnet({ routes: { ...tailnet().routes, acceptRoutes: false, installed: [] } }), peers).text).toBe('Off · 2 offered in the tailnet');
    expect(routesLine(tailnet({ routes: { ...tailnet().routes, error: 'ip: RTNETLINK answers: File exists' } }), peers)).toEqual({ tone: 'error', text: 'ip: RTNETLINK answers: File exists; the previous routes stay' });
  });
});

describe('the MagicDNS line', () => {
  it('mode and suffix, or why it is off', () => {
    expect(dnsLine(dns())).toEqual({ tone: 'ok', mode: 'resolved', text: 'On via systemd-resolved · tailnet.example.com' });
    expect(dnsLine(dns({ mode: 'direct' })).text).toBe('On via /etc/resolv.conf · tailnet.example.com');
    expect(dnsLine(dns({ acceptDns: false, mode: 'off' })).text).toBe('Off (Use MagicDNS is off in Settings)');
    expect(dnsLine(dns({ mode: 'off', suffix: null })).text).toBe('Off: the tailnet has none');
    expect(dnsLine(dns({ mode: 'off' }))).toMatchObject({ tone: 'warn', mode: 'off', text: 'Not in use · tailnet.example.com' });
    expect(dnsLine(dns({ serving: false }))).toMatchObject({ tone: 'warn', text: 'On via systemd-resolved · tailnet.example.com (100.100.100.100 is not answering)' });
    expect(dnsLine(dns({ error: 'resolvectl: not found' }))).toMatchObject({ tone: 'error', text: expect.stringMatching(/resolvectl: not found; keeping the last good DNS configuration$/) });
  });
});

describe('peer search', () => {
  it('matches the DNS name', () => {
    const nas = peer({ name: 'nas', fqdn: 'nas.corp.example.net' });
    expect(filterPeers([nas, peer({ name: 'phone' })], 'corp.example', NO_FILTERS)).toEqual([nas]);
  });
});
