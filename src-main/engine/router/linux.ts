/**
 * The Linux router: Weft's routes live in a routing table of its own, reached by one policy rule per family, as
 * Tailscale's Linux router does with table 52 and rules at pref 5210–5270 (wgengine/router/osrouter/router_linux.go).
 * Weft uses its own numbers (constants.ts WEFT_ROUTE_TABLE, WEFT_RULE_PREF) so it can live beside tailscaled.
 *
 *   set({routes, throws, src4, src6})   ensure the rules; read the table (`ip -j route show table T`); add or replace
 *                                       what is wanted first, then delete the rest (an HA move never leaves a gap);
 *                                       every route pins `src` to this node's address (a second /32 on the
 *                                       interface, 100.100.100.100, must never become the source)
 *   cleanup()                           flush the table and delete the rules: on exit, and at start (after SIGKILL)
 *
 * Rules deleted by someone else (systemd-networkd does that, tailscale/tailscale#1591) come back at the next set().
 * Commands go through the injected CommandRunner as argv; the route batch goes to `ip -batch -` on stdin, one
 * process for any number of routes. Prefixes reaching here are canonical (router/plan.ts).
 */
import type { CommandRunner } from '../io/exec.ts';
import { describeFailure } from '../io/exec.ts';
import type { Logf } from '../sys/log.ts';
import { canonicalPrefix, parseIp } from '../wg/ip-prefix.ts';

export interface RouterState {
  routes: readonly string[];
  /** Connected prefixes that must fall through to `main` (the LAN wins). */
  throws: readonly string[];
  /** This node's addresses, pinned as the source of routes of their family (null: none of that family). */
  src4: string | null;
  src6: string | null;
}

export interface Router {
  /** Makes Weft's table exactly `s`; throws (with the tool's message) when the system refuses. */
  set(s: RouterState): Promise<void>;
  /** Removes Weft's table and rules. Never throws. */
  cleanup(): Promise<void>;
  /** Makes the next set() compare with the kernel again (a periodic check: rules deleted by someone else). */
  markStale(): void;
  readonly table: number;
}

export interface LinuxRouterInit {
  iface: string;
  table: number;
  pref: number;
  runner: CommandRunner;
  logf: Logf;
  /** Manage IPv6 too. @default true */
  ipv6?: boolean;
}

interface IpRoute {
  type?: string;
  dst?: string;
  dev?: string;
  prefsrc?: string;
}

export class LinuxRouter implements Router {
  readonly table: number;
  /** The last state set in full (set() with the same state spawns nothing). */
  private lastKey: string | null = null;
  private recheck = false;
  constructor(private readonly o: LinuxRouterInit) {
    this.table = o.table;
  }

  private families(): (4 | 6)[] {
    return this.o.ipv6 === false ? [4] : [4, 6];
  }

  private async run(argv: string[], input?: string): Promise<void> {
    const r = await this.o.runner(argv, input === undefined ? {} : { input });
    if (r.code !== 0) throw new Error(describeFailure(argv, r));
  }

  /** The table's routes of one family as "kind prefix dev src" keys (an absent table is empty). */
  private async read(family: 4 | 6): Promise<Map<string, string>> {
    const argv = ['ip', '-j', `-${family}`, 'route', 'show', 'table', String(this.table)];
    const r = await this.o.runner(argv);
    const out = new Map<string, string>();
    if (r.code !== 0) {
      if (/table does not exist|not supported/i.test(r.stderr)) return out;
      throw new Error(describeFailure(argv, r));
    }
    let rows: IpRoute[] = [];
    try {
      const parsed: unknown = JSON.parse(r.stdout || '[]');
      if (Array.isArray(parsed)) rows = parsed as IpRoute[];
    } catch {
      throw new Error(`${argv.join(' ')}: unreadable output`);
    }
    for (const row of rows) {
      const dst = row.dst === undefined || row.dst === 'default' ? null : canonicalPrefix(row.dst, { allowBare: true });
      if (!dst) continue;
      const kind = row.type === 'throw' ? 'throw' : 'route';
      out.set(`${kind} ${dst}`, kind === 'throw' ? `throw ${dst}` : `${dst} ${row.dev ?? ''} ${row.prefsrc ?? ''}`);
    }
    return out;
  }

