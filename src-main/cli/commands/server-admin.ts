/**
 * `weft server users|preauthkeys|nodes <verb> [flags]`: headscale's admin verbs, run directly on the server's
 * SQLite database (`--data DIR`, default defaultServerDataDir()). The database is shared with a running
 * `weft server` (WAL, busy timeout); the server notices these writes through the store's changeCounter() and pushes
 * the result (a node approved by `nodes register` finishes registering, an expired or deleted node drops off).
 *
 * Every verb takes `-o json|json-line` (or `--json`) for machine-readable output with stable field names
 * (server-admin-view.ts); otherwise it prints a table or one line. Exit codes: 0 done, 1 failed (not found,
 * already exists, database error), 2 bad usage.
 */
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import Database from 'better-sqlite3';
import { defaultServerDataDir, serverDbPath } from '../../server/store/paths.ts';
import { openSqliteStore } from '../../server/store/sqlite.ts';
import { compilePolicy, worldOf } from '../../server/policy/compile.ts';
import { readPolicyFile } from '../../server/policy/file.ts';
import { formatPolicyErrors, parsePolicy } from '../../server/policy/parse.ts';
import type { ServerStore, UserRecord } from '../../server/store/types.ts';
import { CliError, parseFlags } from '../command.ts';
import { announcedRoutes, approvalList } from '../../server/routes/routes.ts';
import {
  keysTable,
  routesTable,
  routesView,
  keyView,
  nodeExpired,
  nodesTable,
  nodeView,
  parseExpiration,
  parseOutputFormat,
  renderJson,
  usersTable,
  userView,
  type OutputFormat,
} from './server-admin-view.ts';

/** The admin CLI's side effects, injectable for tests. */
export interface AdminIo {
  out(text: string): void;
  err(text: string): void;
  now(): number;
  /** Asks a yes/no question on the terminal; null when there is no terminal to ask on. */
  confirm(question: string): Promise<boolean | null>;
}

const processIo: AdminIo = {
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
  now: () => Date.now(),
  async confirm(question) {
    if (!process.stdin.isTTY) return null;
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    try {
      return /^y(es)?$/i.test((await rl.question(question)).trim());
    } finally {
      rl.close();
    }
  },
};

/** The first arguments `weft server` hands to serverAdmin (headscale accepts the singular too). */
export const SERVER_ADMIN_GROUPS: readonly string[] = ['users', 'user', 'preauthkeys', 'preauthkey', 'nodes', 'node', 'policy', 'policies'];

export const serverAdminUsage = `usage: weft server <group> <verb> [flags]   (flags: --data DIR, -o json|json-line, --json)

  users create NAME
  users list
  preauthkeys create --user NAME|ID [--reusable] [--ephemeral] [--expiration 1h|30m|24h|90d|0]
  preauthkeys list [--user NAME|ID]
  preauthkeys expire --id N | --prefix PREFIX
  nodes list [--user NAME|ID]
  nodes register --key REGISTRATION_ID --user NAME|ID
  nodes expire --identifier ID
  nodes delete --identifier ID [--force]
  nodes tag --identifier ID --tags tag:a,tag:b   (--tags '' removes them)
  nodes approve-routes --identifier ID --routes 10.0.0.0/24,0.0.0.0/0   (replaces the approved set; '' clears it)
  nodes list-routes [--identifier ID]
  policy check FILE        parse FILE and check it against the users and nodes in --data (if it exists)

  --data DIR     the server's data directory (default ${defaultServerDataDir()})
  --expiration   how long a new pre-auth key is valid (default 1h; 0 = never)`;

