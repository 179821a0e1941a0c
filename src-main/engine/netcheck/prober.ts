/**
 * The netcheck prober: runs the STUN tests of report.ts over real sockets and hands the observations over.
 *
 *   phase 1 (parallel): socket A → every server (test I); socket B → the first server; port-mapping probe
 *   phase 2 (parallel): RFC 5780 tests II and III on A; CHANGE-REQUEST tests on B; hairpin on A
 *
 * With UDP blocked phase 1 times out (STUN_TIMEOUT_MS) and phase 2 is skipped, so the report is ready in
 * well under NETCHECK_DEADLINE_MS. Sockets, clock and the port-mapping probe are injected.
 */
import { stunPort, type DerpMap } from '../../../src-shared/model/derp-map.ts';
import { networkInterfaces } from 'node:os';
import type { NetcheckReport, PortMappingReport } from '../../../src-shared/model/netcheck.ts';
import { sameAddr, type UdpAddr } from '../../protocol/wire/addr.ts';
import { toHex } from '../../protocol/wire/hex.ts';
import { StunType, TXID_LEN, encodeTailscaleRequest, parseStun } from '../../protocol/wire/stun.ts';
import { HAIRPIN_TIMEOUT_MS } from '../constants.ts';
import { bindUdp, type UdpSocket } from '../io/udp.ts';
import { realClock, type Clock } from '../sys/clock.ts';
import { discardLogf, type Logf } from '../sys/log.ts';
import { buildReport, type Rfc5780Observation, type ServerObservation } from './report.ts';
import { StunClient, isMapped, type StunRequestOptions } from './stun-client.ts';

export interface NetcheckTarget {
  addr: UdpAddr;
  regionId: number | null;
}

export interface NetcheckOptions {
  targets: readonly NetcheckTarget[];
  clock?: Clock;
  logf?: Logf;
  /** Local port for the main socket (0 = any). */
  localPort?: number;
  /** Binds a UDP socket; defaults to node:dgram on 0.0.0.0. */
  bind?: (port: number) => Promise<UdpSocket>;
  /** This host's own IP addresses (to tell "no NAT" from NAT); defaults to the OS's interface list. */
  localIps?: () => string[];
  /** Probes NAT-PMP/PCP/UPnP; given the main socket's port. Omitted → reported as none found. */
  portMapping?: (localPort: number) => Promise<PortMappingReport>;
  stun?: Pick<StunRequestOptions, 'timeoutMs' | 'retransmitMs'>;
  hairpinTimeoutMs?: number;
}

/**
 * Probe targets from a DERP map: up to two STUN nodes per region, regions in id order, skipping regions marked
 * NoMeasureNoHome and nodes without STUN or IPv4; a node without an IPv4 literal is resolved with `resolve`.
 */
export async function netcheckTargetsFromMap(map: DerpMap, resolve: (host: string) => Promise<string>): Promise<NetcheckTarget[]> {
  const out: NetcheckTarget[] = [];
  const regions = Object.values(map.Regions).sort((x, y) => x.RegionID - y.RegionID);
  for (const r of regions) {
    if (r.NoMeasureNoHome) continue;
    const nodes = (r.Nodes ?? []).filter((n) => stunPort(n) !== null && n.IPv4 !== 'none').slice(0, 2);
    for (const n of nodes) {
      const ip = n.IPv4 ? n.IPv4 : await resolve(n.HostName);
      out.push({ addr: { ip, port: stunPort(n)! }, regionId: r.RegionID });
    }
  }
  return out;
}

export const NO_PORT_MAPPING: PortMappingReport = { natpmp: false, pcp: false, upnp: false, externalV4: null, usable: null, error: null };

/** All addresses of this host's interfaces. */
export function osLocalIps(): string[] {
  return Object.values(networkInterfaces())
    .flatMap((l) => l ?? [])
    .map((i) => i.address);
}

interface Probe {
  sock: UdpSocket;
  client: StunClient;
}

async function openProbe(bind: (port: number) => Promise<UdpSocket>, port: number, clock: Clock, onOther?: (d: Uint8Array, from: UdpAddr) => void): Promise<Probe> {
  const sock = await bind(port);
  const client = new StunClient({ send: (d, to) => sock.send(d, to), clock });
  sock.onPacket((d, from) => {
    if (!client.handlePacket(d, from)) onOther?.(d, from);
  });
  return { sock, client };
}

