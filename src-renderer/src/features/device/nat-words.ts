/** Words for the NAT report card (pure). */
import type { NatBehaviour, NatType, NetcheckReport } from '../../../../src-shared/model/netcheck.ts';

export const NAT_TYPE_TEXT: Readonly<Record<NatType, { title: string; detail: string }>> = {
  open: { title: 'Open', detail: 'A public address with nothing filtering inbound: any peer can reach this device directly.' },
  firewall: { title: 'Public, firewalled', detail: 'A public address behind a stateful firewall: direct paths work once both sides send.' },
  easy: { title: 'Easy NAT', detail: 'The NAT keeps one port for every destination: hole punching works with most peers.' },
  hard: { title: 'Hard NAT', detail: 'The NAT changes the port per destination (symmetric): direct paths need a peer with an easy NAT, a port mapping, or the relay.' },
  'udp-blocked': { title: 'UDP blocked', detail: 'No UDP gets out of this network: only the relay (over HTTPS) works.' },
  unknown: { title: 'Unknown', detail: 'UDP works, but too few servers answered to tell how the NAT maps ports.' },
};

export const BEHAVIOUR_TEXT: Readonly<Record<NatBehaviour, string>> = {
  'endpoint-independent': 'Endpoint-independent',
  'address-dependent': 'Address-dependent',
  'address-and-port-dependent': 'Address- and port-dependent',
  unknown: 'Unknown',
};

/** "UPnP, NAT-PMP (usable, 203.0.113.7)" / "None found" / "PCP (not usable: …)". */
export function portMappingText(r: NetcheckReport): string {
  const pm = r.portMapping;
  const found = [pm.upnp && 'UPnP', pm.natpmp && 'NAT-PMP', pm.pcp && 'PCP'].filter((x): x is string => typeof x === 'string');
  if (found.length === 0) return 'None found';
  const state = pm.usable === true ? `usable${pm.externalV4 ? `, ${pm.externalV4}` : ''}` : pm.usable === false ? `not usable${pm.error ? `: ${pm.error}` : ''}` : 'untested';
  return `${found.join(', ')} (${state})`;
}
