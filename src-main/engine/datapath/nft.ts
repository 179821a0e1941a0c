/**
 * Loads the kernel data path (plan.ts) for one Weft interface with `nft -j`, and tells the engine which data path
 * is in force: `kernel` (WireGuard on the public port, Node's disco socket beside it) or `proxy` (today's shared
 * socket and loopback proxy), with the reason the kernel one is not. No I/O of its own: the CommandRunner
 * (io/exec.ts) runs nft.
 *
 * - The JSON goes to nft as arguments, cut as the ACL filter cuts it (filter/nft.ts nftArgv): with nft 1.0.6 a
 *   JSON `-f -` (and `-f /dev/stdin`) fails to open stdin when it is a socket, as Node's child_process gives it;
 *   that holds for a check (`nft -c -j -f -`) as well.
 * - Every ruleset passes validateDataPath right before it is handed to nft; a refused one runs nothing.
 * - `apply` checks first (`nft -c -j`, the kernel evaluates the whole transaction and commits nothing) and loads
 *   only what passed. The load replaces the table in one transaction.
 * - A failed apply leaves no table behind, not even an earlier good one: the engine falls back to the proxy data
 *   path, where Node owns the public port and nothing may steer its packets elsewhere.
 * - `remove` on a clean exit, `cleanupAtStart` before the first apply (a crash leaves the table behind).
 *
 * Calls are serialised, so a slow nft cannot reorder two loads.
 */
import { DATAPATH_MARK, DATAPATH_MAX_RELOADS } from '../constants.ts';
import { nftArgv, type NftResult } from '../filter/nft.ts';
import type { NftRuleset } from '../filter/compile.ts';
import type { CommandRunner } from '../io/exec.ts';
import type { Logf } from '../sys/log.ts';
import { dataPathRuleset, dataPathTableName, removeDataPathRuleset, validateDataPath, type DataPathScope } from './plan.ts';

export type DataPathStatus = { mode: 'kernel' } | { mode: 'proxy'; reason: string };

export interface DataPathPorts {
  /** The public port WireGuard binds (P). */
  publicPort: number;
  /** Node's disco and STUN socket (Q). */
  discoPort: number;
}

/** The argv that checks `ruleset` without committing it: `nft -c -j -- <JSON in pieces>`. */
export function nftCheckArgv(ruleset: NftRuleset): string[] {
  const [cmd, ...rest] = nftArgv(ruleset);
  return [cmd ?? 'nft', '-c', ...rest];
}

export class NftDataPath {
  /** The nft table (inet family) this data path owns. */
  readonly table: string;
  private state: DataPathStatus = { mode: 'proxy', reason: 'not applied yet' };
  /** Set while a table of ours may be in the kernel (after a load, until a removal succeeds). */
  private loaded = false;
  private queue: Promise<unknown> = Promise.resolve();
  /** The ports of the table in force (for check()). */
  private ports: DataPathPorts | null = null;
  private reloads = 0;

  /** `iface`: the Weft interface (WEFT_IFACE_RE); `mark`: the packet-mark bit, DATAPATH_MARK unless a test says otherwise. */
  constructor(
    private readonly run: CommandRunner,
    private readonly logf: Logf,
    readonly iface: string,
    private readonly mark: number = DATAPATH_MARK,
  ) {
    this.table = dataPathTableName(iface);
  }

  /**
   * Validates, checks and loads the data path for `ports`. Resolves with the new status: `kernel` when the
   * table is in force, else `proxy` with the reason (and then no table of ours is left). Never rejects.
   */
  apply(ports: DataPathPorts): Promise<DataPathStatus> {
    return this.serial(async () => {
      const ruleset = dataPathRuleset({ table: this.table, publicPort: ports.publicPort, discoPort: ports.discoPort, mark: this.mark });
      const v = validateDataPath(ruleset, { iface: this.iface, table: this.table, ports });
      if (!v.ok) return this.fallBack(`refused: ${v.reason}`);
      const check = await this.nft(nftCheckArgv(ruleset), 'nft -c -j');
      if (!check.ok) return this.fallBack(check.error);
      const load = await this.nft(nftArgv(ruleset), 'nft -j');
      if (!load.ok) return this.fallBack(load.error);
      this.loaded = true;
      this.ports = { ...ports };
      this.state = { mode: 'kernel' };
      this.logf(`datapath: kernel data path in table inet ${this.table}: disco and STUN to port ${ports.publicPort} go to ${ports.discoPort}, which sends as ${ports.publicPort}`);
      return this.state;
    });
  }

