/**
 * A parsed policy (parse.ts) resolved against the tailnet: the packet filter each node gets and which nodes see
 * each other, as headscale 0.29.2 computes them (hscontrol/policy/v2 filter.go, types.go; policyutil/reduce.go;
 * BuildPeerMap). Pure.
 *
 *   aliases    "*", user@ (the user's untagged nodes), group:x (its users), tag:x (nodes carrying it), a hosts
 *              name or an IP/CIDR (masked), autogroup:member (untagged nodes), autogroup:tagged,
 *              autogroup:internet (dst only), autogroup:danger-all (src only: "*")
 *   rules      one per ACL destination, then rules with equal SrcIPs and IPProto merged into the first one's place
 *              (their DstPorts concatenated); a rule whose sources or destinations resolve to nothing is dropped
 *   SrcIPs     "*" as the CGNAT range without ChromeOS's 100.115.92.0/23, and fd7a:115c:a1e0::/48; other sets
 *              as ipset.ts `toStrings` (bare IP, exact CIDR, or "a-b" range)
 *   DstPorts   per destination, its prefixes in address order (single addresses bare), each with every port range
 *              as written; "*" stays "*"
 *   per node   only the DstPorts entries that contain one of its addresses, overlap one of its subnet routes, or
 *              (an exit node) lie inside autogroup:internet; rules left empty are dropped, so a node no rule
 *              reaches gets [] (deny all inbound)
 *   peers      a and b see each other when a rule lets a (its addresses or its subnet routes) reach b (its
 *              addresses, its subnet routes, or the internet when b is an exit node), or the other way round
 *              (ports and protocols ignored)
 *   routes     a viewer gets a peer's route when some rule lets it (or its subnets) reach the route, or lets the
 *              route reach it (return traffic)
 *   no "acls"  allow-all for everyone, everyone sees everyone and every route (headscale without a policy)
 *
 * Errors that need the tailnet (an unknown user, an undefined group, tag or host) come back with the line and
 * column of the entry that names them. headscale logs an unknown user and resolves it to nothing; Weft refuses
 * it, since a typo there silently cuts people off.
 *
 * Subnet routes here are a node's approved ∩ announced ones (server/routes/routes.ts), primary or not: a standby
 * router gets the same filter as the primary, as in headscale (policyutil/reduce.go, policy/v2 BuildPeerMap,
 * types/node.go CanAccessRoute). "*" as a source also covers every node's subnet routes.
 *
 * Not yet: autogroup:self; grants.
 */
import { IpSet, ipSetOf, parseRange, type IpRange } from './ipset.ts';
import { exitRoutes, sortPrefixes, subnetRoutes } from '../routes/routes.ts';
import type { JsonPath, ParsedPolicy, PolicyError, PortRange } from './parse.ts';

export interface PolicyNode {
  id: number;
  ipv4: string;
  ipv6: string;
  /** The owning user's name (for user@ aliases); tagged nodes belong to no user in headscale 0.29. */
  user: string;
  tags: readonly string[];
  /** Its subnet routes (approved ∩ announced, no /0s), canonical prefixes. */
  routes?: readonly string[];
  /** Whether it is an approved exit node. */
  exit?: boolean;
}

export interface PolicyWorld {
  users: readonly string[];
  nodes: readonly PolicyNode[];
}

export interface WireFilterRule {
  SrcIPs: string[];
  DstPorts: { IP: string; Ports: { First: number; Last: number } }[];
  IPProto?: number[];
}

export const FILTER_ALLOW_ALL: WireFilterRule[] = [{ SrcIPs: ['*'], DstPorts: [{ IP: '*', Ports: { First: 0, Last: 65535 } }] }];

