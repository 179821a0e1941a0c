import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_PATH_TIMERS,
  addrKey,
  initialPathState,
  pathKind,
  step,
  type PathEffect,
  type PathEvent,
  type PathState,
} from '../../../../src-main/engine/paths/endpoint.ts';
import { sameAddr, type UdpAddr } from '../../../../src-main/protocol/wire/addr.ts';

const PUB: UdpAddr = { ip: '203.0.113.10', port: 41641 };
const PUB2: UdpAddr = { ip: '198.51.100.20', port: 41641 };
const LAN: UdpAddr = { ip: '192.168.1.20', port: 41641 };
const ME: UdpAddr = { ip: '192.0.2.1', port: 41641 };

type Of<T extends PathEffect['type']> = Extract<PathEffect, { type: T }>;

/** One peer's reducer with a manual time line. */
class Harness {
  s: PathState;
  now = 0;
  fx: readonly PathEffect[] = [];
  private n = 0;
  constructor(timers = DEFAULT_PATH_TIMERS) {
    this.s = initialPathState({ newTxId: () => `tx${++this.n}` }, timers);
  }
  ev(e: PathEvent, at = this.now): readonly PathEffect[] {
    this.now = at;
    const r = step(this.s, e, at);
    this.s = r.state;
    this.fx = r.effects;
    return r.effects;
  }
  of<T extends PathEffect['type']>(type: T): Of<T>[] {
    return this.fx.filter((e): e is Of<T> => e.type === type);
  }
  pingTo(a: UdpAddr): Of<'send-ping'> {
    const p = this.of('send-ping').find((e) => sameAddr(e.to, a));
    if (!p) throw new Error(`no ping to ${a.ip}:${a.port} in ${JSON.stringify(this.fx)}`);
    return p;
  }
  /** Answers an outstanding ping from the address it was sent to. */
  pong(p: Of<'send-ping'>, at: number): readonly PathEffect[] {
    return this.ev({ type: 'pong-received', txid: p.txid, from: p.to, src: ME }, at);
  }
  kind(): string {
    return pathKind(this.s, this.now).kind;
  }
}

/** A harness that has netmap endpoints, has sent data once (t=0) and holds the pings it sent. */
function started(eps: UdpAddr[] = [PUB]): Harness {
  const h = new Harness();
  h.ev({ type: 'local-endpoints', endpoints: [ME] }, 0);
  h.ev({ type: 'netmap-endpoints', endpoints: eps }, 0);
  h.ev({ type: 'send-data' }, 0);
  return h;
}

describe('discovery on first send', () => {
  it('sends data via the relay, pings every candidate and asks the peer to call back', () => {
    const h = new Harness();
    h.ev({ type: 'local-endpoints', endpoints: [ME] }, 0);
    expect(h.ev({ type: 'netmap-endpoints', endpoints: [PUB, LAN] }, 0)).toEqual([]); // no pings until traffic
    h.ev({ type: 'send-data' }, 0);
    expect(h.of('send-data-via')).toEqual([{ type: 'send-data-via', udp: null, relay: true }]);
    expect(h.of('send-ping').map((p) => p.to)).toEqual([PUB, LAN]);
    expect(h.of('send-ping').every((p) => p.purpose === 'discovery')).toBe(true);
    expect(h.of('send-call-me-maybe')).toEqual([{ type: 'send-call-me-maybe', endpoints: [ME] }]);
    expect(h.of('schedule')).toEqual([{ type: 'schedule', at: 3000 }]); // heartbeat first
    expect(h.kind()).toBe('connecting');
  });

  it('does not re-ping a candidate within 5 s, and sends no CallMeMaybe without a ping', () => {
    const h = started();
    h.ev({ type: 'send-data' }, 1000);
    expect(h.of('send-ping')).toEqual([]);
    expect(h.of('send-call-me-maybe')).toEqual([]);
    h.ev({ type: 'send-data' }, 5000);
    expect(h.of('send-ping').map((p) => p.to)).toEqual([PUB]);
    expect(h.of('send-call-me-maybe')).toHaveLength(1);
  });
});

