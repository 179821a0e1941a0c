/**
 * MagicDNS plan: what the resolver at 100.100.100.100 answers and forwards, and what the OS is told, derived from
 * the netmap's DNSConfig, the self node and the peers. Pure: no I/O, never throws on any input.
 *
 * What headscale sends (headscale hscontrol/types/config.go `dnsToTailcfgDNS`, mapper `generateDNSConfig`):
 *   - `Proxied` = `dns.magic_dns`; node `Name`s are "<given>.<base_domain>.";
 *   - `Domains` = [base_domain, ...search_domains], the OS's search domains;
 *   - `Resolvers` = `nameservers.global` when `override_local_dns` is on (else they go to FallbackResolvers,
 *     which tailscaled uses only with an exit node, and which Weft ignores here);
 *   - `Routes` = `nameservers.split`, `{domain: [{Addr}]}`, where a `null` or empty list means "answer locally";
 *   - `ExtraRecords` [{Name, Type, Value}]: only A and AAAA take effect (headscale docs/ref/dns.md).
 *
 * What is derived, as tailscaled does (Tailscale ipn/ipnlocal/node_backend.go `dnsConfigForNetmap`, local.go
 * `magicDNSRootDomains`; net/dns/manager.go `compileConfig`):
 *   - records: every node Name and ExtraRecord, one A/AAAA set each. ExtraRecords win over a node of the same
 *     name. A dual-stack node's IPv6 addresses are served only when the self node has the `magicdns-aaaa`
 *     capability or is IPv6-only (the IPv6 addresses still get PTR records);
 *   - with `Proxied`: the MagicDNS suffix (self Name minus its first label), `0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa.`
 *     and the 64 zones `64.100.in-addr.arpa.` … `127.100.in-addr.arpa.` are answered authoritatively (NXDOMAIN
 *     for unknown names), as is every split route with no resolvers, and every ExtraRecord name no route covers;
 *   - the default route `"."`: the override `Resolvers`, or else the OS's own previous nameservers (without the
 *     quad-100 addresses, which would loop: Tailscale issue 7816) when the OS cannot do split DNS;
 *   - the OS is pointed at quad-100 whenever it has something to answer or forward (simplified from the
 *     compileConfig table): match domains are empty when quad-100 has a `"."` route (resolved then gets `~.` and
 *     default-route), else every suffix quad-100 answers or forwards. Search domains a resolved link would route
 *     to quad-100 with nowhere to forward them are left out (they would only get SERVFAIL).
 *
 * Bad entries (a DoH resolver, a malformed address or name, an unsupported record type) are skipped and listed in
 * `problems`. Only a config that cannot be used at all (no self node yet, or MagicDNS on without a suffix) gives
 * `ok: false`, and then the caller keeps its last good plan.
 */
import type { DnsConfig, Node } from '../../protocol/control/tailcfg.ts';
import { bytesToIp, formatAddr, ipToBytes, parseHostPort } from '../../protocol/wire/addr.ts';

/** quad-100: the MagicDNS resolver's addresses (Tailscale net/tsaddr) and the name they answer to. */
export { QUAD100_V4, QUAD100_V6 } from '../constants.ts';
import { QUAD100_V4, QUAD100_V6 } from '../constants.ts';
export const QUAD100_NAME = 'magicdns.localhost-tailscale-daemon.';

/** The IPv6 reverse zone of the tailnet ULA fd7a:115c:a1e0::/48. */
export const TAILNET_V6_REVERSE_ZONE = '0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa.';

/** Node attribute that turns on AAAA answers for dual-stack peers (Tailscale tailcfg `NodeAttrMagicDNSPeerAAAA`). */
export const CAP_MAGICDNS_AAAA = 'magicdns-aaaa';

/** The addresses one name resolves to, in the order received; A answers use v4[0], AAAA answers v6[0]. */
export interface AddrSet {
  readonly v4: readonly string[];
  readonly v6: readonly string[];
}

