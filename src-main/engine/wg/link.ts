/**
 * A WireGuard link's MTU, addresses and routes, set with `ip` through an argv-only CommandRunner. Shared by the
 * wireguard-go backend (wireguard-go.ts) and the kernel one (kernel.ts): only how the device is made and
 * configured differs between them.
 *
 *   up({addresses, mtu})   ip link set dev name mtu M; ip addr replace A dev name (own addresses first, then the
 *                          service ones, IPv6 ones deprecated); ip addr del for the ones dropped; ip link set up
 *   routes(prefixes)       ip route replace P dev name; ip route del for the ones dropped
 *   dropRoutes()           ip route del for every route installed (errors logged, not thrown)
 */
import { WG_TUN_MTU } from '../constants.ts';
import type { CommandRunner } from '../io/exec.ts';
import { describeFailure, runChecked } from '../io/exec.ts';
import type { Logf } from '../sys/log.ts';
import type { WgUpOptions } from './iface.ts';
import { wgFailed } from './iface.ts';
import { validateAddresses, validateMtu, validateRoutes } from './validate.ts';

export class LinkState {
  private addresses = new Set<string>();
  private installedRoutes = new Set<string>();

  constructor(
    readonly name: string,
    private readonly runner: CommandRunner,
  ) {}

  private async ip(argv: string[]): Promise<void> {
    await runChecked(this.runner, ['ip', ...argv], wgFailed);
  }

  async up(opts: WgUpOptions): Promise<void> {
    const mtu = validateMtu(opts.mtu ?? WG_TUN_MTU);
    const own = validateAddresses(opts.addresses);
    const service = validateAddresses(opts.serviceAddresses ?? []);
    const want = [...own, ...service];
    await this.ip(['link', 'set', 'dev', this.name, 'mtu', String(mtu)]);
    // The node's own addresses first: among several /32s the first added becomes the source of on-link traffic.
    for (const a of own) await this.ip(['addr', 'replace', a, 'dev', this.name]);
    for (const a of service) await this.ip(['addr', 'replace', a, 'dev', this.name, ...(a.includes(':') ? ['preferred_lft', '0'] : [])]);
    for (const a of this.addresses) {
      if (!want.includes(a)) await this.ip(['addr', 'del', a, 'dev', this.name]);
    }
    this.addresses = new Set(want);
    await this.ip(['link', 'set', 'dev', this.name, 'up']);
  }

  async routes(prefixes: string[]): Promise<void> {
    const want = validateRoutes(prefixes);
    for (const p of want) await this.ip(['route', 'replace', p, 'dev', this.name]);
    for (const p of this.installedRoutes) {
      if (!want.includes(p)) await this.ip(['route', 'del', p, 'dev', this.name]);
    }
    this.installedRoutes = new Set(want);
  }

  async dropRoutes(logf: Logf): Promise<void> {
    for (const p of this.installedRoutes) {
      const argv = ['ip', 'route', 'del', p, 'dev', this.name];
      const r = await this.runner(argv);
      if (r.code !== 0) logf(`close: ${describeFailure(argv, r)}`);
    }
    this.installedRoutes.clear();
  }

  forgetRoutes(): void {
    this.installedRoutes.clear();
  }
}
