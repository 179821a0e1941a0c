/**
 * The privileged state the engine keeps beside its WireGuard interface, as ports the engine drives from the netmap
 * and the operator's preferences (never from a client's request):
 *  - router: Weft's routing table and policy rules (router/linux.ts);
 *  - filter: the ACL from control enforced in the kernel (filter/), fail closed;
 *  - dns: MagicDNS at 100.100.100.100 and the OS's resolver configuration (dns/);
 *  - datapath: the kernel data path's port sharing (datapath/): WireGuard owns the public port, and disco and
 *    STUN reach Node's own socket through stateless nftables rewrites.
 * weftd builds the Linux implementation (system-linux.ts); tests with a fake interface run without one, and then
 * routes go to the interface itself and nothing is filtered. Pure types.
 */
import type { DnsStatus, FilterStatus } from '../../src-shared/model/tailnet.ts';
import type { FilterRule } from '../protocol/control/tailcfg.ts';
import type { NetMap } from './control/map-session.ts';
import type { LanPrefix } from './router/plan.ts';
import type { Router } from './router/linux.ts';

export interface FilterPort {
  /**
   * Enforces `rules` on inbound traffic to `selfAddrs` (null: no netmap yet, so nothing new may connect). Resolves
   * with null when in place, or with why not: then the last good filter stays in force.
   */
  apply(rules: readonly FilterRule[] | null, selfAddrs: readonly string[]): Promise<string | null>;
  status(): FilterStatus;
  /** The rules now enforced (null before the first filter from control). */
  enforced(): readonly FilterRule[] | null;
  /**
   * Checks that the enforced filter is still in the kernel and loads it again if someone removed it (e.g. a
   * firewall reload that flushes the whole ruleset). Never throws.
   */
  check(): Promise<void>;
  /** Removes the filter (clean exit, with the interface gone). Never throws. */
  remove(): Promise<void>;
}

export interface DnsPort {
  /** Restores what a previous run left (a resolv.conf after SIGKILL). Never throws. */
  cleanupAtStart(): Promise<void>;
  /** Serves MagicDNS from the netmap and points the OS at it (or not, without acceptDns). Never throws. */
  apply(nm: NetMap, o: { acceptDns: boolean; ipv6: boolean }): Promise<void>;
  status(): DnsStatus;
  /**
   * A periodic check: a resolv.conf someone else rewrote (NetworkManager, dhclient) becomes the new original and
   * MagicDNS is put back, a bounded number of times. Never throws.
   */
  check(): Promise<void>;
  /** Stops serving and gives the OS back its configuration. Never throws. */
  close(): Promise<void>;
}

export type DataPathMode = { mode: 'kernel' } | { mode: 'proxy'; reason: string };

export interface DataPathPort {
  /** Removes what a previous run left. Never throws. */
  cleanupAtStart(): Promise<unknown>;
  /** Puts the port sharing in place for public port P (WireGuard) and Node's port Q; says which mode holds. Never throws. */
  apply(ports: { publicPort: number; discoPort: number }): Promise<DataPathMode>;
  status(): DataPathMode;
  /** Puts the rules back if someone removed them (a firewall reload); says which mode holds. Never throws. */
  check(): Promise<DataPathMode>;
  /** Removes it (clean exit). Never throws. */
  remove(): Promise<unknown>;
}

export interface TailnetSystem {
  router: Router;
  filter: FilterPort;
  dns: DnsPort | null;
  /** The kernel data path; null keeps today's proxy design (every WireGuard packet through Node). */
  datapath?: DataPathPort | null;
  /** The host's directly connected networks now (other interfaces than Weft's). */
  lan(): LanPrefix[];
}

export { QUAD100_V4, QUAD100_V6 } from './constants.ts';
