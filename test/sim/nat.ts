/**
 * A NAT box for the in-memory internet (net.ts): RFC 4787 mapping and filtering behaviours, deterministic
 * through a seeded RNG and the caller's `now` (the FakeClock's time). Modelled on tailscale
 * tstest/natlab/nat.go; no code shared.
 *
 *   inside host ──▶ outbound(internal, remote) ──▶ external ip:port seen by the remote
 *                     mapping key:  EIM  internal
 *                                   ADM  internal + remote IP
 *                                   APDM internal + remote IP:port        ("endpoint-dependent", hard NAT)
 *                     port: the internal port if `portPreservation` and free, else a random free one
 *
 *   remote ──▶ inbound(remote, externalPort) ──▶ internal ip:port, or dropped
 *                     filter:       EIF  anyone may send to a live mapping
 *                                   ADF  only IPs this mapping has sent to
 *                                   APDF only IP:ports this mapping has sent to
 *
 * A mapping lives `mappingTimeoutMs` after its last outbound packet (inbound traffic does not refresh
 * it, the conservative RFC 4787 REQ-6 choice). Every live mapping owns a distinct external port, so an
 * inbound packet names at most one mapping.
 */
import type { UdpAddr } from '../../src-main/protocol/wire/addr.ts';

export type MappingBehavior = 'EIM' | 'ADM' | 'APDM';
export type FilteringBehavior = 'EIF' | 'ADF' | 'APDF';

export interface NatConfig {
  readonly mapping: MappingBehavior;
  readonly filtering: FilteringBehavior;
  /** Keep the internal source port as the external one when it is free. @default true */
  readonly portPreservation?: boolean;
  /** Loop packets sent to our own public address back inside (RFC 4787 REQ-9). @default false */
  readonly hairpin?: boolean;
  /** Idle lifetime of a mapping. @default 120_000 (RFC 4787 REQ-5's minimum of 2 minutes) */
  readonly mappingTimeoutMs?: number;
}

/** The classic names. `easy` NATs are EIM; `hard` (symmetric) ones are endpoint-dependent. */
export const NAT: Readonly<Record<'fullCone' | 'restrictedCone' | 'portRestrictedCone' | 'symmetric', NatConfig>> = {
  fullCone: { mapping: 'EIM', filtering: 'EIF' },
  restrictedCone: { mapping: 'EIM', filtering: 'ADF' },
  portRestrictedCone: { mapping: 'EIM', filtering: 'APDF' },
  symmetric: { mapping: 'APDM', filtering: 'APDF', portPreservation: false },
};

/** Small seeded PRNG (mulberry32): same seed, same sequence. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Uniform integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
}

const key = (a: UdpAddr): string => `${a.ip}|${a.port}`;

export interface NatMapping {
  readonly internal: UdpAddr;
  readonly external: UdpAddr;
  lastOutAt: number;
  /** Remote IP:ports and IPs this mapping has sent to (the filter's allow lists). */
  readonly sentTo: Set<string>;
  readonly sentToIp: Set<string>;
}

export type InboundResult = { readonly ok: true; readonly internal: UdpAddr } | { readonly ok: false; readonly reason: 'no-mapping' | 'filtered' };

const PORT_MIN = 1024;
const PORT_MAX = 65535;

export class NatBox {
  private readonly byKey = new Map<string, NatMapping>();
  private readonly byPort = new Map<number, NatMapping>();
  private readonly timeoutMs: number;

  constructor(
    readonly publicIp: string,
    readonly config: NatConfig,
    private readonly rng: Rng,
  ) {
    this.timeoutMs = config.mappingTimeoutMs ?? 120_000;
  }

  get hairpin(): boolean {
    return this.config.hairpin ?? false;
  }

  /** Translates an outgoing packet's source; creates or refreshes the mapping and opens the filter. */
  outbound(internal: UdpAddr, remote: UdpAddr, now: number): UdpAddr {
    this.expire(now);
    const mk =
      this.config.mapping === 'EIM' ? key(internal) : this.config.mapping === 'ADM' ? `${key(internal)}>${remote.ip}` : `${key(internal)}>${key(remote)}`;
    let m = this.byKey.get(mk);
    if (!m) {
      m = { internal: { ...internal }, external: { ip: this.publicIp, port: this.allocPort(internal.port) }, lastOutAt: now, sentTo: new Set(), sentToIp: new Set() };
      this.byKey.set(mk, m);
      this.byPort.set(m.external.port, m);
    }
    m.lastOutAt = now;
    m.sentTo.add(key(remote));
    m.sentToIp.add(remote.ip);
    return m.external;
  }

  /** Decides an incoming packet from `remote` to our public `externalPort`. */
  inbound(remote: UdpAddr, externalPort: number, now: number): InboundResult {
    this.expire(now);
    const m = this.byPort.get(externalPort);
    if (!m) return { ok: false, reason: 'no-mapping' };
    const f = this.config.filtering;
    const allowed = f === 'EIF' || (f === 'ADF' ? m.sentToIp.has(remote.ip) : m.sentTo.has(key(remote)));
    return allowed ? { ok: true, internal: m.internal } : { ok: false, reason: 'filtered' };
  }

  /** Live mappings (for assertions). */
  mappings(now: number): readonly NatMapping[] {
    this.expire(now);
    return [...this.byKey.values()];
  }

  private expire(now: number): void {
    for (const [k, m] of this.byKey) {
      if (now - m.lastOutAt <= this.timeoutMs) continue;
      this.byKey.delete(k);
      this.byPort.delete(m.external.port);
    }
  }

  private allocPort(preferred: number): number {
    if ((this.config.portPreservation ?? true) && !this.byPort.has(preferred)) return preferred;
    for (let i = 0; i < 64; i++) {
      const p = this.rng.int(PORT_MIN, PORT_MAX);
      if (!this.byPort.has(p)) return p;
    }
    for (let p = PORT_MIN; p <= PORT_MAX; p++) if (!this.byPort.has(p)) return p;
    throw new Error(`nat ${this.publicIp}: out of ports`);
  }
}
