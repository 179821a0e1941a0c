/**
 * Explains one link in words: whether a peer is reached directly, through a relay, not yet, or not at all, and
 * when it is relayed (or still connecting) which side would need to change what for a direct path.
 *
 * Pure: the inputs are the facts the UI already has, nothing is fetched.
 *   - this device's NetcheckReport (UDP, NAT mapping/filtering, hairpinning, port mapping, public address);
 *   - the peer's own NetInfo as it reported it to control (mappingVariesByDestIP, workingUDP, havePortMap, …);
 *   - our disco evidence for the peer (pings sent, pongs received, pings received from it).
 *
 * The rules, in the order they are reported (the first one found is the summary's "because"):
 *
 *   1. UDP blocked on either side          → only the relay (DERP over HTTPS) can work, whatever the NATs are.
 *   2. Both behind the same public address → needs hairpinning (NAT loopback) or LAN endpoints.
 *   3. NAT pair (hard = mapping varies by destination and no usable port mapping):
 *        hard × hard → both sides; hard × easy → the hard side, and the easy side's filtering matters.
 *   4. Disco evidence: our pings unanswered / the peer's pings never arriving / nothing either way.
 *   5. Missing facts: no netcheck yet, the peer never reported NetInfo, no endpoints published.
 *   6. Nothing explains it: say hole punching may still be under way, or something on the path drops UDP.
 *
 * "Hard" NAT is RFC 4787 address(-and-port)-dependent mapping (a.k.a. symmetric): the public port changes per
 * destination, so the port the STUN server saw is useless to the peer. A direct path needs at least one side that
 * is reachable at a predictable address: endpoint-independent mapping, a port mapping (UPnP IGD / NAT-PMP / PCP),
 * or a public address.
 */
import type { PeerView } from '../model/mesh.ts';
import type { NetcheckReport } from '../model/netcheck.ts';

export type LinkVerdict = 'direct' | 'relayed' | 'connecting' | 'offline';
export type ReasonSide = 'this-device' | 'peer' | 'both' | 'network';

export interface LinkReason {
  side: ReasonSide;
  text: string;
  /** What would make a direct path possible, or null when nothing needs changing (or nothing can be said). */
  fix: string | null;
}

export interface LinkExplanation {
  verdict: LinkVerdict;
  reasons: LinkReason[];
  summary: string;
}

/** The WireGuard/disco UDP port Weft and Tailscale listen on by default. */
export const DEFAULT_UDP_PORT = 41641;

const PORT_MAPPING_FIX = 'a port mapping (UPnP/NAT-PMP/PCP)';
const DIRECT_NEEDS =
  'A direct path needs at least one side with an endpoint-independent NAT, a port mapping (UPnP/NAT-PMP/PCP), or a public address.';

/** The verdict for a peer's link: the engine's path kind, with a connecting peer that control says is offline counted as offline. */
export function linkVerdict(peer: Pick<PeerView, 'path' | 'online'>): LinkVerdict {
  switch (peer.path.kind) {
    case 'direct':
      return 'direct';
    case 'relay':
      return 'relayed';
    case 'offline':
      return 'offline';
    case 'connecting':
      return peer.online === false ? 'offline' : 'connecting';
    default: {
      const never: never = peer.path;
      return never;
    }
  }
}

export interface ExplainOptions {
  /** A relay region's display name (e.g. "Frankfurt"), for the summary; without it regions are named by number. */
  regionName?: (id: number) => string | null | undefined;
}

/** Explains `peer`'s link given this device's NAT report (null when netcheck has not run yet). */
export function explainLink(self: NetcheckReport | null, peer: PeerView, opts: ExplainOptions = {}): LinkExplanation {
  const verdict = linkVerdict(peer);
  switch (verdict) {
    case 'direct':
      return explainDirect(self, peer);
    case 'offline':
      return explainOffline(peer);
    case 'relayed':
    case 'connecting': {
      const found = diagnose(self, peer);
      const reasons = found.map(({ side, text, fix }) => ({ side, text, fix }));
      const because = found[0]?.short ?? 'the direct path has not been confirmed yet';
      const blocked = found[0]?.blocking === true;
      const summary =
        verdict === 'relayed'
          ? `Relayed through ${relayName(self, peer, opts)} because ${because}.`
          : blocked
            ? `Connecting; a direct path is unlikely because ${because}, so expect the relay.`
            : 'Connecting: trying to reach the peer directly.';
      return { verdict, reasons, summary };
    }
    default: {
      const never: never = verdict;
      return never;
    }
  }
}

