/**
 * A map delta that cannot be applied makes Weft's ControlClient start a fresh map session (a new full map), as
 * Tailscale's controlclient does on a map-session error, so a change carried by that delta is not lost: here the
 * delta that removes a peer is corrupted on the wire; the client must end with the server's peer list, not a stale
 * one. Against `weft server` on loopback (the harness), with only that one frame damaged.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { decodeMapBody, encodeMapFrame } from '../../../../src-main/protocol/control/stream-framing.ts';
import { keyText } from '../../../../src-main/protocol/crypto/keys.ts';
import { MapStreams, type MapSink } from '../../../../src-main/server/control/map-streams.ts';
import { eventually, Harness } from './harness.ts';

const realOpen = MapStreams.prototype.open;
afterEach(() => {
  MapStreams.prototype.open = realOpen;
});

describe('a malformed map delta', () => {
  let h: Harness;
  afterEach(async () => {
    await h.stop();
  });

  it('forces a fresh full map, and no removed peer is left stale', async () => {
    // Damage the first frame, to any session, that removes a peer: its body becomes bytes no decoder accepts.
    let armed = false;
    let damaged = 0;
    MapStreams.prototype.open = function (o: Parameters<MapStreams['open']>[0]) {
      const sink: MapSink = {
        write(frame: Uint8Array): boolean {
          if (armed) {
            const json = decodeMapBody(frame.subarray(4), o.compress);
            if (json instanceof Uint8Array && new TextDecoder().decode(json).includes('"PeersRemoved"')) {
              armed = false;
              damaged++;
              return o.sink.write(encodeMapFrame(new Uint8Array(frame.length - 4).fill(0x5a)));
            }
          }
          return o.sink.write(frame);
        },
        end: () => o.sink.end(),
      };
      return realOpen.call(this, { ...o, sink });
    };
    h = new Harness();
    await h.start();
    const logs: string[] = [];
    const a = await h.join('alpha', '192.0.2.1:1', 999, (l) => logs.push(l));
    const c = await h.join('gamma', '192.0.2.3:3');
    const names = (): string[] => [...a.netmap.peers.values()].map((p) => p.Hostinfo?.Hostname ?? '?').sort();
    await eventually('alpha sees gamma', () => (names().includes('gamma') ? true : undefined));

    armed = true;
    h.store.deleteNode(h.store.nodeByNodeKey(keyText('nodekey', c.nodePublic))!.id);
    await eventually('the removal was sent, damaged', () => (damaged === 1 ? true : undefined));
    await eventually('alpha no longer lists gamma', () => (!names().includes('gamma') ? true : undefined), 10_000);
    expect(logs.some((l) => /unreadable map message .*requesting a fresh full map/.test(l)), logs.join('\n')).toBe(true);
    expect(a.status.state).toBe('connected');
    expect(names()).toEqual([]);
  });
});