export interface CompiledPolicy {
  /** The tailnet-wide rules before per-node reduction; null: allow all (no "acls"). */
  readonly rules: readonly WireFilterRule[] | null;
  /** The filter node `id` gets. */
  filterFor(id: number): WireFilterRule[];
  /** Whether a and b are in each other's maps. */
  canSee(a: number, b: number): boolean;
  /** Whether node `viewer` gets `route` (a canonical prefix another node serves) in that node's AllowedIPs. */
  routeVisible(viewer: number, route: string): boolean;
}

/** The CGNAT range Tailscale addresses come from, without the part ChromeOS uses (headscale's "*" source). */
const CGNAT_NO_CHROMEOS = IpSet.of([parseRange('100.64.0.0/10')!]).minus(IpSet.of([parseRange('100.115.92.0/23')!]));
const TAILSCALE_ULA = IpSet.of([parseRange('fd7a:115c:a1e0::/48')!]);
const STAR_SRC = [...CGNAT_NO_CHROMEOS.toStrings(), ...TAILSCALE_ULA.toStrings()];

/** headscale's "TheInternet": all public unicast space (util/net.go), what autogroup:internet stands for. */
export const THE_INTERNET: IpSet = IpSet.of([parseRange('0.0.0.0/0')!, parseRange('2000::/3')!]).minus(
  IpSet.of(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '169.254.0.0/16', 'fc00::/7', 'fe80::/10', 'fd7a:115c:a1e0::/48'].map((p) => parseRange(p)!)),
);

/** The minimal CIDR blocks covering a range, in order. */
function rangePrefixes(r: IpRange): IpRange[] {
  const bits = r.family === 4 ? 32 : 128;
  const out: IpRange[] = [];
  let first = r.first;
  while (first <= r.last) {
    // The largest aligned block starting at `first` that stays within the range.
    let size = 1n;
    while (size < 1n << BigInt(bits) && (first & (size * 2n - 1n)) === 0n && first + size * 2n - 1n <= r.last) size *= 2n;
    out.push({ family: r.family, first, last: first + size - 1n });
    first += size;
  }
  return out;
}

/** A set as destination prefixes: its minimal CIDR split, single addresses bare (headscale's Prefixes()). */
function dstPrefixes(s: IpSet): { text: string; set: IpSet }[] {
  return s.ranges.flatMap(rangePrefixes).map((r) => {
    const set = IpSet.of([r]);
    return { text: set.toStrings()[0]!, set };
  });
}

type Resolved = { kind: 'set'; set: IpSet } | { kind: 'star' } | { kind: 'all' };

/** A node's addresses, parsed once per compile. */
const parsedIps = new WeakMap<PolicyNode, IpRange[]>();
function rangesOf(n: PolicyNode): IpRange[] {
  let r = parsedIps.get(n);
  if (!r) parsedIps.set(n, (r = [n.ipv4, n.ipv6].map((ip) => parseRange(ip)).filter((x): x is IpRange => x !== null)));
  return r;
}

function nodeSet(nodes: readonly PolicyNode[]): IpSet {
  return IpSet.of(nodes.flatMap(rangesOf));
}

/** A node's subnet routes as a set, parsed once per compile. */
const parsedRoutes = new WeakMap<PolicyNode, IpSet>();
function routeSetOf(n: PolicyNode): IpSet {
  let r = parsedRoutes.get(n);
  if (!r) parsedRoutes.set(n, (r = IpSet.of((n.routes ?? []).map((p) => parseRange(p)).filter((x): x is IpRange => x !== null))));
  return r;
}

const EXIT_V4 = IpSet.of([parseRange('0.0.0.0/0')!]);
const EXIT_V6 = IpSet.of([parseRange('::/0')!]);

export type CompileResult = { kind: 'ok'; compiled: CompiledPolicy } | { kind: 'error'; errors: PolicyError[] };

export interface CompileOptions {
  /**
   * 'error' (loading or checking a policy): an unknown user is an error. 'empty' (a policy already in force, after
   * a user was deleted): it stands for no nodes, as headscale resolves it, and is reported through `warn`.
   */
  unknownUsers?: 'error' | 'empty';
  /** Each unknown user under 'empty', with the alias as written. */
  warn?: (e: PolicyError, alias: string) => void;
}