/** What the OS resolver used before Weft (read from resolv.conf or its backup). */
export interface OsBase {
  readonly nameservers: readonly string[];
  readonly searchDomains: readonly string[];
}

/** What the OS is told. Domains are written without the trailing dot ("corp.example"). */
export interface OsDnsConfig {
  /** Name servers for the Weft link (resolved) or for resolv.conf (direct). */
  readonly nameservers: readonly string[];
  readonly searchDomains: readonly string[];
  /** Routing-only domains (resolved `~domain`). Empty = this link takes every query (`~.`, default-route). */
  readonly matchDomains: readonly string[];
}

export interface DnsPlan {
  /** Lowercased FQDN with trailing dot → addresses. */
  readonly records: ReadonlyMap<string, AddrSet>;
  /** Canonical IP text → FQDN (PTR). */
  readonly reverse: ReadonlyMap<string, string>;
  /** Suffixes (FQDNs) answered authoritatively: unknown names under them get NXDOMAIN. Sorted. */
  readonly localSuffixes: readonly string[];
  /**
   * Suffix (FQDN, `"."` for the default) → upstream resolvers as "ip:port" / "[v6]:port". An empty list means the
   * route exists but none of its resolvers is usable: queries under it get SERVFAIL rather than leak to `"."`.
   */
  readonly routes: ReadonlyMap<string, readonly string[]>;
  /** The MagicDNS suffix (FQDN) when `Proxied`, else null; single-label queries are expanded under it. */
  readonly magicSuffix: string | null;
  /** What the OS gets; null when accept-dns is off or the netmap has no DNSConfig. */
  readonly os: OsDnsConfig | null;
  /** Entries that were skipped, for people. */
  readonly problems: readonly string[];
}

/** The fields of a node the plan reads. */
export type DnsNode = Pick<Node, 'Name' | 'Addresses' | 'CapMap'>;

export interface DnsPlanInput {
  dnsConfig: DnsConfig | null | undefined;
  self: DnsNode | null;
  peers: Iterable<DnsNode>;
  /** The operator's accept-dns setting. */
  acceptDns: boolean;
  /**
   * The OS's pre-Weft resolver config when the OS cannot do split DNS (direct resolv.conf): its nameservers become
   * quad-100's `"."` route unless headscale overrides local DNS. null for systemd-resolved, which keeps routing
   * other names to its other links itself.
   */
  osBase: OsBase | null;
}

export type DnsPlanResult = { ok: true; plan: DnsPlan } | { ok: false; error: string; problems: readonly string[] };

const MAX_NAME = 253;

