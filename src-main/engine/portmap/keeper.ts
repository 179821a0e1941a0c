/**
 * PortMapKeeper: keeps one UDP port mapping for the shared socket on the home router (dataplane-protocol §8)
 * and reports its public address, which the engine advertises as an endpoint candidate (EndpointType 3).
 *
 *   start → find the default gateway → probe NAT-PMP, PCP and UPnP together → create a mapping
 *         → renew at half the granted lifetime (asking for the same external port) → ... → stop: release it.
 *
 * A failure (no gateway, nothing answers, the router refuses) reports no mapping and tries again later,
 * backing off from 30 s to 10 min, because home routers come and go and users turn UPnP on. The I/O is
 * injected (defaults: the real portmapper), and so is the clock, so the schedule is unit-tested.
 */
import { EventEmitter } from 'node:events';
import { PORTMAP_PROBE_TIMEOUT_MS, PORTMAP_RETRY_MAX_MS, PORTMAP_RETRY_MIN_MS, PORTMAP_LIFETIME_S } from '../constants.ts';
import type { Clock, TimerHandle } from '../sys/clock.ts';
import type { Logf } from '../sys/log.ts';
import type { UdpAddr } from '../../protocol/wire/addr.ts';
import { findDefaultGateway, type DefaultGateway } from './gateway.ts';
import { createMapping, probePortMapping, releaseMapping, type CreateMappingOptions, type MapResult, type PortMapProbe, type PortMapping, type ProbeOptions, type ReleaseMappingOptions } from './portmapper.ts';

export interface PortMapIo {
  findGateway(excludeIfaces: readonly string[]): Promise<DefaultGateway | null>;
  probe(o: ProbeOptions): Promise<PortMapProbe>;
  create(o: CreateMappingOptions): Promise<MapResult>;
  release(o: ReleaseMappingOptions): Promise<void>;
}

export const realPortMapIo: PortMapIo = {
  findGateway: (excludeIfaces) => findDefaultGateway({ excludeIfaces }),
  probe: probePortMapping,
  create: createMapping,
  release: releaseMapping,
};

export interface PortMapKeeperInit {
  /** The local UDP port to map (the shared socket's). */
  internalPort: number;
  clock: Clock;
  logf: Logf;
  /** Interfaces never to take as the way to the gateway (Weft's own tunnel). */
  excludeIfaces?: readonly string[];
  io?: PortMapIo;
}

export interface PortMapKeeperEvents {
  /** The public address of the mapping, or null when there is none (any more). */
  changed: [UdpAddr | null];
}

export class PortMapKeeper extends EventEmitter<PortMapKeeperEvents> {
  // Owned by this instance.
  private mapping: PortMapping | null = null;
  private gateway: DefaultGateway | null = null;
  private timer: TimerHandle | null = null;
  private failures = 0;
  private stopped = false;
  private running: Promise<void> = Promise.resolve();
  private readonly io: PortMapIo;

  constructor(private readonly init: PortMapKeeperInit) {
    super();
    this.io = init.io ?? realPortMapIo;
  }

  /** The mapping's public address, if there is one. */
  get external(): UdpAddr | null {
    return this.mapping ? { ip: this.mapping.externalIp, port: this.mapping.externalPort } : null;
  }

  get current(): PortMapping | null {
    return this.mapping;
  }

  start(): void {
    this.run();
  }

  private run(): void {
    this.running = this.running.then(() => this.attempt()).catch((e: unknown) => this.init.logf(`portmap: ${(e as Error).message}`));
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer) this.init.clock.clearTimeout(this.timer);
    this.timer = this.init.clock.setTimeout(() => {
      this.timer = null;
      this.run();
    }, ms);
  }

  private set(m: PortMapping | null): void {
    const before = this.external;
    this.mapping = m;
    const after = this.external;
    if (before?.ip !== after?.ip || before?.port !== after?.port) this.emit('changed', after);
  }

  private fail(why: string): void {
    const delay = Math.min(PORTMAP_RETRY_MAX_MS, PORTMAP_RETRY_MIN_MS * 2 ** this.failures);
    this.failures++;
    this.init.logf(`portmap: no mapping (${why}); trying again in ${Math.round(delay / 1000)} s`);
    this.set(null);
    this.schedule(delay);
  }

  /** One create-or-renew attempt, then the next one is scheduled. */
  private async attempt(): Promise<void> {
    if (this.stopped) return;
    const gw = await this.io.findGateway(this.init.excludeIfaces ?? []);
    if (this.stopped) return;
    if (!gw) return this.fail('no IPv4 default gateway');
    if (this.gateway && this.gateway.gateway !== gw.gateway) this.mapping = null; // another network: start over
    this.gateway = gw;
    const probe = await this.io.probe({ gateway: gw.gateway, localIp: gw.localIp, clock: this.init.clock, timeoutMs: PORTMAP_PROBE_TIMEOUT_MS });
    if (this.stopped) return;
    if (!probe.natpmp && !probe.pcp && !probe.upnp) return this.fail(`the gateway ${gw.gateway} answers none of NAT-PMP, PCP and UPnP`);
    const prev = this.mapping;
    const r = await this.io.create({
      gateway: gw.gateway,
      localIp: gw.localIp,
      internalPort: this.init.internalPort,
      lifetimeS: PORTMAP_LIFETIME_S,
      probe,
      clock: this.init.clock,
      logf: this.init.logf,
      ...(prev ? { suggestedExternalPort: prev.externalPort } : {}),
    });
    if (this.stopped) {
      if (r.ok) await this.io.release({ gateway: gw.gateway, localIp: gw.localIp, mapping: r.mapping, clock: this.init.clock, logf: this.init.logf });
      return;
    }
    if (!r.ok) return this.fail(r.error);
    this.failures = 0;
    this.set(r.mapping);
    // Renew at half the granted lifetime; a permanent UPnP lease (0) is still re-checked hourly.
    const lifetimeS = r.mapping.lifetimeS > 0 ? r.mapping.lifetimeS : 7200;
    this.schedule(Math.max(1, Math.floor(lifetimeS / 2)) * 1000);
  }

  /** Stops renewing and releases the mapping (bounded by the portmapper's own timeouts). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) this.init.clock.clearTimeout(this.timer);
    this.timer = null;
    await this.running.catch(() => {});
    const m = this.mapping;
    const gw = this.gateway;
    this.mapping = null;
    if (m && gw) await this.io.release({ gateway: gw.gateway, localIp: gw.localIp, mapping: m, clock: this.init.clock, logf: this.init.logf });
  }
}
