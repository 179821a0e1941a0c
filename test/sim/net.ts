/**
 * An in-memory internet for path tests: public hosts, LANs behind NAT boxes (nat.ts), UDP sockets, and a
 * log of every datagram. Time is the FakeClock's: a datagram is routed (and NAT-translated outbound) when
 * sent, then crosses the wire for a fixed latency, and meets the destination NAT's filter on arrival, so
 * simultaneous opens behave as on real NATs. Loss is drawn from a seeded RNG. Payloads are any value (tests
 * send tagged objects instead of sealed disco bytes).
 *
 *   host 10.0.0.2:41641 ──lan──▶ NatBox(198.51.100.1) ──wan──▶ NatBox(203.0.113.1) ──lan──▶ host 10.1.0.2
 *        │  same-LAN destination: straight there (lanLatencyMs)              │ inbound(): mapping + filter
 *        └─ to own NAT's public IP: hairpin if enabled, else dropped          └─ drop: no-mapping / filtered
 *
 * Host IPs must be unique across the whole simulation (a private IP names one host), and private
 * addresses of other LANs are unroutable from outside.
 */
import type { UdpAddr } from '../../src-main/protocol/wire/addr.ts';
import type { FakeClock } from './fake-clock.ts';
import { NatBox, Rng, type NatConfig } from './nat.ts';

export interface SimDatagram<P> {
  /** The source as the receiver sees it (after NAT). */
  readonly from: UdpAddr;
  /** The receiving socket's own address. */
  readonly to: UdpAddr;
  readonly payload: P;
}

export type DropReason = 'unroutable' | 'no-mapping' | 'filtered' | 'no-hairpin' | 'no-listener' | 'loss' | 'fault';

export interface SimRecord<P> {
  readonly id: number;
  readonly sentAt: number;
  readonly from: UdpAddr;
  readonly to: UdpAddr;
  readonly payload: P;
  outcome: 'in-flight' | 'delivered' | 'dropped';
  reason?: DropReason;
  /** Source seen by the receiver, once delivered. */
  seenFrom?: UdpAddr;
  deliveredAt?: number;
}

export interface SimNetOptions<P> {
  readonly clock: FakeClock;
  /** Seed for NAT port choice and loss. @default 1 */
  readonly seed?: number;
  /** One-way latency across the internet. @default 20 */
  readonly wanLatencyMs?: number;
  /** One-way latency inside a LAN (also added for the hop from a NAT to an inside host). @default 1 */
  readonly lanLatencyMs?: number;
  /** Probability that any datagram is lost. @default 0 */
  readonly lossRate?: number;
  /** Overrides the WAN latency between two public IPs. */
  readonly wanLatency?: (fromPublicIp: string, toPublicIp: string) => number;
  /** Keep at most this many log records (oldest dropped). @default 100_000 */
  readonly maxLog?: number;
  /** Called for every datagram before routing; return true to drop it ('fault'). */
  fault?: (from: UdpAddr, to: UdpAddr, payload: P) => boolean;
}

export class SimSocket<P> {
  closed = false;
  constructor(
    private readonly net: SimNet<P>,
    readonly addr: UdpAddr,
    readonly onReceive: (d: SimDatagram<P>) => void,
  ) {}
  send(to: UdpAddr, payload: P): void {
    if (!this.closed) this.net.send(this.addr, to, payload);
  }
  close(): void {
    this.closed = true;
    this.net.unbind(this.addr);
  }
}

export class SimHost<P> {
  constructor(
    private readonly net: SimNet<P>,
    readonly name: string,
    readonly ip: string,
    /** The LAN the host sits in; null for a host on the public internet. */
    readonly lan: SimLan<P> | null,
  ) {}
  bind(port: number, onReceive: (d: SimDatagram<P>) => void): SimSocket<P> {
    return this.net.bind({ ip: this.ip, port }, onReceive);
  }
}

export class SimLan<P> {
  readonly hosts = new Map<string, SimHost<P>>();
  constructor(
    private readonly net: SimNet<P>,
    readonly name: string,
    readonly nat: NatBox,
  ) {}
  get publicIp(): string {
    return this.nat.publicIp;
  }
  addHost(name: string, ip: string): SimHost<P> {
    const h = this.net.registerHost(name, ip, this);
    this.hosts.set(ip, h);
    return h;
  }
}

const sockKey = (a: UdpAddr): string => `${a.ip}|${a.port}`;

export class SimNet<P> {
  readonly log: SimRecord<P>[] = [];
  readonly clock: FakeClock;
  fault: ((from: UdpAddr, to: UdpAddr, payload: P) => boolean) | undefined;
  private readonly rng: Rng;
  private readonly hosts = new Map<string, SimHost<P>>();
  private readonly lansByPublicIp = new Map<string, SimLan<P>>();
  private readonly sockets = new Map<string, SimSocket<P>>();
  private readonly opts: Required<Omit<SimNetOptions<P>, 'fault' | 'wanLatency' | 'clock'>>;
  private readonly wanLatency: ((a: string, b: string) => number) | undefined;
  private nextId = 1;

  constructor(opts: SimNetOptions<P>) {
    this.clock = opts.clock;
    this.rng = new Rng(opts.seed ?? 1);
    this.fault = opts.fault;
    this.wanLatency = opts.wanLatency;
    this.opts = {
      seed: opts.seed ?? 1,
      wanLatencyMs: opts.wanLatencyMs ?? 20,
      lanLatencyMs: opts.lanLatencyMs ?? 1,
      lossRate: opts.lossRate ?? 0,
      maxLog: opts.maxLog ?? 100_000,
    };
  }

