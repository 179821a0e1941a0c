/**
 * The HA prober in MapStreams (headscale 0.29.2 state/ha_health.go), on a manual clock: subnet routers that share
 * a prefix get a PingRequest every cycle; one that does not fetch its URL within the timeout is passed over for
 * its routes until it answers again or reconnects; a timeout of a fresh session, or of a session that reconnected
 * meanwhile, proves nothing. The HTTP side (/machine/ping-response) is in routes-server.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { parseMapBody } from '../../../../src-main/protocol/control/stream-framing.ts';
import { MapStreams, type MapSink, type MapStreamsInit } from '../../../../src-main/server/control/map-streams.ts';
import type { WireMapResponse } from '../../../../src-main/server/control/mapper.ts';
import { MemoryStore } from '../../../../src-main/server/store/memory.ts';
import { FakeClock } from '../../../sim/fake-clock.ts';
import { newNode } from '../store/store-contract.ts';

const LAN = '192.168.1.0/24';
const INTERVAL = 10_000;
const TIMEOUT = 5_000;

interface Rig {
  clock: FakeClock;
  streams: MapStreams;
  logs: string[];
  /** Opens a stream for node `id`; its messages land in `inbox`. Returns the close function. */
  connect(id: number): () => void;
  inbox: Map<number, WireMapResponse[]>;
  /** The ping ids sent to node `id` since the last call. */
  pingsTo(id: number): string[];
  primaryOf(prefix: string): number | undefined;
}

/** MapStreams on a manual clock with the prober on (INTERVAL), as the tests here need it; `extra` overrides. */
function streamsInit(store: MemoryStore, clock: FakeClock, extra: Partial<MapStreamsInit>): MapStreamsInit {
  return {
    store,
    cfg: () => ({ domain: 'example', baseDomain: null, derpMap: { Regions: {} } }),
    now: () => 1_000_000,
    clock,
    random: () => 0,
    logf: () => {},
    keepAliveMs: 600_000,
    keepAliveJitterMs: 0,
    offlineGraceMs: 10_000,
    ephemeralTimeoutMs: 120_000,
    onStoreChanged: () => {},
    haProbeIntervalMs: INTERVAL,
    pingUrl: (id) => `http://srv.example/machine/ping-response?id=${id}`,
    pingId: () => 'x',
    ...extra,
  };
}

function rig(routers: { id?: number; routes: string[] }[]): Rig & { ids: number[] } {
  const store = new MemoryStore();
  const clock = new FakeClock();
  const logs: string[] = [];
  let seq = 0;
  // As the control plane wires it: a change the streams made to the store (a node's grace ran out) is refreshed.
  const streams: MapStreams = new MapStreams(
    streamsInit(store, clock, {
      logf: (l) => void logs.push(l),
      onStoreChanged: () => streams.refresh(),
      haProbeTimeoutMs: TIMEOUT,
      pingId: () => `p${String(++seq).padStart(15, '0')}`,
    }),
  );
  const u = store.createUser('alice', 0);
  const ids = routers.map((r, i) => {
    const n = store.registerForUser(newNode(u.id, i + 1), 0);
    store.updateNode(n.id, { hostinfo: JSON.stringify({ Hostname: `r${i + 1}`, RoutableIPs: r.routes }), approvedRoutes: r.routes });
    return n.id;
  });
  const inbox = new Map<number, WireMapResponse[]>();
  const seen = new Map<number, number>();
  const connect = (id: number): (() => void) => {
    const n = store.nodeById(id)!;
    const msgs = inbox.get(id) ?? [];
    inbox.set(id, msgs);
    const sink: MapSink = {
      write: (frame) => {
        const body = parseMapBody(frame.subarray(4), false);
        if (body.kind !== 'ok') throw new Error(`unreadable frame: ${body.reason}`);
        msgs.push(body.value as WireMapResponse);
        return true;
      },
      end: () => {},
    };
    return streams.open({ nodeId: id, nodeKey: n.nodeKey, capver: 130, compress: false, sink })!;
  };
  const pingsTo = (id: number): string[] => {
    const msgs = inbox.get(id) ?? [];
    const from = seen.get(id) ?? 0;
    seen.set(id, msgs.length);
    return msgs.slice(from).flatMap((m) => (m.PingRequest ? [new URL(m.PingRequest.URL).searchParams.get('id')!] : []));
  };
  const primaryOf = (prefix: string): number | undefined => store.listNodes().find((n) => n.primaryRoutes.includes(prefix))?.id;
  return { clock, streams, logs, connect, inbox, pingsTo, primaryOf, ids };
}