  /**
   * The periodic check: a table that someone removed (`nft flush ruleset`, a firewall reload) would silently cut
   * every direct path (disco and STUN to P would reach WireGuard, and Node would leave from its own port), so it
   * is loaded again, at most DATAPATH_MAX_RELOADS times (after that status says proxy: something keeps removing
   * it). Never rejects.
   */
  check(): Promise<DataPathStatus> {
    return this.serial(async () => {
      const ports = this.ports;
      if (this.state.mode !== 'kernel' || !ports) return this.state;
      const there = await this.nft(['nft', '-j', 'list', 'table', 'inet', this.table], 'nft list table');
      if (there.ok) return this.state;
      if (this.reloads >= DATAPATH_MAX_RELOADS) return this.fallBack(`table inet ${this.table} keeps disappearing (reloaded ${this.reloads} times)`);
      this.reloads++;
      const ruleset = dataPathRuleset({ table: this.table, publicPort: ports.publicPort, discoPort: ports.discoPort, mark: this.mark });
      const v = validateDataPath(ruleset, { iface: this.iface, table: this.table, ports });
      if (!v.ok) return this.fallBack(`refused: ${v.reason}`);
      const load = await this.nft(nftArgv(ruleset), 'nft -j');
      if (!load.ok) return this.fallBack(load.error);
      this.logf(`datapath: table inet ${this.table} was gone (a firewall reload?); loaded again`);
      return this.state;
    });
  }

  /** Deletes the table (clean exit); the status then reads proxy, "removed". Never rejects. */
  remove(): Promise<NftResult> {
    return this.serial(async () => {
      const r = await this.removeTable();
      if (r.ok) this.state = { mode: 'proxy', reason: 'removed' };
      else this.logf(`datapath: removing table inet ${this.table} failed: ${r.error}`);
      return r;
    });
  }

  /**
   * Deletes a table this interface's data path left behind (a crash, a kill), before the first apply. No error
   * when there is none. The status is not changed: it reads proxy until apply succeeds. Never rejects.
   */
  cleanupAtStart(): Promise<NftResult> {
    return this.serial(async () => {
      const r = await this.removeTable();
      if (!r.ok) this.logf(`datapath: removing a leftover table inet ${this.table} failed: ${r.error}`);
      return r;
    });
  }

  status(): DataPathStatus {
    return { ...this.state };
  }

  private async fallBack(reason: string): Promise<DataPathStatus> {
    this.state = { mode: 'proxy', reason };
    this.ports = null;
    this.logf(`datapath: proxy data path: ${reason}`);
    if (this.loaded) {
      const r = await this.removeTable();
      if (!r.ok) this.logf(`datapath: the previous table inet ${this.table} could not be removed: ${r.error}`);
    }
    return this.state;
  }

  private async removeTable(): Promise<NftResult> {
    const ruleset = removeDataPathRuleset(this.table);
    const v = validateDataPath(ruleset, { iface: this.iface, table: this.table } satisfies DataPathScope);
    if (!v.ok) return { ok: false, error: `refused: ${v.reason}` };
    const r = await this.nft(nftArgv(ruleset), 'nft -j');
    if (r.ok) this.loaded = false;
    return r;
  }

  private async nft(argv: string[], what: string): Promise<NftResult> {
    try {
      const res = await this.run(argv);
      if (res.code === 0) return { ok: true };
      const out = (res.stderr.trim() || res.stdout.trim() || 'no output').slice(0, 2000);
      if (res.code === null && /ENOENT/.test(out)) return { ok: false, error: 'nft not found' };
      return { ok: false, error: `${what} (code ${res.code === null ? 'none' : String(res.code)}): ${out}` };
    } catch (e) {
      return { ok: false, error: `${what}: ${e instanceof Error ? e.message : String(e)}` };
    }
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }
}