interface Finding extends LinkReason {
  /** The clause after "because" in the summary. */
  short: string;
  /** Whether this finding alone rules out a direct path (as opposed to evidence or missing facts). */
  blocking: boolean;
}

/** What we know about one side's NAT, reduced to what matters for hole punching. */
interface SideFacts {
  /** Whether UDP gets out at all (null: unknown). */
  udp: boolean | null;
  /** Whether the mapping changes per destination (null: unknown). */
  hard: boolean | null;
  /** Whether a port mapping protocol gives this side a fixed, reachable port. */
  portMapped: boolean;
  /** Whether the side has a public address (no NAT at all). */
  publicAddr: boolean;
}

function selfFacts(r: NetcheckReport): SideFacts {
  const udp = r.udp && r.natType !== 'udp-blocked';
  const hard =
    r.natType === 'hard' ||
    r.mappingVariesByDestIP === true ||
    r.mapping === 'address-dependent' ||
    r.mapping === 'address-and-port-dependent'
      ? true
      : r.natType === 'easy' || r.natType === 'open' || r.natType === 'firewall' || r.mappingVariesByDestIP === false || r.mapping === 'endpoint-independent'
        ? false
        : null;
  return {
    udp: udp ? true : false,
    hard,
    portMapped: r.portMapping.usable === true,
    publicAddr: r.natType === 'open' || r.natType === 'firewall' || r.behindNat === false,
  };
}

function peerFacts(peer: PeerView): SideFacts {
  const n = peer.netInfo;
  return {
    udp: n?.workingUDP ?? null,
    hard: n?.mappingVariesByDestIP ?? null,
    portMapped: n?.havePortMap === true,
    publicAddr: false,
  };
}

/** Reports whether a side is effectively hard: its mapping varies and nothing (port map, public address) fixes it. */
function effectivelyHard(f: SideFacts): boolean {
  return f.hard === true && !f.portMapped && !f.publicAddr;
}

function diagnose(self: NetcheckReport | null, peer: PeerView): Finding[] {
  const out: Finding[] = [];
  const me = self ? selfFacts(self) : null;
  const them = peerFacts(peer);

  // 1. UDP blocked.
  if (me && me.udp === false) {
    out.push({
      side: 'this-device',
      text: "This device's network blocks UDP, so only the relay (over HTTPS) gets through.",
      fix: `Ask for outbound UDP (port ${DEFAULT_UDP_PORT}, and STUN on 3478) to be allowed, or nothing but the relay will work.`,
      short: "this device's network blocks UDP",
      blocking: true,
    });
  }
  if (them.udp === false) {
    out.push({
      side: 'peer',
      text: "The peer's network blocks UDP, so it can only be reached through the relay.",
      fix: `On the peer's network, allow outbound UDP (port ${DEFAULT_UDP_PORT}, and STUN on 3478).`,
      short: "the peer's network blocks UDP",
      blocking: true,
    });
  }
  const udpBlocked = out.length > 0;

  // 2. Same public address: the two are behind one NAT.
  if (!udpBlocked && self?.publicV4) {
    const sharedPublic = peer.endpoints.some((e) => hostOf(e) === self.publicV4);
    if (sharedPublic && self.hairpinning === false) {
      out.push({
        side: 'network',
        text: `Both devices are behind the same NAT (public address ${self.publicV4}), and that router does not hairpin (send traffic for its own public address back inside).`,
        fix: 'Put both devices on the same LAN segment so they find each other’s local addresses, or enable hairpinning (NAT loopback) on the router.',
        short: 'both devices share one NAT that does not hairpin',
        blocking: true,
      });
    }
  }

  // 3. The NAT pair.
  if (!udpBlocked && me && self) {
    const nat = natPair(self, me, them);
    if (nat) out.push(nat);
  }

  // 4. Disco evidence: what actually happened when we tried.
  if (!udpBlocked && peer.disco) {
    const d = peer.disco;
    if (d.pingsSent > 0 && d.pongsReceived === 0 && d.pingsReceived === 0) {
      out.push({
        side: 'network',
        text: `None of our ${d.pingsSent} direct ping${d.pingsSent === 1 ? ' was' : 's were'} answered and none of the peer's pings reached this device: UDP between the two is blocked or mis-mapped somewhere on the path.`,
        fix: `Allow UDP ${DEFAULT_UDP_PORT} in and out on both sides' firewalls, or enable a port mapping on either router.`,
        short: 'no direct pings got through in either direction',
        blocking: false,
      });
    } else if (d.pingsSent > 0 && d.pongsReceived === 0) {
      out.push({
        side: 'peer',
        text: `The peer's pings reach this device, but none of our ${d.pingsSent} ping${d.pingsSent === 1 ? '' : 's'} reached the peer: its firewall or NAT drops inbound UDP from us.`,
        fix: `Allow inbound UDP ${DEFAULT_UDP_PORT} on the peer's firewall, or enable a port mapping on its router.`,
        short: "the peer's firewall drops our pings",
        blocking: false,
      });
    } else if (d.pongsReceived > 0 && d.pingsReceived === 0) {
      out.push({
        side: 'this-device',
        text: "Our pings are answered, but the peer's own pings never arrive here: this device's firewall drops unsolicited inbound UDP.",
        fix: `Allow inbound UDP ${DEFAULT_UDP_PORT} in this device's firewall (or its network's).`,
        short: "this device's firewall drops the peer's pings",
        blocking: false,
      });
    } else if (d.pingsSent === 0 && peer.endpoints.length > 0) {
      out.push({
        side: 'network',
        text: 'No direct pings have been sent yet; discovery is still starting.',
        fix: null,
        short: 'discovery has not started yet',
        blocking: false,
      });
    }
  }

  // 5. Missing facts.
  if (!self) {
    out.push({
      side: 'this-device',
      text: "This device's NAT has not been measured yet, so its side of the picture is unknown.",
      fix: 'Run netcheck on the This device page.',
      short: "this device's NAT has not been measured",
      blocking: false,
    });
  }
  if (!peer.netInfo) {
    out.push({
      side: 'peer',
      text: 'The peer has not reported its network (NAT type, UDP) to the control server, so its side is unknown.',
      fix: null,
      short: 'the peer has not reported its network',
      blocking: false,
    });
  }
  if (!udpBlocked && peer.endpoints.length === 0) {
    out.push({
      side: 'peer',
      text: 'The peer has published no UDP endpoints, so there is no address to try a direct path on.',
      fix: "The peer needs working UDP and a successful netcheck on its side; check its logs.",
      short: 'the peer has published no endpoints',
      blocking: true,
    });
  }

  // 6. Nothing explains it.
  if (out.length === 0) {
    out.push({
      side: 'network',
      text: "Neither side's NAT looks like it should stop hole punching, so a direct path should be possible. It may still be being set up, or a firewall between the two drops UDP.",
      fix: `If it stays relayed, check that UDP ${DEFAULT_UDP_PORT} is allowed on both sides' firewalls.`,
      short: 'the direct path has not been confirmed yet',
      blocking: false,
    });
  }
  return sortFindings(out);
}