/** Moves the clock to the next probe cycle (they run at every multiple of INTERVAL after startHaProber at 0). */
function toNextProbe(r: Rig): void {
  const now = r.clock.now();
  r.clock.advance((Math.floor(now / INTERVAL) + 1) * INTERVAL - now);
}

/** Runs the next probe cycle and answers the pings of the nodes in `answering` at once. */
function cycle(r: Rig, answering: number[], all: number[]): void {
  toNextProbe(r);
  for (const id of all) {
    const pings = r.pingsTo(id);
    if (answering.includes(id)) for (const p of pings) expect(r.streams.pingAnswered(p)).toBe(true);
  }
}

describe('the HA prober', () => {
  it('passes over a primary that stops answering, after its session survived a cycle; it does not take the routes back when it answers again', () => {
    const r = rig([{ routes: [LAN] }, { routes: [LAN] }]);
    const [a, b] = r.ids as [number, number];
    r.connect(a);
    r.connect(b);
    r.streams.startHaProber();
    expect(r.primaryOf(LAN)).toBe(a);

    // Both answer: every cycle pings each of them once (a fresh URL each time), and nothing moves.
    for (let i = 0; i < 3; i++) {
      r.clock.advance(INTERVAL);
      const pa = r.pingsTo(a);
      const pb = r.pingsTo(b);
      expect([pa.length, pb.length]).toEqual([1, 1]);
      expect(pa[0]).not.toBe(pb[0]);
      for (const p of [...pa, ...pb]) expect(r.streams.pingAnswered(p)).toBe(true);
      // An answered ping cannot be answered twice.
      expect(r.streams.pingAnswered(pa[0]!)).toBe(false);
    }
    expect(r.primaryOf(LAN)).toBe(a);
    expect(r.streams.haProbeCounts).toEqual({ sent: 6, answered: 6, timedOut: 0 });

    // a goes silent: at the next cycle's timeout it is unhealthy, and b serves the LAN.
    r.clock.advance(INTERVAL);
    for (const p of r.pingsTo(b)) r.streams.pingAnswered(p);
    expect(r.pingsTo(a)).toHaveLength(1);
    r.clock.advance(TIMEOUT - 1);
    expect(r.primaryOf(LAN)).toBe(a);
    r.clock.advance(1);
    expect(r.streams.unhealthyNodes).toEqual([a]);
    expect(r.primaryOf(LAN)).toBe(b);
    expect(r.logs.join('\n')).toMatch(new RegExp(`node ${a} did not answer the HA probe within 5 s`));
    expect(r.logs.join('\n')).toMatch(new RegExp(`${LAN.replace(/\./g, '\\.')} is served by node ${b} \\(was node ${a}, now not answering the HA probe\\)`));
    // b's peers were told: its Node now carries the route as primary.
    expect(r.inbox.get(a)!.some((m) => m.PeersChanged?.some((n) => n.ID === b && n.PrimaryRoutes?.includes(LAN)))).toBe(true);

    // a answers again: healthy, but b stays primary (no flapping back).
    cycle(r, [a, b], [a, b]);
    expect(r.streams.unhealthyNodes).toEqual([]);
    expect(r.primaryOf(LAN)).toBe(b);
    expect(r.logs.join('\n')).toMatch(new RegExp(`node ${a} answers the HA probe again`));
  });

  it('a timeout proves nothing for a session younger than a cycle, or one that reconnected meanwhile', () => {
    const r = rig([{ routes: [LAN] }, { routes: [LAN] }]);
    const [a, b] = r.ids as [number, number];
    r.connect(a);
    r.connect(b);
    r.streams.startHaProber();
    // First cycle: both sessions are new; their silence is deferred to the next cycle.
    r.clock.advance(INTERVAL + TIMEOUT);
    expect(r.streams.unhealthyNodes).toEqual([]);
    expect(r.logs.filter((l) => /did not answer its first HA probe since it connected/.test(l))).toHaveLength(2);
    expect([r.pingsTo(a).length, r.pingsTo(b).length]).toEqual([1, 1]);
    // Second cycle: b answers; a reconnects while its probe is out (the request went to the old session): dropped.
    toNextProbe(r);
    for (const p of r.pingsTo(b)) r.streams.pingAnswered(p);
    expect(r.pingsTo(a)).toHaveLength(1);
    r.connect(a);
    r.clock.advance(TIMEOUT);
    expect(r.streams.unhealthyNodes).toEqual([]);
    expect(r.primaryOf(LAN)).toBe(a);
    // Third cycle: a's new session is fresh, so its silence is deferred once more; the fourth one counts.
    cycle(r, [b], [a, b]);
    r.clock.advance(TIMEOUT);
    expect(r.streams.unhealthyNodes).toEqual([]);
    cycle(r, [b], [a, b]);
    r.clock.advance(TIMEOUT);
    expect(r.streams.unhealthyNodes).toEqual([a]);
    expect(r.primaryOf(LAN)).toBe(b);
  });

  it('reconnecting clears the verdict; a router left alone with its prefix is not held unhealthy; only shared prefixes are probed', () => {
    const r = rig([{ routes: [LAN] }, { routes: [LAN] }, { routes: ['10.0.0.0/24'] }]);
    const [a, b, c] = r.ids as [number, number, number];
    const closeA = r.connect(a);
    const closeB = r.connect(b);
    r.connect(c);
    r.streams.startHaProber();
    cycle(r, [a, b], [a, b, c]);
    // c is the sole router of its prefix: never pinged.
    toNextProbe(r);
    expect(r.pingsTo(c)).toEqual([]);
    // a and b both silent (their sessions are stable now): a's timeout fires first and b takes over; then b's.
    r.clock.advance(TIMEOUT);
    expect(r.streams.unhealthyNodes).toEqual([a, b]);
    // All unhealthy: the primary stays (a worse choice would be no better).
    expect(r.primaryOf(LAN)).toBe(b);
    // a reconnects: a clean slate. b stays primary until it is judged (it is unhealthy but the only other choice
    // is healthy now, so the election moves the LAN to a).
    closeA();
    const closeA2 = r.connect(a);
    expect(r.streams.unhealthyNodes).toEqual([b]);
    expect(r.primaryOf(LAN)).toBe(a);
    // a leaves for good: b is the only router of the LAN, held unhealthy. The next cycle drops that verdict (nobody
    // to fail over to) and b serves the LAN again.
    closeA2();
    r.clock.advance(10_000); // a's offline grace
    toNextProbe(r);
    expect(r.streams.unhealthyNodes).toEqual([]);
    expect(r.primaryOf(LAN)).toBe(b);
    closeB();
    r.streams.stop();
    expect(r.clock.pendingTimers).toBe(0);
  });

  it('is off with interval 0', () => {
    const store = new MemoryStore();
    const clock = new FakeClock();
    const streams = new MapStreams(streamsInit(store, clock, { haProbeIntervalMs: 0 }));
    streams.startHaProber();
    expect(clock.pendingTimers).toBe(0);
  });
});
