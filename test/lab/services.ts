// Real third-party services inside the lab: coturn (RFC 5780 STUN), turnutils_natdiscovery, miniupnpd (NAT-PMP,
// PCP, UPnP-IGD). See the team reference natlab.md §2, §3, §6.
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HostName, Lab, LabProcess, RouterName } from './lab.ts';
import { ROUTER_INFO, udpToolArgv } from './lab.ts';
import { MINIUPNPD_NFT } from './nat-rules.ts';

/** The two coturn addresses (primary, alternate) and ports. */
export const STUN = { ip: '203.0.113.10', altIp: '203.0.113.11', port: 3478, altPort: 3479 } as const;

/**
 * Starts coturn in srv as an RFC 5780 STUN-only server on 203.0.113.10 and .11, ports 3478 and 3479, and waits (up
 * to ~10 s) until both addresses answer a Binding Request.
 */
export async function startCoturn(lab: Lab): Promise<LabProcess> {
  const p = lab.spawn('srv', [
    'turnserver', '-n', '--stun-only',
    '-L', STUN.ip, '-L', STUN.altIp,
    '--listening-port', String(STUN.port), '--alt-listening-port', String(STUN.altPort),
    '--no-cli', '--no-tls', '--no-dtls',
    '--log-file', join(lab.tmpDir, 'turnserver.log'), '--simple-log',
    '--pidfile', join(lab.tmpDir, 'turnserver.pid'),
  ]);
  try {
    const probes = await Promise.all(
      [`${STUN.ip}:${STUN.port}`, `${STUN.altIp}:${STUN.altPort}`].map((to) =>
        lab.exec('srv', udpToolArgv(['stun', to, '0', '10']), { timeoutMs: 20_000 }),
      ),
    );
    const bad = probes.find((r) => r.code !== 0);
    if (bad) throw new Error(`coturn did not answer STUN: ${bad.stdout}${bad.stderr}\n${p.output().slice(-2000)}`);
  } catch (e) {
    await p.kill();
    throw e;
  }
  return p;
}

export type NatBehaviour = 'endpoint-independent' | 'address-dependent' | 'address-and-port-dependent' | 'unknown';

export interface NatDiscoveryResult {
  mapping: NatBehaviour;
  filtering: NatBehaviour;
  /** true when the tool said "No NAT!" (local address == reflexive address). */
  noNat: boolean;
  /** Only with opts.hairpin: whether the hairpin probe came back. */
  hairpin?: boolean;
  raw: string;
}

function behaviour(raw: string, kind: 'Mapping' | 'Filtering'): NatBehaviour {
  if (kind === 'Mapping' && /No NAT! \(Endpoint Independent Mapping\)/.test(raw)) return 'endpoint-independent';
  const m = new RegExp(`NAT with (Endpoint Independent|Address Dependent|Address and Port Dependent) ${kind}!`).exec(raw);
  switch (m?.[1]) {
    case 'Endpoint Independent':
      return 'endpoint-independent';
    case 'Address Dependent':
      return 'address-dependent';
    case 'Address and Port Dependent':
      return 'address-and-port-dependent';
    default:
      return 'unknown';
  }
}

/** Parses turnutils_natdiscovery (coturn 4.6.1) output. */
export function parseNatDiscovery(raw: string, withHairpin = false): NatDiscoveryResult {
  const r: NatDiscoveryResult = {
    mapping: behaviour(raw, 'Mapping'),
    filtering: behaviour(raw, 'Filtering'),
    noNat: /No NAT!/.test(raw),
    raw,
  };
  if (withHairpin) r.hairpin = /maybe a successful hairpinning/.test(raw);
  return r;
}

/**
 * Runs `turnutils_natdiscovery -m -f SERVER` in `host` (coturn must be running). Note: in coturn 4.6.1 `-H` is the
 * hairpinning test, not a host flag; the server address is positional. opts.hairpin adds `-H` (takes ~5 s longer).
 * Takes about 4-8 s (its STUN timeouts are part of the filtering test).
 */
export async function natDiscovery(
  lab: Lab,
  host: HostName,
  serverIp: string,
  opts: { hairpin?: boolean; timeoutMs?: number } = {},
): Promise<NatDiscoveryResult> {
  const argv = ['turnutils_natdiscovery', '-m', '-f', ...(opts.hairpin ? ['-H'] : []), serverIp];
  const r = await lab.exec(host, argv, { timeoutMs: opts.timeoutMs ?? 40_000 });
  const raw = r.stdout + r.stderr;
  if (r.code === null) throw new Error(`natDiscovery in ${host} timed out:\n${raw}`);
  return parseNatDiscovery(raw, opts.hairpin ?? false);
}

