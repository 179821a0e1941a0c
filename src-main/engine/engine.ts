/**
 * Engine: the composition root of the mesh engine, Electron-free. It wires
 *   ControlClient (registration, netmap) → WgInterface (wireguard-go: addresses, peers, routes)
 *                                        → MagicConn (shared UDP socket, disco paths, STUN endpoints)
 * and answers status snapshots. The CLI (`weft up`) and the desktop app host it.
 *
 * On every netmap: peers go to MagicConn (disco keys, endpoints) and to WireGuard (public key, AllowedIPs,
 * endpoint), and routes become exactly the peers' AllowedIPs. Endpoints are re-discovered with STUN every 20–26 s
 * and pushed to control with a lite update when they change.
 *
 * Two data paths (status says which):
 *  - kernel (the default with a Linux system whose nft accepts datapath/'s table): WireGuard binds the public
 *    port P and is pointed straight at a peer's trusted direct address, so its packets never reach Node; Node's
 *    own socket Q carries disco and STUN, which nftables rewrites to share P's NAT mapping. A peer without a direct
 *    path is pointed at its loopback proxy, which Node feeds to DERP. WireGuard's counters, read every second,
 *    stand in for the packets Node no longer sees (heartbeats, liveness); a peer newly pointed at a direct
 *    address gets keepalives until a handshake crosses it, so a stateful host firewall learns WireGuard's flow.
 *  - proxy (nft missing or refusing, WEFT_DATAPATH=proxy, or no system): Node owns P and every WireGuard packet
 *    passes through a per-peer loopback proxy, as before.
 */
import { lookup } from 'node:dns/promises';
import { EventEmitter } from 'node:events';
import { networkInterfaces } from 'node:os';
import type { StatusReport } from '../../src-shared/model/status.ts';
import type { DerpMap } from '../../src-shared/model/derp-map.ts';
import type { NetcheckReport } from '../../src-shared/model/netcheck.ts';
import { MeshError } from '../../src-shared/errors.ts';
import { formatAddr, parseHostPort, sameAddr } from '../protocol/wire/addr.ts';
import { fromHex, toHex } from '../protocol/wire/hex.ts';
import { ENDPOINT_RESTUN_MAX_MS, ENDPOINT_RESTUN_MIN_GAP_MS, ENDPOINT_RESTUN_MIN_MS, ENDPOINT_RESTUN_NO_UDP_MS, WG_TUN_MTU } from './constants.ts';
import { ControlClient, type ControlClientInit } from './control/client.ts';
import type { NetMap } from './control/map-session.ts';
import { buildStatus } from './control/status.ts';
import { bindUdp } from './io/udp.ts';
import { derpTargets, stunTargets } from './relay/targets.ts';
import { EndpointType, localEndpoints, mergeEndpoints, sameEndpointSet, type Endpoint } from './magicsock/endpoints.ts';
import { MagicConn, type MagicPeerSpec } from './magicsock/conn.ts';
import { PortMapKeeper } from './portmap/keeper.ts';
import { netcheckTargetsFromMap, runNetcheck } from './netcheck/prober.ts';
import { portMappingProbe } from './netcheck/portmap-report.ts';
import { realClock, type Clock, type TimerHandle } from './sys/clock.ts';
import { discardLogf, type Logf } from './sys/log.ts';
import { applyDataPlane, ifaceRetryDelayMs, type DataPlaneTarget } from './wg/apply.ts';
import type { WgConfig } from './wg/config.ts';
import type { WgInterface } from './wg/iface.ts';
import { planRoutes, type RoutePlan } from './router/plan.ts';
import { parseIpPrefix } from './wg/ip-prefix.ts';
import { QUAD100_V4, QUAD100_V6, type DataPathMode, type TailnetSystem } from './system.ts';
import { effectiveAccess } from './filter/access.ts';
import { shortName } from './control/status.ts';
import type { FilterRule } from '../protocol/control/tailcfg.ts';
import type { FilterStatus, TailnetStatus } from '../../src-shared/model/tailnet.ts';

export interface EngineInit extends ControlClientInit {
  /** UDP port of the shared socket; 0 = any. @default 41641 */
  udpPort?: number;
  /** Creates the WireGuard interface (wireguard-go as root, the privileged helper otherwise, a fake in tests). */
  createInterface: () => Promise<WgInterface>;
  /** Map a public port on the home router (NAT-PMP, PCP or UPnP IGD) and advertise it. @default true */
  portMapping?: boolean;
  /**
   * Routes, the ACL filter and MagicDNS beside the interface (weftd: system-linux.ts). Without it (a fake interface
   * in tests) routes go to the interface itself and nothing is filtered.
   */
  system?: TailnetSystem;
  /** Use peers' subnet routes. @default false (as Tailscale on Linux) */
  acceptRoutes?: boolean;
  /** Point the OS at MagicDNS. @default true */
  acceptDns?: boolean;
}

export interface EnginePrefs {
  acceptRoutes: boolean;
  acceptDns: boolean;
}

export interface EngineEvents {
  'control:status': [StatusReport['control']];
  'peer:path-changed': [string];
  'netmap:updated': [];
}

