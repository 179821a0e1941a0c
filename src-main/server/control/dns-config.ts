/**
 * The DNS settings of `weft server` and the tailcfg.DNSConfig every node gets from them, as headscale fills it
 * (hscontrol/types/config.go dnsToTailcfgDNS; see the project reference tailnet-features §2.1). Pure.
 *
 *   MagicDNS on    Proxied: true (clients answer <name>.<base domain> at 100.100.100.100), Domains[0] = base domain
 *   nameservers    Resolvers [{Addr}] (headscale's override_local_dns, its code default): the nodes' default DNS
 *   search domains Domains[1…]
 *   split DNS      Routes {domain: [{Addr}]}; a domain without servers goes as null (answered locally)
 *   extra records  ExtraRecords [{Name, Type, Value}] (A and AAAA, the types clients use)
 *
 * Node names are <given>.<base domain>. with a base domain, else just <given> (control-protocol §9.3).
 * Defaults: MagicDNS on under DEFAULT_BASE_DOMAIN, no nameservers (nodes keep their own DNS for other names).
 */
import { ipToBytes } from '../../protocol/wire/addr.ts';

/** ".internal" is reserved for private use (ICANN, 2024), so it never collides with a public name. */
export const DEFAULT_BASE_DOMAIN = 'weft.internal';

export interface DnsSettings {
  magicDns: boolean;
  /** null: bare node names (then MagicDNS must be off). */
  baseDomain: string | null;
  nameservers: string[];
  searchDomains: string[];
  /** domain → its nameservers ([] = answered by the client itself). */
  split: Record<string, string[]>;
  extraRecords: { Name: string; Type: 'A' | 'AAAA'; Value: string }[];
}

export const DEFAULT_DNS: DnsSettings = { magicDns: true, baseDomain: DEFAULT_BASE_DOMAIN, nameservers: [], searchDomains: [], split: {}, extraRecords: [] };

/** No MagicDNS, bare names, nothing else: what the server sent before DNS settings existed. */
export const NO_DNS: DnsSettings = { magicDns: false, baseDomain: null, nameservers: [], searchDomains: [], split: {}, extraRecords: [] };

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** A DNS name in canonical form (lower case, no trailing dot), or null when it is not one. */
export function dnsName(text: string): string | null {
  const n = text.trim().toLowerCase().replace(/\.$/, '');
  if (n.length === 0 || n.length > 253) return null;
  return n.split('.').every((l) => LABEL.test(l)) ? n : null;
}

export type DnsCheck = { kind: 'ok'; settings: DnsSettings } | { kind: 'error'; error: string };

/** Checks and canonicalises settings (names, addresses), with a one-line reason for the first problem. */
export function checkDnsSettings(s: DnsSettings): DnsCheck {
  let base: string | null = null;
  if (s.baseDomain !== null) {
    base = dnsName(s.baseDomain);
    if (!base || !base.includes('.')) return { kind: 'error', error: `base domain "${s.baseDomain}" is not a DNS name with at least two labels (e.g. ${DEFAULT_BASE_DOMAIN})` };
  }
  if (s.magicDns && base === null) return { kind: 'error', error: 'MagicDNS needs a base domain' };
  for (const ns of s.nameservers) if (!ipToBytes(ns)) return { kind: 'error', error: `nameserver "${ns}" is not an IP address` };
  const search: string[] = [];
  for (const d of s.searchDomains) {
    const n = dnsName(d);
    if (!n) return { kind: 'error', error: `search domain "${d}" is not a DNS name` };
    search.push(n);
  }
  const split: Record<string, string[]> = {};
  for (const [d, servers] of Object.entries(s.split)) {
    const n = dnsName(d);
    if (!n) return { kind: 'error', error: `split DNS domain "${d}" is not a DNS name` };
    for (const ns of servers) if (!ipToBytes(ns)) return { kind: 'error', error: `split DNS server "${ns}" for ${d} is not an IP address` };
    split[n] = [...servers];
  }
  const records: DnsSettings['extraRecords'] = [];
  for (const r of s.extraRecords) {
    const n = dnsName(r.Name);
    const b = ipToBytes(r.Value);
    if (!n) return { kind: 'error', error: `extra record name "${r.Name}" is not a DNS name` };
    if (!b || (b.length === 4) !== (r.Type === 'A')) return { kind: 'error', error: `extra record ${r.Name}: "${r.Value}" is not an ${r.Type === 'A' ? 'IPv4' : 'IPv6'} address` };
    records.push({ Name: n, Type: r.Type, Value: r.Value });
  }
  return { kind: 'ok', settings: { magicDns: s.magicDns, baseDomain: base, nameservers: [...s.nameservers], searchDomains: search, split, extraRecords: records } };
}

/** An extra record from "NAME=IP" (the type from the address family). */
export function parseExtraRecord(text: string): DnsSettings['extraRecords'][number] | null {
  const i = text.indexOf('=');
  if (i <= 0) return null;
  const value = text.slice(i + 1).trim();
  const b = ipToBytes(value);
  if (!b) return null;
  return { Name: text.slice(0, i).trim(), Type: b.length === 4 ? 'A' : 'AAAA', Value: value };
}

/** A split-DNS route from "DOMAIN=IP[,IP…]" ("DOMAIN=" for none: answered by the client). */
export function parseSplitDns(text: string): [string, string[]] | null {
  const i = text.indexOf('=');
  if (i <= 0) return null;
  const servers = text
    .slice(i + 1)
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '');
  return [text.slice(0, i).trim(), servers];
}

/** The DNSConfig sent in maps; {} when there is nothing to say. */
export function dnsConfigOf(s: DnsSettings): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (s.nameservers.length > 0) out['Resolvers'] = s.nameservers.map((Addr) => ({ Addr }));
  const routes = Object.entries(s.split);
  if (routes.length > 0) out['Routes'] = Object.fromEntries(routes.map(([d, ns]) => [d, ns.length > 0 ? ns.map((Addr) => ({ Addr })) : null]));
  const domains = [...(s.baseDomain ? [s.baseDomain] : []), ...s.searchDomains];
  if (domains.length > 0) out['Domains'] = domains;
  if (s.magicDns) out['Proxied'] = true;
  if (s.extraRecords.length > 0) out['ExtraRecords'] = s.extraRecords.map((r) => ({ ...r }));
  return out;
}
