/**
 * The policy file in force for `weft server --policy FILE`: loaded at start (users that do not exist yet are only
 * logged), then watched and reloaded when it changes. A
 * changed file that does not parse, or does not apply to the tailnet (a user it newly names that does not exist,
 * an undefined group…), is refused with its line and reason in the log, and the last good policy stays in force.
 * A refused text is reported once; it is checked again when the file is written or touched (touch it after
 * creating a missing user).
 *
 * Every policy put in force is also copied (atomically) to `lastGoodPath`, in the server's data directory. A file
 * that is bad or unreadable at start then puts that copy in force, says so in the log, and is watched as usual, so
 * that fixing it takes effect: a restart keeps the last good policy as a reload does. Without a copy (a first
 * start) a bad file stops the start, as headscale's does: serving with no policy at all would let every node reach
 * every other.
 *
 * Reading is bounded (MAX_POLICY_BYTES) and polled rather than evented, so editors that replace the file by
 * renaming a new one over it are seen too. Each poll compares the file's stat with the one taken before the text
 * in force (or last refused) was read, not with the previous poll's: an edit that lands between the first load and
 * the first poll is still seen.
 */
import { readFile, stat } from 'node:fs/promises';
import { writeFileAtomic } from '../../engine/io/atomic-file.ts';
import type { Stats } from 'node:fs';
import type { Logf } from '../../engine/sys/log.ts';
import { compilePolicy, type PolicyWorld } from './compile.ts';
export { worldOf } from './compile.ts';
import { formatPolicyErrors, parsePolicy, type ParsedPolicy, type PolicyError } from './parse.ts';

export const MAX_POLICY_BYTES = 1 << 20;
const POLL_MS = 1000;

export type CheckedPolicy = Extract<ParsedPolicy, { kind: 'ok' }>;

/** Where the control plane reads the policy in force. */
export interface PolicySource {
  /** The document in force and a version that changes with it; null: no policy (allow all). */
  current(): { doc: CheckedPolicy; version: number } | null;
}

/**
 * Parses and checks a policy text against a tailnet: the document, or every error with its line. Users the
 * tailnet does not have are errors, except those in `tolerate` (and any at all when `tolerate` is 'all'): those
 * are passed to `warn` and match no node until they exist. Returns the unknown users it tolerated.
 */
export function checkPolicyText(
  text: string,
  world: PolicyWorld,
  tolerate: ReadonlySet<string> | 'all' = new Set(),
  warn?: (e: PolicyError) => void,
): { kind: 'ok'; doc: CheckedPolicy; unknownUsers: Set<string> } | { kind: 'error'; errors: PolicyError[] } {
  const parsed = parsePolicy(text);
  if (parsed.kind === 'error') return parsed;
  const unknown = new Set<string>();
  const refused: PolicyError[] = [];
  const compiled = compilePolicy(parsed, world, {
    unknownUsers: 'empty',
    warn: (e, alias) => {
      if (tolerate === 'all' || tolerate.has(alias)) {
        unknown.add(alias);
        warn?.(e);
      } else refused.push(e);
    },
  });
  const errors = [...refused, ...(compiled.kind === 'error' ? compiled.errors : [])].sort((a, b) => a.line - b.line || a.column - b.column);
  return errors.length > 0 ? { kind: 'error', errors } : { kind: 'ok', doc: parsed, unknownUsers: unknown };
}

/** Reads a policy file, refusing one over MAX_POLICY_BYTES. */
export async function readPolicyFile(path: string): Promise<string> {
  return (await readStamped(path)).text;
}

/** What identifies one version of the file on disk: a change in any of them means it was written again. */
type Stamp = Pick<Stats, 'mtimeMs' | 'size' | 'ino'>;
const sameStamp = (a: Stamp, b: Stamp): boolean => a.mtimeMs === b.mtimeMs && a.size === b.size && a.ino === b.ino;

/** The file's text and the stat taken just before reading it (so a write after the stat is seen by the next poll). */
async function readStamped(path: string): Promise<{ text: string; stamp: Stamp }> {
  const st = await stat(path);
  if (st.size > MAX_POLICY_BYTES) throw new Error(`${path} is ${st.size} bytes, over the ${MAX_POLICY_BYTES}-byte limit for a policy`);
  return { text: await readFile(path, 'utf8'), stamp: { mtimeMs: st.mtimeMs, size: st.size, ino: st.ino } };
}

export interface PolicyFileInit {
  path: string;
  /** The tailnet to check a new document against (users and nodes now). */
  world: () => PolicyWorld;
  /** A new document is in force. */
  onChange: () => void;
  logf: Logf;
  /** @default 1000 */
  pollMs?: number;
  /** Where a copy of the policy in force is kept, and put in force at a start whose file is bad (see above). */
  lastGoodPath?: string;
}

export class PolicyFile implements PolicySource {
  readonly #i: PolicyFileInit;
  #doc: CheckedPolicy | null = null;
  #version = 0;
  #textInForce: string | null = null;
  /** Users the policy in force names that do not exist (yet): an edit may keep naming them, not add new ones. */
  #unknownUsers = new Set<string>();
  /** The stat of the file when the text in force (or last refused) was read. */
  #stamp: Stamp | null = null;
  #timer: NodeJS.Timeout | null = null;
  #polling = false;
  #reloading: Promise<void> | null = null;
  /** Writes of the last good copy, one after another. */
  #saving: Promise<void> = Promise.resolve();
  /** Why the file on disk is not the policy in force (refused or unreadable), or null when it is. */
  #problem: string | null = null;