describe('pong handling', () => {
  it('a pong from the pinged address makes it the trusted direct path', () => {
    const h = started();
    const p = h.pingTo(PUB);
    h.pong(p, 30);
    expect(h.of('set-wireguard-endpoint')).toEqual([{ type: 'set-wireguard-endpoint', addr: PUB }]);
    expect(h.of('path-changed')).toEqual([{ type: 'path-changed', path: { kind: 'direct', addr: PUB, latencyMs: 30 } }]);
    expect(h.s.trustUntil).toBe(30 + 6500);
    h.ev({ type: 'send-data' }, 100);
    expect(h.fx).toEqual([{ type: 'send-data-via', udp: PUB, relay: false }]);
    const c = h.s.candidates.get(addrKey(PUB))!;
    expect(c.pongs).toEqual([{ latencyMs: 30, at: 30, from: PUB, pongSrc: ME }]);
  });

  it('ignores a pong for an unknown txid', () => {
    const h = started();
    const before = h.s;
    expect(h.ev({ type: 'pong-received', txid: 'nope', from: PUB, src: ME }, 10)).toEqual([]);
    expect(h.s).toBe(before);
    expect(h.kind()).toBe('connecting');
  });

  it('ignores a pong that comes from an address other than the one pinged', () => {
    const h = started([PUB]);
    const p = h.pingTo(PUB);
    expect(h.ev({ type: 'pong-received', txid: p.txid, from: PUB2, src: ME }, 10)).toEqual([]);
    expect(h.kind()).toBe('connecting');
    expect(h.s.sentPings.has(p.txid)).toBe(true); // still waiting for the real one
    h.pong(p, 20);
    expect(h.kind()).toBe('direct');
  });

  it('accepts a pong from the v4-mapped form of the pinged address', () => {
    const h = started([PUB]);
    const p = h.pingTo(PUB);
    h.ev({ type: 'pong-received', txid: p.txid, from: { ip: `::ffff:${PUB.ip}`, port: PUB.port }, src: ME }, 10);
    expect(h.kind()).toBe('direct');
  });

  it('a second pong for the same txid is ignored', () => {
    const h = started();
    const p = h.pingTo(PUB);
    h.pong(p, 10);
    const s = h.s;
    expect(h.pong(p, 20)).toEqual([]);
    expect(h.s).toBe(s);
  });
});

describe('inbound pings', () => {
  it('answers with a Pong carrying the source, learns the source, and ignores a duplicate txid', () => {
    const h = new Harness();
    const src = { ip: '198.51.100.99', port: 6000 };
    h.ev({ type: 'ping-received', from: src, txid: 'p1' }, 0);
    expect(h.fx[0]).toEqual({ type: 'send-pong', to: src, txid: 'p1', src });
    // No trusted path yet, so the source is pinged back at once (one round instead of a 5 s wait).
    expect(h.of('send-ping').map((e) => e.to)).toEqual([src]);
    expect(h.s.candidates.get(addrKey(src))?.lastGotPingAt).toBe(0);
    expect(h.ev({ type: 'ping-received', from: src, txid: 'p1' }, 5)).toEqual([]);
    expect(h.ev({ type: 'ping-received', from: src, txid: 'p2' }, 6)).toHaveLength(1);
    expect(h.kind()).toBe('connecting'); // a ping alone proves nothing about our path to them
  });

  it('pings a learned source right away (rate-limited), and forgets it after 45 s of silence', () => {
    const h = new Harness();
    const src = { ip: '198.51.100.99', port: 6000 };
    h.ev({ type: 'ping-received', from: src, txid: 'p1' }, 0);
    expect(h.pingTo(src).purpose).toBe('discovery');
    h.ev({ type: 'ping-received', from: src, txid: 'p2' }, 500);
    expect(h.of('send-ping')).toEqual([]); // within DISCO_PING_BACK_MIN_INTERVAL_MS
    h.ev({ type: 'send-data' }, 46_000);
    expect(h.of('send-ping')).toEqual([]);
    expect(h.s.candidates.has(addrKey(src))).toBe(false);
  });
});

