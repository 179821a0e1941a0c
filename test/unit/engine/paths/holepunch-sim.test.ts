/**
 * Two peers' path reducers over the simulated internet (test/sim/net.ts + nat.ts), driven by the fake
 * clock. A small driver executes effects: pings and pongs travel as tagged objects through the NATs;
 * CallMeMaybe travels "out of band" (as control/DERP would) with a fixed delay; schedule effects arm one
 * timer per peer that feeds `tick`. Each peer learns its own public endpoint from a STUN-like reflector
 * and both advertise [LAN address, reflected address] to the other via "control" (netmap-endpoints).
 */
import { describe, expect, it } from 'vitest';
import { addrKey, initialPathState, step, type PathEffect, type PathEvent, type PathState, type PathView } from '../../../../src-main/engine/paths/endpoint.ts';
import type { TimerHandle } from '../../../../src-main/engine/sys/clock.ts';
import { sameAddr, type UdpAddr } from '../../../../src-main/protocol/wire/addr.ts';
import { FakeClock } from '../../../sim/fake-clock.ts';
import { NAT, type NatConfig } from '../../../sim/nat.ts';
import { SimNet, type SimHost, type SimSocket } from '../../../sim/net.ts';

type Msg =
  | { kind: 'ping'; txid: string }
  | { kind: 'pong'; txid: string; src: UdpAddr }
  | { kind: 'data' }
  | { kind: 'stun' }
  | { kind: 'stun-reply'; observed: UdpAddr };

const PORT = 41641;
const STUN: UdpAddr = { ip: '192.0.2.200', port: 3478 };
const OOB_DELAY_MS = 60; // CallMeMaybe via control/DERP
const DATA_EVERY_MS = 1000;
const MAX_DISPATCH = 200_000;

class Peer {
  state: PathState;
  endpoints: UdpAddr[] = [];
  observed: UdpAddr | null = null;
  readonly paths: { at: number; path: PathView }[] = [];
  readonly wgEndpoints: { at: number; addr: UdpAddr | null }[] = [];
  readonly sock: SimSocket<Msg>;
  other!: Peer;
  sending = true;
  private timer: TimerHandle | null = null;
  private tx = 0;

  constructor(
    readonly name: string,
    readonly host: SimHost<Msg>,
    private readonly w: World,
  ) {
    this.state = initialPathState({ newTxId: () => `${name}-${++this.tx}` });
    this.sock = host.bind(PORT, (d) => {
      const m = d.payload;
      if (m.kind === 'ping') this.dispatch({ type: 'ping-received', from: d.from, txid: m.txid });
      else if (m.kind === 'pong') this.dispatch({ type: 'pong-received', from: d.from, txid: m.txid, src: m.src });
      else if (m.kind === 'stun-reply') this.observed = m.observed;
    });
  }

  get local(): UdpAddr {
    return this.sock.addr;
  }

  /** The path shown at time t (connecting before the first change). */
  pathAt(t: number): PathView {
    let v: PathView = { kind: 'connecting' };
    for (const p of this.paths) if (p.at <= t) v = p.path;
    return v;
  }

  firstDirectAt(after = -1): number | null {
    return this.paths.find((p) => p.at > after && p.path.kind === 'direct')?.at ?? null;
  }

  dispatch(e: PathEvent): void {
    if (++this.w.dispatches > MAX_DISPATCH) throw new Error('driver: too many events (runaway loop?)');
    const now = this.w.clock.now();
    const r = step(this.state, e, now);
    this.state = r.state;
    for (const fx of r.effects) this.exec(fx, now);
  }

