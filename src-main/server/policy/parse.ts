/**
 * The policy file of `weft server --policy FILE`: headscale's format (JSON or HuJSON: comments and trailing
 * commas), the subset people write. Pure: text in, a checked document or errors with line and column out.
 *
 *   {
 *     "groups":        { "group:eng": ["alice@", "bob@"] },
 *     "hosts":         { "db": "10.0.0.5", "lan": "10.0.0.0/24" },
 *     "tagOwners":     { "tag:server": ["alice@", "group:eng"] },
 *     "acls":          [ { "action": "accept", "src": ["group:eng"], "dst": ["tag:server:22,80", "db:*"], "proto": "tcp" } ],
 *     "autoApprovers": { "routes": { "10.0.0.0/24": ["tag:router"] }, "exitNode": ["tag:exit"] }
 *   }
 *
 * As headscale 0.29 (hscontrol/policy/v2 types.go): member names match case-insensitively, an unknown member is an
 * error at any depth (keys starting with "#" inside an ACL are comments), groups cannot contain groups, ports
 * are "*" or comma-separated N / N-M within 1..65535, and a protocol other than TCP, UDP or SCTP takes only
 * port "*". Unlike headscale, every error here carries its line and column, also those found when the policy
 * is resolved against the tailnet (compile.ts), and `grants`, `autogroup:self` and SSH rules are refused as not
 * supported rather than half applied.
 */
import { findNodeAtLocation, getNodeValue, parseTree, printParseErrorCode, type Node as JsonNode, type ParseError } from 'jsonc-parser';

export interface PolicyError {
  /** 1-based. */
  line: number;
  column: number;
  message: string;
}

export interface PortRange {
  first: number;
  last: number;
}

export interface AclDst {
  alias: string;
  ports: PortRange[];
  /** Where this entry is in the file, for errors found later. */
  at: JsonPath;
}

export interface Acl {
  src: { alias: string; at: JsonPath }[];
  dst: AclDst[];
  /** IANA protocol number, or null (TCP, UDP, ICMP: tailscaled's default). */
  proto: number | null;
  at: JsonPath;
}

export interface PolicyDoc {
  groups: Map<string, { members: string[]; at: JsonPath }>;
  hosts: Map<string, { value: string; at: JsonPath }>;
  tagOwners: Map<string, { owners: string[]; at: JsonPath }>;
  /** null when the file has no `acls` (then every packet is allowed, as headscale does without ACLs). */
  acls: Acl[] | null;
  autoApprovers: { routes: Map<string, { approvers: string[]; at: JsonPath }>; exitNode: string[]; exitAt: JsonPath | null };
}

export type JsonPath = (string | number)[];

export type ParsedPolicy = { kind: 'ok'; doc: PolicyDoc; locate: (path: JsonPath) => { line: number; column: number } } | { kind: 'error'; errors: PolicyError[] };

/** headscale's protocol names (types.go `Protocol`); other numbers 1..255 are allowed as is. */
const PROTOCOLS: Record<string, number> = {
  icmp: 1, igmp: 2, ipv4: 4, 'ip-in-ip': 4, tcp: 6, egp: 8, igp: 9, udp: 17, gre: 47, esp: 50, ah: 51, 'ipv6-icmp': 58, sctp: 132, fc: 133,
};
/** Protocols whose rules may name ports. */
const PORTED = new Set([6, 17, 132]);

const TOP = ['groups', 'hosts', 'tagOwners', 'acls', 'autoApprovers', 'ssh', 'tests', 'sshTests', 'nodeAttrs', 'grants', 'randomizeClientPort'];
const UNSUPPORTED: Record<string, string> = {
  grants: '"grants" are not supported by weft server yet; write the rules as "acls"',
  nodeAttrs: '"nodeAttrs" are not supported by weft server yet',
};
// "ssh", "tests", "sshTests" and "randomizeClientPort" are accepted and ignored: Weft has no Tailscale SSH, and
// policy tests are for the admin console.

function lineCol(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let last = -1;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      last = i;
    }
  }
  return { line, column: offset - last };
}

/** Parses a port list: "*", "22", "80,443", "1000-2000", "22,8000-8100". */
export function parsePorts(text: string): { ports: PortRange[] } | { error: string } {
  if (text === '*') return { ports: [{ first: 0, last: 65535 }] };
  const out: PortRange[] = [];
  for (const part of text.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) return { error: `port range "${part}": invalid port (expected N, N-M or "*")` };
    const first = Number(m[1]);
    const last = m[2] === undefined ? first : Number(m[2]);
    if (first > 65535 || last > 65535) return { error: `port range "${part}": port number out of range` };
    if (first === 0) return { error: `port range "${part}": first port must be >0, or use '*' for wildcard` };
    if (first > last) return { error: `port range "${part}": invalid port range: first port is greater than last port` };
    out.push({ first, last });
  }
  return { ports: out };
}