export class Engine extends EventEmitter<EngineEvents> {
  readonly control: ControlClient;
  private magic: MagicConn | null = null;
  private wg: WgInterface | null = null;
  private wgPort = 0;
  /** The UDP port peers reach us on: WireGuard's on the kernel data path, Node's shared socket on the proxy one. */
  private publicPort = 0;
  private dataPath: DataPathMode = { mode: 'proxy', reason: 'not started' };
  /** Kernel data path: peers just pointed at a direct address, and when (WireGuard keepalives until a handshake). */
  private readonly kicks = new Map<string, number>();
  /** Kernel data path: when each peer's roaming was last logged (at most every ROAM_LOG_EVERY_MS). */
  private readonly roamLogged = new Map<string, number>();
  /** The WireGuard config of the netmap last applied, rebuilt with the current endpoints (null before one). */
  private wgConfigNow: (() => WgConfig) | null = null;
  private wgResync = false;
  private counterTimer: TimerHandle | null = null;
  /** The last WireGuard counter sample per peer (node key hex), to pass on only the ones that moved. */
  private lastSamples = new Map<string, string>();
  private endpoints: Endpoint[] = [];
  private restunTimer: TimerHandle | null = null;
  private restunning = false;
  private restunAgain = false;
  private lastRestunAt = -Infinity;
  private stunEndpoints: Endpoint[] = [];
  private workingUdp = true;
  private netInfo: Record<string, unknown> = {};
  private lastNetcheck: NetcheckReport | null = null;
  private portmap: PortMapKeeper | null = null;
  private applying: Promise<void> = Promise.resolve();
  /** What the last netmap that applied in full put in place (restored when a later one fails halfway). */
  private applied: DataPlaneTarget<MagicPeerSpec> | null = null;
  /** Why the data plane is not in step with the netmap (null when it is). */
  private applyError: string | null = null;
  private ifaceFailures = 0;
  private applyFailures = 0;
  /** The pending re-apply (after a failed interface creation or netmap application). */
  private ifaceRetry: TimerHandle | null = null;
  private stopped = false;
  /** False once the interface refused IPv6 (IPv6 disabled): then only IPv4 addresses and routes are used. */
  private ipv6 = true;
  private readonly clock: Clock;
  private readonly system: TailnetSystem | null;
  private lastSkipKey = '';
  /** The self addresses the interface was brought up with. */
  private upKey: string | null = null;
  /** The filter (by identity) and self addresses last applied: an unchanged filter is not compiled again. */
  private lastFilter: readonly FilterRule[] | null = null;
  private lastFilterSelf = '';
  private systemCheckTimer: TimerHandle | null = null;
  private readonly logf: Logf;
  private prefs: EnginePrefs;
  /** The last route plan applied in full (for status). */
  private routePlan: RoutePlan | null = null;
  private routeError: string | null = null;
  /** Latest WireGuard per-peer statistics, by node-key hex (refreshed on status requests). */
  private stats = new Map<string, { rx: number; tx: number; lastHandshake: string | null }>();

  constructor(private readonly init: EngineInit) {
    super();
    this.clock = init.clock ?? realClock;
    this.logf = init.logf ?? discardLogf;
    this.system = init.system ?? null;
    this.prefs = { acceptRoutes: init.acceptRoutes ?? false, acceptDns: init.acceptDns ?? true };
    this.control = new ControlClient(init);
    this.control.on('status', (s) => this.emit('control:status', { state: s.state, url: s.url, error: s.error?.message ?? null, authUrl: s.authUrl, stage: s.stage }));
    this.control.on('netmap', (nm) => {
      this.applying = this.applying.then(() => this.applyNetmap(nm)).catch((e: unknown) => this.logf(`engine: applying the netmap failed: ${(e as Error).message}`));
    });
  }

  async start(): Promise<void> {
    await this.control.start();
    await this.applying;
  }