  private exec(fx: PathEffect, now: number): void {
    switch (fx.type) {
      case 'send-ping':
        this.sock.send(fx.to, { kind: 'ping', txid: fx.txid });
        break;
      case 'send-pong':
        this.sock.send(fx.to, { kind: 'pong', txid: fx.txid, src: fx.src });
        break;
      case 'send-call-me-maybe': {
        const eps = [...fx.endpoints];
        this.w.clock.setTimeout(() => this.other.dispatch({ type: 'call-me-maybe', endpoints: eps }), OOB_DELAY_MS);
        break;
      }
      case 'send-data-via':
        if (fx.udp) this.sock.send(fx.udp, { kind: 'data' }); // the relay copy is not simulated
        break;
      case 'set-wireguard-endpoint':
        this.wgEndpoints.push({ at: now, addr: fx.addr });
        break;
      case 'path-changed':
        this.paths.push({ at: now, path: fx.path });
        break;
      case 'schedule':
        if (this.timer) this.w.clock.clearTimeout(this.timer);
        this.timer = fx.at === null ? null : this.w.clock.setTimeout(() => ((this.timer = null), this.dispatch({ type: 'tick' })), Math.max(0, fx.at - now));
        break;
      default: {
        const never: never = fx;
        throw new Error(`unhandled effect ${JSON.stringify(never)}`);
      }
    }
  }

  /** Sends "data" every second while `sending`. */
  startTraffic(offsetMs: number): void {
    const tickData = (): void => {
      if (!this.sending) return;
      this.dispatch({ type: 'send-data' });
      this.w.clock.setTimeout(tickData, DATA_EVERY_MS);
    };
    this.w.clock.setTimeout(tickData, offsetMs);
  }
}

type Placement = { publicIp: string } | { lan: string; ip: string };

class World {
  readonly clock = new FakeClock();
  readonly net: SimNet<Msg>;
  dispatches = 0;
  private readonly lans = new Map<string, ReturnType<SimNet<Msg>['addLan']>>();

  constructor(seed = 1, lossRate = 0, lanLatencyMs = 1) {
    this.net = new SimNet<Msg>({ clock: this.clock, seed, lossRate, wanLatencyMs: 20, lanLatencyMs });
    const stun = this.net.addPublicHost('stun', STUN.ip);
    const sock = stun.bind(STUN.port, (d) => {
      if (d.payload.kind === 'stun') sock.send(d.from, { kind: 'stun-reply', observed: d.from });
    });
  }

  lan(name: string, publicIp: string, nat: NatConfig): void {
    this.lans.set(name, this.net.addLan(name, publicIp, nat));
  }

  peer(name: string, where: Placement): Peer {
    const host = 'publicIp' in where ? this.net.addPublicHost(name, where.publicIp) : this.lans.get(where.lan)!.addHost(name, where.ip);
    return new Peer(name, host, this);
  }

  /** Advances the clock in bounded steps. */
  run(ms: number): void {
    const end = this.clock.now() + ms;
    for (let guard = 0; guard < 100_000 && this.clock.now() < end; guard++) this.clock.advance(Math.min(50, end - this.clock.now()));
  }

  /** STUN both peers, exchange endpoints via "control", and start traffic both ways. */
  connect(a: Peer, b: Peer, opts: { advertise?: (p: Peer) => UdpAddr[] } = {}): void {
    a.other = b;
    b.other = a;
    for (let tries = 0; tries < 5 && !(a.observed && b.observed); tries++) {
      for (const p of [a, b]) if (!p.observed) p.sock.send(STUN, { kind: 'stun' });
      this.run(200);
    }
    for (const p of [a, b]) {
      if (!p.observed) throw new Error(`${p.name}: no STUN reply`);
      p.endpoints = opts.advertise?.(p) ?? uniq([p.local, p.observed]);
      p.dispatch({ type: 'local-endpoints', endpoints: p.endpoints });
    }
    a.dispatch({ type: 'netmap-endpoints', endpoints: b.endpoints });
    b.dispatch({ type: 'netmap-endpoints', endpoints: a.endpoints });
    a.startTraffic(0);
    b.startTraffic(DATA_EVERY_MS / 2);
  }
}

function uniq(as: UdpAddr[]): UdpAddr[] {
  return as.filter((a, i) => as.findIndex((b) => sameAddr(a, b)) === i);
}

function world(seed = 1, loss = 0, lanLatencyMs = 1): World {
  return new World(seed, loss, lanLatencyMs);
}

