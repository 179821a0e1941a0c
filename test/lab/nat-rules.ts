// Pure generator of one nftables ruleset per lab router (see the team reference natlab.md §3).
// No I/O here: lab.ts applies the text with `nft -f` inside the router's namespace.

/** eim = masquerade (port-preserving EIM); eim-range = masquerade to :20000-29999 (EIM, ports not preserved);
 *  edm = masquerade random; edm-fully = masquerade fully-random; none = no NAT (routing only). */
export type MappingMode = 'eim' | 'eim-range' | 'edm' | 'edm-fully' | 'none';
/** Inbound filtering for UDP on NAT routers. Ignored when mapping is 'none' (use `forward` there). */
export type FilterMode = 'apdf' | 'adf' | 'eif';

export interface RouterProfile {
  mapping: MappingMode;
  filtering: FilterMode;
  /** NAT loopback for UDP (LAN host -> own public address:port of another LAN host). Default false. */
  hairpin?: boolean;
  /** Default true: `iifname wan ct state new udp/tcp drop` in INPUT (natlab gotcha G3). Must be false for miniupnpd. */
  inputDrop?: boolean;
  /** Default 'open'. stateful: only established/related, DNATed and LAN-originated new flows are forwarded.
   *  udp443: all UDP forwarding dropped, only new TCP to port 443 from the LAN (plus established) forwarded. */
  forward?: 'open' | 'stateful' | 'udp443';
  /** Per-netns conntrack UDP timeouts (both unreplied and stream) and lifetime of the learned EIF/ADF map entries.
   *  Undefined = kernel defaults (30 s / 120 s) and 120 s map entries. */
  udpTimeoutS?: number;
  /** Add the nft skeleton (table, chains and jumps) that miniupnpd-nftables expects (natlab §6). */
  miniupnpd?: boolean;
}

/** Interfaces and addresses of one router, as needed to write its rules. */
export interface RouterContext {
  wanIf: string;
  wanIp: string;
  lanIf: string;
  lanCidr: string;
}

/** Table and chain names that Debian's miniupnpd-nftables 2.3.1 uses by default (`strings` of the binary and the
 *  comments in /etc/miniupnpd/miniupnpd.conf); the miniupnpd.conf written by services.ts sets them explicitly. */
export const MINIUPNPD_NFT = {
  family: 'inet',
  table: 'filter',
  natTable: 'filter',
  forwardChain: 'miniupnpd',
  natChain: 'prerouting_miniupnpd',
  natPostroutingChain: 'postrouting_miniupnpd',
} as const;

/** Name of the lab's own nftables table. */
export const LAB_TABLE = 'natlab';

export const DEFAULT_UDP_TIMEOUT_S = 30;
export const DEFAULT_UDP_STREAM_TIMEOUT_S = 120;
const DEFAULT_MAP_TIMEOUT_S = 120;

const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;
const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function checkIp(ip: string, what: string): void {
  const m = IPV4_RE.exec(ip);
  if (!m || m.slice(1).some((o) => Number(o) > 255)) throw new Error(`nat-rules: bad ${what} ${JSON.stringify(ip)}`);
}

function checkContext(ctx: RouterContext): void {
  for (const [what, name] of [['wanIf', ctx.wanIf], ['lanIf', ctx.lanIf]] as const) {
    if (!IFNAME_RE.test(name)) throw new Error(`nat-rules: bad ${what} ${JSON.stringify(name)}`);
  }
  checkIp(ctx.wanIp, 'wanIp');
  const [net, len, ...rest] = ctx.lanCidr.split('/');
  if (net === undefined || len === undefined || rest.length > 0 || !/^\d{1,2}$/.test(len) || Number(len) > 32) {
    throw new Error(`nat-rules: bad lanCidr ${JSON.stringify(ctx.lanCidr)}`);
  }
  checkIp(net, 'lanCidr');
}

function checkProfile(p: RouterProfile): void {
  const mappings: readonly MappingMode[] = ['eim', 'eim-range', 'edm', 'edm-fully', 'none'];
  const filters: readonly FilterMode[] = ['apdf', 'adf', 'eif'];
  if (!mappings.includes(p.mapping)) throw new Error(`nat-rules: bad mapping ${String(p.mapping)}`);
  if (!filters.includes(p.filtering)) throw new Error(`nat-rules: bad filtering ${String(p.filtering)}`);
  if (p.forward !== undefined && !['open', 'stateful', 'udp443'].includes(p.forward)) {
    throw new Error(`nat-rules: bad forward ${String(p.forward)}`);
  }
  if (p.udpTimeoutS !== undefined && (!Number.isInteger(p.udpTimeoutS) || p.udpTimeoutS < 1 || p.udpTimeoutS > 86400)) {
    throw new Error(`nat-rules: udpTimeoutS must be an integer 1..86400, got ${String(p.udpTimeoutS)}`);
  }
}

function masqueradeRule(ctx: RouterContext, mapping: MappingMode): string[] {
  // Only the LAN's traffic is translated, as on a home router: the router's own (miniupnpd's STUN probe) keeps
  // its ports, so miniupnpd still sees a 1:1 public address behind an EDM profile.
  const o = `oifname "${ctx.wanIf}" ip saddr ${ctx.lanCidr}`;
  switch (mapping) {
    case 'eim':
      return [`${o} masquerade`];
    case 'eim-range':
      // nft needs the l4proto before a port range (natlab G6); other protocols (ICMP) still get plain masquerade.
      return [`${o} meta l4proto { tcp, udp } masquerade to :20000-29999`, `${o} masquerade`];
    case 'edm':
      return [`${o} masquerade random`];
    case 'edm-fully':
      return [`${o} masquerade fully-random`];
    case 'none':
      return [];
  }
}