/**
 * The NAT pair's verdict. "Hard" is a mapping that varies per destination with nothing (port mapping, public
 * address) to make up for it; "reachable" is a side the other can send to at a predictable address.
 */
function natPair(self: NetcheckReport, me: SideFacts, them: SideFacts): Finding | null {
  const meHard = effectivelyHard(me);
  const themHard = effectivelyHard(them);
  const filtersStrictly = self.filtering === 'address-and-port-dependent' || self.filtering === 'address-dependent';

  if (meHard && themHard) {
    return {
      side: 'both',
      text: `Both sides are behind NATs that change the port per destination (symmetric). ${DIRECT_NEEDS}`,
      fix: `Enable ${PORT_MAPPING_FIX} on either router, or move one side to a network with an endpoint-independent NAT or a public address.`,
      short: 'both sides are behind symmetric NATs',
      blocking: true,
    };
  }
  if (meHard) {
    const fix = `Enable ${PORT_MAPPING_FIX} on this network's router, or use a network with an endpoint-independent NAT.`;
    if (them.portMapped) {
      return {
        side: 'this-device',
        text: "This device's NAT changes the port per destination (symmetric), but the peer has a port mapping, so it should be reachable directly; the direct path may not be confirmed yet.",
        fix: null,
        short: "this device's NAT is symmetric",
        blocking: false,
      };
    }
    if (them.hard === false) {
      return {
        side: 'this-device',
        text:
          "This device's NAT changes the port per destination (symmetric), so the peer cannot predict which port to answer on. " +
          "The peer's NAT keeps one port for all destinations, which is enough only if it also accepts packets from ports it has not sent to, and many routers do not." +
          portMappingNote(self),
        fix,
        short: "this device's NAT is symmetric",
        blocking: true,
      };
    }
    return {
      side: 'this-device',
      text:
        "This device's NAT changes the port per destination (symmetric). A direct path then depends on the peer having an endpoint-independent NAT, a port mapping or a public address, and the peer has not reported its NAT." +
        portMappingNote(self),
      fix,
      short: "this device's NAT is symmetric",
      blocking: false,
    };
  }
  if (themHard) {
    const fix = `Enable ${PORT_MAPPING_FIX} on the peer's router, or run the peer on a network with an endpoint-independent NAT.`;
    const lead = "The peer's NAT changes the port per destination (symmetric), so this device cannot predict where to send.";
    if (me.portMapped || self.natType === 'open') {
      return {
        side: 'peer',
        text: `${lead} This device ${me.portMapped ? 'has a port mapping' : 'has an open public address'}, so the peer should still reach it; the direct path may not be confirmed yet.`,
        fix: null,
        short: "the peer's NAT is symmetric",
        blocking: false,
      };
    }
    if (me.hard === false) {
      return {
        side: 'peer',
        text: `${lead} ${
          filtersStrictly
            ? "This device's NAT only accepts packets from addresses and ports it has sent to, so the peer's packets from its changing port are dropped."
            : 'That pairs only with a side whose NAT accepts packets from any port.'
        }`,
        fix,
        short: "the peer's NAT is symmetric",
        blocking: true,
      };
    }
    return {
      side: 'peer',
      text: `${lead} This device's NAT type is unknown, so a direct path may be impossible.`,
      fix: `${fix} Running netcheck here tells whether this side can help.`,
      short: "the peer's NAT is symmetric",
      blocking: false,
    };
  }
  if (me.hard === null && !me.portMapped && !me.publicAddr) {
    return {
      side: 'this-device',
      text: "This device's NAT mapping could not be determined (too few STUN servers answered), so it may be changing the port per destination.",
      fix: 'Run netcheck again; if it stays unknown, check that UDP to the relay servers (STUN, port 3478) is allowed.',
      short: "this device's NAT type is unknown",
      blocking: false,
    };
  }
  return null;
}