  /**
   * Creates the data plane on the first netmap, then keeps it in step with each new one. Interface creation that
   * fails is retried with backoff (ifaceRetryDelayMs) against the latest netmap, so one failure never wedges the
   * engine; each netmap is applied as one transaction (wg/apply.ts): on failure the previous state stays and the
   * next netmap tries again.
   */
  private async applyNetmap(nm: NetMap): Promise<void> {
    if (this.stopped || !nm.self) return;
    if (!(await this.ensureDataPlane(nm))) return;
    const magic = this.magic!;
    const wg = this.wg!;
    // Routes by kind (router/plan.ts): own addresses always, subnet routes only when accepted, exit routes never
    // (until the user picks an exit node); a route that is not used is not in the peer's AllowedIPs either.
    const live = [...nm.peers.values()].filter((p) => !p.Expired);
    const plan = planRoutes({ peers: live, acceptRoutes: this.prefs.acceptRoutes, lan: this.system?.lan() ?? [], ipv6: this.ipv6 });
    const planKey = JSON.stringify(plan.skipped.map((k) => [k.prefix, k.reason]));
    if (planKey !== this.lastSkipKey) {
      this.lastSkipKey = planKey;
      for (const k of plan.skipped.filter((k) => k.reason !== 'accept-routes-off' && k.reason !== 'exit-route').slice(0, 8)) this.logf(`engine: ${k.note}`);
    }
    const peers = live.map((p) => ({ ...p, AllowedIPs: plan.allowedIPs.get(p.ID) ?? [] }));
    // The ACL first: a new peer can reach this node only once the filter that names it is in force (fail closed:
    // a filter that cannot be applied keeps the last good one, and the netmap still applies).
    // This node's addresses, as canonical IPs (anything else in the netmap is ignored, never passed on).
    const selfIps = hostAddresses(nm.self.Addresses).filter((a) => this.ipv6 || !a.includes(':'));
    // The self addresses changed (rare: a re-registration); the interface takes the new ones before routes use them.
    const upKey = selfIps.join(' ');
    if (upKey !== this.upKey && this.upKey !== null && selfIps.length > 0) {
      try {
        await wg.up({ addresses: selfIps, mtu: WG_TUN_MTU, serviceAddresses: this.serviceAddresses() });
        this.upKey = upKey;
      } catch (e) {
        this.logf(`engine: updating the interface's addresses failed: ${(e as Error).message}`);
      }
    }
    if (this.system && (nm.packetFilter !== this.lastFilter || upKey !== this.lastFilterSelf || this.system.filter.status().error !== null)) {
      const err = await this.system.filter.apply(nm.packetFilter, selfIps);
      if (err) this.logf(`engine: the new ACL filter was not applied (${err}); the last good one stays in force`);
      else {
        this.lastFilter = nm.packetFilter;
        this.lastFilterSelf = upKey;
      }
    }
    const wgConfig = (): WgConfig => ({
      privateKey: this.control.nodePrivate,
      listenPort: this.wgPort,
      peers: peers.flatMap((p) => {
        const key = p.Key.slice('nodekey:'.length);
        const endpoint = magic.wireGuardEndpoint(key);
        // A peer just pointed at its direct address gets keepalives until a handshake over it (turning them on
        // makes WireGuard send one at once): the host firewall then knows WireGuard's own flow both ways.
        const persistentKeepalive = this.kicks.has(key) ? WG_KICK_KEEPALIVE_S : 0;
        return endpoint ? [{ publicKey: fromHex(key), endpoint, allowedIPs: [...p.AllowedIPs], persistentKeepalive }] : [];
      }),
    });
    const target: DataPlaneTarget<MagicPeerSpec> = {
        peers: peers.map((p) => ({
          nodeKey: fromHex(p.Key.slice('nodekey:'.length)),
          discoKey: fromHex(p.DiscoKey.slice('discokey:'.length)),
          endpoints: p.Endpoints.map((e) => parseHostPort(e)).flatMap((hp) => (hp ? [{ ip: hp.host, port: hp.port }] : [])),
          name: p.Name.split('.')[0] || `node-${p.ID}`,
          homeRegion: p.HomeDERP > 0 ? p.HomeDERP : null,
        })),
        // Built after setPeers: a new peer's loopback proxy endpoint exists only then.
        wg: wgConfig,
        routes: plan.routes.map((r) => r.prefix),
        throws: plan.throws,
    };
    const src = (fam: 4 | 6): string | null => selfIps.find((a) => a.includes(':') === (fam === 6)) ?? null;
    const setRoutes = async (routes: string[], throws: string[]): Promise<void> => {
      if (this.system) await this.system.router.set({ routes, throws, src4: src(4), src6: this.ipv6 ? src(6) : null });
      else await wg.routes(routes);
    };
    const outcome = await applyDataPlane({ setPeers: (ps) => magic.setPeers(ps), setWg: (cfg) => wg.set(cfg), setRoutes }, this.applied, target);
    if (this.system?.dns) await this.system.dns.apply(nm, { acceptDns: this.prefs.acceptDns, ipv6: this.ipv6 });
    if (!outcome.ok) {
      this.applyError = outcome.error;
      this.routeError = outcome.error;
      // Retried against the latest netmap with backoff; a new netmap from control also retries at once.
      this.applyFailures++;
      this.scheduleReapply(ifaceRetryDelayMs(this.applyFailures));
      this.logf(
        `engine: applying the netmap failed: ${outcome.error}; ${outcome.restored ? 'the previous WireGuard peers and routes stay in place' : outcome.restoreError ? `restoring the previous state failed too: ${outcome.restoreError}` : 'nothing was applied before'}; the next netmap retries`,
      );
      return;
    }
    this.applyError = null;
    this.routeError = null;
    this.wgConfigNow = wgConfig;
    this.routePlan = plan;
    this.applyFailures = 0;
    this.applied = target;
    this.emit('netmap:updated');
  }

  /** Applies the latest netmap again in `delayMs` (one pending retry at a time; none after stop). */
  private scheduleReapply(delayMs: number): void {
    if (this.stopped || this.ifaceRetry) return;
    this.ifaceRetry = this.clock.setTimeout(() => {
      this.ifaceRetry = null;
      if (this.stopped) return;
      this.applying = this.applying.then(() => this.applyNetmap(this.control.netmap)).catch((err: unknown) => this.logf(`engine: applying the netmap failed: ${(err as Error).message}`));
    }, delayMs);
  }