const common = {
  data: { type: 'string' },
  output: { type: 'string', short: 'o' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;
const userFlag = { user: { type: 'string', short: 'u' } } as const;

/** Runs one admin verb; prints errors itself and returns the exit code. */
export async function serverAdmin(argv: string[], io: AdminIo = processIo): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (e) {
    if (e instanceof CliError) {
      io.err(`weft server: ${e.message}\n`);
      return e.exitCode;
    }
    if (e instanceof Database.SqliteError) {
      io.err(`weft server: database error: ${e.message} (${e.code})\n`);
      return 1;
    }
    throw e;
  }
}

async function dispatch(argv: string[], io: AdminIo): Promise<number> {
  const [group = '', verb = '', ...rest] = argv;
  const g = group === 'policy' ? 'policies' : group.replace(/s?$/, 's');
  const v = verb === 'ls' ? 'list' : verb;
  if (!SERVER_ADMIN_GROUPS.includes(group) || verb === '' || verb === '--help' || verb === '-h') {
    const help = verb === '--help' || verb === '-h' || group === '--help' || group === '-h';
    (help ? io.out : io.err)(`${serverAdminUsage}\n`);
    return help ? 0 : 2;
  }
  switch (`${g} ${v}`) {
    case 'users create':
      return usersCreate(rest, io);
    case 'users list':
      return usersList(rest, io);
    case 'preauthkeys create':
      return keysCreate(rest, io);
    case 'preauthkeys list':
      return keysList(rest, io);
    case 'preauthkeys expire':
      return keysExpire(rest, io);
    case 'nodes list':
      return nodesList(rest, io);
    case 'nodes register':
      return nodesRegister(rest, io);
    case 'nodes expire':
      return nodesExpire(rest, io);
    case 'nodes delete':
      return nodesDelete(rest, io);
    case 'nodes tag':
      return nodesTag(rest, io);
    case 'nodes approve-routes':
      return nodesApproveRoutes(rest, io);
    case 'nodes list-routes':
    case 'nodes routes':
      return nodesListRoutes(rest, io);
    case 'policies check':
      return policyCheck(rest, io);
    default:
      throw new CliError(`unknown command "${group} ${verb}"\n\n${serverAdminUsage}`);
  }
}

type FlagSpec = Record<string, { type: 'string' | 'boolean'; short?: string }>;

interface Flags {
  str(name: string): string | undefined;
  bool(name: string): boolean;
  positionals: string[];
  format: OutputFormat;
}

/** Parses a verb's flags plus the common ones; `--help` prints the usage and yields null. */
function flags(argv: string[], extra: FlagSpec, io: AdminIo): Flags | null {
  const parsed = parseFlags(argv, { ...common, ...extra }, serverAdminUsage);
  const values: Record<string, unknown> = parsed.values;
  const str = (name: string): string | undefined => {
    const v = values[name];
    return typeof v === 'string' ? v : undefined;
  };
  const bool = (name: string): boolean => values[name] === true;
  if (bool('help')) {
    io.out(`${serverAdminUsage}\n`);
    return null;
  }
  return { str, bool, positionals: parsed.positionals, format: parseOutputFormat(str('output'), bool('json')) };
}

/** Opens the database, runs `fn`, and always closes it. */
function withStore<R>(dataDir: string | undefined, fn: (s: ServerStore) => R): R {
  const path = serverDbPath(dataDir ?? defaultServerDataDir());
  let store: ServerStore;
  try {
    store = openSqliteStore(path);
  } catch (e) {
    throw new CliError(`cannot open the server database ${path}: ${(e as Error).message}`, 1);
  }
  try {
    return fn(store);
  } finally {
    store.close();
  }
}

function emit(io: AdminIo, format: OutputFormat, json: unknown, text: string): number {
  io.out(format === 'table' ? text : renderJson(json, format));
  return 0;
}

/** A user by id (all digits) or name; a CliError when there is none. */
function resolveUser(store: ServerStore, ref: string | undefined, flag = '--user'): UserRecord {
  if (ref === undefined || ref === '') throw new CliError(`${flag} NAME|ID is required\n\n${serverAdminUsage}`);
  const u = /^\d+$/.test(ref) ? store.userById(Number(ref)) : store.userByName(ref);
  if (!u) throw new CliError(`no user "${ref}" (see weft server users list)`, 1);
  return u;
}

function optionalUser(store: ServerStore, ref: string | undefined): UserRecord | undefined {
  return ref === undefined ? undefined : resolveUser(store, ref);
}

function userNamer(store: ServerStore): (id: number) => string {
  const names = new Map(store.listUsers().map((u) => [u.id, u.name]));
  return (id) => names.get(id) ?? `#${id}`;
}

function positiveId(v: string | undefined, flag: string): number {
  if (v === undefined) throw new CliError(`${flag} N is required\n\n${serverAdminUsage}`);
  if (!/^\d+$/.test(v) || Number(v) < 1 || !Number.isSafeInteger(Number(v))) throw new CliError(`${flag} must be a positive number, got "${v}"`);
  return Number(v);
}

function noPositionals(positionals: string[]): void {
  if (positionals.length > 0) throw new CliError(`unexpected argument "${positionals[0]}"\n\n${serverAdminUsage}`);
}

/** Usernames start with a letter (so a number always means an id) and stay DNS- and email-friendly. */
const USER_NAME = /^[A-Za-z][A-Za-z0-9._@-]{0,62}$/;

function usersCreate(argv: string[], io: AdminIo): number {
  const f = flags(argv, {}, io);
  if (!f) return 0;
  const [name, ...more] = f.positionals;
  if (name === undefined) throw new CliError(`users create needs a NAME\n\n${serverAdminUsage}`);
  noPositionals(more);
  if (!USER_NAME.test(name)) throw new CliError(`invalid user name "${name}": start with a letter; use letters, digits, . _ @ - (at most 63)`);
  return withStore(f.str('data'), (store) => {
    if (store.userByName(name)) throw new CliError(`user "${name}" already exists`, 1);
    const u = store.createUser(name, io.now());
    return emit(io, f.format, userView(u), `created user ${u.name} (id ${u.id})\n`);
  });
}

function usersList(argv: string[], io: AdminIo): number {
  const f = flags(argv, {}, io);
  if (!f) return 0;
  noPositionals(f.positionals);
  return withStore(f.str('data'), (store) => {
    const users = store.listUsers();
    return emit(io, f.format, users.map(userView), usersTable(users));
  });
}

function keysCreate(argv: string[], io: AdminIo): number {
  const f = flags(argv, { ...userFlag, reusable: { type: 'boolean' }, ephemeral: { type: 'boolean' }, expiration: { type: 'string', short: 'e' } }, io);
  if (!f) return 0;
  noPositionals(f.positionals);
  const ttl = parseExpiration(f.str('expiration') ?? '1h');
  return withStore(f.str('data'), (store) => {
    const u = resolveUser(store, f.str('user'));
    const now = io.now();
    const { key, record } = store.createPreAuthKey(
      { userId: u.id, reusable: f.bool('reusable'), ephemeral: f.bool('ephemeral'), expiresAt: ttl === null ? null : now + ttl },
      now,
    );
    // Without -o, only the key: KEY=$(weft server preauthkeys create --user alice) works.
    return emit(io, f.format, { ...keyView(record, u.name, now), key }, `${key}\n`);
  });
}

function keysList(argv: string[], io: AdminIo): number {
  const f = flags(argv, userFlag, io);
  if (!f) return 0;
  noPositionals(f.positionals);
  return withStore(f.str('data'), (store) => {
    const u = optionalUser(store, f.str('user'));
    const keys = store.listPreAuthKeys(u?.id);
    const name = userNamer(store);
    const now = io.now();
    return emit(io, f.format, keys.map((k) => keyView(k, name(k.userId), now)), keysTable(keys, name, now));
  });
}

function keysExpire(argv: string[], io: AdminIo): number {
  const f = flags(argv, { ...userFlag, id: { type: 'string' }, prefix: { type: 'string' } }, io);
  if (!f) return 0;
  noPositionals(f.positionals);
  const id = f.str('id');
  const prefix = f.str('prefix');
  if ((id === undefined) === (prefix === undefined)) throw new CliError(`preauthkeys expire needs exactly one of --id N or --prefix PREFIX\n\n${serverAdminUsage}`);
  const wantId = id === undefined ? undefined : positiveId(id, '--id');
  if (prefix !== undefined && !/^[0-9a-f]{4,}$/i.test(prefix)) throw new CliError(`--prefix must be at least 4 hex characters of the key, got "${prefix}"`);
  return withStore(f.str('data'), (store) => {
    const u = optionalUser(store, f.str('user'));
    const keys = store.listPreAuthKeys(u?.id);
    const want = prefix?.toLowerCase();
    const matches = keys.filter((k) =>
      wantId !== undefined ? k.id === wantId : want!.length <= k.prefix.length ? k.prefix.startsWith(want!) : want!.startsWith(k.prefix),
    );
    if (matches.length === 0) throw new CliError(`no pre-auth key ${wantId !== undefined ? `with id ${wantId}` : `with prefix "${prefix}"`}${u ? ` for user ${u.name}` : ''}`, 1);
    if (matches.length > 1) throw new CliError(`prefix "${prefix}" matches ${matches.length} keys (ids ${matches.map((k) => k.id).join(', ')}); use --id`, 1);
    const k = matches[0]!;
    const now = io.now();
    store.expirePreAuthKey(k.id, now);
    const after = store.listPreAuthKeys(k.userId).find((x) => x.id === k.id) ?? k;
    const name = userNamer(store);
    const text = k.revokedAt !== null ? `pre-auth key ${k.id} (${k.prefix}) was already expired\n` : `expired pre-auth key ${k.id} (${k.prefix})\n`;
    return emit(io, f.format, keyView(after, name(after.userId), now), text);
  });
}

function nodesList(argv: string[], io: AdminIo): number {
  const f = flags(argv, userFlag, io);
  if (!f) return 0;
  noPositionals(f.positionals);
  return withStore(f.str('data'), (store) => {
    const u = optionalUser(store, f.str('user'));
    const nodes = store.listNodes(u?.id);
    const name = userNamer(store);
    const now = io.now();
    return emit(io, f.format, nodes.map((n) => nodeView(n, name(n.userId), now)), nodesTable(nodes, name, now));
  });
}

/** The registration id from what `weft up` printed: the id itself or the whole AuthURL (…/register/ID). */
function registrationId(v: string | undefined): string {
  if (v === undefined || v === '') throw new CliError(`nodes register needs --key REGISTRATION_ID\n\n${serverAdminUsage}`);
  const id = /\/register\/([^/?#]+)/.exec(v)?.[1] ?? v;
  if (!/^[A-Za-z0-9_-]{1,128}$/.test(id)) throw new CliError(`--key must be the registration id from the login URL, got "${v}"`);
  return id;
}

function nodesRegister(argv: string[], io: AdminIo): number {
  const f = flags(argv, { ...userFlag, key: { type: 'string', short: 'k' } }, io);
  if (!f) return 0;
  noPositionals(f.positionals);
  const id = registrationId(f.str('key'));
  return withStore(f.str('data'), (store) => {
    const u = resolveUser(store, f.str('user'));
    const p = store.pendingById(id);
    if (!p || !store.approvePending(id, u.id)) throw new CliError(`no pending registration "${id}" (it may have expired or finished; run weft up again for a new URL)`, 1);
    const view = { registrationId: p.id, userId: u.id, user: u.name, hostname: p.hostname, machineKey: p.machineKey, nodeKey: p.nodeKey };
    return emit(io, f.format, view, `approved registration ${p.id} (${p.hostname}) for user ${u.name}; the device finishes joining on its next request\n`);
  });
}

function nodesExpire(argv: string[], io: AdminIo): number {
  const f = flags(argv, { identifier: { type: 'string', short: 'i' } }, io);
  if (!f) return 0;
  noPositionals(f.positionals);
  const id = positiveId(f.str('identifier'), '--identifier');
  return withStore(f.str('data'), (store) => {
    const n = store.nodeById(id);
    if (!n) throw new CliError(`no node with id ${id} (see weft server nodes list)`, 1);
    const now = io.now();
    const was = nodeExpired(n, now);
    const after = was ? n : (store.updateNode(id, { expiresAt: now }) ?? n);
    const text = was ? `node ${id} (${n.givenName}) was already expired\n` : `expired node ${id} (${n.givenName}); it must log in again\n`;
    return emit(io, f.format, nodeView(after, userNamer(store)(after.userId), now), text);
  });
}

async function nodesDelete(argv: string[], io: AdminIo): Promise<number> {
  const f = flags(argv, { identifier: { type: 'string', short: 'i' }, force: { type: 'boolean' } }, io);
  if (!f) return 0;
  noPositionals(f.positionals);
  const id = positiveId(f.str('identifier'), '--identifier');
  const data = f.str('data');
  const n = withStore(data, (store) => store.nodeById(id));
  if (!n) throw new CliError(`no node with id ${id} (see weft server nodes list)`, 1);
  if (!f.bool('force')) {
    const yes = await io.confirm(`Delete node ${id} (${n.givenName}, ${n.ipv4})? [y/N] `);
    if (yes === null) throw new CliError('not deleting without confirmation: stdin is not a terminal; pass --force');
    if (!yes) {
      io.err('not deleted\n');
      return 1;
    }
  }
  return withStore(data, (store) => {
    if (!store.deleteNode(id)) throw new CliError(`no node with id ${id} (deleted meanwhile?)`, 1);
    return emit(io, f.format, nodeView(n, userNamer(store)(n.userId), io.now()), `deleted node ${id} (${n.givenName})\n`);
  });
}

const TAG_RE = /^tag:[A-Za-z][A-Za-z0-9-]*$/;

/**
 * `nodes tag`: replaces a node's tags (headscale's `nodes tag`). A tagged node no longer counts as its user's in
 * the policy. Whether the running server's policy defines the tags is not checked here (this process does not
 * read the policy file); an undefined tag simply matches no ACL.
 */
function nodesTag(argv: string[], io: AdminIo): number {
  const f = flags(argv, { identifier: { type: 'string', short: 'i' }, tags: { type: 'string', short: 't' } }, io);
  if (!f) return 0;
  noPositionals(f.positionals);
  const id = positiveId(f.str('identifier'), '--identifier');
  const raw = f.str('tags');
  if (raw === undefined) throw new CliError(`nodes tag needs --tags tag:a,tag:b (or --tags '' to remove them)\n\n${serverAdminUsage}`);
  const tags = [...new Set(raw.split(',').map((t) => t.trim()).filter((t) => t !== ''))];
  for (const t of tags) if (!TAG_RE.test(t)) throw new CliError(`invalid tag "${t}": tags are tag:<letter><letters, digits or ->`);
  return withStore(f.str('data'), (store) => {
    const n = store.nodeById(id);
    if (!n) throw new CliError(`no node with id ${id} (see weft server nodes list)`, 1);
    const after = store.updateNode(id, { tags }) ?? n;
    const text = tags.length ? `node ${id} (${n.givenName}) tagged ${tags.join(', ')}\n` : `node ${id} (${n.givenName}) has no tags now\n`;
    return emit(io, f.format, nodeView(after, userNamer(store)(after.userId), io.now()), text);
  });
}

/**
 * `nodes approve-routes`: replaces the node's approved routes (headscale's approve-routes): either /0 approves
 * both, '' clears them all. Routes the node does not announce are kept but unused until it announces them; the
 * running server elects primaries and pushes the change. The policy's autoApprovers may add routes back later.
 */
function nodesApproveRoutes(argv: string[], io: AdminIo): number {
  const f = flags(argv, { identifier: { type: 'string', short: 'i' }, routes: { type: 'string', short: 'r' } }, io);
  if (!f) return 0;
  noPositionals(f.positionals);
  const id = positiveId(f.str('identifier'), '--identifier');
  const raw = f.str('routes');
  if (raw === undefined) throw new CliError(`nodes approve-routes needs --routes PREFIX,… (or --routes '' to clear them)\n\n${serverAdminUsage}`);
  const parsed = approvalList(raw.split(','));
  if ('error' in parsed) throw new CliError(`invalid --routes: ${parsed.error}`);
  return withStore(f.str('data'), (store) => {
    const n = store.nodeById(id);
    if (!n) throw new CliError(`no node with id ${id} (see weft server nodes list)`, 1);
    const after = store.updateNode(id, { approvedRoutes: parsed.routes }) ?? n;
    const announced = new Set(announcedRoutes(after.hostinfo));
    const unused = parsed.routes.filter((r) => !announced.has(r));
    const text = `node ${id} (${n.givenName}): approved routes ${parsed.routes.join(', ') || '(none)'}${unused.length ? `; not announced by the node (unused until it does): ${unused.join(', ')}` : ''}\n`;
    return emit(io, f.format, nodeView(after, userNamer(store)(after.userId), io.now()), text);
  });
}

/** `nodes list-routes [--identifier ID]`: the nodes with approved, announced or served routes. */
function nodesListRoutes(argv: string[], io: AdminIo): number {
  const f = flags(argv, { identifier: { type: 'string', short: 'i' } }, io);
  if (!f) return 0;
  noPositionals(f.positionals);
  const ref = f.str('identifier');
  const id = ref === undefined ? null : positiveId(ref, '--identifier');
  return withStore(f.str('data'), (store) => {
    let nodes = store.listNodes();
    if (id !== null) {
      nodes = nodes.filter((n) => n.id === id);
      if (nodes.length === 0) throw new CliError(`no node with id ${id} (see weft server nodes list)`, 1);
    }
    nodes = nodes.filter((n) => {
      const r = routesView(n);
      return r.approvedRoutes.length + r.availableRoutes.length + r.servingRoutes.length > 0;
    });
    const name = userNamer(store);
    const now = io.now();
    const json = nodes.map((n) => ({ id: n.id, givenName: n.givenName, user: name(n.userId), online: n.online, expired: nodeExpired(n, now), ...routesView(n) }));
    return emit(io, f.format, json, nodes.length ? routesTable(nodes) : 'no node announces or has approved routes\n');
  });
}

/** `policy check FILE`: exit 0 and "policy is valid", or 1 with each error and its line. */
async function policyCheck(argv: string[], io: AdminIo): Promise<number> {
  const f = flags(argv, {}, io);
  if (!f) return 0;
  const [file, ...more] = f.positionals;
  if (!file || more.length > 0) throw new CliError(`policy check needs one FILE\n\n${serverAdminUsage}`);
  let text: string;
  try {
    text = await readPolicyFile(file);
  } catch (e) {
    throw new CliError(`cannot read ${file}: ${(e as Error).message}`, 1);
  }
  const dbPath = serverDbPath(f.str('data') ?? defaultServerDataDir());
  const haveDb = existsSync(dbPath);
  const world = haveDb ? withStore(f.str('data'), (store) => worldOf(store.listUsers(), store.listNodes())) : null;
  const parsed = parsePolicy(text);
  const compiled = parsed.kind === 'ok' ? compilePolicy(parsed, world ?? { users: [], nodes: [] }, { unknownUsers: world ? 'error' : 'empty' }) : parsed;
  const errors = compiled.kind === 'error' ? compiled.errors : [];
  const view = { file, valid: errors.length === 0, usersChecked: haveDb, errors };
  if (errors.length > 0) {
    if (f.format === 'table') io.err(`${file}: the policy is not valid:\n${formatPolicyErrors(errors)}\n`);
    else io.out(renderJson(view, f.format));
    return 1;
  }
  const note = haveDb ? '' : ` (users not checked: no database at ${dbPath}; pass --data DIR)`;
  return emit(io, f.format, view, `${file}: policy is valid${note}\n`);
}
