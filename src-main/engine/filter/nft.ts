/**
 * Loads a compiled packet filter (compile.ts) into the kernel with `nft -j` and remembers what is in force.
 * No I/O of its own: the CommandRunner (io/exec.ts) runs nft.
 *
 * The JSON goes to nft as arguments, not on stdin: for JSON, nft (1.0.6, Debian 12) opens `-f -` as the file
 * /dev/stdin, and that open fails ("No such device or address") when stdin is a socket, which is what Node's
 * child_process gives a child. nft joins its arguments with spaces into one buffer and, with `-j`, parses that as
 * JSON; so the text is cut after commas outside strings into arguments below the kernel's 128 KiB per-argument
 * limit (MAX_ARG_STRLEN), and compile.ts caps the whole (MAX_RULESET_BYTES) well below the usual 2 MiB
 * ARG_MAX. `--` ends nft's options, so no piece is ever read as one.
 *
 * Every load is one nftables transaction that replaces the table whole (nftables wiki "Atomic rule replacement"),
 * so a load the kernel refuses leaves the previous table exactly as it was, and this object goes on reporting
 * that last good filter, with the error beside it. A filter that compiling refused (too large) is never loaded;
 * but if no filter is in place yet, its allow-replies-only fallback is, so the interface is never left open
 * (fail closed). The table outlives a crash of Weft on purpose: that is the closed state, and the next run
 * replaces it.
 *
 * Loads are serialised: a status never mixes two of them, and a slow nft cannot reorder two filters.
 */
import type { FilterStatus } from '../../../src-shared/model/tailnet.ts';
import type { CommandRunner } from '../io/exec.ts';
import type { Logf } from '../sys/log.ts';
import { removeTable, type CompiledFilter, type NftRuleset } from './compile.ts';

export type NftResult = { ok: true } | { ok: false; error: string };

/** Largest piece of the JSON in one argument (the kernel allows 128 KiB). */
const MAX_ARG_CHUNK = 100_000;

/**
 * The argv that loads `ruleset`: `nft -j -- <JSON in pieces>` (see the header). Pieces end at a comma between
 * tokens once they reach MAX_ARG_CHUNK; a ruleset's strings are short (addresses, names, comments), so no piece
 * runs far past it.
 */
export function nftArgv(ruleset: NftRuleset): string[] {
  const json = JSON.stringify(ruleset);
  const parts: string[] = [];
  let start = 0;
  let inString = false;
  let escaped = false;
  for (let i = 0; i < json.length; i++) {
    const ch = json[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (ch === '\\') escaped = true;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (ch === ',' && i + 1 - start >= MAX_ARG_CHUNK) {
      parts.push(json.slice(start, i + 1));
      start = i + 1;
    }
  }
  parts.push(json.slice(start));
  return ['nft', '-j', '--', ...parts];
}

interface Enforced {
  ruleCount: number;
  nftRuleCount: number;
  skipped: string[];
  appliedAt: string;
}

export class NftFilter {
  private enforced: Enforced | null = null;
  private lastError: string | null = null;
  /** Set once a fail-closed fallback is loaded while no good filter was in place. */
  private fallbackAt: string | null = null;
  private queue: Promise<unknown> = Promise.resolve();

  /** `wallNow`: wall-clock milliseconds since the Unix epoch, for `appliedAt`. */
  constructor(
    private readonly run: CommandRunner,
    private readonly logf: Logf,
    private readonly wallNow: () => number = Date.now,
  ) {}

  /** Loads `compiled` (see the header for what happens when it carries an error). Never rejects. */
  apply(compiled: CompiledFilter): Promise<NftResult> {
    return this.serial(async () => {
      if (compiled.error !== null) {
        this.lastError = compiled.error;
        this.logf(`filter: not applied: ${compiled.error}`);
        if (!this.enforced && compiled.ruleset) {
          const r = await this.load(compiled.ruleset);
          if (r.ok) this.fallbackAt = new Date(this.wallNow()).toISOString();
          else this.logf(`filter: fail-closed fallback not loaded either: ${r.error}`);
        }
        return { ok: false, error: compiled.error };
      }
      if (!compiled.ruleset) return this.fail('no ruleset');
      const r = await this.load(compiled.ruleset);
      if (!r.ok) return this.fail(r.error);
      this.enforced = { ruleCount: compiled.ruleCount, nftRuleCount: compiled.nftRuleCount, skipped: [...compiled.skipped], appliedAt: new Date(this.wallNow()).toISOString() };
      this.lastError = null;
      this.logf(`filter: applied table inet ${compiled.table}: ${compiled.ruleCount} rules from control, ${compiled.nftRuleCount} nft accept rules${compiled.skipped.length > 0 ? `, ${compiled.skipped.length} entries skipped` : ''}`);
      return { ok: true };
    });
  }

  /** Deletes the table (clean exit). Afterwards the status reads as before the first filter. Never rejects. */
  remove(table: string): Promise<NftResult> {
    return this.serial(async () => {
      const r = await this.load(removeTable(table));
      if (!r.ok) {
        this.logf(`filter: removing table inet ${table} failed: ${r.error}`);
        return r;
      }
      this.enforced = null;
      this.fallbackAt = null;
      this.lastError = null;
      return r;
    });
  }

  status(): FilterStatus {
    const e = this.enforced;
    return {
      state: e ? (this.lastError ? 'error' : 'applied') : this.lastError ? 'error' : 'none',
      ruleCount: e?.ruleCount ?? 0,
      nftRuleCount: e?.nftRuleCount ?? 0,
      appliedAt: e?.appliedAt ?? null,
      error: this.lastError,
      skipped: e ? [...e.skipped] : [],
    };
  }

  /** When a fail-closed fallback was loaded with no good filter in place (null otherwise). */
  fallbackSince(): string | null {
    return this.enforced ? null : this.fallbackAt;
  }

  private fail(error: string): NftResult {
    this.lastError = error;
    this.logf(`filter: load failed, the previous table stays: ${error}`);
    return { ok: false, error };
  }

  private async load(ruleset: NftRuleset): Promise<NftResult> {
    try {
      const res = await this.run(nftArgv(ruleset));
      if (res.code === 0) return { ok: true };
      const out = (res.stderr.trim() || res.stdout.trim() || 'no output').slice(0, 2000);
      return { ok: false, error: `nft -j (code ${res.code === null ? 'none' : String(res.code)}): ${out}` };
    } catch (e) {
      return { ok: false, error: `nft -j: ${e instanceof Error ? e.message : String(e)}` };
    }
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }
}