describe('hole punching over simulated NATs', () => {
  it('EIM+APDF ↔ EIM+APDF: both sides go direct within a few seconds, to each other’s public mapping', () => {
    const w = world();
    w.lan('home', '198.51.100.1', NAT.portRestrictedCone);
    w.lan('office', '203.0.113.1', NAT.portRestrictedCone);
    const a = w.peer('a', { lan: 'home', ip: '10.0.0.2' });
    const b = w.peer('b', { lan: 'office', ip: '10.1.0.2' });
    w.connect(a, b);
    w.run(10_000);
    const t0 = 200; // traffic starts after STUN
    expect(a.firstDirectAt()! - t0).toBeLessThanOrEqual(6000);
    expect(b.firstDirectAt()! - t0).toBeLessThanOrEqual(6000);
    const pa = a.pathAt(w.clock.now());
    const pb = b.pathAt(w.clock.now());
    expect(pa.kind === 'direct' && sameAddr(pa.addr, b.observed)).toBe(true);
    expect(pb.kind === 'direct' && sameAddr(pb.addr, a.observed)).toBe(true);
    expect(pa.kind === 'direct' && pa.latencyMs).toBe(2 * (20 + 1 + 1));
    // the first pings really were filtered: the punch took the CallMeMaybe round
    expect(w.net.log.some((r) => r.payload.kind === 'ping' && r.reason === 'filtered')).toBe(true);
  });

  it('EDM ↔ EIM+EIF: direct both ways, the EIM side using the peer-reflexive port learned from the inbound ping', () => {
    const w = world(7);
    w.lan('hard', '198.51.100.1', NAT.symmetric);
    w.lan('easy', '203.0.113.1', NAT.fullCone);
    const a = w.peer('a', { lan: 'hard', ip: '10.0.0.2' });
    const b = w.peer('b', { lan: 'easy', ip: '10.1.0.2' });
    w.connect(a, b);
    w.run(10_000);
    expect(a.firstDirectAt()! - 200).toBeLessThanOrEqual(6000);
    expect(b.firstDirectAt()! - 200).toBeLessThanOrEqual(6000);
    const pb = b.pathAt(w.clock.now());
    expect(pb.kind).toBe('direct');
    if (pb.kind !== 'direct') return;
    expect(pb.addr.ip).toBe('198.51.100.1');
    expect(a.endpoints.some((e) => sameAddr(e, pb.addr))).toBe(false); // not an advertised endpoint
    const cand = b.state.candidates.get(addrKey(pb.addr))!;
    expect(cand.inNetmap || cand.callMeMaybeAt !== null).toBe(false);
    expect(cand.lastGotPingAt).not.toBeNull();
  });

  it('EDM ↔ EDM: never direct, stays connecting, pings keep timing out', () => {
    const w = world(3);
    w.lan('hard1', '198.51.100.1', NAT.symmetric);
    w.lan('hard2', '203.0.113.1', NAT.symmetric);
    const a = w.peer('a', { lan: 'hard1', ip: '10.0.0.2' });
    const b = w.peer('b', { lan: 'hard2', ip: '10.1.0.2' });
    w.connect(a, b);
    w.run(60_000);
    expect(a.paths).toEqual([]);
    expect(b.paths).toEqual([]);
    expect(a.state.best).toBeNull();
    expect(b.state.best).toBeNull();
    const pings = w.net.log.filter((r) => r.payload.kind === 'ping');
    expect(pings.length).toBeGreaterThan(20); // kept trying…
    expect(pings.some((r) => r.outcome === 'delivered')).toBe(false); // …and nothing ever got through
    expect(pings.filter((r) => r.reason === 'filtered').length).toBeGreaterThan(20);
  });

  it('same LAN: prefers the LAN address even though the hairpinned public one also answers', () => {
    const w = world();
    w.lan('home', '198.51.100.1', { ...NAT.portRestrictedCone, hairpin: true });
    const a = w.peer('a', { lan: 'home', ip: '10.0.0.2' });
    const b = w.peer('b', { lan: 'home', ip: '10.0.0.3' });
    w.connect(a, b);
    w.run(70_000);
    for (const [p, q] of [
      [a, b],
      [b, a],
    ] as const) {
      const v = p.pathAt(w.clock.now());
      expect(v.kind === 'direct' && sameAddr(v.addr, q.local)).toBe(true);
      expect(p.wgEndpoints.at(-1)?.addr).toEqual(q.local);
      expect(p.wgEndpoints.length).toBeLessThanOrEqual(2); // at most public → LAN, no flapping
    }
    // The hairpinned public path works too: at least one side got a pong over it (the other found the LAN
    // first and, at LAN latency, has no reason to look further).
    const pubPongs = [a.state.candidates.get(addrKey(b.observed!))!, b.state.candidates.get(addrKey(a.observed!))!].flatMap((c) => c.pongs);
    expect(pubPongs.length).toBeGreaterThan(0);
  });

  it('trust expires without pongs (connecting, then best cleared) and recovers when the path heals', () => {
    const w = world();
    w.lan('home', '198.51.100.1', NAT.portRestrictedCone);
    w.lan('office', '203.0.113.1', NAT.fullCone);
    const a = w.peer('a', { lan: 'home', ip: '10.0.0.2' });
    const b = w.peer('b', { lan: 'office', ip: '10.1.0.2' });
    w.connect(a, b);
    w.run(10_000);
    expect(a.pathAt(w.clock.now()).kind).toBe('direct');
    const cut = w.clock.now();
    w.net.fault = (_from, _to, m) => m.kind === 'pong';
    w.run(10_000);
    const lost = a.paths.find((p) => p.at > cut)!;
    expect(lost.path.kind).toBe('connecting');
    expect(lost.at - cut).toBeLessThanOrEqual(6500);
    expect(a.wgEndpoints.at(-1)?.addr).toBeNull(); // a heartbeat to the untrusted best timed out
    expect(a.state.best).toBeNull();
    w.net.fault = undefined;
    const healed = w.clock.now();
    w.run(10_000);
    expect(a.pathAt(w.clock.now()).kind).toBe('direct');
    expect(a.firstDirectAt(healed)! - healed).toBeLessThanOrEqual(6000);
  });

  it('heartbeats keep a busy path direct for minutes without a single flap', () => {
    const w = world();
    w.lan('home', '198.51.100.1', NAT.portRestrictedCone);
    w.lan('office', '203.0.113.1', NAT.portRestrictedCone);
    const a = w.peer('a', { lan: 'home', ip: '10.0.0.2' });
    const b = w.peer('b', { lan: 'office', ip: '10.1.0.2' });
    w.connect(a, b);
    w.run(10_000);
    const settled = w.clock.now();
    w.run(180_000);
    for (const p of [a, b]) {
      expect(p.paths.filter((x) => x.at > settled)).toEqual([]);
      expect(p.pathAt(w.clock.now()).kind).toBe('direct');
    }
    const hb = w.net.log.filter((r) => r.sentAt > settled && r.payload.kind === 'ping' && sameAddr(r.from, a.local));
    expect(hb.length).toBeGreaterThanOrEqual(55); // about one every 3 s (plus 60 s upgrade rounds)
  });

  it('idle: heartbeats stop 45 s after the last send and the peer shows connecting again', () => {
    const w = world();
    w.lan('home', '198.51.100.1', NAT.portRestrictedCone);
    w.lan('office', '203.0.113.1', NAT.portRestrictedCone);
    const a = w.peer('a', { lan: 'home', ip: '10.0.0.2' });
    const b = w.peer('b', { lan: 'office', ip: '10.1.0.2' });
    w.connect(a, b);
    w.run(10_000);
    a.sending = b.sending = false;
    const stop = w.clock.now();
    w.run(60_000);
    const last = w.net.log.filter((r) => r.payload.kind === 'ping').at(-1)!;
    expect(last.sentAt - stop).toBeLessThanOrEqual(46_000);
    expect(a.pathAt(w.clock.now()).kind).toBe('connecting');
    expect(a.state.heartbeatAt).toBeNull();
  });

  it('a better path (LAN) learned later replaces the public one at the next upgrade round, once', () => {
    // 2 ms LAN hops: the hairpinned public path has an 8 ms RTT, above the 5 ms "good enough" that would
    // stop upgrade rounds; the LAN one 4 ms.
    const w = world(1, 0, 2);
    w.lan('home', '198.51.100.1', { ...NAT.portRestrictedCone, hairpin: true });
    const a = w.peer('a', { lan: 'home', ip: '10.0.0.2' });
    const b = w.peer('b', { lan: 'home', ip: '10.0.0.3' });
    // At first only the public (hairpinned) endpoints are advertised.
    w.connect(a, b, { advertise: (p) => [p.observed!] });
    w.run(10_000);
    const first = a.pathAt(w.clock.now());
    expect(first.kind === 'direct' && sameAddr(first.addr, b.observed)).toBe(true);
    // Control now also lists b's LAN address; a finds it at its next 60 s upgrade round.
    const learned = w.clock.now();
    a.dispatch({ type: 'netmap-endpoints', endpoints: [b.observed!, b.local] });
    w.run(70_000);
    const now = a.pathAt(w.clock.now());
    expect(now.kind === 'direct' && sameAddr(now.addr, b.local)).toBe(true);
    const switched = a.paths.filter((p) => p.at > learned);
    expect(switched).toHaveLength(1);
    expect(switched[0]!.at - learned).toBeLessThanOrEqual(61_000);
  });

  it('converges with 10 % random loss (seeded)', () => {
    const w = world(42, 0.1);
    w.lan('home', '198.51.100.1', NAT.portRestrictedCone);
    w.lan('office', '203.0.113.1', NAT.restrictedCone);
    const a = w.peer('a', { lan: 'home', ip: '10.0.0.2' });
    const b = w.peer('b', { lan: 'office', ip: '10.1.0.2' });
    w.connect(a, b);
    w.run(30_000);
    expect(a.pathAt(w.clock.now()).kind).toBe('direct');
    expect(b.pathAt(w.clock.now()).kind).toBe('direct');
    expect(w.net.log.some((r) => r.reason === 'loss')).toBe(true);
  });

  // The §10 matrix as this algorithm produces it (no birthday probing): an endpoint-dependent side (ADM or
  // APDM, whose port toward the peer differs from the one it advertises) goes direct only if the other side's
  // filter admits that unadvertised port (EIF, or ADF once it has pinged the same IP).
  const ADM_ADF: NatConfig = { mapping: 'ADM', filtering: 'ADF' };
  it.each([
    { a: 'EIM+EIF', na: NAT.fullCone, b: 'EIM+EIF', nb: NAT.fullCone, direct: true },
    { a: 'EIM+ADF', na: NAT.restrictedCone, b: 'EIM+APDF', nb: NAT.portRestrictedCone, direct: true },
    { a: 'APDM+APDF', na: NAT.symmetric, b: 'EIM+EIF', nb: NAT.fullCone, direct: true },
    { a: 'EIM+EIF', na: NAT.fullCone, b: 'APDM+APDF', nb: NAT.symmetric, direct: true },
    { a: 'APDM+APDF', na: NAT.symmetric, b: 'EIM+ADF', nb: NAT.restrictedCone, direct: true },
    { a: 'ADM+ADF', na: ADM_ADF, b: 'EIM+ADF', nb: NAT.restrictedCone, direct: true },
    { a: 'ADM+ADF', na: ADM_ADF, b: 'EIM+APDF', nb: NAT.portRestrictedCone, direct: false },
    { a: 'APDM+APDF', na: NAT.symmetric, b: 'EIM+APDF', nb: NAT.portRestrictedCone, direct: false },
    { a: 'APDM+APDF', na: NAT.symmetric, b: 'APDM+APDF', nb: NAT.symmetric, direct: false },
  ])('matrix: $a ↔ $b → direct: $direct', ({ na, nb, direct }) => {
    const w = world(11);
    w.lan('one', '198.51.100.1', na);
    w.lan('two', '203.0.113.1', nb);
    const a = w.peer('a', { lan: 'one', ip: '10.0.0.2' });
    const b = w.peer('b', { lan: 'two', ip: '10.1.0.2' });
    w.connect(a, b);
    w.run(20_000);
    const want = direct ? ['direct', 'direct'] : ['connecting', 'connecting'];
    expect([a.pathAt(w.clock.now()).kind, b.pathAt(w.clock.now()).kind]).toEqual(want);
  });
});