  /** The shared socket, then the interface (retried with backoff); true once both exist. */
  private async ensureDataPlane(nm: NetMap): Promise<boolean> {
    if (!this.magic) {
      const newMagic = (port: number, wireGuardDirect: boolean): MagicConn =>
        new MagicConn({
          nodePriv: this.control.nodePrivate,
          port,
          discoPriv: this.control.discoPrivate,
          discoPub: this.control.discoPublic,
          nodePub: this.control.nodePublic,
          clock: this.clock,
          logf: this.logf,
          wireGuardDirect,
        });
      const port = this.init.udpPort ?? 41641;
      const dp = this.system?.datapath ?? null;
      let magic: MagicConn | null = null;
      if (dp) {
        // The kernel data path (datapath/): WireGuard binds the public port P, Node binds its own Q, and nftables
        // makes Q's disco and STUN share P's NAT mapping. Where the rules cannot go in, today's proxy design stays.
        await dp.cleanupAtStart();
        const publicPort = port === 0 ? await freeUdpPort() : port;
        if (!(await udpPortFree(publicPort))) {
          // Someone else (tailscaled, another Weft) holds P: rules for it would steer their disco and STUN to us.
          this.dataPath = { mode: 'proxy', reason: `UDP port ${publicPort} is in use by another program` };
        } else {
          // Q is P+1 when free, so a host firewall that must open Weft's ports can name both (unsolicited disco to
          // P arrives as Q after the rewrite); any free port otherwise.
          const kernel = newMagic((await udpPortFree(publicPort + 1)) ? publicPort + 1 : 0, true);
          try {
            const discoPort = await kernel.start();
            this.dataPath = await dp.apply({ publicPort, discoPort });
          } catch (e) {
            this.dataPath = { mode: 'proxy', reason: `no socket for disco: ${(e as Error).message}` };
          }
          if (this.dataPath.mode === 'kernel') {
            magic = kernel;
            this.publicPort = publicPort;
            this.wgPort = publicPort;
          } else {
            await kernel.close();
          }
        }
      } else {
        this.dataPath = { mode: 'proxy', reason: this.system ? 'turned off (WEFT_DATAPATH=proxy)' : 'no kernel integration (a test interface)' };
      }
      if (!magic) {
        magic = newMagic(port, false);
        this.publicPort = await magic.start();
        this.wgPort = await freeLoopbackPort();
      }
      magic.on('path', (key) => this.emit('peer:path-changed', key));
      magic.on('path-lost', () => this.restunSoon());
      magic.on('wg-endpoint', (key) => this.onWireGuardEndpoint(key));
      this.magic = magic;
      magic.setWireGuardPort(this.wgPort);
      this.logf(`engine: ${this.dataPath.mode} data path${this.dataPath.mode === 'proxy' ? ` (${this.dataPath.reason})` : ''}: peers reach us on UDP ${this.publicPort}`);
    }
    if (this.wg) return true;
    if (this.ifaceRetry) return false; // a retry is scheduled; it applies the latest netmap
    let wg: WgInterface | null = null;
    const system = this.system;
    try {
      if (system) {
        // Fail closed: what a previous run left goes, and the allow-nothing filter is in place before the interface
        // exists (it matches the interface by name), so no peer can connect before the ACL from control applies.
        await system.router.cleanup();
        await system.dns?.cleanupAtStart();
        const err = await system.filter.apply(null, []);
        if (err) throw new Error(`cannot install the inbound filter, so the interface stays down: ${err}`);
      }
      wg = await this.init.createInterface();
      const service = this.serviceAddresses();
      try {
        await wg.up({ addresses: [...nm.self!.Addresses], mtu: WG_TUN_MTU, serviceAddresses: service });
      } catch (e) {
        // A host (or namespace) with IPv6 disabled refuses the fd7a:: address: run IPv4-only rather than not at all.
        const v4 = nm.self!.Addresses.filter((a) => !a.includes(':'));
        if (v4.length === nm.self!.Addresses.length) throw e;
        this.logf(`engine: IPv6 unavailable (${(e as Error).message}); running IPv4-only`);
        this.ipv6 = false;
        await wg.up({ addresses: v4, mtu: WG_TUN_MTU, serviceAddresses: service.filter((a) => !a.includes(':')) });
      }
    } catch (e) {
      await wg?.close().catch(() => undefined);
      if (this.stopped) return false;
      this.ifaceFailures++;
      const delay = ifaceRetryDelayMs(this.ifaceFailures);
      this.applyError = `creating the WireGuard interface failed: ${(e as Error).message}`;
      this.logf(`engine: ${this.applyError}; retry ${this.ifaceFailures} in ${delay / 1000} s`);
      this.scheduleReapply(delay);
      return false;
    }
    if (this.stopped) {
      await wg.close().catch(() => undefined);
      return false;
    }
    this.wg = wg;
    this.upKey = hostAddresses(nm.self!.Addresses).filter((a) => this.ipv6 || !a.includes(':')).join(' ');
    this.ifaceFailures = 0;
    if (system) this.scheduleSystemCheck();
    this.logf(`engine: ${wg.name} up with ${nm.self!.Addresses.join(' ')}, UDP ${this.publicPort}`);
    if (this.dataPath.mode === 'kernel') this.scheduleCounterPoll();
    void this.restun(nm);
    if (this.init.portMapping !== false) {
      const keeper = new PortMapKeeper({ internalPort: this.publicPort, clock: this.clock, logf: this.logf, excludeIfaces: [wg.name] });
      keeper.on('changed', (a) => {
        this.logf(`engine: port mapping ${a ? formatAddr(a) : 'none'}`);
        this.netInfo = { ...this.netInfo, HavePortMap: a !== null };
        this.control.setNetInfo(this.netInfo);
        void this.publishEndpoints(true);
      });
      this.portmap = keeper;
      keeper.start();
    }
    return true;
  }

