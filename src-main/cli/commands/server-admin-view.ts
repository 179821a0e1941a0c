/**
 * How `weft server users|preauthkeys|nodes` shows records: the JSON views (stable camelCase field names, times as
 * RFC 3339 strings with milliseconds, or null) and the plain-text tables, plus the expiration-duration parser. Pure; the verbs live
 * in server-admin.ts. A pre-auth key's hash is not part of any record, so it cannot be printed.
 */
import { announcedRoutes, exitRoutes, sortPrefixes } from '../../server/routes/routes.ts';
import type { NodeRecord, PreAuthKeyRecord, UserRecord } from '../../server/store/types.ts';
import { CliError } from '../command.ts';

export type OutputFormat = 'table' | 'json' | 'json-line';

export function parseOutputFormat(o: string | undefined, json: boolean | undefined): OutputFormat {
  if (o === undefined) return json ? 'json' : 'table';
  if (o === 'json' || o === 'json-line') return o;
  throw new CliError(`-o/--output must be json or json-line, got "${o}"`);
}

/** Serialises a view for -o json / json-line. */
export function renderJson(v: unknown, format: 'json' | 'json-line'): string {
  return `${format === 'json' ? JSON.stringify(v, null, 2) : JSON.stringify(v)}\n`;
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

export function userView(u: UserRecord) {
  return { id: u.id, name: u.name, createdAt: iso(u.createdAt) };
}

export type KeyStatus = 'valid' | 'used' | 'expired' | 'revoked';

export function keyStatus(k: PreAuthKeyRecord, now: number): KeyStatus {
  if (k.revokedAt !== null) return 'revoked';
  if (!k.reusable && k.usedAt !== null) return 'used';
  if (k.expiresAt !== null && k.expiresAt <= now) return 'expired';
  return 'valid';
}

export function keyView(k: PreAuthKeyRecord, user: string | null, now: number) {
  return {
    id: k.id,
    prefix: k.prefix,
    userId: k.userId,
    user,
    reusable: k.reusable,
    ephemeral: k.ephemeral,
    status: keyStatus(k, now),
    createdAt: iso(k.createdAt),
    expiresAt: iso(k.expiresAt),
    usedAt: iso(k.usedAt),
    revokedAt: iso(k.revokedAt),
  };
}

/** Reports whether the node's key has expired (logged out or `nodes expire`). */
export function nodeExpired(n: NodeRecord, now: number): boolean {
  return n.expiresAt !== null && n.expiresAt <= now;
}

export function nodeView(n: NodeRecord, user: string | null, now: number) {
  return {
    id: n.id,
    userId: n.userId,
    user,
    hostname: n.hostname,
    givenName: n.givenName,
    ipAddresses: [n.ipv4, n.ipv6],
    machineKey: n.machineKey,
    nodeKey: n.nodeKey,
    discoKey: n.discoKey,
    endpoints: n.endpoints,
    homeDerp: n.homeDerp,
    ephemeral: n.ephemeral,
    expired: nodeExpired(n, now),
    online: n.online,
    createdAt: iso(n.createdAt),
    expiresAt: iso(n.expiresAt),
    lastSeen: iso(n.lastSeen),
    authKeyId: n.authKeyId,
    tags: n.tags,
    ...routesView(n),
  };
}

/**
 * A node's routes as headscale's list-routes shows them: approved (as stored), available (announced) and serving
 * (the subnet routes it is primary for, as the running server last wrote them, plus its approved exit routes).
 */
export function routesView(n: NodeRecord) {
  return {
    approvedRoutes: n.approvedRoutes,
    availableRoutes: [...announcedRoutes(n.hostinfo)],
    servingRoutes: sortPrefixes([...n.primaryRoutes, ...exitRoutes(n)]),
  };
}

/** Nodes with any route to show, as `nodes list-routes` lists them (ID, HOSTNAME, APPROVED, AVAILABLE, SERVING). */
export function routesTable(nodes: NodeRecord[]): string {
  const rows = nodes.map((n) => {
    const r = routesView(n);
    return [String(n.id), n.givenName, r.approvedRoutes.join(', ') || '-', r.availableRoutes.join(', ') || '-', r.servingRoutes.join(', ') || '-'];
  });
  return renderTable(['ID', 'HOSTNAME', 'APPROVED', 'AVAILABLE', 'SERVING (PRIMARY)'], rows);
}

/** Left-aligned columns separated by two spaces, with a header row. */
export function renderTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return `${[header, ...rows].map(line).join('\n')}\n`;
}

/** A time in a table: RFC 3339 to the second. */
const cell = (ms: number | null, none = '-'): string => (ms === null ? none : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z'));
const yesNo = (b: boolean): string => (b ? 'yes' : 'no');

export function usersTable(users: UserRecord[]): string {
  return renderTable(
    ['ID', 'NAME', 'CREATED'],
    users.map((u) => [String(u.id), u.name, cell(u.createdAt)]),
  );
}

export function keysTable(keys: PreAuthKeyRecord[], userName: (id: number) => string, now: number): string {
  return renderTable(
    ['ID', 'PREFIX', 'USER', 'REUSABLE', 'EPHEMERAL', 'STATUS', 'EXPIRATION', 'CREATED'],
    keys.map((k) => [String(k.id), k.prefix, userName(k.userId), yesNo(k.reusable), yesNo(k.ephemeral), keyStatus(k, now), cell(k.expiresAt, 'never'), cell(k.createdAt)]),
  );
}

export function nodesTable(nodes: NodeRecord[], userName: (id: number) => string, now: number): string {
  return renderTable(
    ['ID', 'HOSTNAME', 'NAME', 'USER', 'IPV4', 'IPV6', 'TAGS', 'EPHEMERAL', 'LAST SEEN', 'EXPIRATION', 'EXPIRED'],
    nodes.map((n) => [
      String(n.id),
      n.hostname,
      n.givenName,
      userName(n.userId),
      n.ipv4,
      n.ipv6,
      n.tags.join(',') || '-',
      yesNo(n.ephemeral),
      cell(n.lastSeen, 'never'),
      cell(n.expiresAt, 'never'),
      yesNo(nodeExpired(n, now)),
    ]),
  );
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * Parses an expiration like headscale's: "1h", "30m", "1h30m", "90d", "2w" (units ms s m h d w), or "0" for
 * never. Returns milliseconds, null for never.
 */
export function parseExpiration(s: string): number | null {
  if (s === '0') return null;
  if (!/^(\d+(\.\d+)?(ms|s|m|h|d|w))+$/.test(s)) throw new CliError(`--expiration must be a duration like 1h, 30m, 24h, 90d, or 0 for never; got "${s}"`);
  let ms = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)) ms += Number(m[1]) * UNIT_MS[m[2]!]!;
  if (!(ms > 0)) throw new CliError(`--expiration must be positive (or 0 for never), got "${s}"`);
  return Math.round(ms);
}
