import { describe, expect, it } from 'vitest';
import { PeerMap } from '../../../../src-main/engine/magicsock/peer-map.ts';

const peer = (key: string, discoHex: string) => ({ key, discoHex });

describe('PeerMap', () => {
  it('keeps every node of a shared disco key, and removing one leaves the other', () => {
    const m = new PeerMap<ReturnType<typeof peer>>(4);
    const a = peer('a', 'd1');
    const thief = peer('t', 'd1');
    m.add(a);
    m.add(thief);
    expect([...m.nodesOfDisco('d1')]).toEqual([a, thief]);
    m.remove(thief);
    expect([...m.nodesOfDisco('d1')]).toEqual([a]);
    m.remove(a);
    expect(m.knowsDisco('d1')).toBe(false);
    expect(m.nodesOfDisco('d1').size).toBe(0);
  });

  it('binds at most N source addresses per peer, forgetting the oldest, and an address to one peer only', () => {
    const m = new PeerMap<ReturnType<typeof peer>>(3);
    const a = peer('a', 'd1');
    const b = peer('b', 'd2');
    m.add(a);
    m.add(b);
    for (let i = 0; i < 1000; i++) m.bindAddr(`10.0.0.1:${i}`, a);
    expect(m.boundAddrs).toBe(3);
    expect(m.addrsOfPeer(a)).toEqual(['10.0.0.1:997', '10.0.0.1:998', '10.0.0.1:999']);
    m.bindAddr('10.0.0.1:999', b);
    expect(m.peerForAddr('10.0.0.1:999')).toBe(b);
    expect(m.addrsOfPeer(a)).toEqual(['10.0.0.1:997', '10.0.0.1:998']);
    // Re-binding moves an address to the end; removing a peer removes its bindings.
    m.bindAddr('10.0.0.1:997', a);
    expect(m.addrsOfPeer(a)).toEqual(['10.0.0.1:998', '10.0.0.1:997']);
    m.remove(a);
    expect(m.peerForAddr('10.0.0.1:997')).toBeUndefined();
    expect(m.boundAddrs).toBe(1);
  });

  it('never pushes out the kept (best) address, however many spoofed sources bind after it', () => {
    const m = new PeerMap<ReturnType<typeof peer>>(3);
    const a = peer('a', 'd1');
    m.add(a);
    m.bindAddr('198.51.100.1:41641', a);
    for (let i = 0; i < 100; i++) m.bindAddr(`10.9.9.9:${i}`, a, '198.51.100.1:41641');
    expect(m.peerForAddr('198.51.100.1:41641')).toBe(a);
    expect(m.addrsOfPeer(a)).toHaveLength(3);
  });

  it('ignores bindings for a peer it does not hold, and replaces a peer with the same node key', () => {
    const m = new PeerMap<ReturnType<typeof peer>>(2);
    const stranger = peer('s', 'd9');
    m.bindAddr('10.0.0.2:1', stranger);
    expect(m.boundAddrs).toBe(0);
    const a1 = peer('a', 'd1');
    const a2 = peer('a', 'd2');
    m.add(a1);
    m.bindAddr('10.0.0.3:1', a1);
    m.add(a2);
    expect(m.get('a')).toBe(a2);
    expect(m.knowsDisco('d1')).toBe(false);
    expect(m.peerForAddr('10.0.0.3:1')).toBeUndefined();
    expect(() => new PeerMap(0)).toThrow(RangeError);
  });
});
