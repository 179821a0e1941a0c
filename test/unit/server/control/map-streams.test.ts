/**
 * MapStreams' cost per change (issue 14: "a map update rebuilds the full map for every session, which costs
 * O(N²) per change"). With N open sessions, one node's change must be built once (per capability version) and
 * sent to each session as that one node's delta, not rebuilt as N full maps.
 */
import { describe, expect, it } from 'vitest';
import { parseMapBody } from '../../../../src-main/protocol/control/stream-framing.ts';
import { MapStreams, type MapSink } from '../../../../src-main/server/control/map-streams.ts';
import type { WireMapResponse } from '../../../../src-main/server/control/mapper.ts';
import { MemoryStore } from '../../../../src-main/server/store/memory.ts';
import { FakeClock } from '../../../sim/fake-clock.ts';
import { newNode } from '../store/store-contract.ts';

const N = 400;

function rig(): { store: MemoryStore; streams: MapStreams; inbox: Map<number, WireMapResponse[]> } {
  const store = new MemoryStore();
  const clock = new FakeClock();
  const streams = new MapStreams({
    store,
    cfg: () => ({ domain: 'example', baseDomain: null, derpMap: { Regions: {} } }),
    now: () => 1_000_000,
    clock,
    random: () => 0,
    logf: () => {},
    keepAliveMs: 60_000,
    keepAliveJitterMs: 0,
    offlineGraceMs: 10_000,
    ephemeralTimeoutMs: 120_000,
    onStoreChanged: () => {},
  });
  const u = store.createUser('alice', 0);
  const inbox = new Map<number, WireMapResponse[]>();
  for (let i = 1; i <= N; i++) {
    const n = store.registerForUser(newNode(u.id, i), 0);
    store.updateNode(n.id, { hostinfo: JSON.stringify({ Hostname: `n${i}`, OS: 'linux', Services: [{ Proto: 'tcp', Port: 22 }] }) });
    const msgs: WireMapResponse[] = [];
    inbox.set(n.id, msgs);
    const sink: MapSink = {
      write: (frame) => {
        const body = parseMapBody(frame.subarray(4), false);
        if (body.kind !== 'ok') throw new Error(`unreadable frame: ${body.reason}`);
        msgs.push(body.value as WireMapResponse);
        return true;
      },
      end: () => {},
    };
    // Two capability versions among the clients, as a mixed tailnet has.
    streams.open({ nodeId: n.id, nodeKey: n.nodeKey, capver: i % 2 === 0 ? 130 : 113, compress: false, sink });
  }
  return { store, streams, inbox };
}

describe('MapStreams: a change costs its own size, not the tailnet size, per session', () => {
  it(`with ${N} sessions, one node's new endpoints are built twice (two versions) and sent as one patch each`, () => {
    const { store, streams, inbox } = rig();
    expect(streams.sessionCount).toBe(N);
    for (const m of inbox.values()) m.length = 0;

    const target = store.listNodes()[7]!;
    store.updateNode(target.id, { endpoints: ['192.0.2.7:41641'] });
    streams.refresh();
    expect(streams.lastRefreshBuilt).toBe(2);
    for (const [id, msgs] of inbox) {
      if (id === target.id) {
        expect(msgs).toHaveLength(1);
        expect(msgs[0]!.Node?.Endpoints).toEqual(['192.0.2.7:41641']);
        continue;
      }
      expect(msgs).toEqual([{ ControlTime: expect.any(String), PeersChangedPatch: [{ NodeID: target.id, Endpoints: ['192.0.2.7:41641'] }] }]);
    }

    // Nothing changed: nothing built, nothing sent.
    for (const m of inbox.values()) m.length = 0;
    streams.refresh();
    expect(streams.lastRefreshBuilt).toBe(0);
    expect([...inbox.values()].every((m) => m.length === 0)).toBe(true);

    // A deleted node: removed everywhere, nothing built.
    const gone = store.listNodes()[9]!;
    store.deleteNode(gone.id);
    streams.refresh();
    expect(streams.lastRefreshBuilt).toBe(0);
    expect(inbox.get(target.id)!.at(-1)).toMatchObject({ PeersRemoved: [gone.id] });
    // Counts, not time, are what this checks; building the tailnet (400 joins, each announced to everyone before
    // it) takes a few seconds on a loaded 2-core CI machine.
  }, 60_000);
});