  /**
   * STUN on the shared socket against the DERP map's STUN nodes: our public endpoints and each region's latency,
   * hence the home region. Runs every 20–26 s, every 3 s while no STUN server answers (UDP blocked: notice
   * the moment it is unblocked), and soon after a direct path is lost (restunSoon: the NAT may have rebound).
   */
  private async restun(nm: NetMap = this.control.netmap): Promise<void> {
    const magic = this.magic;
    if (!magic || this.stopped) return;
    if (this.restunning) {
      this.restunAgain = true;
      return;
    }
    this.restunning = true;
    if (this.restunTimer) this.clock.clearTimeout(this.restunTimer);
    this.restunTimer = null;
    this.lastRestunAt = this.clock.now();
    try {
      // Tailscale's TS_DEBUG_USE_DERP_HTTP equivalent, for labs whose DERP (headscale's embedded one) serves plain HTTP.
      const derp = derpTargets(nm.derpMap, !!process.env['WEFT_DEBUG_DERP_HTTP']);
      const targets = stunTargets(nm.derpMap).map((t) => ({ addr: t.addr, region: t.regionId }));
      const answers = await Promise.all(targets.slice(0, 6).map((t) => magic.stun.request(t.addr)));
      if (this.stopped) return;
      this.stunEndpoints = answers.flatMap((a) => (a?.mapped ? [{ addr: a.mapped, type: EndpointType.Stun }] : []));
      // Home region: the lowest STUN latency; kept while it still answers within 10 ms of the best (§6.5).
      const lat = new Map<number, number>();
      answers.forEach((a, i) => {
        const region = targets[i]!.region;
        if (a) lat.set(region, Math.min(lat.get(region) ?? Infinity, a.rttMs));
      });
      let home = magic.home;
      const best = [...lat.entries()].sort((x, y) => x[1] - y[1])[0];
      if (best && (home === null || !lat.has(home) || lat.get(home)! - best[1] >= 10)) home = best[0];
      if (home === null && derp.size > 0) home = [...derp.keys()].sort((a, b) => a - b)[0]!; // UDP blocked: still have a home
      const homeChanged = home !== magic.home;
      magic.setDerp(derp, home);
      const workingUdp = this.stunEndpoints.length > 0;
      this.workingUdp = workingUdp;
      // Our NetInfo, as peers and the UI see it: the home region and what STUN and port mapping tell about our NAT.
      const mappedIps = new Set<string>();
      const mapped = new Set<string>();
      answers.forEach((a, i) => {
        if (a?.mapped) {
          mappedIps.add(targets[i]!.addr.ip);
          mapped.add(formatAddr(a.mapped));
        }
      });
      const netInfo = {
        PreferredDERP: home ?? 0,
        WorkingUDP: workingUdp,
        ...(mappedIps.size >= 2 ? { MappingVariesByDestIP: mapped.size > 1 } : {}),
        HavePortMap: !!this.portmap?.external,
        DERPLatency: Object.fromEntries([...lat.entries()].map(([r, ms]) => [`${r}-v4`, ms / 1000])),
      };
      const netInfoChanged = JSON.stringify({ ...netInfo, DERPLatency: null }) !== JSON.stringify({ ...this.netInfo, DERPLatency: null });
      this.netInfo = netInfo;
      this.control.setNetInfo(netInfo);
      if (homeChanged) this.logf(`engine: home DERP region ${home ?? 'none'}`);
      await this.publishEndpoints(homeChanged || netInfoChanged);
    } finally {
      this.restunning = false;
    }
    if (this.stopped) return;
    if (this.restunAgain) {
      this.restunAgain = false;
      this.restunSoon();
      return;
    }
    const delay = !this.workingUdp ? ENDPOINT_RESTUN_NO_UDP_MS : ENDPOINT_RESTUN_MIN_MS + Math.random() * (ENDPOINT_RESTUN_MAX_MS - ENDPOINT_RESTUN_MIN_MS);
    this.restunTimer = this.clock.setTimeout(() => void this.restun(), delay);
  }

  /** Re-STUN now, or as soon as the minimum gap since the last one allows (a direct path was lost). */
  private restunSoon(): void {
    if (this.stopped || !this.magic) return;
    if (this.restunning) {
      this.restunAgain = true;
      return;
    }
    const wait = Math.max(0, this.lastRestunAt + ENDPOINT_RESTUN_MIN_GAP_MS - this.clock.now());
    if (this.restunTimer) this.clock.clearTimeout(this.restunTimer);
    this.restunTimer = this.clock.setTimeout(() => void this.restun(), wait);
  }

