/**
 * WgInterface over the privileged helper (in-process or over its socket): what the unprivileged engine uses.
 * Pure: it only talks to the injected Helper. It keeps the last applied config, so set() sends only the UAPI
 * diff (config.ts), and nothing at all when the config did not change.
 */
import { WG_TUN_MTU } from '../constants.ts';
import type { WgConfig } from './config.ts';
import { cloneConfig, diffConfig } from './config.ts';
import type { Helper } from './helper-ops.ts';
import type { PeerStats, WgInterface, WgUpOptions } from './iface.ts';
import { WgError } from './iface.ts';
import { encodeSetRequest, keyFromHex, UapiEncodeError } from './uapi.ts';

export class HelperWgInterface implements WgInterface {
  // Owned by this object: the config the device is known to have (null = unknown, send everything).
  private applied: WgConfig | null = null;
  private lastRoutes: string | null = null;
  private closed: Promise<void> | null = null;

  private constructor(
    readonly name: string,
    private readonly helper: Helper,
  ) {}

  /** Asks the helper to create the device and returns its interface. */
  static async create(helper: Helper, name: string): Promise<HelperWgInterface> {
    await helper.call({ op: 'create-interface', name });
    return new HelperWgInterface(name, helper);
  }

  async up(opts: WgUpOptions): Promise<void> {
    await this.helper.call({ op: 'set-addresses', name: this.name, addresses: opts.addresses, mtu: opts.mtu ?? WG_TUN_MTU });
  }

  async set(cfg: WgConfig): Promise<void> {
    let uapi: string;
    try {
      const req = diffConfig(this.applied, cfg);
      if (req === null) return;
      uapi = encodeSetRequest(req);
    } catch (e) {
      if (e instanceof UapiEncodeError) throw new WgError('invalid', e.message, { cause: e });
      throw e;
    }
    try {
      await this.helper.call({ op: 'set-config', name: this.name, uapi });
      this.applied = cloneConfig(cfg);
    } catch (e) {
      this.applied = null;
      throw e;
    }
  }

  async routes(prefixes: string[]): Promise<void> {
    const key = JSON.stringify([...prefixes].sort());
    if (key === this.lastRoutes) return;
    this.lastRoutes = null;
    await this.helper.call({ op: 'set-routes', name: this.name, prefixes });
    this.lastRoutes = key;
  }

  async stats(): Promise<PeerStats[]> {
    const r = await this.helper.call({ op: 'get-stats', name: this.name });
    return r.peers.map((p) => ({
      publicKey: keyFromHex(p.publicKey)!,
      endpoint: p.endpoint,
      allowedIPs: p.allowedIPs,
      rxBytes: p.rxBytes,
      txBytes: p.txBytes,
      lastHandshakeUnixMs: p.lastHandshakeUnixMs,
    }));
  }

  close(): Promise<void> {
    this.closed ??= this.helper.call({ op: 'destroy-interface', name: this.name }).then(() => undefined);
    return this.closed;
  }
}
