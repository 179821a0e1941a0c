/**
 * The Linux system beside Weft's interface (system.ts ports), as weftd runs it as root:
 *  - router: Weft's routing table and policy rules (router/linux.ts);
 *  - filter: the ACL from control compiled to an nftables table of Weft's own (filter/compile.ts) and loaded
 *    atomically, one `nft -j` transaction given as argv (filter/nft.ts); an unchanged filter is not reloaded;
 *  - dns: MagicDNS served at 100.100.100.100 (dns/server.ts) from the netmap (dns/plan.ts), and the OS pointed at it
 *    through systemd-resolved or a resolv.conf of Weft's own (dns/os.ts), undone on exit and at the next start.
 * Every command is argv through the CommandRunner; nothing here takes a client's request.
 */
import { readFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { DnsStatus, FilterStatus } from '../../src-shared/model/tailnet.ts';
import type { FilterRule } from '../protocol/control/tailcfg.ts';
import { WEFT_ROUTE_TABLE, WEFT_RULE_PREF } from './constants.ts';
import type { NetMap } from './control/map-session.ts';
import { dnsPlan, type DnsPlan, type OsBase, type OsDnsConfig } from './dns/plan.ts';
import { detectDnsMode, DirectResolvConf, isMountPoint, RESOLV_CONF, RESOLV_CONF_BACKUP, ResolvedLink } from './dns/os.ts';
import { MagicDnsServer } from './dns/server.ts';
import { compileFilter, filterTableName, type CompiledFilter } from './filter/compile.ts';
import { NftFilter } from './filter/nft.ts';
import { NftDataPath } from './datapath/nft.ts';
import { execRunner, type CommandRunner } from './io/exec.ts';
import { LinuxRouter } from './router/linux.ts';
import { connectedPrefixes } from './router/plan.ts';
import type { Logf } from './sys/log.ts';
import { QUAD100_V4, QUAD100_V6, type DnsPort, type FilterPort, type TailnetSystem } from './system.ts';
import { isWeftInterfaceName } from './wg/iface.ts';

export interface LinuxSystemInit {
  iface: string;
  /** Weft's state directory: the pre-Weft resolv.conf is kept there (never beside /etc/resolv.conf). */
  stateDir: string;
  logf: Logf;
  runner?: CommandRunner;
  /** @default WEFT_ROUTE_TABLE */
  table?: number;
  /** @default WEFT_RULE_PREF */
  pref?: number;
  /** Where the OS's resolver configuration lives (tests). @default /etc/resolv.conf */
  resolvConf?: string;
  /** Where MagicDNS serves (tests: a loopback port; the OS is then pointed at quad-100 as usual). @default quad-100:53 */
  dnsListen?: { host: string; port: number }[];
  /** 'proxy' keeps every WireGuard packet passing through Node. @default kernel when nft accepts the rules (env WEFT_DATAPATH=proxy also forces proxy) */
  dataPath?: 'kernel' | 'proxy';
}

class LinuxFilter implements FilterPort {
  private readonly nft: NftFilter;
  private readonly table: string;
  private lastKey: string | null = null;
  private lastCompiled: CompiledFilter | null = null;
  private rules: readonly FilterRule[] | null = null;
  private lastError: string | null = null;

  constructor(
    private readonly iface: string,
    private readonly runner: CommandRunner,
    private readonly logf: Logf,
  ) {
    this.nft = new NftFilter(runner, logf);
    this.table = filterTableName(iface);
  }

  async apply(rules: readonly FilterRule[] | null, selfAddrs: readonly string[]): Promise<string | null> {
    const compiled = compileFilter(rules, { iface: this.iface, table: this.table, selfAddrs });
    const key = compiled.error === null && compiled.ruleset ? JSON.stringify(compiled.ruleset) : null;
    // The same ruleset is already in force (netmaps come often; most do not change the filter).
    if (key !== null && key === this.lastKey && (rules === null) === (this.rules === null)) return null;
    const r = await this.nft.apply(compiled);
    if (!r.ok) {
      this.lastError = r.error;
      return r.error;
    }
    this.lastKey = key;
    this.lastCompiled = compiled;
    this.lastError = null;
    if (rules !== null) this.rules = rules;
    return null;
  }

  async check(): Promise<void> {
    const c = this.lastCompiled;
    if (!c) return;
    const r = await this.runner(['nft', 'list', 'table', 'inet', this.table]);
    if (r.code === 0) return;
    this.logf(`filter: table inet ${this.table} is gone (a firewall reload?); loading it again`);
    const again = await this.nft.apply(c);
    if (!again.ok) this.lastError = `the filter was removed from the kernel and cannot be loaded again: ${again.error}`;
  }

  status(): FilterStatus {
    const s = this.nft.status();
    // The allow-nothing filter before the first netmap counts as "none": nothing from control is enforced yet.
    if (this.rules === null) return { ...s, state: this.lastError ? 'error' : 'none', ruleCount: 0, nftRuleCount: 0, appliedAt: null, error: this.lastError };
    return { ...s, error: this.lastError, state: this.lastError ? 'error' : 'applied' };
  }

  enforced(): readonly FilterRule[] | null {
    return this.rules;
  }

  async remove(): Promise<void> {
    await this.nft.remove(this.table);
    this.rules = null;
    this.lastKey = null;
  }
}

/** Rewrites by someone else that are answered by putting MagicDNS back; then Weft stops fighting (as tailscaled). */
const MAX_TRAMPLES = 10;

class LinuxDns implements DnsPort {
  private server: MagicDnsServer | null = null;
  private directConf: DirectResolvConf | null = null;
  private resolved: ResolvedLink | null = null;
  private mode: 'resolved' | 'direct' | null = null;
  private plan: DnsPlan | null = null;
  private osApplied: string | null = null;
  private error: string | null = null;
  private acceptDns = true;
  private base: OsBase | null = null;
  /** What the OS was last given (direct mode: to put back after someone else rewrote resolv.conf). */
  private lastOs: OsDnsConfig | null = null;
  private tramples = 0;
  /** The last bind failures logged (start() is retried at every netmap until every address is served). */
  private serveFailure = '';

  constructor(private readonly o: Required<Pick<LinuxSystemInit, 'iface' | 'stateDir' | 'logf'>> & { runner: CommandRunner; resolvConf?: string; dnsListen?: { host: string; port: number }[] }) {
  }

  /**
   * resolv.conf's manager. The original is kept beside it (/etc/resolv.pre-weft-backup.conf, Weft's own name, so a
   * symlinked resolv.conf comes back as the same symlink), except when resolv.conf is a mount point (a container's,
   * or `ip netns exec`'s /etc/netns/NAME/resolv.conf): then its directory is not its own, and the original is kept
   * in Weft's state directory. The choice depends only on the machine, so a run after a crash finds the backup.
   */
  private async direct(): Promise<DirectResolvConf> {
    if (this.directConf) return this.directConf;
    const path = this.o.resolvConf ?? RESOLV_CONF;
    const backupPath = (await isMountPoint(path)) || this.o.resolvConf ? join(this.o.stateDir, 'resolv.pre-weft.conf') : RESOLV_CONF_BACKUP;
    this.directConf = new DirectResolvConf({ path, backupPath, logf: this.o.logf });
    return this.directConf;
  }

  async cleanupAtStart(): Promise<void> {
    try {
      const r = await (await this.direct()).cleanupAtStart();
      if (r !== 'nothing-to-do') this.o.logf(`dns: at start, resolv.conf ${r} (left by an earlier run)`);
    } catch (e) {
      this.o.logf(`dns: restoring resolv.conf at start failed: ${(e as Error).message}`);
    }
  }

  private async osMode(): Promise<'resolved' | 'direct'> {
    if (this.mode) return this.mode;
    const d = await detectDnsMode({ runner: this.o.runner, backupPath: (await this.direct()).backupPath, ...(this.o.resolvConf ? { resolvConfPath: this.o.resolvConf } : {}) });
    if (d.warning) this.o.logf(`dns: ${d.warning}`);
    this.mode = d.mode;
    this.o.logf(`dns: configuring the OS through ${d.mode === 'resolved' ? 'systemd-resolved' : 'resolv.conf (direct)'} (${d.reason})`);
    return d.mode;
  }

  async apply(nm: NetMap, o: { acceptDns: boolean; ipv6: boolean }): Promise<void> {
    this.acceptDns = o.acceptDns;
    try {
      const mode = await this.osMode();
      // Direct mode cannot split DNS: quad-100 forwards everything else to what the OS used before Weft.
      const direct = await this.direct();
      if (mode === 'direct' && !this.base) this.base = await direct.readBase();
      const r = dnsPlan({ dnsConfig: nm.dnsConfig, self: nm.self, peers: nm.peers.values(), acceptDns: o.acceptDns, osBase: mode === 'direct' ? this.base : null });
      if (!r.ok) {
        this.fail(r.error);
        return;
      }
      this.plan = r.plan;
      for (const p of r.plan.problems.slice(0, 4)) this.o.logf(`dns: ${p}`);
      const listen = this.o.dnsListen ?? (o.ipv6 ? [QUAD100_V4, QUAD100_V6] : [QUAD100_V4]).map((host) => ({ host, port: 53 }));
      this.server ??= new MagicDnsServer({ listen, logf: this.o.logf });
      // (Again) until every address is served: one taken by another resolver is retried at the next netmap.
      if (this.server.served().length < listen.length) {
        const rep = await this.server.start();
        const text = rep.failed.map((f) => `dns: cannot serve on ${f.addr.host}:${f.addr.port}: ${f.error}`).join('\n');
        if (text && text !== this.serveFailure) this.o.logf(text);
        this.serveFailure = text;
      }
      this.server.setPlan(r.plan);
      // The OS is pointed at quad-100 only where it is actually served: a quad-100 that cannot listen must not take
      // the host's DNS. Other nameservers (the OS's own, when no name needs quad-100) pass as they are.
      const served = new Set(this.server.served().map((a) => a.host));
      const isQuad100 = (n: string): boolean => n === QUAD100_V4 || n === QUAD100_V6;
      const ns = (r.plan.os?.nameservers ?? []).filter((n) => (o.ipv6 || !n.includes(':')) && (!isQuad100(n) || served.has(n) || this.o.dnsListen !== undefined));
      const os = r.plan.os && ns.length > 0 ? { ...r.plan.os, nameservers: ns } : null;
      if (r.plan.os && !os) throw new Error('MagicDNS cannot listen on 100.100.100.100 (another resolver holds port 53?); the OS keeps its own DNS');
      const key = JSON.stringify(os);
      if (key !== this.osApplied) {
        if (os === null) await this.revertOs();
        else if (mode === 'resolved') {
          this.resolved ??= new ResolvedLink({ runner: this.o.runner, ifindex: () => ifindexOf(this.o.iface), logf: this.o.logf });
          await this.resolved.apply(os);
        } else await direct.apply(os);
        this.osApplied = key;
        this.lastOs = os;
      }
      if (this.error !== null) this.o.logf('dns: configuration applied');
      this.error = null;
    } catch (e) {
      this.fail((e as Error).message);
    }
  }

  /** Keeps the last good configuration and says why; the same reason again (at every netmap) is not logged again. */
  private fail(reason: string): void {
    const error = `${reason}; keeping the last good DNS configuration`;
    if (error !== this.error) this.o.logf(`dns: ${error}`);
    this.error = error;
  }

  private async revertOs(): Promise<void> {
    if (this.resolved) await this.resolved.revert();
    else await (await this.direct()).restore();
  }

  async check(): Promise<void> {
    if (this.mode !== 'direct' || !this.lastOs || this.osApplied === null || this.osApplied === 'null') return;
    try {
      const direct = await this.direct();
      if (await direct.isOwn()) return;
      if (this.tramples >= MAX_TRAMPLES) return;
      this.tramples++;
      this.o.logf(`dns: someone else rewrote ${direct.path}; it becomes the original, and MagicDNS goes back in (${this.tramples} of ${MAX_TRAMPLES})`);
      await direct.apply(this.lastOs);
      this.base = null; // the next netmap forwards "." to the new file's resolvers
    } catch (e) {
      this.o.logf(`dns: checking resolv.conf failed: ${(e as Error).message}`);
    }
  }

  status(): DnsStatus {
    const suffix = this.plan?.magicSuffix ? this.plan.magicSuffix.replace(/\.$/, '') : null;
    return {
      acceptDns: this.acceptDns,
      mode: this.osApplied && this.osApplied !== 'null' ? (this.mode ?? 'off') : 'off',
      suffix,
      serving: (this.server?.served().length ?? 0) > 0,
      error: this.error,
    };
  }

  async close(): Promise<void> {
    try {
      await this.revertOs();
    } catch (e) {
      this.o.logf(`dns: giving the OS back its configuration failed: ${(e as Error).message}`);
    }
    await this.server?.close().catch(() => undefined);
    this.server = null;
    this.osApplied = null;
    this.lastOs = null;
  }
}

/** The interface's index (/sys/class/net/NAME/ifindex); the interface may have been recreated since last time. */
async function ifindexOf(iface: string): Promise<number> {
  const text = await readFile(join('/sys/class/net', iface, 'ifindex'), 'utf8');
  const n = Number(text.trim());
  if (!Number.isInteger(n) || n <= 0) throw new Error(`no interface index for ${iface}`);
  return n;
}

export function createLinuxSystem(init: LinuxSystemInit): TailnetSystem {
  const runner = init.runner ?? execRunner;
  return {
    router: new LinuxRouter({ iface: init.iface, table: init.table ?? WEFT_ROUTE_TABLE, pref: init.pref ?? WEFT_RULE_PREF, runner, logf: init.logf }),
    filter: new LinuxFilter(init.iface, runner, init.logf),
    dns: new LinuxDns({ iface: init.iface, stateDir: init.stateDir, logf: init.logf, runner, ...(init.resolvConf ? { resolvConf: init.resolvConf } : {}), ...(init.dnsListen ? { dnsListen: init.dnsListen } : {}) }),
    // WEFT_DATAPATH=proxy keeps every WireGuard packet passing through Node (the fallback, for comparison and tests).
    datapath: (init.dataPath ?? process.env['WEFT_DATAPATH']) === 'proxy' ? null : new NftDataPath(runner, init.logf, init.iface),
    lan: () => connectedPrefixes(networkInterfaces(), (n) => isWeftInterfaceName(n) || n === init.iface),
  };
}