  constructor(init: PolicyFileInit) {
    this.#i = init;
  }

  current(): { doc: CheckedPolicy; version: number } | null {
    return this.#doc ? { doc: this.#doc, version: this.#version } : null;
  }

  /**
   * The first load: throws (with every error and its line) when the file is unreadable or bad. Users it names that
   * do not exist yet are only logged: a new server has no users until they are created with the admin CLI, so its
   * policy could not name any otherwise (they match no node until then, as in headscale).
   */
  async load(): Promise<void> {
    let why: string;
    try {
      const { text, stamp } = await readStamped(this.#i.path);
      this.#stamp = stamp;
      const r = this.#checkAtStart(text);
      if (r.kind === 'ok') {
        this.#unknownUsers = r.unknownUsers;
        this.#set(r.doc, text);
        this.#i.logf(`policy: loaded ${this.#i.path}`);
        return;
      }
      why = `policy ${this.#i.path} refused:\n${formatPolicyErrors(r.errors)}`;
    } catch (e) {
      why = `policy ${this.#i.path} cannot be read: ${(e as Error).message}`;
    }
    const copy = await this.#lastGood();
    if (!copy) throw new Error(why);
    this.#unknownUsers = copy.unknownUsers;
    this.#set(copy.doc, copy.text);
    this.#problem = why;
    this.#i.logf(`${why}\npolicy: serving the last good policy (${this.#i.lastGoodPath}) until ${this.#i.path} is fixed`);
  }

  /**
   * Why the file on disk is not the policy in force, while the last good policy stands in for it (a refused edit,
   * an unreadable file, or a bad file at start served from the copy), or null when the file is in force. For
   * user interfaces: the log says the same once.
   */
  problem(): string | null {
    return this.#problem;
  }

  /** Written copies finished (tests, and a clean stop). */
  async saved(): Promise<void> {
    await this.#saving;
  }

  #checkAtStart(text: string): ReturnType<typeof checkPolicyText> {
    return checkPolicyText(text, this.#i.world(), 'all', (e) => this.#i.logf(`policy: line ${e.line}, column ${e.column}: ${e.message}; it matches no node until that user exists`));
  }

  /** The last good copy, when there is one that still checks (it was written by this code, so it should). */
  async #lastGood(): Promise<{ text: string; doc: CheckedPolicy; unknownUsers: Set<string> } | null> {
    if (!this.#i.lastGoodPath) return null;
    let text: string;
    try {
      ({ text } = await readStamped(this.#i.lastGoodPath));
    } catch {
      return null;
    }
    const r = this.#checkAtStart(text);
    if (r.kind === 'error') {
      this.#i.logf(`policy: the last good copy ${this.#i.lastGoodPath} is refused too:\n${formatPolicyErrors(r.errors)}`);
      return null;
    }
    return { text, doc: r.doc, unknownUsers: r.unknownUsers };
  }

  /** Starts watching the file for changes. */
  watch(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => void this.#poll(), this.#i.pollMs ?? POLL_MS);
    this.#timer.unref();
  }

  async #poll(): Promise<void> {
    if (this.#polling || this.#reloading) return;
    this.#polling = true;
    try {
      const st = await stat(this.#i.path).catch(() => null);
      // A missing file is reported by the reload (and the last good policy kept), once per disappearance.
      if (st ? this.#stamp && sameStamp(st, this.#stamp) : this.#stamp === null) return;
      if (!st) this.#stamp = null;
      await this.reload();
    } finally {
      this.#polling = false;
    }
  }

  /** Reads the file again; a bad one is logged and the last good policy stays in force. */
  reload(): Promise<void> {
    this.#reloading ??= this.#reloadOnce().finally(() => (this.#reloading = null));
    return this.#reloading;
  }

  async #reloadOnce(): Promise<void> {
    let text: string;
    try {
      ({ text, stamp: this.#stamp } = await readStamped(this.#i.path));
    } catch (e) {
      this.#problem = `policy ${this.#i.path} cannot be read: ${(e as Error).message}`;
      this.#i.logf(`policy: cannot read ${this.#i.path} (${(e as Error).message}); keeping the last good policy`);
      return;
    }
    if (text === this.#textInForce) {
      this.#problem = null;
      return;
    }
    const r = checkPolicyText(text, this.#i.world(), this.#unknownUsers);
    if (r.kind === 'error') {
      this.#problem = `policy ${this.#i.path} refused:\n${formatPolicyErrors(r.errors)}`;
      this.#i.logf(`policy: ${this.#i.path} refused; keeping the last good policy:\n${formatPolicyErrors(r.errors)}`);
      return;
    }
    this.#unknownUsers = r.unknownUsers;
    this.#set(r.doc, text);
    this.#problem = null;
    this.#i.logf(`policy: reloaded ${this.#i.path}`);
    this.#i.onChange();
  }

  #set(doc: CheckedPolicy, text: string): void {
    this.#doc = doc;
    this.#textInForce = text;
    this.#version++;
    const copy = this.#i.lastGoodPath;
    if (copy) {
      this.#saving = this.#saving.then(() =>
        writeFileAtomic(copy, text).catch((e: unknown) => this.#i.logf(`policy: cannot keep a copy in ${copy} (${(e as Error).message}); a bad file at the next start will stop it`)),
      );
    }
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }
}