  /** Our endpoints (port mapping, STUN, interfaces): pushed to control and to the path reducers when they change. */
  private async publishEndpoints(force = false): Promise<void> {
    const magic = this.magic;
    if (!magic || this.stopped) return;
    const mapped: Endpoint[] = this.portmap?.external ? [{ addr: this.portmap.external, type: EndpointType.Portmapped }] : [];
    const eps = mergeEndpoints(mapped, this.stunEndpoints, localEndpoints(networkInterfaces(), this.publicPort, this.wg ? [this.wg.name] : []));
    if (!force && sameEndpointSet(eps, this.endpoints)) return;
    this.endpoints = eps;
    this.logf(`engine: endpoints ${eps.map((e) => formatAddr(e.addr)).join(' ')}`);
    magic.setLocalEndpoints(eps.map((e) => e.addr));
    await this.control.pushLiteUpdate(eps.map((e) => formatAddr(e.addr))).catch((e: unknown) => this.logf(`engine: endpoint update failed: ${(e as Error).message}`));
  }

  /** The control server's DERP map (null before the first netmap). */
  get derpMap(): DerpMap | null {
    return this.control.netmap.derpMap ?? null;
  }

  /**
   * A full NAT report against the DERP map's STUN servers (mapping/filtering behaviour, hairpin, region latency,
   * port mapping), on sockets of its own; the latest one is kept for status and the UI.
   */
  async netcheck(): Promise<NetcheckReport> {
    const map = this.derpMap;
    if (!map) throw new MeshError('state', 'no DERP map yet: netcheck needs the control server’s STUN servers', true);
    const targets = await netcheckTargetsFromMap(map, async (host) => (await lookup(host, { family: 4 })).address);
    const report = await runNetcheck({ targets, localPort: 0, clock: this.clock, logf: this.logf, portMapping: portMappingProbe({ logf: this.logf }) });
    this.lastNetcheck = report;
    return report;
  }

  /** The last netcheck report (null until one ran). */
  get netcheckReport(): NetcheckReport | null {
    return this.lastNetcheck;
  }

  /** A disco ping to a peer by name, 100.x address or node key; resolves with the reply's path and latency. */
  async ping(target: string, timeoutMs: number): Promise<{ peer: string; reply: { from: string; latencyMs: number } | null }> {
    const nm = this.control.netmap;
    const peer = [...nm.peers.values()].find(
      (p) => p.Name.split('.')[0] === target || p.Name.replace(/\.$/, '') === target || p.Key === target || p.Addresses.some((a) => a.split('/')[0] === target),
    );
    if (!peer) throw new Error(`no peer named ${target}`);
    if (!this.magic) throw new Error('the data plane is not up yet');
    const r = await this.magic.ping(peer.Key.slice('nodekey:'.length), timeoutMs);
    return { peer: peer.Name.split('.')[0] ?? target, reply: r ? { from: formatAddr(r.from), latencyMs: Math.round(r.latencyMs * 10) / 10 } : null };
  }

  /** The status report with data-plane facts: each peer's path and WireGuard counters. */
  async status(): Promise<StatusReport> {
    const base = buildStatus(this.control.status, this.control.netmap);
    base.dataPlaneError = this.applyError;
    // Kernel mode whose rules were lost for good (something keeps deleting them) says so: direct paths then fail.
    const live = this.system?.datapath?.status();
    const lost = this.dataPath.mode === 'kernel' && live?.mode === 'proxy' ? `the data-path rules are gone: ${live.reason}` : null;
    base.dataPath = this.magic ? { mode: this.dataPath.mode, reason: this.dataPath.mode === 'proxy' ? this.dataPath.reason : lost } : null;
    base.tailnet = this.tailnetStatus();
    if (this.wg) {
      try {
        this.stats = new Map(
          (await this.wg.stats()).map((s) => [toHex(s.publicKey), { rx: s.rxBytes, tx: s.txBytes, lastHandshake: s.lastHandshakeUnixMs ? new Date(s.lastHandshakeUnixMs).toISOString() : null }]),
        );
      } catch (e) {
        this.logf(`engine: wireguard stats failed: ${(e as Error).message}`);
      }
    }
    for (const p of base.peers) {
      const key = p.nodeKey.slice('nodekey:'.length);
      const st = this.stats.get(key);
      p.rxBytes = st?.rx ?? 0;
      p.txBytes = st?.tx ?? 0;
      p.lastHandshake = st?.lastHandshake ?? null;
      if (!this.magic) continue;
      const d = this.magic.discoStatsOf(key);
      p.disco = d ? { pingsSent: d.pingsSent, pongsReceived: d.pongsReceived, pingsReceived: d.pingsReceived, lastPongAt: d.lastPongAt === null ? null : new Date(d.lastPongAt).toISOString() } : null;
      if (p.path.kind === 'offline') continue;
      const view = this.magic.pathOf(key);
      p.path =
        view.kind === 'direct'
          ? { kind: 'direct', endpoint: formatAddr(view.addr), latencyMs: Math.round(view.latencyMs * 10) / 10 }
          : view.kind === 'relay'
            ? { kind: 'relay', region: view.region }
            : { kind: 'connecting' };
    }
    return base;
  }

  /**
   * Kernel data path: a peer's path changed, so WireGuard's endpoint for it may have (its direct address, or its
   * loopback proxy). Coalesced: one minimal WireGuard update for every change in the same turn.
   */
  private onWireGuardEndpoint(key: string): void {
    if (this.stopped || !this.wg || !this.magic) return;
    const ep = this.magic.wireGuardEndpoint(key);
    if (ep && ep.ip !== '127.0.0.1') this.kicks.set(key, this.clock.now());
    else this.kicks.delete(key);
    this.resyncWireGuard();
  }