describe('timers', () => {
  it('a ping times out after 5 s', () => {
    const h = started();
    const p = h.pingTo(PUB);
    h.ev({ type: 'tick' }, 4999);
    expect(h.s.sentPings.has(p.txid)).toBe(true);
    h.ev({ type: 'tick' }, 5000);
    expect(h.s.sentPings.has(p.txid)).toBe(false);
    expect(h.pong(p, 5001)).toEqual([]); // too late: unknown txid now
  });

  it('trust expiry without pongs falls back to connecting, then the timed-out heartbeat clears best', () => {
    const h = started();
    h.pong(h.pingTo(PUB), 20);
    expect(h.of('schedule')).toEqual([]); // heartbeat at 3000 still comes first
    h.ev({ type: 'tick' }, 3000); // heartbeat ping, unanswered
    const hb = h.pingTo(PUB);
    expect(hb.purpose).toBe('heartbeat');
    h.ev({ type: 'tick' }, 6000); // second heartbeat, unanswered
    expect(h.of('schedule')).toEqual([{ type: 'schedule', at: 6520 }]); // trust ends before the next heartbeat
    h.ev({ type: 'tick' }, 6520);
    expect(h.of('path-changed')).toEqual([{ type: 'path-changed', path: { kind: 'connecting' } }]);
    h.ev({ type: 'send-data' }, 6600);
    expect(h.of('send-data-via')).toEqual([{ type: 'send-data-via', udp: PUB, relay: true }]); // best and relay
    h.ev({ type: 'tick' }, 8000); // hb times out while best is untrusted
    expect(h.of('set-wireguard-endpoint')).toEqual([{ type: 'set-wireguard-endpoint', addr: null }]);
    expect(h.s.best).toBeNull();
  });

  it('heartbeats keep an active path direct', () => {
    const h = started();
    h.pong(h.pingTo(PUB), 20);
    let directChanges = 0;
    let next = 1000;
    for (let guard = 0; guard < 1000 && h.now < 60_000; guard++) {
      const wake = h.s.wakeAt ?? Infinity;
      if (next <= wake) {
        h.ev({ type: 'send-data' }, next);
        next += 1000;
      } else h.ev({ type: 'tick' }, wake);
      directChanges += h.of('path-changed').length;
      for (const p of h.of('send-ping')) h.pong(p, h.now + 20);
      expect(h.kind()).toBe('direct');
    }
    expect(h.now).toBeGreaterThanOrEqual(60_000);
    expect(directChanges).toBe(0);
  });

  it('stops heartbeating 45 s after the last send', () => {
    const h = started();
    h.pong(h.pingTo(PUB), 20);
    let heartbeats = 0;
    for (let guard = 0; guard < 100 && h.s.wakeAt !== null; guard++) {
      h.ev({ type: 'tick' }, h.s.wakeAt);
      for (const p of h.of('send-ping')) {
        heartbeats++;
        h.pong(p, h.now + 20);
      }
    }
    expect(h.s.heartbeatAt).toBeNull();
    expect(heartbeats).toBe(15); // at 3, 6, … 45 s
    expect(h.kind()).toBe('connecting'); // idle: nothing confirms the path any more
  });

  it('re-pings all candidates every 60 s while latency is above 5 ms, never when at or below', () => {
    for (const [lat, want] of [
      [20, true],
      [5, false],
    ] as const) {
      const h = started([PUB, PUB2]);
      const p1 = h.pingTo(PUB);
      h.pong(p1, lat);
      const fullPings: number[] = [];
      let next = 1000;
      for (let guard = 0; guard < 1000 && h.now < 65_000; guard++) {
        const wake = h.s.wakeAt ?? Infinity;
        if (next <= wake) {
          h.ev({ type: 'send-data' }, next);
          next += 1000;
        } else h.ev({ type: 'tick' }, wake);
        if (h.of('send-ping').some((p) => sameAddr(p.to, PUB2))) fullPings.push(h.now);
        for (const p of h.of('send-ping').filter((e) => sameAddr(e.to, PUB))) h.pong(p, h.now + lat);
      }
      expect(fullPings.length > 0).toBe(want);
      if (want) expect(fullPings[0]).toBeGreaterThanOrEqual(60_000);
    }
  });
});

