/**
 * The link explainer against a table of NAT pairs (this device's netcheck × the peer's NetInfo), plus the disco
 * evidence, the shared-NAT case, missing facts, and the non-relayed verdicts.
 */
import { describe, expect, it } from 'vitest';
import { explainLink, linkVerdict, type ReasonSide } from '../../../../src-shared/explain/why-relayed.ts';
import { PeerView } from '../../../../src-shared/model/mesh.ts';
import { NetcheckReport, type NatType } from '../../../../src-shared/model/netcheck.ts';
import { connecting, direct, netInfo, offline, peer, relay, report, type PeerNat } from '../../renderer/support/fixtures.ts';

type Row = [self: NatType, peer: PeerNat, side: ReasonSide, because: RegExp, text: RegExp];

// For a relayed link: which side the first (main) reason blames, the summary's "because", and the reason's text.
const NAT_PAIRS: Row[] = [
  ['easy', 'easy', 'network', /direct path has not been confirmed yet/, /Neither side's NAT looks like it should stop hole punching/],
  ['easy', 'hard', 'peer', /the peer's NAT is symmetric/, /only accepts packets from addresses and ports it has sent to/],
  ['easy', 'hard+portmap', 'network', /not been confirmed/, /should stop hole punching/],
  ['easy', 'udp-blocked', 'peer', /the peer's network blocks UDP/, /only be reached through the relay/],
  ['easy', 'unreported', 'peer', /the peer has not reported its network/, /has not reported its network/],
  ['hard', 'easy', 'this-device', /this device's NAT is symmetric/, /keeps one port for all destinations/],
  ['hard', 'hard', 'both', /both sides are behind symmetric NATs/, /Both sides are behind NATs that change the port per destination \(symmetric\)\. A direct path needs at least one side with an endpoint-independent NAT, a port mapping \(UPnP\/NAT-PMP\/PCP\), or a public address\./],
  ['hard', 'hard+portmap', 'this-device', /this device's NAT is symmetric/, /the peer has a port mapping/],
  ['hard', 'udp-blocked', 'peer', /the peer's network blocks UDP/, /blocks UDP/],
  ['hard', 'unreported', 'this-device', /this device's NAT is symmetric/, /has not reported its NAT/],
  ['open', 'hard', 'peer', /the peer's NAT is symmetric/, /open public address/],
  ['firewall', 'hard', 'peer', /the peer's NAT is symmetric/, /only accepts packets from addresses and ports/],
  ['firewall', 'easy', 'network', /not been confirmed/, /should stop hole punching/],
  ['udp-blocked', 'easy', 'this-device', /this device's network blocks UDP/, /blocks UDP, so only the relay/],
  ['udp-blocked', 'hard', 'this-device', /this device's network blocks UDP/, /blocks UDP/],
  ['udp-blocked', 'udp-blocked', 'this-device', /this device's network blocks UDP/, /blocks UDP/],
  ['unknown', 'easy', 'this-device', /this device's NAT type is unknown/, /could not be determined/],
  ['unknown', 'hard', 'peer', /the peer's NAT is symmetric/, /NAT type is unknown/],
];

describe('explainLink: NAT pairs (relayed)', () => {
  it.each(NAT_PAIRS)('this device %s × peer %s → %s', (selfNat, peerNat, side, because, text) => {
    const self = report(selfNat);
    const p = peer({ path: relay(2), netInfo: netInfo(peerNat) });
    expect(NetcheckReport.safeParse(self).success).toBe(true);
    expect(PeerView.safeParse(p).success).toBe(true);
    const e = explainLink(self, p);
    expect(e.verdict).toBe('relayed');
    expect(e.reasons.length).toBeGreaterThan(0);
    expect(e.reasons[0]!.side).toBe(side);
    expect(e.reasons[0]!.text).toMatch(text);
    expect(e.summary).toMatch(/^Relayed through relay region 2/);
    expect(e.summary).toMatch(because);
  });

  it('says who must change what when both NATs are symmetric', () => {
    const e = explainLink(report('hard'), peer({ path: relay(2), netInfo: netInfo('hard') }));
    expect(e.reasons[0]!.fix).toMatch(/UPnP\/NAT-PMP\/PCP.*either router/);
  });

  it('asks for UDP 41641 when this network blocks UDP', () => {
    const e = explainLink(report('udp-blocked'), peer({ path: relay(2) }));
    expect(e.reasons[0]!.fix).toMatch(/outbound UDP \(port 41641/);
    expect(e.reasons[0]!.fix).toMatch(/nothing but the relay will work/);
  });

  it('mentions an unusable port mapping on a symmetric NAT', () => {
    const self = report('hard', { portMapping: { natpmp: false, pcp: false, upnp: true, externalV4: '10.0.0.2', usable: false, error: 'the router is behind a CGNAT' } });
    const e = explainLink(self, peer({ path: relay(2), netInfo: netInfo('easy') }));
    expect(e.reasons[0]!.text).toMatch(/offers UPnP, but a mapping could not be used: the router is behind a CGNAT/);
  });

  it('treats a usable port mapping on this side as making it reachable', () => {
    const self = report('hard', { portMapping: { natpmp: true, pcp: false, upnp: false, externalV4: '198.51.100.10', usable: true, error: null } });
    const e = explainLink(self, peer({ path: relay(2), netInfo: netInfo('hard') }));
    expect(e.reasons[0]!.side).toBe('peer');
    expect(e.reasons[0]!.text).toMatch(/This device has a port mapping/);
  });

  it("names the peer's home relay", () => {
    const e = explainLink(report('hard'), peer({ path: relay(2), netInfo: netInfo('hard') }));
    expect(e.summary).toMatch(/relay region 2 \(the peer's home relay\)/);
    const mine = explainLink(report('hard'), peer({ path: relay(1), netInfo: netInfo('hard') }));
    expect(mine.summary).toMatch(/relay region 1 \(this device's home relay\)/);
  });

  it('names the region when given names', () => {
    const p = peer({ path: relay(2), netInfo: netInfo('hard') });
    const name = (id: number) => (id === 2 ? 'New York' : null);
    expect(explainLink(report('hard'), p, { regionName: name }).summary).toBe(
      "Relayed through the New York relay (region 2, the peer's home relay) because both sides are behind symmetric NATs.",
    );
    const other = peer({ path: relay(3), netInfo: netInfo('hard') });
    expect(explainLink(report('hard'), other, { regionName: name }).summary).toMatch(/^Relayed through relay region 3 because/);
  });
});

describe('explainLink: disco evidence', () => {
  const ev = (pingsSent: number, pongsReceived: number, pingsReceived: number) => ({ pingsSent, pongsReceived, pingsReceived, lastPongAt: null });

  it.each([
    [ev(8, 0, 3), 'peer', /none of our 8 pings reached the peer: its firewall or NAT drops inbound UDP/],
    [ev(5, 2, 0), 'this-device', /the peer's own pings never arrive here: this device's firewall drops/],
    [ev(6, 0, 0), 'network', /None of our 6 direct pings were answered and none of the peer's pings reached this device/],
    [ev(0, 0, 0), 'network', /No direct pings have been sent yet/],
  ] as const)('%o → %s', (disco, side, text) => {
    // Friendly NATs on both sides, so the evidence is the main reason.
    const e = explainLink(report('easy'), peer({ path: relay(2), netInfo: netInfo('easy'), disco }));
    expect(e.reasons[0]!.side).toBe(side);
    expect(e.reasons[0]!.text).toMatch(text);
  });

  it('puts a blocking NAT verdict before the evidence', () => {
    const e = explainLink(report('hard'), peer({ path: relay(2), netInfo: netInfo('hard'), disco: ev(8, 0, 0) }));
    expect(e.reasons.map((r) => r.side)).toEqual(['both', 'network']);
  });
});

describe('explainLink: other facts', () => {
  it('spots two devices behind one NAT that does not hairpin', () => {
    const self = report('easy', { hairpinning: false });
    const e = explainLink(self, peer({ path: relay(2), endpoints: ['198.51.100.10:41641', '192.168.1.20:41641'] }));
    expect(e.reasons[0]!.side).toBe('network');
    expect(e.reasons[0]!.text).toMatch(/same NAT \(public address 198\.51\.100\.10\)/);
    expect(e.reasons[0]!.fix).toMatch(/hairpinning/);
  });

  it('says when the peer published no endpoints', () => {
    const e = explainLink(report('easy'), peer({ path: relay(2), endpoints: [] }));
    expect(e.reasons[0]!.text).toMatch(/published no UDP endpoints/);
  });

  it('asks for a netcheck when this device has none', () => {
    const e = explainLink(null, peer({ path: relay(2), netInfo: netInfo('easy') }));
    expect(e.reasons.some((r) => r.side === 'this-device' && r.fix === 'Run netcheck on the This device page.')).toBe(true);
  });
});

describe('explainLink: verdicts', () => {
  it('direct: summary with endpoint and latency, no blame', () => {
    const e = explainLink(report('easy'), peer({ path: direct(23.4) }));
    expect(e).toEqual({ verdict: 'direct', reasons: [], summary: 'Direct over UDP to 203.0.113.5:41641, 23 ms.' });
  });

  it('direct from behind a symmetric NAT notes why it still works', () => {
    const e = explainLink(report('hard'), peer({ path: direct(3.25), netInfo: netInfo('easy') }));
    expect(e.summary).toBe('Direct over UDP to 203.0.113.5:41641, 3.3 ms.');
    expect(e.reasons[0]!.text).toMatch(/hole punching works/);
  });

  it('offline: blames the peer', () => {
    const e = explainLink(report('easy'), peer({ path: offline, online: false, lastSeen: '2025-01-02T03:04:05Z' }));
    expect(e.verdict).toBe('offline');
    expect(e.summary).toBe('Offline (last seen 2025-01-02T03:04:05Z).');
    expect(e.reasons[0]!.side).toBe('peer');
  });

  it('connecting with a blocking cause predicts the relay', () => {
    const e = explainLink(report('hard'), peer({ path: connecting, netInfo: netInfo('hard') }));
    expect(e.verdict).toBe('connecting');
    expect(e.summary).toBe('Connecting; a direct path is unlikely because both sides are behind symmetric NATs, so expect the relay.');
  });

  it('connecting without a blocking cause just says it is trying', () => {
    const e = explainLink(report('easy'), peer({ path: connecting, netInfo: netInfo('easy') }));
    expect(e.summary).toBe('Connecting: trying to reach the peer directly.');
  });

  it('a connecting peer that control reports offline counts as offline', () => {
    expect(linkVerdict({ path: connecting, online: false })).toBe('offline');
    expect(linkVerdict({ path: connecting, online: null })).toBe('connecting');
    expect(linkVerdict({ path: relay(1), online: false })).toBe('relayed');
  });

  it('every reason names a side and non-empty text, for every pair and path', () => {
    const nats: NatType[] = ['open', 'firewall', 'easy', 'hard', 'udp-blocked', 'unknown'];
    const peers: PeerNat[] = ['easy', 'hard', 'hard+portmap', 'udp-blocked', 'unreported'];
    for (const s of [...nats.map((n) => report(n)), null])
      for (const pn of peers)
        for (const path of [direct(), relay(), connecting, offline]) {
          const e = explainLink(s, peer({ path, netInfo: netInfo(pn) }));
          expect(e.summary.length).toBeGreaterThan(0);
          for (const r of e.reasons) expect(r.text.length).toBeGreaterThan(0);
          if (e.verdict === 'relayed') expect(e.reasons.length).toBeGreaterThan(0);
        }
  });
});