export interface MiniupnpdOptions {
  /** LAN interface miniupnpd listens on (na: br-lan; nb, nc, nd, fw: lan; cgn: br-sub). */
  lanIf: string;
  /** STUN server used to learn the external address (ext_perform_stun), normally 203.0.113.10 with coturn up. */
  stunIp: string;
  /** Default true: SSDP/UPnP-IGD as well as NAT-PMP/PCP. */
  enableUpnp?: boolean;
  /** How long to wait for the STUN verdict, default 15 s. */
  timeoutMs?: number;
}

/** The miniupnpd.conf text for `router` (exported for inspection). */
export function miniupnpdConf(router: RouterName, opts: MiniupnpdOptions, tmpDir: string): string {
  const info = ROUTER_INFO[router];
  const m = MINIUPNPD_NFT;
  return [
    `ext_ifname=${info.wanIf}`,
    `listening_ip=${opts.lanIf}`,
    'enable_natpmp=yes',
    `enable_upnp=${(opts.enableUpnp ?? true) ? 'yes' : 'no'}`,
    // miniupnpd refuses TEST-NET/CGN WAN addresses (natlab G11); STUN against the lab server works around it.
    'ext_perform_stun=yes',
    `ext_stun_host=${opts.stunIp}`,
    'ext_stun_port=3478',
    `uuid=${randomUUID()}`,
    'secure_mode=yes',
    'system_uptime=yes',
    'ipv6_disable=yes',
    `lease_file=${join(tmpDir, `miniupnpd-${router}.leases`)}`,
    `upnp_table_name=${m.table}`,
    `upnp_nat_table_name=${m.natTable}`,
    `upnp_forward_chain=${m.forwardChain}`,
    `upnp_nat_chain=${m.natChain}`,
    `upnp_nat_postrouting_chain=${m.natPostroutingChain}`,
    `allow 1024-65535 ${info.lanCidr} 1024-65535`,
    'deny 0-65535 0.0.0.0/0 0-65535',
    '',
  ].join('\n');
}

/**
 * Starts miniupnpd in the foreground in `router`. The router must have been configured with
 * `setRouter(router, { ..., inputDrop: false, miniupnpd: true })`: the nft skeleton has to exist, and miniupnpd's
 * STUN CHANGE-REQUEST answers arrive as new inbound UDP on wan. Resolves once its STUN verdict is logged (NAT-PMP
 * then answers): "Port forwarding is now enabled" behind a 1:1 NAT, or a "does not support port forwarding" verdict
 * behind the CGN (NAT-PMP address requests still answer; mapping requests return result 3).
 */
export async function startMiniupnpd(lab: Lab, router: RouterName, opts: MiniupnpdOptions): Promise<LabProcess> {
  const m = MINIUPNPD_NFT;
  const check = await lab.exec(router, ['nft', 'list', 'chain', m.family, m.table, m.forwardChain]);
  if (check.code !== 0) {
    throw new Error(`startMiniupnpd: ${router} has no miniupnpd nft skeleton; call setRouter(${router}, { ..., miniupnpd: true, inputDrop: false }) first`);
  }
  const conf = join(lab.tmpDir, `miniupnpd-${router}.conf`);
  writeFileSync(conf, miniupnpdConf(router, opts, lab.tmpDir));
  const p = lab.spawn(router, ['miniupnpd', '-f', conf, '-P', join(lab.tmpDir, `miniupnpd-${router}.pid`), '-d']);
  try {
    await p.waitForOutput(
      /Port forwarding is now enabled|does not support port forwarding|blocks incoming connections|firewall filters incoming/,
      opts.timeoutMs ?? 15_000,
    );
  } catch (e) {
    await p.kill();
    throw e;
  }
  return p;
}

/** Every lab network; a packet to anything else is a leak (it dies at inet, which has no route out). */
const LAB_NETS = 'dst net 203.0.113.0/24 or dst net 198.51.100.0/24 or dst net 192.0.2.0/24 or dst net 192.168.0.0/16 or dst net 100.64.0.0/10';

export interface EgressSniffer {
  proc: LabProcess;
  /** The packets seen so far (tcpdump lines), each one a leak toward a non-lab address. */
  packets(): string[];
}

/**
 * tcpdump in inet recording everything a lab host sends toward a non-lab address (log uploads, DERP map or update
 * downloads, bootstrap DNS). `iface` narrows it to one side (e.g. i-srv for the server namespace); DNS to the
 * host's resolver is left out (it dies at inet too).
 */
export async function startEgressSniffer(lab: Lab, iface = 'any'): Promise<EgressSniffer> {
  const proc = lab.spawn('inet', ['tcpdump', '-i', iface, '-n', '-l', '-q', '-p', '-U', `not (${LAB_NETS} or udp dst port 53)`]);
  await proc.waitForOutput(new RegExp(`listening on ${iface}`), 10_000);
  return { proc, packets: () => proc.output().split('\n').filter((l) => /^\d\d:\d\d:\d\d\.\d+ /.test(l)) };
}