  addPublicHost(name: string, ip: string): SimHost<P> {
    return this.registerHost(name, ip, null);
  }

  /** Adds a LAN whose NAT box owns `publicIp`; add its hosts with `lan.addHost`. */
  addLan(name: string, publicIp: string, nat: NatConfig): SimLan<P> {
    if (this.hosts.has(publicIp) || this.lansByPublicIp.has(publicIp)) throw new Error(`sim: ${publicIp} already in use`);
    const lan = new SimLan<P>(this, name, new NatBox(publicIp, nat, this.rng));
    this.lansByPublicIp.set(publicIp, lan);
    return lan;
  }

  /** @internal used by SimLan */
  registerHost(name: string, ip: string, lan: SimLan<P> | null): SimHost<P> {
    if (this.hosts.has(ip) || this.lansByPublicIp.has(ip)) throw new Error(`sim: ${ip} already in use`);
    const h = new SimHost<P>(this, name, ip, lan);
    this.hosts.set(ip, h);
    return h;
  }

  bind(addr: UdpAddr, onReceive: (d: SimDatagram<P>) => void): SimSocket<P> {
    if (!this.hosts.has(addr.ip)) throw new Error(`sim: no host ${addr.ip}`);
    if (this.sockets.has(sockKey(addr))) throw new Error(`sim: ${addr.ip}:${addr.port} already bound`);
    const s = new SimSocket<P>(this, { ...addr }, onReceive);
    this.sockets.set(sockKey(addr), s);
    return s;
  }

  /** @internal used by SimSocket.close */
  unbind(addr: UdpAddr): void {
    this.sockets.delete(sockKey(addr));
  }

  /** Sends one datagram from a bound socket's address; it is delivered later, or dropped, and logged. */
  send(from: UdpAddr, to: UdpAddr, payload: P): void {
    const rec: SimRecord<P> = { id: this.nextId++, sentAt: this.clock.now(), from: { ...from }, to: { ...to }, payload, outcome: 'in-flight' };
    this.log.push(rec);
    if (this.log.length > this.opts.maxLog) this.log.splice(0, this.log.length - this.opts.maxLog);
    const src = this.hosts.get(from.ip);
    if (!src || !this.sockets.has(sockKey(from))) throw new Error(`sim: send from unbound ${from.ip}:${from.port}`);
    if (this.fault?.(from, to, payload)) return this.drop(rec, 'fault');
    if (this.opts.lossRate > 0 && this.rng.next() < this.opts.lossRate) return this.drop(rec, 'loss');
    const lan = src.lan;
    if (lan && lan.hosts.has(to.ip)) return this.later(this.opts.lanLatencyMs, () => this.deliver(rec, from, to));
    if (!lan) return this.wan(rec, from, to, from.ip, 0);
    const ext = lan.nat.outbound(from, to, this.clock.now());
    if (to.ip === lan.publicIp) {
      if (!lan.nat.hairpin) return this.drop(rec, 'no-hairpin');
      return this.later(this.opts.lanLatencyMs, () => this.arriveAtNat(rec, lan, ext, to));
    }
    return this.wan(rec, ext, to, lan.publicIp, this.opts.lanLatencyMs);
  }

  /** Datagrams that were delivered, optionally filtered. */
  delivered(pred: (r: SimRecord<P>) => boolean = () => true): SimRecord<P>[] {
    return this.log.filter((r) => r.outcome === 'delivered' && pred(r));
  }

  private wan(rec: SimRecord<P>, src: UdpAddr, to: UdpAddr, srcPublicIp: string, extraMs: number): void {
    const dstLan = this.lansByPublicIp.get(to.ip);
    const dstHost = this.hosts.get(to.ip);
    if (!dstLan && (!dstHost || dstHost.lan)) return this.drop(rec, 'unroutable');
    const wanMs = this.wanLatency?.(srcPublicIp, to.ip) ?? this.opts.wanLatencyMs;
    this.later(extraMs + wanMs, () => (dstLan ? this.arriveAtNat(rec, dstLan, src, to) : this.deliver(rec, src, to)));
  }

  private arriveAtNat(rec: SimRecord<P>, lan: SimLan<P>, src: UdpAddr, to: UdpAddr): void {
    const r = lan.nat.inbound(src, to.port, this.clock.now());
    if (!r.ok) return this.drop(rec, r.reason);
    const inside = r.internal;
    this.later(this.opts.lanLatencyMs, () => this.deliver(rec, src, inside));
  }

  private deliver(rec: SimRecord<P>, seenFrom: UdpAddr, to: UdpAddr): void {
    const sock = this.sockets.get(sockKey(to));
    if (!sock || sock.closed) return this.drop(rec, 'no-listener');
    rec.outcome = 'delivered';
    rec.seenFrom = { ...seenFrom };
    rec.deliveredAt = this.clock.now();
    sock.onReceive({ from: { ...seenFrom }, to: { ...sock.addr }, payload: rec.payload });
  }

  private later(ms: number, fn: () => void): void {
    this.clock.setTimeout(fn, ms);
  }

  private drop(rec: SimRecord<P>, reason: DropReason): void {
    rec.outcome = 'dropped';
    rec.reason = reason;
  }
}
