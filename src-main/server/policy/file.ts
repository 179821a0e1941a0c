/**
 * The policy file in force for `weft server --policy FILE`: loaded at start (a bad file stops the start, as
 * headscale's does; users that do not exist yet are only logged), then watched and reloaded when it changes. A
 * changed file that does not parse, or does not apply to the tailnet (a user it newly names that does not exist,
 * an undefined group…), is refused with its line and reason in the log, and the last good policy stays in force.
 * A refused text is not checked again until the file changes (touch it after creating a missing user).
 *
 * Reading is bounded (MAX_POLICY_BYTES) and polled (fs.watchFile) rather than evented, so editors that replace
 * the file by renaming a new one over it are seen too.
 */
import { readFile, stat } from 'node:fs/promises';
import { unwatchFile, watchFile, type Stats } from 'node:fs';
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
  const st = await stat(path);
  if (st.size > MAX_POLICY_BYTES) throw new Error(`${path} is ${st.size} bytes, over the ${MAX_POLICY_BYTES}-byte limit for a policy`);
  return readFile(path, 'utf8');
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
}

export class PolicyFile implements PolicySource {
  readonly #i: PolicyFileInit;
  #doc: CheckedPolicy | null = null;
  #version = 0;
  #lastText: string | null = null;
  /** Users the policy in force names that do not exist (yet): an edit may keep naming them, not add new ones. */
  #unknownUsers = new Set<string>();
  #watching = false;
  #reloading: Promise<void> | null = null;

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
    const text = await readPolicyFile(this.#i.path);
    const r = checkPolicyText(text, this.#i.world(), 'all', (e) => this.#i.logf(`policy: line ${e.line}, column ${e.column}: ${e.message}; it matches no node until that user exists`));
    if (r.kind === 'error') throw new Error(`policy ${this.#i.path} refused:\n${formatPolicyErrors(r.errors)}`);
    this.#unknownUsers = r.unknownUsers;
    this.#set(r.doc, text);
    this.#i.logf(`policy: loaded ${this.#i.path}`);
  }

  /** Starts watching the file for changes. */
  watch(): void {
    if (this.#watching) return;
    this.#watching = true;
    watchFile(this.#i.path, { interval: this.#i.pollMs ?? POLL_MS, persistent: false }, this.#onStat);
  }

  readonly #onStat = (cur: Stats, prev: Stats): void => {
    if (cur.mtimeMs === prev.mtimeMs && cur.size === prev.size && cur.ino === prev.ino) return;
    void this.reload();
  };

  /** Reads the file again; a bad one is logged and the last good policy stays in force. */
  reload(): Promise<void> {
    this.#reloading ??= this.#reloadOnce().finally(() => (this.#reloading = null));
    return this.#reloading;
  }

  async #reloadOnce(): Promise<void> {
    let text: string;
    try {
      text = await readPolicyFile(this.#i.path);
    } catch (e) {
      this.#i.logf(`policy: cannot read ${this.#i.path} (${(e as Error).message}); keeping the last good policy`);
      return;
    }
    if (text === this.#lastText) return;
    const r = checkPolicyText(text, this.#i.world(), this.#unknownUsers);
    if (r.kind === 'error') {
      this.#lastText = text; // reported once, until the file changes again
      this.#i.logf(`policy: ${this.#i.path} refused; keeping the last good policy:\n${formatPolicyErrors(r.errors)}`);
      return;
    }
    this.#unknownUsers = r.unknownUsers;
    this.#set(r.doc, text);
    this.#i.logf(`policy: reloaded ${this.#i.path}`);
    this.#i.onChange();
  }

  #set(doc: CheckedPolicy, text: string): void {
    this.#doc = doc;
    this.#lastText = text;
    this.#version++;
  }

  stop(): void {
    if (this.#watching) unwatchFile(this.#i.path, this.#onStat);
    this.#watching = false;
  }
}
