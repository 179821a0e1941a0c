/**
 * An in-memory WgInterface for engine tests: records every call and the UAPI diff each set() would send,
 * and returns whatever stats the test puts in `peerStats`. Pure.
 */
import type { WgConfig } from './config.ts';
import { cloneConfig, diffConfig, forgetPeerEndpoint } from './config.ts';
import { toHex } from '../../protocol/wire/hex.ts';
import type { PeerStats, WgInterface, WgUpOptions } from './iface.ts';
import { WgError } from './iface.ts';
import type { UapiSetRequest } from './uapi.ts';
import { validateRoutes } from './validate.ts';

export class FakeWgInterface implements WgInterface {
  upCalls: WgUpOptions[] = [];
  /** The config after each set() that changed something. */
  configs: WgConfig[] = [];
  /** The diff each changing set() produced. */
  diffs: UapiSetRequest[] = [];
  installedRoutes: string[] = [];
  peerStats: PeerStats[] = [];
  closed = false;

  constructor(readonly name: string) {}

  private check(): void {
    if (this.closed) throw new WgError('not-found', `${this.name} is closed`);
  }

  async up(opts: WgUpOptions): Promise<void> {
    this.check();
    this.upCalls.push({ addresses: [...opts.addresses], ...(opts.mtu !== undefined ? { mtu: opts.mtu } : {}), ...(opts.serviceAddresses ? { serviceAddresses: [...opts.serviceAddresses] } : {}) });
  }

  async set(cfg: WgConfig): Promise<void> {
    this.check();
    const d = diffConfig(this.configs[this.configs.length - 1] ?? null, cfg);
    if (d === null) return;
    this.diffs.push(d);
    this.configs.push(cloneConfig(cfg));
  }

  /** Peers whose endpoint the test said the device moved (forgetEndpoint), in order. */
  forgotten: string[] = [];

  forgetEndpoint(publicKey: Uint8Array): void {
    this.forgotten.push(toHex(publicKey));
    forgetPeerEndpoint(this.configs[this.configs.length - 1] ?? null, publicKey);
  }

  async routes(prefixes: string[]): Promise<void> {
    this.check();
    this.installedRoutes = validateRoutes(prefixes);
  }

  async stats(): Promise<PeerStats[]> {
    this.check();
    return this.peerStats;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.installedRoutes = [];
  }
}
