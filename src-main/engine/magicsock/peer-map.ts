/**
 * The peer map: peers by node key, the set of nodes behind each disco key, and which peer a UDP source address
 * belongs to (the shape of Tailscale's wgengine/magicsock/peermap.go: byNodeKey, nodesOfDisco, byIPPort).
 *
 * Several nodes may share one disco key (the same machine re-registered, or a hostile node that copied
 * another's key into its netmap entry). Keeping a set per key means such a node cannot take over the other's
 * path: the disco handler picks the node a message is for from the ping's node key, the DERP sender or the
 * pong's transaction ID, and acts on all of them only when nothing tells them apart.
 *
 * Source bindings (an inbound WireGuard packet from this ip:port belongs to that peer) are bounded per peer:
 * the most recent `maxAddrsPerPeer`, oldest forgotten first. An address belongs to one peer at a time.
 */

/** What the map needs of a peer: its node key (hex) and disco key (hex). */
export interface MappedPeer {
  readonly key: string;
  readonly discoHex: string;
}

export class PeerMap<P extends MappedPeer> {
  // All owned by this map; changed only by its methods.
  private readonly byNode = new Map<string, P>();
  private readonly ofDisco = new Map<string, Set<P>>();
  private readonly byAddr = new Map<string, P>();
  /** Per peer, its bound address keys, oldest first. */
  private readonly addrsOf = new Map<P, string[]>();

  constructor(private readonly maxAddrsPerPeer: number) {
    if (!Number.isInteger(maxAddrsPerPeer) || maxAddrsPerPeer < 1) throw new RangeError('maxAddrsPerPeer must be a positive integer');
  }

  get size(): number {
    return this.byNode.size;
  }

  /** How many source addresses are bound, over all peers. */
  get boundAddrs(): number {
    return this.byAddr.size;
  }

  get(key: string): P | undefined {
    return this.byNode.get(key);
  }

  values(): IterableIterator<P> {
    return this.byNode.values();
  }

  /** Adds a peer (replacing one with the same node key). */
  add(p: P): void {
    const old = this.byNode.get(p.key);
    if (old) this.remove(old);
    this.byNode.set(p.key, p);
    let set = this.ofDisco.get(p.discoHex);
    if (!set) {
      set = new Set();
      this.ofDisco.set(p.discoHex, set);
    }
    set.add(p);
  }

  /** Removes a peer with its disco membership and source bindings. */
  remove(p: P): void {
    if (this.byNode.get(p.key) !== p) return;
    this.byNode.delete(p.key);
    const set = this.ofDisco.get(p.discoHex);
    set?.delete(p);
    if (set?.size === 0) this.ofDisco.delete(p.discoHex);
    for (const a of this.addrsOf.get(p) ?? []) if (this.byAddr.get(a) === p) this.byAddr.delete(a);
    this.addrsOf.delete(p);
  }

  /** The nodes that use this disco key (empty when none). */
  nodesOfDisco(discoHex: string): ReadonlySet<P> {
    return this.ofDisco.get(discoHex) ?? EMPTY;
  }

  /** Reports whether any peer uses this disco key. */
  knowsDisco(discoHex: string): boolean {
    return this.ofDisco.has(discoHex);
  }

  /**
   * Binds a source address to a peer (most recent last); past the per-peer bound the oldest is forgotten, except
   * `keep` (the peer's current best address: replayed pings from spoofed sources must not push it out).
   */
  bindAddr(addr: string, p: P, keep: string | null = null): void {
    if (this.byNode.get(p.key) !== p) return;
    const prev = this.byAddr.get(addr);
    if (prev && prev !== p) {
      const l = this.addrsOf.get(prev);
      if (l) this.addrsOf.set(prev, l.filter((a) => a !== addr));
    }
    this.byAddr.set(addr, p);
    const list = (this.addrsOf.get(p) ?? []).filter((a) => a !== addr);
    list.push(addr);
    while (list.length > this.maxAddrsPerPeer) {
      const i = list[0] === keep ? 1 : 0;
      const [old] = list.splice(i, 1);
      if (old !== undefined && this.byAddr.get(old) === p) this.byAddr.delete(old);
    }
    this.addrsOf.set(p, list);
  }

  peerForAddr(addr: string): P | undefined {
    return this.byAddr.get(addr);
  }

  /** The addresses bound to a peer, oldest first. */
  addrsOfPeer(p: P): readonly string[] {
    return this.addrsOf.get(p) ?? [];
  }
}

const EMPTY: ReadonlySet<never> = new Set();