  private resyncWireGuard(): void {
    if (this.wgResync) return;
    this.wgResync = true;
    this.applying = this.applying
      .then(async () => {
        this.wgResync = false;
        const cfg = this.wgConfigNow;
        if (!this.stopped && this.wg && cfg) await this.wg.set(cfg());
      })
      .catch((e: unknown) => {
        this.wgResync = false;
        this.logf(`engine: updating WireGuard endpoints failed: ${(e as Error).message}`);
      });
  }

  /**
   * Kernel data path: WireGuard's packets no longer pass through Node, so its counters (every WG_COUNTER_POLL_MS)
   * tell the path reducers whether traffic flows and whether the peer answers; and a kicked peer whose handshake
   * completed over its direct address stops its keepalives.
   */
  private scheduleCounterPoll(): void {
    if (this.stopped || this.counterTimer) return;
    this.counterTimer = this.clock.setTimeout(() => {
      this.counterTimer = null;
      void this.pollCounters().finally(() => this.scheduleCounterPoll());
    }, WG_COUNTER_POLL_MS);
  }

  private async pollCounters(): Promise<void> {
    const wg = this.wg;
    const magic = this.magic;
    if (this.stopped || !wg || !magic) return;
    let stats;
    try {
      stats = await wg.stats();
    } catch (e) {
      this.logf(`engine: wireguard stats failed: ${(e as Error).message}`);
      return;
    }
    const now = this.clock.now();
    const wall = Date.now();
    let unkick = false;
    let repin = false;
    const seen = new Map<string, string>();
    for (const s of stats) {
      const key = toHex(s.publicKey);
      // WireGuard roams: it sends to wherever the peer's last authenticated packet came from, and a packet the relay
      // delivered came from the peer's loopback proxy. On a direct path that would route WireGuard back through
      // Node and the proxy's socket, whose packets a stateful host firewall does not match with the peer's replies
      // to the public port (CI saw the handshake fail that way for 20 s). So it is pinned back to the direct
      // address, with a kick (an immediate keepalive from the public port, which lets the replies in).
      const want = magic.wireGuardEndpoint(key);
      // Only a move onto a loopback proxy is undone; a move to another public address is the peer's NAT rebinding,
      // which disco finds and follows.
      if (want && want.ip !== '127.0.0.1' && s.endpoint?.ip === '127.0.0.1' && !sameAddr(s.endpoint, want)) {
        this.wg?.forgetEndpoint(s.publicKey);
        if (!this.kicks.has(key)) this.kicks.set(key, now);
        repin = true;
        const last = this.roamLogged.get(key);
        if (last === undefined || now - last >= ROAM_LOG_EVERY_MS) {
          this.roamLogged.set(key, now);
          this.logf(`engine: WireGuard moved peer ${key.slice(0, 8)} to ${formatAddr(s.endpoint)} (roaming); pinning it back to its direct address ${formatAddr(want)}`);
        }
      }
      const lastHandshakeAt = s.lastHandshakeUnixMs === null ? null : now - Math.max(0, wall - s.lastHandshakeUnixMs);
      // Only samples that moved reach the reducer (its own timer notices trust running out): with thousands of
      // idle peers this loop stays a comparison per peer.
      const sample = `${s.txBytes}/${s.rxBytes}/${s.lastHandshakeUnixMs ?? ''}`;
      seen.set(key, sample);
      if (this.lastSamples.get(key) !== sample) magic.wireGuardCounters(key, { txBytes: s.txBytes, rxBytes: s.rxBytes, lastHandshakeAt });
      const kicked = this.kicks.get(key);
      if (kicked !== undefined && ((lastHandshakeAt !== null && lastHandshakeAt >= kicked) || now - kicked > WG_KICK_MAX_MS)) {
        this.kicks.delete(key);
        unkick = true;
      }
    }
    this.lastSamples = seen;
    // Peers that left WireGuard (and the netmap) lose their kick.
    for (const key of this.kicks.keys()) if (!seen.has(key)) this.kicks.delete(key);
    for (const key of this.roamLogged.keys()) if (!seen.has(key)) this.roamLogged.delete(key);
    if (unkick || repin) this.resyncWireGuard();
  }

  /** MagicDNS's addresses on the interface (only with a system that serves DNS). */
  private serviceAddresses(): string[] {
    if (!this.system?.dns) return [];
    return this.ipv6 ? [`${QUAD100_V4}/32`, `${QUAD100_V6}/128`] : [`${QUAD100_V4}/32`];
  }

  /**
   * Every SYSTEM_CHECK_MS: the filter is still in the kernel (a firewall reload may flush every table), and the next
   * route update compares with the kernel again (rules deleted by someone else come back).
   */
  private scheduleSystemCheck(): void {
    if (this.stopped || !this.system) return;
    this.systemCheckTimer = this.clock.setTimeout(() => {
      this.systemCheckTimer = null;
      const system = this.system;
      if (this.stopped || !system) return;
      this.applying = this.applying
        .then(async () => {
          await system.filter.check();
          await system.dns?.check();
          if (this.dataPath.mode === 'kernel') await system.datapath?.check();
          system.router.markStale();
          if (!this.stopped && this.wg) await this.applyNetmap(this.control.netmap);
        })
        .catch((e: unknown) => this.logf(`engine: system check failed: ${(e as Error).message}`))
        .finally(() => this.scheduleSystemCheck());
    }, SYSTEM_CHECK_MS);
  }