describe('path preference', () => {
  it('a LAN pong replaces a public best even when a bit slower', () => {
    const h = started([PUB, LAN]);
    const pPub = h.pingTo(PUB);
    const pLan = h.pingTo(LAN);
    h.pong(pPub, 20);
    h.pong(pLan, 22);
    expect(h.s.best?.addr).toEqual(LAN);
    expect(h.of('set-wireguard-endpoint')).toEqual([{ type: 'set-wireguard-endpoint', addr: LAN }]);
    expect(h.of('path-changed')).toEqual([{ type: 'path-changed', path: { kind: 'direct', addr: LAN, latencyMs: 22 } }]);
  });

  it('keeps the current best against a barely faster path (hysteresis) but takes a clearly faster one', () => {
    const h = started([PUB, PUB2]);
    const p1 = h.pingTo(PUB);
    const p2 = h.pingTo(PUB2);
    h.pong(p1, 100);
    h.pong(p2, 199); // PUB2: 99 ms, under 1 % better
    expect(h.s.best?.addr).toEqual(PUB);
    h.ev({ type: 'send-data' }, 5100); // still trusted: no discovery
    expect(h.of('send-ping')).toEqual([]);
    h.ev({ type: 'call-me-maybe', endpoints: [PUB, PUB2] }, 5200); // re-ping both now
    const [q1, q2] = [h.pingTo(PUB), h.pingTo(PUB2)];
    h.pong(q1, 5300); // 100 ms again
    h.pong(q2, 5250); // 50 ms
    expect(h.s.best).toEqual({ addr: PUB2, latencyMs: 50 });
  });

  it('a slower pong replaces an untrusted best', () => {
    const h = started([PUB, PUB2]);
    h.pong(h.pingTo(PUB), 10); // PUB2 never answers this round
    h.ev({ type: 'tick' }, 6510); // PUB's trust is over: heartbeat to PUB plus a full ping (PUB2 again)
    expect(h.kind()).toBe('connecting');
    expect(h.pingTo(PUB).purpose).toBe('heartbeat');
    const p2 = h.pingTo(PUB2);
    h.pong(p2, 6710); // 200 ms, far slower than PUB's 10 ms, but PUB is unconfirmed
    expect(h.s.best).toEqual({ addr: PUB2, latencyMs: 200 });
    expect(h.kind()).toBe('direct');
  });
});

describe('endpoint sources', () => {
  it('CallMeMaybe pings every candidate at once without calling back, and replaces its own earlier list', () => {
    const h = started([PUB]);
    h.ev({ type: 'call-me-maybe', endpoints: [PUB2, { ip: 'fe80::1', port: 41641 }] }, 100);
    expect(h.of('send-ping').map((p) => p.to)).toEqual([PUB, PUB2]); // PUB's 5 s limit is reset
    expect(h.of('send-call-me-maybe')).toEqual([]);
    expect(h.s.candidates.has(addrKey({ ip: 'fe80::1', port: 41641 }))).toBe(false);
    h.ev({ type: 'call-me-maybe', endpoints: [LAN] }, 200);
    expect([...h.s.candidates.values()].map((c) => c.addr)).toEqual([PUB, LAN]); // PUB2 gone, netmap PUB kept
  });

  it('an endpoint dropped from the netmap goes away, and takes bestAddr with it', () => {
    const h = started([PUB, PUB2]);
    h.pong(h.pingTo(PUB), 10);
    h.ev({ type: 'netmap-endpoints', endpoints: [PUB2] }, 100);
    expect(h.s.candidates.has(addrKey(PUB))).toBe(false);
    expect(h.of('set-wireguard-endpoint')).toEqual([{ type: 'set-wireguard-endpoint', addr: null }]);
    expect(h.of('path-changed')).toEqual([{ type: 'path-changed', path: { kind: 'connecting' } }]);
  });

  it('a send error on bestAddr clears it and its history; link-change clears everything', () => {
    const h = started([PUB, PUB2]);
    const [p1, p2] = [h.pingTo(PUB), h.pingTo(PUB2)];
    h.pong(p1, 10);
    h.pong(p2, 300);
    h.ev({ type: 'send-error', addr: PUB2 }, 400); // not best: only its history
    expect(h.s.best?.addr).toEqual(PUB);
    expect(h.s.candidates.get(addrKey(PUB2))?.pongs).toEqual([]);
    h.ev({ type: 'send-error', addr: PUB }, 500);
    expect(h.s.best).toBeNull();
    expect(h.kind()).toBe('connecting');
    h.ev({ type: 'send-data' }, 600); // both re-pinged at once: the error reset their 5 s limit
    expect(h.of('send-ping')).toHaveLength(2);
    h.pong(h.pingTo(PUB), 610);
    h.ev({ type: 'link-change' }, 700);
    expect(h.s.best).toBeNull();
    expect([...h.s.candidates.values()].every((c) => c.pongs.length === 0 && c.lastPingAt === null)).toBe(true);
  });
});