export async function runNetcheck(opts: NetcheckOptions): Promise<NetcheckReport> {
  const clock = opts.clock ?? realClock;
  const logf = opts.logf ?? discardLogf;
  const bind = opts.bind ?? ((port: number) => bindUdp({ port }));
  const stunOpts = opts.stun ?? {};
  let hairpinTx: string | null = null;
  let onHairpin: (() => void) | null = null;
  const a = await openProbe(bind, opts.localPort ?? 0, clock, (d) => {
    // Our own request arriving back on our own socket is the hairpin signal.
    const m = parseStun(d);
    if (hairpinTx && m.kind === 'stun' && m.type === StunType.BindingRequest && toHex(m.txid) === hairpinTx) onHairpin?.();
  });
  const b = await openProbe(bind, 0, clock);
  try {
    const localPort = a.sock.localPort();
    const portMapP = (opts.portMapping ?? (async () => NO_PORT_MAPPING))(localPort).catch(
      (e: unknown): PortMappingReport => ({ ...NO_PORT_MAPPING, error: `port-mapping probe failed: ${(e as Error).message}` }),
    );
    const first = opts.targets[0];
    const [answers, filterBase] = await Promise.all([
      Promise.all(opts.targets.map((t) => a.client.request(t.addr, stunOpts))),
      first ? b.client.request(first.addr, stunOpts) : Promise.resolve(null),
    ]);
    const servers: ServerObservation[] = opts.targets.map((t, i) => ({ server: t.addr, regionId: t.regionId, answer: answers[i] ?? null }));
    for (const s of servers) logf(`stun ${s.server.ip}:${s.server.port} → ${s.answer?.mapped ? `${s.answer.mapped.ip}:${s.answer.mapped.port}` : 'no answer'}`);

    const ok = isMapped;
    // The RFC 5780 server: the first that answered with an OTHER-ADDRESS on another IP.
    const rfcIdx = servers.findIndex((s) => ok(s.answer) && s.answer.otherAddress && s.answer.otherAddress.ip !== s.server.ip);
    const primaryMapped = servers.find((s) => ok(s.answer))?.answer?.mapped ?? null;
    const localIps = (opts.localIps ?? osLocalIps)();
    const behindNat = primaryMapped ? !localIps.includes(primaryMapped.ip) : false;

    let rfc5780: Rfc5780Observation | null = null;
    const phase2: Promise<unknown>[] = [];
    if (rfcIdx >= 0) {
      const s = servers[rfcIdx]!;
      const other = s.answer!.otherAddress!;
      // Filtering runs on B, which has only talked to the first target; use it only if that is this server.
      const bBase = rfcIdx === 0 ? filterBase : await b.client.request(s.server, stunOpts);
      const obs: Rfc5780Observation = { server: s.server, other, test2: null, test3: null, filterBase: bBase, filterChangeBoth: null, filterChangePort: null };
      rfc5780 = obs;
      phase2.push(
        a.client.request({ ip: other.ip, port: s.server.port }, stunOpts).then((x) => (obs.test2 = x)),
        a.client.request(other, stunOpts).then((x) => (obs.test3 = x)),
      );
      if (ok(bBase)) {
        phase2.push(
          b.client.request(s.server, { ...stunOpts, changeIp: true, changePort: true }).then((x) => (obs.filterChangeBoth = x)),
          b.client.request(s.server, { ...stunOpts, changePort: true }).then((x) => (obs.filterChangePort = x)),
        );
      }
    }
    let hairpin: boolean | null = null;
    if (primaryMapped && behindNat) {
      const txid = crypto.getRandomValues(new Uint8Array(TXID_LEN));
      hairpinTx = toHex(txid);
      const target = primaryMapped;
      phase2.push(
        new Promise<void>((resolve) => {
          const timers = [0, 100, 200].map((at) => clock.setTimeout(() => void a.sock.send(encodeTailscaleRequest(txid), target).catch(() => {}), at));
          const finish = (seen: boolean): void => {
            for (const t of timers) clock.clearTimeout(t);
            clock.clearTimeout(deadline);
            onHairpin = null;
            hairpin = seen;
            resolve();
          };
          const deadline = clock.setTimeout(() => finish(false), opts.hairpinTimeoutMs ?? HAIRPIN_TIMEOUT_MS);
          onHairpin = () => finish(true);
        }),
      );
    }
    await Promise.all(phase2);
    if (rfc5780 && !ok(rfc5780.test2) && rfcIdx >= 0) logf('rfc5780: test II got no answer');
    const report = buildReport({ localIps, localPort, servers, rfc5780, hairpin, portMapping: await portMapP });
    // A server that answered on another address than asked is fine; note it for diagnostics.
    for (const s of servers) if (s.answer && !sameAddr(s.answer.from, s.server)) logf(`stun ${s.server.ip}:${s.server.port} answered from ${s.answer.from.ip}:${s.answer.from.port}`);
    return report;
  } finally {
    a.client.close();
    b.client.close();
    await Promise.all([a.sock.close(), b.sock.close()]);
  }
}