  /** Operator preferences (weftd settings): applied to the current netmap at once. */
  setPrefs(p: Partial<EnginePrefs>): void {
    const next = { ...this.prefs, ...p };
    if (next.acceptRoutes === this.prefs.acceptRoutes && next.acceptDns === this.prefs.acceptDns) return;
    this.prefs = next;
    this.logf(`engine: subnet routes ${next.acceptRoutes ? 'on' : 'off'}, MagicDNS ${next.acceptDns ? 'on' : 'off'}`);
    if (this.stopped || !this.wg) return;
    this.applying = this.applying.then(() => this.applyNetmap(this.control.netmap)).catch((e: unknown) => this.logf(`engine: applying the netmap failed: ${(e as Error).message}`));
  }

  /** The filter, routes, MagicDNS and the effective access, as enforced now (null before the data plane). */
  private tailnetStatus(): TailnetStatus | null {
    if (!this.wg) return null;
    const nm = this.control.netmap;
    const plan = this.routePlan;
    const selfAddrs = hostAddresses(nm.self?.Addresses ?? []);
    const filter: FilterStatus = this.system
      ? this.system.filter.status()
      : { state: 'none', ruleCount: 0, nftRuleCount: 0, appliedAt: null, error: 'no kernel filter in this mode (a test interface)', skipped: [] };
    return {
      filter,
      routes: {
        acceptRoutes: this.prefs.acceptRoutes,
        table: this.system?.router.table ?? 0,
        installed: plan?.routes ?? [],
        skipped: plan?.skipped ?? [],
        error: this.routeError,
      },
      dns: this.system?.dns?.status() ?? { acceptDns: this.prefs.acceptDns, mode: 'off', suffix: null, serving: false, error: null },
      access: filter.state === 'none' ? [] : effectiveAccess(this.enforcedRules(), selfAddrs, [...nm.peers.values()].map((p) => ({ name: shortName(p), addresses: hostAddresses(p.Addresses) }))),
    };
  }

  /** The rules the kernel enforces (the last good filter when the newest one failed). */
  private enforcedRules(): readonly FilterRule[] {
    return this.system ? (this.system.filter.enforced() ?? []) : this.control.netmap.packetFilter;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restunTimer) this.clock.clearTimeout(this.restunTimer);
    if (this.ifaceRetry) this.clock.clearTimeout(this.ifaceRetry);
    if (this.systemCheckTimer) this.clock.clearTimeout(this.systemCheckTimer);
    if (this.counterTimer) this.clock.clearTimeout(this.counterTimer);
    await this.portmap?.stop();
    await this.control.stop();
    await this.applying.catch(() => {});
    await this.magic?.close();
    if (this.system) {
      await this.system.dns?.close();
      await this.system.router.cleanup();
    }
    await this.wg?.close();
    // The port sharing goes once neither WireGuard nor Node holds the ports; the filter goes last, after the
    // interface: nothing reaches this node in between.
    if (this.dataPath.mode === 'kernel') await this.system?.datapath?.remove();
    if (this.system && this.wg) await this.system.filter.remove();
    this.magic = null;
    this.wg = null;
  }
}

/** How often the kernel state beside the interface is checked (filter present, policy rules in place). */
const SYSTEM_CHECK_MS = 15_000;

/** Host addresses ("100.64.0.1/32", "fd7a::1/128", or bare) as canonical IPs; anything else is dropped. */
function hostAddresses(addrs: readonly string[]): string[] {
  return addrs.flatMap((a) => {
    const p = parseIpPrefix(a, { allowBare: true });
    return p && p.bits === (p.family === 4 ? 32 : 128) ? [p.ip] : [];
  });
}

/** Kernel data path: how often WireGuard's counters are read, and how long a kicked peer keeps its keepalives at most. */
const WG_COUNTER_POLL_MS = 1000;
const WG_KICK_MAX_MS = 15_000;
/** A peer WireGuard keeps roaming away from its direct address is logged at most this often. */
const ROAM_LOG_EVERY_MS = 60_000;
/** The keepalive interval (s) while kicked; turning it on from 0 makes wireguard-go send one keepalive at once. */
const WG_KICK_KEEPALIVE_S = 25;

/** A free UDP port (any address) for WireGuard's public port when none was configured (bound, read and released). */
async function freeUdpPort(): Promise<number> {
  const s = await bindUdp({ port: 0 });
  const port = s.localPort();
  await s.close();
  return port;
}

/** Reports whether UDP `port` can be bound on every IPv4 address now (nothing else holds it). */
async function udpPortFree(port: number): Promise<boolean> {
  if (port <= 0 || port > 65535) return false;
  try {
    const s = await bindUdp({ port });
    await s.close();
    return true;
  } catch {
    return false;
  }
}

/** A free UDP port on loopback for wireguard-go (bound, read and released). */
async function freeLoopbackPort(): Promise<number> {
  const s = await bindUdp({ address: '127.0.0.1', port: 0 });
  const port = s.localPort();
  await s.close();
  return port;
}