describe('invariants under random events', () => {
  const addrs = [PUB, PUB2, LAN, { ip: '2001:db8::5', port: 41641 }];
  const arbAddr = fc.constantFrom(...addrs);
  // An action: an event kind plus a time step; pongs name an outstanding ping by index.
  const arbAction = fc.tuple(
    fc.oneof(
      fc.record({ k: fc.constant('netmap' as const), eps: fc.subarray(addrs) }),
      fc.record({ k: fc.constant('cmm' as const), eps: fc.subarray(addrs) }),
      fc.record({ k: fc.constant('ping' as const), from: arbAddr, tx: fc.constantFrom('a', 'b', 'c') }),
      fc.record({ k: fc.constant('pong' as const), i: fc.nat(8), from: fc.option(arbAddr) }),
      fc.record({ k: fc.constant('send' as const) }),
      fc.record({ k: fc.constant('tick' as const) }),
      fc.record({ k: fc.constant('err' as const), a: arbAddr }),
      fc.record({ k: fc.constant('link' as const) }),
    ),
    fc.integer({ min: 0, max: 4000 }),
  );

  it('direct is only ever shown with a pong from that exact address inside the trust window', () => {
    fc.assert(
      fc.property(fc.array(arbAction, { maxLength: 60 }), (actions) => {
        const h = new Harness();
        let t = 0;
        for (const [a, dt] of actions) {
          t += dt;
          const prev = h.s;
          const frozen = JSON.stringify([...prev.candidates], null, 0) + JSON.stringify([...prev.sentPings]);
          let e: PathEvent;
          switch (a.k) {
            case 'netmap':
              e = { type: 'netmap-endpoints', endpoints: a.eps };
              break;
            case 'cmm':
              e = { type: 'call-me-maybe', endpoints: a.eps };
              break;
            case 'ping':
              e = { type: 'ping-received', from: a.from, txid: a.tx };
              break;
            case 'pong': {
              const sp = [...h.s.sentPings.values()][a.i];
              e = { type: 'pong-received', txid: sp?.txid ?? 'none', from: a.from ?? sp?.to ?? PUB, src: ME };
              break;
            }
            case 'send':
              e = { type: 'send-data' };
              break;
            case 'tick':
              e = { type: 'tick' };
              break;
            case 'err':
              e = { type: 'send-error', addr: a.a };
              break;
            case 'link':
              e = { type: 'link-change' };
              break;
          }
          h.ev(e, t);
          // the previous state is untouched
          expect(JSON.stringify([...prev.candidates], null, 0) + JSON.stringify([...prev.sentPings])).toBe(frozen);
          const view = pathKind(h.s, t);
          // what was last reported is what is true now (latency moves silently between reports)
          expect(h.s.shown.kind).toBe(view.kind);
          if (view.kind === 'direct' && h.s.shown.kind === 'direct') expect(h.s.shown.addr).toEqual(view.addr);
          if (view.kind === 'direct') {
            const c = h.s.candidates.get(addrKey(view.addr));
            const ok = c?.pongs.some((p) => sameAddr(p.from, view.addr) && t - p.at < DEFAULT_PATH_TIMERS.trustUdpAddrMs);
            expect(ok).toBe(true);
          }
          if (h.s.best) expect(h.s.candidates.has(addrKey(h.s.best.addr))).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('liveness of a trusted path while traffic flows', () => {
  /** Direct on PUB at t=30 (latency 30 ms); data last heard at `heard`. */
  function direct(): Harness {
    const h = started();
    h.pong(h.pingTo(PUB), 30);
    expect(h.kind()).toBe('direct');
    return h;
  }

  it('does nothing while data keeps arriving from bestAddr', () => {
    const h = direct();
    for (let t = 200; t < 3000; t += 200) {
      h.ev({ type: 'send-data', lastRecvAt: t - 100 }, t);
      expect(h.of('send-ping')).toEqual([]);
    }
  });

  it('pings bestAddr after 1.5 s of silence, and keeps trusting it when the pong comes back', () => {
    const h = direct();
    h.ev({ type: 'send-data', lastRecvAt: 100 }, 1500);
    expect(h.of('send-ping')).toEqual([]);
    h.ev({ type: 'send-data', lastRecvAt: 100 }, 1700);
    const probe = h.pingTo(PUB);
    expect(probe.purpose).toBe('liveness');
    h.ev({ type: 'send-data', lastRecvAt: 100 }, 1800);
    expect(h.of('send-ping')).toEqual([]); // one at a time
    h.pong(probe, 1850);
    expect(h.kind()).toBe('direct');
    expect(h.s.trustUntil).toBe(1850 + 6500);
  });

  it('stops trusting bestAddr when the liveness ping goes unanswered: data goes to the relay as well', () => {
    const h = direct();
    h.ev({ type: 'send-data', lastRecvAt: 100 }, 1700);
    const probe = h.pingTo(PUB);
    expect(h.of('schedule').map((e) => e.at)).toEqual([1700 + 1000]);
    h.ev({ type: 'tick' }, 2700);
    expect(h.of('path-changed')).toEqual([{ type: 'path-changed', path: { kind: 'connecting' } }]);
    h.ev({ type: 'send-data', lastRecvAt: 100 }, 2750);
    expect(h.of('send-data-via')).toEqual([{ type: 'send-data-via', udp: PUB, relay: true }]);
    // A late answer restores the direct path.
    h.pong(probe, 3000);
    expect(h.kind()).toBe('direct');
  });

  it('waits 4 × the latency on a slow path before giving up on it', () => {
    const h = started();
    h.pong(h.pingTo(PUB), 400); // 400 ms path
    h.ev({ type: 'send-data', lastRecvAt: 400 }, 2000);
    expect(h.pingTo(PUB).purpose).toBe('liveness');
    h.ev({ type: 'tick' }, 3000);
    expect(h.kind()).toBe('direct');
    h.ev({ type: 'tick' }, 3600);
    expect(h.kind()).toBe('connecting');
  });

  it('while the liveness ping is out, data goes to the relay as well; the pong ends that', () => {
    const h = direct();
    h.ev({ type: 'send-data', lastRecvAt: 100 }, 1700);
    expect(h.of('send-data-via')).toEqual([{ type: 'send-data-via', udp: PUB, relay: true }]);
    const probe = h.pingTo(PUB);
    h.ev({ type: 'send-data', lastRecvAt: 100 }, 1750);
    expect(h.of('send-data-via')).toEqual([{ type: 'send-data-via', udp: PUB, relay: true }]);
    expect(h.kind()).toBe('direct'); // still shown direct while the check runs
    h.pong(probe, 1760);
    h.ev({ type: 'send-data', lastRecvAt: 1760 }, 1800);
    expect(h.of('send-data-via')).toEqual([{ type: 'send-data-via', udp: PUB, relay: false }]);
  });

  it('data relayed by the peer while ours is direct and has gone quiet: probe at once and relay meanwhile', () => {
    const h = direct();
    // The peer's last relayed packets right after it went direct (ours just heard from it): ignored.
    h.ev({ type: 'relay-received', lastRecvAt: 300 }, 400);
    expect(h.of('send-ping')).toEqual([]);
    // 600 ms of quiet, then relayed data: the peer lost the direct path.
    h.ev({ type: 'relay-received', lastRecvAt: 300 }, 900);
    expect(h.pingTo(PUB).purpose).toBe('liveness');
    h.ev({ type: 'send-data', lastRecvAt: 300 }, 950);
    expect(h.of('send-data-via')).toEqual([{ type: 'send-data-via', udp: PUB, relay: true }]);
    h.ev({ type: 'relay-received', lastRecvAt: 300 }, 1000);
    expect(h.of('send-ping')).toEqual([]); // one probe at a time
    h.ev({ type: 'tick' }, 1900);
    expect(h.kind()).toBe('connecting');
  });

  it('is off when the I/O layer does not report inbound data', () => {
    const h = direct();
    h.ev({ type: 'send-data' }, 2500);
    expect(h.of('send-ping')).toEqual([]);
  });
});

describe('our endpoints change mid-flow', () => {
  it('without a trusted path: pings every candidate at once and sends a CallMeMaybe with the new list', () => {
    const h = started([PUB, LAN]);
    const NEW: UdpAddr = { ip: '192.0.2.1', port: 20001 };
    h.ev({ type: 'send-data' }, 1000);
    expect(h.of('send-ping')).toEqual([]);
    h.ev({ type: 'local-endpoints', endpoints: [NEW] }, 1500);
    expect(h.of('send-ping').map((p) => p.to)).toEqual([PUB, LAN]);
    expect(h.of('send-call-me-maybe')).toEqual([{ type: 'send-call-me-maybe', endpoints: [NEW] }]);
    // The same list again changes nothing.
    h.ev({ type: 'local-endpoints', endpoints: [NEW] }, 1600);
    expect(h.of('send-ping')).toEqual([]);
  });

  it('with a trusted path: only a CallMeMaybe with the new list; nothing on an idle session', () => {
    const h = started();
    h.pong(h.pingTo(PUB), 30);
    h.ev({ type: 'local-endpoints', endpoints: [{ ip: '192.0.2.1', port: 1 }] }, 100);
    expect(h.of('send-ping')).toEqual([]);
    expect(h.of('send-call-me-maybe')).toEqual([{ type: 'send-call-me-maybe', endpoints: [{ ip: '192.0.2.1', port: 1 }] }]);
    const idle = started();
    idle.ev({ type: 'local-endpoints', endpoints: [{ ip: '192.0.2.1', port: 2 }] }, 60_000);
    expect(idle.of('send-ping')).toEqual([]);
  });
});

describe('ping-back', () => {
  it('pings back at once when our own ping there is still unanswered (it died at the peer’s NAT before it opened)', () => {
    const h = started();
    const lost = h.pingTo(PUB); // t=0, never answered
    h.ev({ type: 'ping-received', from: PUB, txid: 'peer1' }, 300);
    expect(h.of('send-pong')).toHaveLength(1);
    const back = h.pingTo(PUB);
    expect(back.txid).not.toBe(lost.txid);
    h.pong(back, 310);
    expect(h.kind()).toBe('direct');
  });

  it('a ping-back is not blind: a second inbound ping within 1 s does not trigger another', () => {
    const h = new Harness();
    const src = { ip: '198.51.100.99', port: 6000 };
    h.ev({ type: 'ping-received', from: src, txid: 'p1' }, 0);
    expect(h.of('send-ping')).toHaveLength(1); // the ping-back, unanswered so far
    h.ev({ type: 'ping-received', from: src, txid: 'p2' }, 300);
    expect(h.of('send-ping')).toEqual([]);
  });
});