/** Blocking findings first (stable within each group). */
function sortFindings(fs: Finding[]): Finding[] {
  return [...fs.filter((f) => f.blocking), ...fs.filter((f) => !f.blocking)];
}

function portMappingNote(r: NetcheckReport | null): string {
  if (!r) return '';
  const pm = r.portMapping;
  const found = [pm.upnp && 'UPnP', pm.natpmp && 'NAT-PMP', pm.pcp && 'PCP'].filter((x): x is string => typeof x === 'string');
  if (found.length > 0 && pm.usable === false) {
    return ` The router offers ${found.join('/')}, but a mapping could not be used${pm.error ? `: ${pm.error}` : ''}.`;
  }
  if (found.length === 0) return ' No port mapping service (UPnP/NAT-PMP/PCP) answered on this network.';
  return '';
}

function relayName(self: NetcheckReport | null, peer: PeerView, opts: ExplainOptions): string {
  if (peer.path.kind !== 'relay') return 'a relay';
  const region = peer.path.region;
  const whose = peer.netInfo?.preferredDERP === region ? "the peer's home relay" : self?.preferredRegion === region ? "this device's home relay" : null;
  const name = opts.regionName?.(region);
  if (name) return `the ${name} relay (region ${region}${whose ? `, ${whose}` : ''})`;
  return `relay region ${region}${whose ? ` (${whose})` : ''}`;
}

function explainDirect(self: NetcheckReport | null, peer: PeerView): LinkExplanation {
  const p = peer.path;
  const where = p.kind === 'direct' ? ` to ${p.endpoint}, ${formatMs(p.latencyMs)}` : '';
  const reasons: LinkReason[] = [];
  if (self && effectivelyHard(selfFacts(self))) {
    reasons.push({
      side: 'this-device',
      text: "This device's NAT is symmetric, but the peer is reachable at a predictable address, so hole punching works from this side.",
      fix: null,
    });
  }
  return { verdict: 'direct', reasons, summary: `Direct over UDP${where}.` };
}

function explainOffline(peer: PeerView): LinkExplanation {
  const seen = peer.lastSeen ? ` (last seen ${peer.lastSeen})` : '';
  return {
    verdict: 'offline',
    reasons: [
      {
        side: 'peer',
        text: `The peer is not connected to the control server${seen}, so there is nothing to reach.`,
        fix: 'Start Weft (or Tailscale) on the peer and make sure it is online.',
      },
    ],
    summary: `Offline${seen}.`,
  };
}

function hostOf(endpoint: string): string {
  if (endpoint.startsWith('[')) return endpoint.slice(1, endpoint.indexOf(']'));
  const i = endpoint.lastIndexOf(':');
  return i > 0 && endpoint.indexOf(':') === i ? endpoint.slice(0, i) : endpoint;
}

function formatMs(ms: number): string {
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}