  private async ensureRules(families: readonly (4 | 6)[]): Promise<void> {
    for (const f of families) {
      const argv = ['ip', '-j', `-${f}`, 'rule', 'show', 'pref', String(this.o.pref)];
      const r = await this.o.runner(argv);
      let present = false;
      if (r.code === 0) {
        try {
          const rows: unknown = JSON.parse(r.stdout || '[]');
          present = Array.isArray(rows) && rows.some((x) => typeof x === 'object' && x !== null && String((x as { table?: unknown }).table) === String(this.table));
        } catch {
          present = false;
        }
      }
      if (!present) await this.run(['ip', `-${f}`, 'rule', 'add', 'pref', String(this.o.pref), 'lookup', String(this.table)]);
    }
  }

  async set(s: RouterState): Promise<void> {
    // Everything that reaches `ip -batch` is re-checked here, whatever the caller did: a canonical prefix or IP is
    // one token, so no netmap value can smuggle a second command into the batch.
    for (const p of [...s.routes, ...s.throws]) if (canonicalPrefix(p) !== p) throw new Error(`router: refusing ${JSON.stringify(p.slice(0, 64))}: not a canonical prefix`);
    for (const a of [s.src4, s.src6]) if (a !== null && parseIp(a)?.ip !== a) throw new Error(`router: refusing source ${JSON.stringify(a.slice(0, 64))}: not an IP address`);
    // IPv6 only when this node has an IPv6 address (a host booted with ipv6.disable=1 has no IPv6 routing at all).
    const families: (4 | 6)[] = s.src6 === null || this.o.ipv6 === false ? [4] : [4, 6];
    const key = JSON.stringify([s, families]);
    if (key === this.lastKey && !this.recheck) return;
    this.recheck = false;
    await this.ensureRules(families);
    const t = String(this.table);
    const adds: string[] = [];
    const dels: string[] = [];
    for (const f of families) {
      const current = await this.read(f);
      const src = f === 4 ? s.src4 : s.src6;
      const want = new Map<string, { line: string; cmd: string }>();
      for (const p of s.routes.filter((r) => (r.includes(':') ? 6 : 4) === f)) {
        want.set(`route ${p}`, { line: `${p} ${this.o.iface} ${src ?? ''}`, cmd: `route replace ${p} dev ${this.o.iface} table ${t}${src ? ` src ${src}` : ''}` });
      }
      for (const p of s.throws.filter((r) => (r.includes(':') ? 6 : 4) === f)) want.set(`throw ${p}`, { line: `throw ${p}`, cmd: `route replace throw ${p} table ${t}` });
      for (const [k, w] of want) if (current.get(k) !== w.line) adds.push(w.cmd);
      for (const k of current.keys()) if (!want.has(k)) dels.push(`route del ${k.startsWith('throw ') ? `throw ${k.slice(6)}` : k.slice(6)} table ${t}`);
    }
    // ip -batch takes one command per line, without options; the family follows from each prefix.
    if (adds.length > 0) await this.run(['ip', '-batch', '-'], adds.join('\n') + '\n');
    if (dels.length > 0) await this.run(['ip', '-force', '-batch', '-'], dels.join('\n') + '\n');
    this.lastKey = key;
  }

  /** The next set() reads the kernel again even if the state is the same (rules deleted by someone else). */
  markStale(): void {
    this.recheck = true;
  }

  async cleanup(): Promise<void> {
    this.lastKey = null;
    for (const f of this.families()) {
      const flush = await this.o.runner(['ip', `-${f}`, 'route', 'flush', 'table', String(this.table)]);
      if (flush.code !== 0 && !/table does not exist|No such|not supported/i.test(flush.stderr)) this.o.logf(`router: ${describeFailure(['ip', `-${f}`, 'route', 'flush', 'table', String(this.table)], flush)}`);
      // Bounded: one rule per family is ours; a few extra passes clear duplicates left by a crash mid-set.
      for (let i = 0; i < 8; i++) {
        const r = await this.o.runner(['ip', `-${f}`, 'rule', 'del', 'pref', String(this.o.pref), 'lookup', String(this.table)]);
        if (r.code !== 0) break;
      }
    }
  }
}