export function compilePolicy(parsed: Extract<ParsedPolicy, { kind: 'ok' }>, world: PolicyWorld, opts: CompileOptions = {}): CompileResult {
  const { doc, locate } = parsed;
  const errors: PolicyError[] = [];
  const fail = (at: JsonPath, message: string): void => void errors.push({ ...locate(at), message });
  const users = new Set(world.users);
  const untagged = world.nodes.filter((n) => n.tags.length === 0);

  const userName = (alias: string): string => (alias.endsWith('@') ? alias.slice(0, -1) : alias);
  const checkUser = (alias: string, at: JsonPath): boolean => {
    if (users.has(userName(alias)) || users.has(alias)) return true;
    const e = { ...locate(at), message: `unknown user "${alias}" (users: ${[...users].sort().join(', ') || 'none'})` };
    if (opts.unknownUsers === 'empty') {
      opts.warn?.(e, alias);
      return true; // resolves to no nodes
    }
    errors.push(e);
    return false;
  };
  const usersNodes = (alias: string): PolicyNode[] => untagged.filter((n) => n.user === userName(alias) || n.user === alias);

  // Definitions first: groups' users, tag owners, hosts.
  for (const g of doc.groups.values()) g.members.forEach((m, i) => m.includes('@') && checkUser(m, [...g.at, i]));
  const hostSets = new Map<string, IpSet>();
  for (const [name, h] of doc.hosts) {
    const r = ipSetOf([h.value], { allowHostBits: true });
    if ('bad' in r) fail(h.at, `host "${name}": "${h.value}" is not an IP address or prefix`);
    else hostSets.set(name, r.set);
  }
  const checkOwner = (o: string, at: JsonPath): void => {
    if (o.startsWith('group:')) {
      if (!doc.groups.has(o)) fail(at, `group not defined in policy: "${o}"`);
    } else if (o.startsWith('tag:')) {
      if (!doc.tagOwners.has(o)) fail(at, `tag not found: "${o}"`);
    } else if (o.includes('@')) checkUser(o, at);
    else fail(at, `invalid owner "${o}" (expected user@, group:… or tag:…)`);
  };
  for (const [, t] of doc.tagOwners) t.owners.forEach((o, i) => checkOwner(o, [...t.at, i]));
  for (const [prefix, r] of doc.autoApprovers.routes) {
    if (!parseRange(prefix)) fail(r.at, `autoApprovers.routes: "${prefix}" is not a prefix`);
    r.approvers.forEach((o, i) => checkOwner(o, [...r.at, i]));
  }
  doc.autoApprovers.exitNode.forEach((o, i) => checkOwner(o, [...(doc.autoApprovers.exitAt ?? []), i]));

  /** An alias as a set of addresses; null (and an error) when it names nothing defined. */
  const resolve = (alias: string, side: 'src' | 'dst', at: JsonPath): Resolved | null => {
    if (alias === '*') return { kind: side === 'src' ? 'star' : 'all' };
    if (alias.startsWith('autogroup:')) {
      switch (alias) {
        case 'autogroup:member':
          return { kind: 'set', set: nodeSet(untagged) };
        case 'autogroup:tagged':
          return { kind: 'set', set: nodeSet(world.nodes.filter((n) => n.tags.length > 0)) };
        case 'autogroup:internet':
          if (side === 'src') break;
          return { kind: 'set', set: THE_INTERNET };
        case 'autogroup:danger-all':
          if (side === 'dst') break;
          return { kind: 'all' };
        case 'autogroup:self':
          fail(at, '"autogroup:self" is not supported by weft server yet');
          return null;
        default:
      }
      fail(at, `autogroup not supported for ACL ${side === 'src' ? 'sources' : 'destinations'}: "${alias}"`);
      return null;
    }
    if (alias.startsWith('group:')) {
      const g = doc.groups.get(alias);
      if (!g) {
        fail(at, `group not defined in policy: "${alias}"`);
        return null;
      }
      return { kind: 'set', set: nodeSet(g.members.flatMap(usersNodes)) };
    }
    if (alias.startsWith('tag:')) {
      if (!doc.tagOwners.has(alias)) {
        fail(at, `${side}="${alias}": tag not found: "${alias}"`);
        return null;
      }
      return { kind: 'set', set: nodeSet(world.nodes.filter((n) => n.tags.includes(alias))) };
    }
    if (alias.includes('@')) return checkUser(alias, at) ? { kind: 'set', set: nodeSet(usersNodes(alias)) } : null;
    const host = hostSets.get(alias);
    if (host) return { kind: 'set', set: host };
    if (doc.hosts.has(alias)) return null; // its own error was reported above
    const lit = ipSetOf([alias], { allowHostBits: true });
    if ('set' in lit) return { kind: 'set', set: lit.set };
    fail(at, `host not defined in policy: "${alias}"`);
    return null;
  };

  if (doc.acls === null) {
    if (errors.length > 0) return { kind: 'error', errors };
    return { kind: 'ok', compiled: { rules: null, filterFor: () => FILTER_ALLOW_ALL.map((r) => ({ ...r })), canSee: () => true, routeVisible: () => true } };
  }

  interface Rule {
    wire: WireFilterRule;
    /** Every address the sources cover (for peer visibility). */
    src: IpSet | 'all';
    /** Per DstPorts entry, its addresses (null: "*"). */
    dsts: (IpSet | null)[];
  }
  // Every node's subnet routes: "*" as a source covers them too, each written as its own string.
  const allRoutes = sortPrefixes([...new Set(world.nodes.flatMap((n) => n.routes ?? []))]);
  const allRouteSet = IpSet.of(allRoutes.map((p) => parseRange(p)).filter((x): x is IpRange => x !== null));
  const rules: Rule[] = [];
  const byKey = new Map<string, Rule>();
  for (const acl of doc.acls) {
    const srcs = acl.src.map((s) => resolve(s.alias, 'src', s.at));
    const dsts = acl.dst.map((d) => ({ d, r: resolve(d.alias, 'dst', d.at) }));
    if (srcs.some((s) => s === null) || dsts.some((x) => x.r === null)) continue;
    let srcSet = IpSet.EMPTY;
    let star = false;
    let all = false;
    for (const s of srcs) {
      if (s!.kind === 'star') star = true;
      else if (s!.kind === 'all') all = true;
      else srcSet = srcSet.union(s!.set);
    }
    const srcStrings = all ? ['*'] : star ? [...new Set([...STAR_SRC, ...allRoutes, ...srcSet.toStrings()])] : srcSet.toStrings();
    if (srcStrings.length === 0) continue;
    const srcCover: IpSet | 'all' = all ? 'all' : star ? CGNAT_NO_CHROMEOS.union(TAILSCALE_ULA).union(allRouteSet).union(srcSet) : srcSet;
    for (const { d, r } of dsts) {
      const entries: WireFilterRule['DstPorts'] = [];
      const entrySets: (IpSet | null)[] = [];
      const push = (ip: string, set: IpSet | null, ports: PortRange[]): void => {
        for (const p of ports) {
          entries.push({ IP: ip, Ports: { First: p.first, Last: p.last } });
          entrySets.push(set);
        }
      };
      if (r!.kind === 'set') {
        for (const prefix of dstPrefixes(r!.set)) push(prefix.text, prefix.set, d.ports);
      } else push('*', null, d.ports);
      if (entries.length === 0) continue;
      const wire: WireFilterRule = { SrcIPs: srcStrings, DstPorts: entries, ...(acl.proto !== null ? { IPProto: [acl.proto] } : {}) };
      const key = `${wire.SrcIPs.join(',')}|${(wire.IPProto ?? []).join(',')}`;
      const prev = byKey.get(key);
      if (prev) {
        prev.wire.DstPorts.push(...entries);
        prev.dsts.push(...entrySets);
        continue;
      }
      const rule: Rule = { wire, src: srcCover, dsts: entrySets };
      byKey.set(key, rule);
      rules.push(rule);
    }
  }
  if (errors.length > 0) return { kind: 'error', errors };

  // Index once which nodes each DstPorts entry covers (a single address is looked up, a wider prefix scans), so
  // that a node's filter and who reaches whom cost the node's own entries, not all of them.
  const byAddr = new Map<string, PolicyNode>();
  for (const n of world.nodes) for (const r of rangesOf(n)) byAddr.set(`${r.family}:${r.first}`, n);
  const inSet = (set: IpSet | 'all', n: PolicyNode): boolean => set === 'all' || rangesOf(n).some((r) => set.hasAddr(r.family, r.first));
  /** Per rule: the entries that cover every node ("*"), and per node the entries that cover it. */
  const everyone = new Map<Rule, number[]>();
  const entriesOf = new Map<number, Map<Rule, number[]>>();
  const srcOf = new Map<number, Rule[]>();
  const dstOfRule = new Map<Rule, Set<number> | 'all'>();
  const addEntry = (id: number, r: Rule, i: number): void => {
    let m = entriesOf.get(id);
    if (!m) entriesOf.set(id, (m = new Map()));
    const l = m.get(r);
    if (!l) m.set(r, [i]);
    else if (l[l.length - 1] !== i) l.push(i);
  };
  for (const r of rules) {
    const dst = new Set<number>();
    let all = false;
    r.dsts.forEach((set, i) => {
      if (set === null) {
        all = true;
        (everyone.get(r) ?? everyone.set(r, []).get(r)!).push(i);
        return;
      }
      for (const range of set.ranges) {
        if (range.first === range.last) {
          const n = byAddr.get(`${range.family}:${range.first}`);
          if (n) {
            dst.add(n.id);
            addEntry(n.id, r, i);
          }
          continue;
        }
        for (const n of world.nodes) {
          if (rangesOf(n).some((x) => x.family === range.family && range.first <= x.first && x.first <= range.last)) {
            dst.add(n.id);
            addEntry(n.id, r, i);
          }
        }
      }
    });
    dstOfRule.set(r, all ? 'all' : dst);
    for (const n of world.nodes) if (inSet(r.src, n)) (srcOf.get(n.id) ?? srcOf.set(n.id, []).get(n.id)!).push(r);
  }
  // Routers: a rule whose sources overlap a node's subnet routes counts the node as a source too; a rule reaches a
  // node whose subnet routes overlap its destinations, and an exit node when its destinations are the internet.
  const byId = new Map(world.nodes.map((n) => [n.id, n]));
  const routers = world.nodes.filter((n) => (n.routes?.length ?? 0) > 0 || n.exit === true);
  /** Per rule, every address its destinations cover ('all' for "*"). */
  const dstCover = new Map<Rule, IpSet | 'all'>(rules.map((r) => [r, r.dsts.some((d) => d === null) ? 'all' : IpSet.of(r.dsts.flatMap((d) => d!.ranges))]));
  const isInternet = (d: IpSet | 'all'): boolean => d === 'all' || d.containsSet(EXIT_V4) || d.containsSet(EXIT_V6) || d.containsSet(THE_INTERNET);
  const overlapsCover = (c: IpSet | 'all', set: IpSet): boolean => !set.isEmpty && (c === 'all' || c.overlaps(set));
  for (const n of routers) {
    const routes = routeSetOf(n);
    if (routes.isEmpty) continue;
    const mine = srcOf.get(n.id) ?? [];
    for (const r of rules) if (!mine.includes(r) && overlapsCover(r.src, routes)) mine.push(r);
    srcOf.set(n.id, mine);
  }
  const routerReached = (r: Rule, b: PolicyNode): boolean => {
    const d = dstCover.get(r)!;
    return overlapsCover(d, routeSetOf(b)) || (b.exit === true && isInternet(d));
  };
  const reaches = (a: number, b: number): boolean =>
    (srcOf.get(a) ?? []).some((r) => {
      const d = dstOfRule.get(r)!;
      if (d === 'all' || d.has(b)) return true;
      const nb = byId.get(b);
      return nb !== undefined && ((nb.routes?.length ?? 0) > 0 || nb.exit === true) && routerReached(r, nb);
    });
  const addrSet = (n: PolicyNode): IpSet => IpSet.of(rangesOf(n));
  const visible = new Map<string, boolean>();
  /** headscale's CanAccessRoute: the viewer (or its subnets) may reach the route, or the route may reach the viewer. */
  const routeVisible = (viewer: number, route: string): boolean => {
    const key = `${viewer}|${route}`;
    const hit = visible.get(key);
    if (hit !== undefined) return hit;
    const v = byId.get(viewer);
    const rr = parseRange(route);
    let ok = false;
    if (v && rr) {
      const rs = IpSet.of([rr]);
      const mine = addrSet(v);
      const subnets = routeSetOf(v);
      ok = rules.some((r) => {
        const d = dstCover.get(r)!;
        return (
          (overlapsCover(r.src, mine) && overlapsCover(d, rs)) ||
          (overlapsCover(r.src, rs) && overlapsCover(d, mine)) ||
          (overlapsCover(r.src, subnets) && overlapsCover(d, rs)) ||
          (overlapsCover(d, subnets) && overlapsCover(r.src, rs))
        );
      });
    }
    if (visible.size < 100_000) visible.set(key, ok);
    return ok;
  };
  return {
    kind: 'ok',
    compiled: {
      rules: rules.map((r) => r.wire),
      filterFor: (id) => {
        const mine = entriesOf.get(id);
        const node = byId.get(id);
        const routes = node ? routeSetOf(node) : IpSet.EMPTY;
        const exit = node?.exit === true;
        const out: WireFilterRule[] = [];
        for (const r of rules) {
          const keep = new Set([...(everyone.get(r) ?? []), ...(mine?.get(r) ?? [])]);
          // A router also gets the entries for its subnets, an exit node those inside the internet.
          if (!routes.isEmpty || exit) r.dsts.forEach((set, i) => set && (set.overlaps(routes) || (exit && THE_INTERNET.containsSet(set))) && keep.add(i));
          if (keep.size === 0) continue;
          out.push({ ...r.wire, DstPorts: r.wire.DstPorts.filter((_, i) => keep.has(i)) });
        }
        return out;
      },
      canSee: (a, b) => reaches(a, b) || reaches(b, a),
      routeVisible,
    },
  };
}

/** The policy world of a store: its users and nodes (with their subnet routes and exit routes). */
export function worldOf(
  users: readonly { id: number; name: string }[],
  nodes: readonly { id: number; ipv4: string; ipv6: string; userId: number; tags: readonly string[]; hostinfo?: string | null; approvedRoutes?: readonly string[] }[],
): PolicyWorld {
  const names = new Map(users.map((u) => [u.id, u.name]));
  return {
    users: users.map((u) => u.name),
    nodes: nodes.map((n) => {
      const src = { hostinfo: n.hostinfo ?? null, approvedRoutes: n.approvedRoutes ?? [] };
      const routes = subnetRoutes(src);
      const exit = exitRoutes(src).length > 0;
      return { id: n.id, ipv4: n.ipv4, ipv6: n.ipv6, user: names.get(n.userId) ?? '', tags: n.tags, ...(routes.length ? { routes } : {}), ...(exit ? { exit } : {}) };
    }),
  };
}
