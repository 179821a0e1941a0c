/**
 * DERP links: one DerpConn per region in use (our home region, plus the home regions of peers we send to), and
 * where each region's server is (from the DERP map). Connections are opened on first use and closed when their
 * region leaves the map or its server changes (dataplane-protocol.md §5; TS: wgengine/magicsock/derp.go).
 *
 * Events carry the region, so one disco handler (conn.ts) can treat "from region R, node K" as a source just
 * as it treats a UDP address.
 */
import { DerpConn } from '../relay/client.ts';
import { targetKey, type DerpTarget } from '../relay/targets.ts';
import type { Clock } from '../sys/clock.ts';
import type { Logf } from '../sys/log.ts';

/** What the owner hears from the links; each callback names the region. */
export interface DerpLinksHandlers {
  /** A packet from node `src` (32-byte key) through `region`. */
  packet(region: number, src: Uint8Array, payload: Uint8Array): void;
  /** The region's server says a peer we sent to is gone (reason 0) or was never there (1). */
  peerGone(region: number, key: Uint8Array, reason: number): void;
  /** The connection to `region` opened (or reopened). */
  connected(region: number): void;
}

export interface DerpLinksInit {
  nodePriv: Uint8Array;
  clock: Clock;
  logf: Logf;
  on: DerpLinksHandlers;
}

export class DerpLinks {
  // Owned by this instance.
  private readonly conns = new Map<number, DerpConn>();
  private targets = new Map<number, DerpTarget>();
  private homeRegion: number | null = null;

  constructor(private readonly init: DerpLinksInit) {}

  get home(): number | null {
    return this.homeRegion;
  }

  /** Open connections, by region. */
  get size(): number {
    return this.conns.size;
  }

  /**
   * Sets the DERP regions (from the DERP map) and our home region, connecting to home. A region that left the
   * map, or whose server changed, loses its connection (redialled on next use).
   */
  set(targets: Map<number, DerpTarget>, home: number | null): void {
    this.targets = targets;
    for (const [id, c] of this.conns) {
      const t = targets.get(id);
      if (!t || targetKey(t) !== targetKey(c.target)) {
        c.close();
        this.conns.delete(id);
      }
    }
    if (home !== this.homeRegion && home !== null) {
      // NotePreferred is sent on connect: reconnect so the new home region hears it.
      this.conns.get(home)?.close();
      this.conns.delete(home);
    }
    this.homeRegion = home;
    if (home !== null) this.link(home);
  }

  /** The connection to `region`, opened on first use; null when the region is unknown. */
  link(region: number | null): DerpConn | null {
    if (region === null) return null;
    let c = this.conns.get(region);
    if (c) return c;
    const target = this.targets.get(region);
    if (!target) return null;
    c = new DerpConn({ target, nodePriv: this.init.nodePriv, clock: this.init.clock, logf: this.init.logf, preferred: region === this.homeRegion });
    const on = this.init.on;
    c.on('packet', (src, payload) => on.packet(region, src, payload));
    c.on('peer-gone', (key, reason) => on.peerGone(region, key, reason));
    c.on('connected', () => on.connected(region));
    this.conns.set(region, c);
    c.start();
    return c;
  }

  /** The connection to `region` if one exists (never dials). */
  existing(region: number | null): DerpConn | undefined {
    return region === null ? undefined : this.conns.get(region);
  }

  /** Sends to a node through `region` (dialling it if needed); false when there is no open connection. */
  send(region: number | null, dst: Uint8Array, packet: Uint8Array): boolean {
    return this.link(region)?.send(dst, packet) ?? false;
  }

  /** Sends only over an existing connection to `region` (replies go back the way the request came). */
  reply(region: number, dst: Uint8Array, packet: Uint8Array): boolean {
    return this.conns.get(region)?.send(dst, packet) ?? false;
  }

  close(): void {
    for (const c of this.conns.values()) c.close();
    this.conns.clear();
  }
}