/** Lowercases ASCII letters only (DNS names compare case-insensitively in ASCII, RFC 4343). */
export function lowerAscii(s: string): string {
  return s.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/**
 * The lowercased FQDN (trailing dot) of a domain name, or null when it is not a usable host/domain name:
 * labels of 1–63 letters, digits, '-' or '_' (no '-' at either end), at most 253 characters. "." stays ".".
 */
export function normalizeFqdn(name: string): string | null {
  if (name === '.') return '.';
  const bare = name.endsWith('.') ? name.slice(0, -1) : name;
  if (bare.length === 0 || bare.length > MAX_NAME) return null;
  for (const label of bare.split('.')) {
    if (label.length > 63 || !/^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?$/.test(label)) return null;
  }
  return `${lowerAscii(bare)}.`;
}

/** Whether FQDN `name` is `suffix` or below it; "." contains every name. */
export function underSuffix(name: string, suffix: string): boolean {
  return suffix === '.' || name === suffix || name.endsWith(`.${suffix}`);
}

/** A domain as the OS wants it: no trailing dot (the root stays "."). */
export function osDomain(fqdn: string): string {
  return fqdn === '.' ? '.' : fqdn.replace(/\.$/, '');
}

/** Canonical IP text of a plain address, or null. */
function canonicalIp(text: string): { ip: string; family: 4 | 6 } | null {
  if (text.length === 0 || text.length > 45 || text.includes('%')) return null;
  const b = ipToBytes(text);
  if (!b) return null;
  return { ip: bytesToIp(b), family: b.length === 4 ? 4 : 6 };
}

/** A node's host address ("100.64.0.1/32" or a bare address), or null for anything wider. */
function hostAddress(prefix: string): { ip: string; family: 4 | 6 } | null {
  const slash = prefix.indexOf('/');
  const a = canonicalIp(slash < 0 ? prefix : prefix.slice(0, slash));
  if (!a) return null;
  if (slash >= 0 && prefix.slice(slash + 1) !== (a.family === 4 ? '32' : '128')) return null;
  return a;
}

/**
 * An upstream resolver as "ip:port" ("[v6]:port" for IPv6): a plain address means port 53, "ip:port" and
 * "[v6]:port" keep their port. DoH/DoT URLs and host names are not supported (null, with the reason).
 */
export function parseResolverAddr(addr: string): { upstream: string; ip: string } | { error: string } {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(addr)) return { error: `resolver ${addr}: DNS over HTTPS/TLS is not supported` };
  const bare = canonicalIp(addr);
  if (bare) return { upstream: formatAddr({ ip: bare.ip, port: 53 }), ip: bare.ip };
  const hp = parseHostPort(addr);
  const ip = hp ? canonicalIp(hp.host) : null;
  if (!hp || !ip) return { error: `resolver ${JSON.stringify(addr)}: not an IP address or ip:port` };
  return { upstream: formatAddr({ ip: ip.ip, port: hp.port }), ip: ip.ip };
}

/** The reverse zones quad-100 owns when MagicDNS is on: the ULA /48 and 100.64.0.0/10. */
function magicReverseZones(): string[] {
  const out = [TAILNET_V6_REVERSE_ZONE];
  for (let i = 64; i <= 127; i++) out.push(`${i}.100.in-addr.arpa.`);
  return out;
}

function isQuad100(ip: string): boolean {
  const a = canonicalIp(ip);
  return a !== null && (a.ip === QUAD100_V4 || a.ip === QUAD100_V6);
}

function hasCap(n: DnsNode, cap: string): boolean {
  return n.CapMap !== undefined && n.CapMap !== null && Object.prototype.hasOwnProperty.call(n.CapMap, cap);
}

/** The OS's previous nameservers, canonical and deduplicated, without quad-100 (which would loop). */
function baseNameservers(osBase: OsBase | null): string[] {
  const out: string[] = [];
  for (const ns of osBase?.nameservers ?? []) {
    const a = canonicalIp(ns);
    if (a && !isQuad100(a.ip) && !out.includes(a.ip)) out.push(a.ip);
  }
  return out;
}

interface MutableAddrs {
  v4: string[];
  v6: string[];
}