/** The IANA number of a `proto` value, or an error. */
export function parseProto(text: string): { proto: number } | { error: string } {
  const named = PROTOCOLS[text.toLowerCase()];
  if (named !== undefined) return { proto: named };
  if (/^[1-9]\d{0,2}$/.test(text) && Number(text) <= 255) return { proto: Number(text) };
  return { error: `unknown protocol "${text}"` };
}

/** Splits "alias:ports" at its last colon ("tag:server:22" → "tag:server", "22"). */
function splitDst(text: string): { alias: string; ports: string } | null {
  const i = text.lastIndexOf(':');
  if (i <= 0 || i === text.length - 1) return null;
  let alias = text.slice(0, i);
  if (alias.startsWith('[') && alias.endsWith(']')) alias = alias.slice(1, -1);
  return { alias, ports: text.slice(i + 1) };
}

export function parsePolicy(text: string): ParsedPolicy {
  const errors: PolicyError[] = [];
  const syntax: ParseError[] = [];
  const tree = parseTree(text, syntax, { allowTrailingComma: true, disallowComments: false });
  if (syntax.length > 0 || !tree) {
    for (const e of syntax.slice(0, 5)) errors.push({ ...lineCol(text, e.offset), message: `invalid HuJSON: ${printParseErrorCode(e.error)}` });
    if (errors.length === 0) errors.push({ line: 1, column: 1, message: 'the policy file is empty' });
    return { kind: 'error', errors };
  }
  const locate = (path: JsonPath): { line: number; column: number } => {
    // The deepest node that exists on the path.
    for (let n = path.length; n >= 0; n--) {
      const node = findNodeAtLocation(tree, path.slice(0, n));
      if (node) return lineCol(text, node.offset);
    }
    return { line: 1, column: 1 };
  };
  const fail = (path: JsonPath, message: string): void => void errors.push({ ...locate(path), message });
  if (tree.type !== 'object') return { kind: 'error', errors: [{ ...lineCol(text, tree.offset), message: 'the policy must be a JSON object' }] };

  /** An object's members by canonical (known) name, case-insensitively; unknown names are errors. */
  const members = (node: JsonNode, known: string[], ignorePrefix?: string): Map<string, { node: JsonNode; key: string }> => {
    const out = new Map<string, { node: JsonNode; key: string }>();
    for (const prop of node.children ?? []) {
      const [k, v] = prop.children ?? [];
      if (!k || !v) continue;
      const key = String(k.value);
      if (ignorePrefix && key.startsWith(ignorePrefix)) continue;
      const canon = known.find((n) => n.toLowerCase() === key.toLowerCase());
      if (!canon) {
        errors.push({ ...lineCol(text, k.offset), message: `unknown field: "${key}"` });
        continue;
      }
      if (out.has(canon)) {
        errors.push({ ...lineCol(text, k.offset), message: `duplicate field: "${key}"` });
        continue;
      }
      out.set(canon, { node: v, key });
    }
    return out;
  };
  const strings = (node: JsonNode, path: JsonPath, what: string): string[] | null => {
    if (node.type !== 'array') {
      fail(path, `${what} must be a list of strings`);
      return null;
    }
    const out: string[] = [];
    (node.children ?? []).forEach((c, i) => {
      if (c.type !== 'string') fail([...path, i], `${what} must be a list of strings`);
      else out.push(String(c.value));
    });
    return out;
  };
  const objectEntries = (node: JsonNode, path: JsonPath, what: string): [string, JsonNode][] => {
    if (node.type !== 'object') {
      fail(path, `${what} must be an object`);
      return [];
    }
    const out: [string, JsonNode][] = [];
    const seen = new Set<string>();
    for (const prop of node.children ?? []) {
      const [k, v] = prop.children ?? [];
      if (!k || !v) continue;
      const key = String(k.value);
      if (seen.has(key)) errors.push({ ...lineCol(text, k.offset), message: `duplicate ${what} entry "${key}"` });
      seen.add(key);
      out.push([key, v]);
    }
    return out;
  };

  const top = members(tree, TOP);
  for (const [name, { key }] of top) {
    if (UNSUPPORTED[name]) fail([key], UNSUPPORTED[name]);
  }

  const doc: PolicyDoc = { groups: new Map(), hosts: new Map(), tagOwners: new Map(), acls: null, autoApprovers: { routes: new Map(), exitNode: [], exitAt: null } };

  const groups = top.get('groups');
  if (groups) {
    for (const [name, v] of objectEntries(groups.node, [groups.key], 'groups')) {
      const at = [groups.key, name];
      if (!/^group:[A-Za-z0-9._-]+$/.test(name)) fail(at, `invalid group name "${name}" (expected group:<name>)`);
      const list = strings(v, at, `${name}`);
      if (!list) continue;
      for (const [i, m] of list.entries()) {
        if (m.startsWith('group:')) fail([...at, i], `groups["${name}"]: "${m}": group members cannot be recursive (a group cannot contain a group)`);
        else if (!m.includes('@')) fail([...at, i], `groups["${name}"]: "${m}" is not a user (users are written name@)`);
      }
      doc.groups.set(name, { members: list, at });
    }
  }

  const hosts = top.get('hosts');
  if (hosts) {
    for (const [name, v] of objectEntries(hosts.node, [hosts.key], 'hosts')) {
      const at = [hosts.key, name];
      if (v.type !== 'string') {
        fail(at, `host "${name}" must be an IP address or prefix`);
        continue;
      }
      if (!/^[A-Za-z][A-Za-z0-9._-]*$/.test(name)) fail(at, `invalid host name "${name}"`);
      doc.hosts.set(name, { value: String(v.value), at });
    }
  }

  const tagOwners = top.get('tagOwners');
  if (tagOwners) {
    for (const [name, v] of objectEntries(tagOwners.node, [tagOwners.key], 'tagOwners')) {
      const at = [tagOwners.key, name];
      if (!/^tag:[A-Za-z][A-Za-z0-9-]*$/.test(name)) fail(at, `invalid tag name "${name}" (expected tag:<letter>…)`);
      const list = strings(v, at, name);
      if (list) doc.tagOwners.set(name, { owners: list, at });
    }
  }

  const acls = top.get('acls');
  if (acls) {
    doc.acls = [];
    if (acls.node.type !== 'array') fail([acls.key], '"acls" must be a list');
    else {
      (acls.node.children ?? []).forEach((entry, i) => {
        const at: JsonPath = [acls.key, i];
        if (entry.type !== 'object') {
          fail(at, 'an ACL must be an object with action, src and dst');
          return;
        }
        const m = members(entry, ['action', 'src', 'dst', 'proto'], '#');
        const action = m.get('action');
        if (!action) fail(at, 'ACL without "action"');
        else if (getNodeValue(action.node) !== 'accept') fail([...at, action.key], `action must be "accept", got ${JSON.stringify(getNodeValue(action.node))}`);
        const srcM = m.get('src');
        const dstM = m.get('dst');
        if (!srcM) fail(at, 'ACL without "src"');
        if (!dstM) fail(at, 'ACL without "dst"');
        const src = srcM ? strings(srcM.node, [...at, srcM.key], 'src') : null;
        const dstList = dstM ? strings(dstM.node, [...at, dstM.key], 'dst') : null;
        let proto: number | null = null;
        const protoM = m.get('proto');
        if (protoM) {
          const v = getNodeValue(protoM.node) as unknown;
          // "" is the default (TCP, UDP, ICMP), as headscale reads it.
          const p = v === '' ? { proto: null } : typeof v === 'string' ? parseProto(v) : typeof v === 'number' ? parseProto(String(v)) : { error: 'proto must be a string' };
          if ('error' in p) fail([...at, protoM.key], p.error);
          else proto = p.proto;
        }
        const dst: AclDst[] = [];
        for (const [j, d] of (dstList ?? []).entries()) {
          const dAt: JsonPath = [...at, dstM!.key, j];
          const sp = splitDst(d);
          if (!sp) {
            fail(dAt, `dst="${d}": hostport must contain a colon (write ALIAS:PORTS, e.g. "tag:server:22" or "*:*")`);
            continue;
          }
          const ports = parsePorts(sp.ports);
          if ('error' in ports) {
            fail(dAt, `dst="${d}": ${ports.error}`);
            continue;
          }
          if (proto !== null && !PORTED.has(proto) && sp.ports !== '*') {
            fail(dAt, `dst="${d}": protocol does not support specific ports: "${String(getNodeValue(protoM!.node))}", only "*" is allowed`);
            continue;
          }
          dst.push({ alias: sp.alias, ports: ports.ports, at: dAt });
        }
        doc.acls!.push({ src: (src ?? []).map((alias, j) => ({ alias, at: [...at, srcM!.key, j] })), dst, proto, at });
      });
    }
  }

  const aa = top.get('autoApprovers');
  if (aa) {
    if (aa.node.type !== 'object') fail([aa.key], '"autoApprovers" must be an object');
    const m = aa.node.type === 'object' ? members(aa.node, ['routes', 'exitNode']) : new Map<string, { node: JsonNode; key: string }>();
    const routes = m.get('routes');
    if (routes) {
      for (const [prefix, v] of objectEntries(routes.node, [aa.key, routes.key], 'autoApprovers.routes')) {
        const list = strings(v, [aa.key, routes.key, prefix], `autoApprovers.routes["${prefix}"]`);
        if (list) doc.autoApprovers.routes.set(prefix, { approvers: list, at: [aa.key, routes.key, prefix] });
      }
    }
    const exit = m.get('exitNode');
    if (exit) {
      doc.autoApprovers.exitNode = strings(exit.node, [aa.key, exit.key], 'autoApprovers.exitNode') ?? [];
      doc.autoApprovers.exitAt = [aa.key, exit.key];
    }
  }

  return errors.length > 0 ? { kind: 'error', errors } : { kind: 'ok', doc, locate };
}

/** One error per line, "line L, column C: message". */
export function formatPolicyErrors(errors: readonly PolicyError[]): string {
  return errors.map((e) => `line ${e.line}, column ${e.column}: ${e.message}`).join('\n');
}