function chain(name: string, header: string | undefined, rules: string[]): string[] {
  const body = header === undefined ? [] : [`    ${header}`];
  return [`  chain ${name} {`, ...body, ...rules.map((r) => `    ${r}`), '  }'];
}

/** sysctl settings (name -> value) for the router's namespace that belong to this profile. */
export function routerSysctls(profile: RouterProfile): Record<string, string> {
  checkProfile(profile);
  const t = profile.udpTimeoutS;
  return {
    'net.netfilter.nf_conntrack_udp_timeout': String(t ?? DEFAULT_UDP_TIMEOUT_S),
    'net.netfilter.nf_conntrack_udp_timeout_stream': String(t ?? DEFAULT_UDP_STREAM_TIMEOUT_S),
  };
}

/**
 * The complete ruleset for one router: starts with `flush ruleset`, so applying it with `nft -f -` replaces the old
 * rules atomically (and leaves them in place if it fails: check nft's exit code).
 */
export function buildRuleset(ctx: RouterContext, profile: RouterProfile): string {
  checkContext(ctx);
  checkProfile(profile);
  const hairpin = profile.hairpin ?? false;
  const inputDrop = profile.inputDrop ?? true;
  const forward = profile.forward ?? 'open';
  const mapTimeout = profile.udpTimeoutS ?? DEFAULT_MAP_TIMEOUT_S;
  const nat = profile.mapping !== 'none';
  const wan = `"${ctx.wanIf}"`;
  const lan = `"${ctx.lanIf}"`;
  const w = ctx.wanIp;

  const lines: string[] = ['flush ruleset', `table ip ${LAB_TABLE} {`];

  if (nat) {
    // fc: external UDP port -> internal address . port, learned after SNAT; seen: remote address . external port.
    lines.push(
      `  map fc { type inet_service : ipv4_addr . inet_service; flags dynamic,timeout; timeout ${mapTimeout}s; }`,
      `  set seen { type ipv4_addr . inet_service; flags dynamic,timeout; timeout ${mapTimeout}s; }`,
    );
    const pre: string[] = [];
    if (profile.filtering === 'eif') {
      pre.push(`iifname ${wan} ip daddr ${w} meta l4proto udp dnat ip addr . port to udp dport map @fc`);
    } else if (profile.filtering === 'adf') {
      pre.push(
        `iifname ${wan} ip daddr ${w} meta l4proto udp ip saddr . udp dport @seen dnat ip addr . port to udp dport map @fc`,
      );
    }
    if (hairpin) {
      pre.push(`iifname ${lan} ip daddr ${w} meta l4proto udp dnat ip addr . port to udp dport map @fc`);
    }
    lines.push(...chain('pre', 'type nat hook prerouting priority dstnat; policy accept;', pre));

    const post: string[] = [];
    if (hairpin) post.push(`oifname ${lan} ip saddr ${ctx.lanCidr} ct status dnat snat ip to ${w}`);
    post.push(...masqueradeRule(ctx, profile.mapping));
    lines.push(...chain('post', 'type nat hook postrouting priority srcnat; policy accept;', post));

    // Runs after SNAT, so `udp sport` is the external port. Always present: hairpin needs the map in every mode.
    lines.push(
      ...chain('learn', 'type filter hook postrouting priority srcnat + 10; policy accept;', [
        `oifname ${wan} meta l4proto udp ct direction original update @fc { udp sport : ct original ip saddr . ct original proto-src }`,
        `oifname ${wan} meta l4proto udp ct direction reply update @fc { udp sport : ct reply ip saddr . ct reply proto-src }`,
        `oifname ${wan} meta l4proto udp update @seen { ip daddr . udp sport }`,
      ]),
    );
  }

  lines.push(
    ...chain(
      'input',
      'type filter hook input priority filter; policy accept;',
      inputDrop ? [`iifname ${wan} ct state new meta l4proto { udp, tcp } drop`] : [],
    ),
  );

  if (forward === 'stateful') {
    lines.push(
      ...chain('forward', 'type filter hook forward priority filter; policy drop;', [
        'ct state established,related accept',
        'ct status dnat accept',
        `iifname ${lan} accept`,
      ]),
    );
  } else if (forward === 'udp443') {
    lines.push(
      ...chain('forward', 'type filter hook forward priority filter; policy drop;', [
        'meta l4proto udp drop',
        'ct state established,related accept',
        `iifname ${lan} oifname ${wan} tcp dport 443 ct state new accept`,
      ]),
    );
  }
  lines.push('}');

  if (profile.miniupnpd) {
    const m = MINIUPNPD_NFT;
    // miniupnpd 2.3.x does not create these itself. Its chains run just before the lab's own nat chains so that
    // its port mappings win over the learned map.
    lines.push(
      `table ${m.family} ${m.table} {`,
      ...chain('forward', 'type filter hook forward priority filter - 5; policy accept;', [`jump ${m.forwardChain}`]),
      ...chain(m.forwardChain, undefined, []),
      ...chain('prerouting', 'type nat hook prerouting priority dstnat - 5; policy accept;', [`jump ${m.natChain}`]),
      ...chain('postrouting', 'type nat hook postrouting priority srcnat - 5; policy accept;', [
        `jump ${m.natPostroutingChain}`,
      ]),
      ...chain(m.natChain, undefined, []),
      ...chain(m.natPostroutingChain, undefined, []),
      '}',
    );
  }
  return lines.join('\n') + '\n';
}