/** Builds the MagicDNS plan (see the file comment). */
export function dnsPlan(input: DnsPlanInput): DnsPlanResult {
  const problems: string[] = [];
  const { self, dnsConfig: dc, acceptDns, osBase } = input;
  if (!self) return { ok: false, error: 'no self node yet', problems };

  // --- records -------------------------------------------------------------------------------------------
  const selfAddrs = self.Addresses.map(hostAddress).filter((a) => a !== null);
  const selfHas4 = selfAddrs.some((a) => a.family === 4);
  const selfHas6 = selfAddrs.some((a) => a.family === 6);
  const wantAAAA = hasCap(self, CAP_MAGICDNS_AAAA) || (selfHas6 && !selfHas4);

  const nodeRecords = new Map<string, MutableAddrs>();
  const reverse = new Map<string, string>();
  const claimPtr = (ip: string, fqdn: string): void => {
    if (!reverse.has(ip)) reverse.set(ip, fqdn);
  };
  const addNode = (n: DnsNode, what: string): void => {
    if (n.Name === '') return;
    const fqdn = normalizeFqdn(n.Name);
    if (!fqdn || fqdn === '.') {
      problems.push(`${what}: name ${JSON.stringify(n.Name)} is not a DNS name`);
      return;
    }
    const addrs = n.Addresses.map(hostAddress).filter((a) => a !== null);
    if (addrs.length === 0) return;
    const has4 = addrs.some((a) => a.family === 4);
    const set = nodeRecords.get(fqdn) ?? { v4: [], v6: [] };
    for (const a of addrs) {
      claimPtr(a.ip, fqdn);
      if (a.family === 4) set.v4.push(a.ip);
      else if (wantAAAA || !has4) set.v6.push(a.ip);
    }
    nodeRecords.set(fqdn, set);
  };
  addNode(self, 'self node');
  // Peers in name order, so that PTR ties resolve the same way on every run.
  const peers = [...input.peers].sort((a, b) => (a.Name < b.Name ? -1 : a.Name > b.Name ? 1 : 0));
  for (const p of peers) addNode(p, 'peer');

  const extraRecords = new Map<string, MutableAddrs>();
  for (const rec of dc?.ExtraRecords ?? []) {
    const type = rec.Type.toUpperCase();
    if (type !== '' && type !== 'A' && type !== 'AAAA') {
      problems.push(`extra record ${rec.Name} ${rec.Type}: only A and AAAA records are served`);
      continue;
    }
    const fqdn = normalizeFqdn(rec.Name);
    if (!fqdn || fqdn === '.') {
      problems.push(`extra record ${JSON.stringify(rec.Name)}: not a DNS name`);
      continue;
    }
    const ip = canonicalIp(rec.Value.trim());
    if (!ip) {
      problems.push(`extra record ${rec.Name}: ${JSON.stringify(rec.Value)} is not an IP address`);
      continue;
    }
    const set = extraRecords.get(fqdn) ?? { v4: [], v6: [] };
    (ip.family === 4 ? set.v4 : set.v6).push(ip.ip);
    extraRecords.set(fqdn, set);
  }
  for (const [fqdn, set] of extraRecords) for (const ip of [...set.v4, ...set.v6]) claimPtr(ip, fqdn);

  const records = new Map<string, AddrSet>();
  for (const [k, v] of nodeRecords) records.set(k, { v4: v.v4, v6: v.v6 });
  for (const [k, v] of extraRecords) records.set(k, { v4: v.v4, v6: v.v6 });
  records.set(QUAD100_NAME, { v4: [QUAD100_V4], v6: [QUAD100_V6] });
  reverse.set(QUAD100_V4, QUAD100_NAME);
  reverse.set(QUAD100_V6, QUAD100_NAME);

  // --- local suffixes and routes -------------------------------------------------------------------------
  const local = new Set<string>();
  let magicSuffix: string | null = null;
  if (dc?.Proxied) {
    const selfName = normalizeFqdn(self.Name);
    const dot = selfName ? selfName.indexOf('.') : -1;
    const suffix = selfName && dot >= 0 && dot < selfName.length - 1 ? selfName.slice(dot + 1) : null;
    if (!suffix) return { ok: false, error: `MagicDNS is on but the self name ${JSON.stringify(self.Name)} has no domain`, problems };
    magicSuffix = suffix;
    local.add(suffix);
    for (const z of magicReverseZones()) local.add(z);
  }

  const splitRoutes = new Map<string, string[]>();
  for (const [domain, resolvers] of Object.entries(dc?.Routes ?? {})) {
    const fqdn = normalizeFqdn(domain);
    if (!fqdn || fqdn === '.') {
      problems.push(`split DNS route ${JSON.stringify(domain)}: not a domain name`);
      continue;
    }
    if (resolvers === null || resolvers.length === 0) {
      local.add(fqdn);
      continue;
    }
    const ups: string[] = [];
    for (const r of resolvers) {
      const p = parseResolverAddr(r.Addr);
      if ('error' in p) problems.push(`split DNS route ${domain}: ${p.error}`);
      else if (isQuad100(p.ip)) problems.push(`split DNS route ${domain}: ${r.Addr} is quad-100 itself`);
      else if (!ups.includes(p.upstream)) ups.push(p.upstream);
    }
    if (ups.length === 0) problems.push(`split DNS route ${domain}: no usable resolver; its names get SERVFAIL`);
    // A domain both routed and answered locally stays local (the empty route wins, as a nil route does in Tailscale).
    if (!local.has(fqdn)) splitRoutes.set(fqdn, ups);
  }
  for (const fqdn of splitRoutes.keys()) if (local.has(fqdn)) splitRoutes.delete(fqdn);

  // An ExtraRecord outside every route gets a local route of its own, so that the OS sends it to quad-100.
  const covered = (name: string): boolean => [...local, ...splitRoutes.keys()].some((s) => underSuffix(name, s));
  for (const fqdn of extraRecords.keys()) if (!covered(fqdn)) local.add(fqdn);

  const overrideUps: string[] = [];
  const overrideGiven = (dc?.Resolvers ?? []).length > 0;
  for (const r of dc?.Resolvers ?? []) {
    const p = parseResolverAddr(r.Addr);
    if ('error' in p) problems.push(`global resolver: ${p.error}`);
    else if (isQuad100(p.ip)) problems.push(`global resolver ${r.Addr} is quad-100 itself`);
    else if (!overrideUps.includes(p.upstream)) overrideUps.push(p.upstream);
  }
  if (overrideGiven && overrideUps.length === 0) problems.push('no usable global resolver; the system resolvers are used instead');

  const routes = new Map<string, readonly string[]>();
  const base = baseNameservers(osBase).map((ip) => formatAddr({ ip, port: 53 }));
  if (overrideUps.length > 0) routes.set('.', overrideUps);
  else if (base.length > 0) routes.set('.', base);
  for (const [k, v] of splitRoutes) routes.set(k, v);

  const localSuffixes = [...local].sort();

  // --- the OS ----------------------------------------------------------------------------------------------
  let os: OsDnsConfig | null = null;
  if (acceptDns && dc) {
    const useQuad100 = local.size > 0 || splitRoutes.size > 0 || overrideUps.length > 0;
    const hasDefault = routes.has('.');
    const search: string[] = [];
    const addSearch = (d: string, from: string): void => {
      const fqdn = normalizeFqdn(d);
      if (!fqdn || fqdn === '.') {
        problems.push(`${from} ${JSON.stringify(d)}: not a domain name`);
        return;
      }
      // resolved routes search domains too; one quad-100 cannot forward would only get SERVFAIL (see above).
      if (useQuad100 && !hasDefault && !covered(fqdn)) {
        problems.push(`search domain ${osDomain(fqdn)} left out: no resolver for it without a default route`);
        return;
      }
      if (!search.includes(osDomain(fqdn))) search.push(osDomain(fqdn));
    };
    for (const d of dc.Domains ?? []) addSearch(d, 'search domain');
    // A direct resolv.conf is rewritten whole: the system's own search domains stay in it.
    if (osBase) for (const d of osBase.searchDomains) addSearch(d, 'system search domain');

    let nameservers: string[];
    if (useQuad100) nameservers = selfHas6 ? [QUAD100_V4, QUAD100_V6] : [QUAD100_V4];
    else nameservers = baseNameservers(osBase);
    const matchDomains = useQuad100 && !hasDefault ? [...new Set([...localSuffixes, ...splitRoutes.keys()])].sort().map(osDomain) : [];
    os = { nameservers, searchDomains: search, matchDomains };
  }

  return { ok: true, plan: { records, reverse, localSuffixes, routes, magicSuffix, os, problems } };
}
