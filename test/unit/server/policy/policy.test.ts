/**
 * Policy parsing and compiling (server/policy): headscale 0.29.2's output for the inputs its tests and the
 * reference example use, every error with its line, and the IP set arithmetic under it.
 */
import { describe, expect, it } from 'vitest';
import { compilePolicy, THE_INTERNET, type PolicyWorld } from '../../../../src-main/server/policy/compile.ts';
import { IpSet, parseRange } from '../../../../src-main/server/policy/ipset.ts';
import { formatPolicyErrors, parsePolicy, parsePorts } from '../../../../src-main/server/policy/parse.ts';

const node = (id: number, user: string, tags: string[] = []) => ({ id, ipv4: `100.64.0.${id}`, ipv6: `fd7a:115c:a1e0::${id}`, user, tags });
const WORLD: PolicyWorld = {
  users: ['alice', 'bob', 'carol'],
  nodes: [node(1, 'alice'), node(2, 'bob'), node(3, 'alice', ['tag:server']), node(4, 'carol'), node(5, 'bob', ['tag:exit'])],
};

function compile(text: string, world: PolicyWorld = WORLD) {
  const p = parsePolicy(text);
  if (p.kind !== 'ok') throw new Error(formatPolicyErrors(p.errors));
  const c = compilePolicy(p, world);
  if (c.kind !== 'ok') throw new Error(formatPolicyErrors(c.errors));
  return c.compiled;
}

function errorsOf(text: string, world: PolicyWorld = WORLD): string {
  const p = parsePolicy(text);
  if (p.kind === 'error') return formatPolicyErrors(p.errors);
  const c = compilePolicy(p, world);
  return c.kind === 'error' ? formatPolicyErrors(c.errors) : '';
}

const STAR = ['100.64.0.0-100.115.91.255', '100.115.94.0-100.127.255.255', 'fd7a:115c:a1e0::/48'];

describe('IpSet', () => {
  it('merges, subtracts and writes sets as headscale does', () => {
    const s = IpSet.of(['100.64.0.1', '100.64.0.2', '100.64.0.3', '100.64.0.4/31', '10.0.0.0/8'].map((t) => parseRange(t)!));
    expect(s.toStrings()).toEqual(['10.0.0.0/8', '100.64.0.1-100.64.0.5']);
    expect(IpSet.of([parseRange('100.64.0.4/31')!]).toStrings()).toEqual(['100.64.0.4/31']);
    const cgnat = IpSet.of([parseRange('100.64.0.0/10')!]).minus(IpSet.of([parseRange('100.115.92.0/23')!]));
    expect(cgnat.toStrings()).toEqual(STAR.slice(0, 2));
    expect(parseRange('10.1.2.3/8')).toBeNull();
    expect(parseRange('10.1.2.3/8', { allowHostBits: true })).toEqual(parseRange('10.0.0.0/8'));
    expect(THE_INTERNET.has('8.8.8.8')).toBe(true);
    expect(THE_INTERNET.has('192.168.1.1')).toBe(false);
    expect(THE_INTERNET.has('100.64.0.1')).toBe(false);
    expect(THE_INTERNET.has('2001:db8::1')).toBe(true);
    expect(THE_INTERNET.has('fd7a:115c:a1e0::1')).toBe(false);
  });
});

describe('parsePorts', () => {
  it.each([
    ['*', [{ first: 0, last: 65535 }]],
    ['22', [{ first: 22, last: 22 }]],
    ['80,443', [{ first: 80, last: 80 }, { first: 443, last: 443 }]],
    ['8000-8100,22', [{ first: 8000, last: 8100 }, { first: 22, last: 22 }]],
  ])('%s', (t, want) => expect(parsePorts(t)).toEqual({ ports: want }));
  it.each([
    ['22-20', 'first port is greater than last port'],
    ['abc', 'invalid port'],
    ['70000', 'port number out of range'],
    ['0', "first port must be >0, or use '*' for wildcard"],
  ])('refuses %s', (t, why) => expect(parsePorts(t)).toEqual({ error: expect.stringContaining(why) }));
});

describe('compilePolicy: the filters headscale 0.29.2 sends', () => {
  it('the reference example: * to tag:server:22, as the tagged node receives it', () => {
    const c = compile('{"tagOwners": {"tag:server": ["alice@"]}, "acls": [{"action": "accept", "src": ["*"], "dst": ["tag:server:22"]}]}');
    expect(c.filterFor(3)).toEqual([
      { SrcIPs: STAR, DstPorts: [{ IP: '100.64.0.3', Ports: { First: 22, Last: 22 } }, { IP: 'fd7a:115c:a1e0::3', Ports: { First: 22, Last: 22 } }] },
    ]);
    // Nobody else is a destination: deny all inbound ([] rather than allow-all).
    expect(c.filterFor(1)).toEqual([]);
  });

  it('users skip their tagged nodes; groups are their users; one ACL becomes one rule; proto becomes IPProto', () => {
    const c = compile(`{
      "groups": {"group:eng": ["alice@", "bob@"]},
      "tagOwners": {"tag:server": ["group:eng"], "tag:exit": ["bob@"]},
      "acls": [{"action": "accept", "src": ["group:eng"], "dst": ["carol@:22", "tag:server:80,443"], "proto": "tcp"}],
    }`);
    const src = ['100.64.0.1-100.64.0.2', 'fd7a:115c:a1e0::1-fd7a:115c:a1e0::2'];
    expect(c.rules).toEqual([
      {
        SrcIPs: src,
        DstPorts: [
          { IP: '100.64.0.4', Ports: { First: 22, Last: 22 } },
          { IP: 'fd7a:115c:a1e0::4', Ports: { First: 22, Last: 22 } },
          { IP: '100.64.0.3', Ports: { First: 80, Last: 80 } },
          { IP: '100.64.0.3', Ports: { First: 443, Last: 443 } },
          { IP: 'fd7a:115c:a1e0::3', Ports: { First: 80, Last: 80 } },
          { IP: 'fd7a:115c:a1e0::3', Ports: { First: 443, Last: 443 } },
        ],
        IPProto: [6],
      },
    ]);
    expect(c.filterFor(4)).toEqual([{ SrcIPs: src, DstPorts: c.rules![0]!.DstPorts.slice(0, 2), IPProto: [6] }]);
    // Visibility: alice and bob reach carol and the server, so they see them; carol and the server see them back;
    // carol and the server do not see each other, and the exit node (tag:exit) is in nobody's rule.
    expect(c.canSee(1, 4) && c.canSee(4, 1) && c.canSee(2, 3) && c.canSee(3, 2)).toBe(true);
    expect(c.canSee(4, 3)).toBe(false);
    expect(c.canSee(1, 2)).toBe(false);
    expect(c.canSee(5, 1)).toBe(false);
  });

  it('merges rules with the same sources and protocol across ACLs, in the first one\'s place', () => {
    const c = compile(`{"hosts": {"db": "10.0.0.5", "lan": "10.1.0.0/16"}, "acls": [
      {"action": "accept", "src": ["alice@"], "dst": ["db:5432"]},
      {"action": "accept", "src": ["bob@"], "dst": ["lan:*"]},
      {"action": "accept", "src": ["alice@"], "dst": ["bob@:22"]},
    ]}`);
    expect(c.rules!.map((r) => [r.SrcIPs[0], r.DstPorts.map((d) => `${d.IP}:${d.Ports.First}`)])).toEqual([
      ['100.64.0.1', ['10.0.0.5:5432', '100.64.0.2:22', 'fd7a:115c:a1e0::2:22']],
      ['100.64.0.2', ['10.1.0.0/16:0']],
    ]);
  });

  it('autogroup:member, autogroup:tagged, autogroup:internet and autogroup:danger-all', () => {
    const c = compile(`{"tagOwners": {"tag:server": ["alice@"], "tag:exit": ["alice@"]}, "acls": [
      {"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:tagged:*"]},
      {"action": "accept", "src": ["autogroup:tagged"], "dst": ["autogroup:internet:443"]},
      {"action": "accept", "src": ["autogroup:danger-all"], "dst": ["carol@:80"]},
    ]}`);
    expect(c.rules![0]!.SrcIPs).toEqual(['100.64.0.1-100.64.0.2', '100.64.0.4', 'fd7a:115c:a1e0::1-fd7a:115c:a1e0::2', 'fd7a:115c:a1e0::4']);
    expect(c.rules![0]!.DstPorts.map((d) => d.IP)).toEqual(['100.64.0.3', '100.64.0.5', 'fd7a:115c:a1e0::3', 'fd7a:115c:a1e0::5']);
    expect(c.rules![1]!.DstPorts.length).toBeGreaterThan(40);
    expect(c.rules![1]!.DstPorts.every((d) => d.Ports.First === 443)).toBe(true);
    expect(c.rules![2]!.SrcIPs).toEqual(['*']);
  });

  it('* sources add the other sources; * destinations stay "*"', () => {
    const c = compile('{"hosts": {"ext": "192.0.2.0/24"}, "acls": [{"action": "accept", "src": ["*", "ext"], "dst": ["*:*"]}]}');
    expect(c.rules).toEqual([{ SrcIPs: [...STAR, '192.0.2.0/24'], DstPorts: [{ IP: '*', Ports: { First: 0, Last: 65535 } }] }]);
    expect(c.filterFor(1)).toEqual(c.rules);
    expect(c.canSee(1, 5)).toBe(true);
  });

  it('without "acls" everything is allowed; with an empty list nothing is', () => {
    const open = compile('{"groups": {"group:x": ["alice@"]}}');
    expect(open.rules).toBeNull();
    expect(open.filterFor(1)).toEqual([{ SrcIPs: ['*'], DstPorts: [{ IP: '*', Ports: { First: 0, Last: 65535 } }] }]);
    expect(open.canSee(1, 2)).toBe(true);
    const closed = compile('{"acls": []}');
    expect(closed.filterFor(1)).toEqual([]);
    expect(closed.canSee(1, 2)).toBe(false);
  });
});

describe('policy errors carry their line', () => {
  it.each([
    ['an unknown user', '{\n  "acls": [\n    {"action": "accept", "src": ["dave@"], "dst": ["*:*"]}\n  ]\n}', /^line 3, column 34: unknown user "dave@" \(users: alice, bob, carol\)$/],
    ['a group in a group', '{\n  "groups": {\n    "group:a": ["alice@"],\n    "group:b": ["group:a"]\n  }\n}', /^line 4, column 17: groups\["group:b"\]: "group:a": group members cannot be recursive/],
    ['a bad port range', '{"acls": [\n {"action": "accept", "src": ["*"],\n  "dst": ["*:22-20"]}]}', /^line 3, column 11: dst="\*:22-20": port range "22-20": invalid port range/],
    ['an undefined group', '{"acls": [{"action": "accept",\n "src": ["group:nope"], "dst": ["*:*"]}]}', /^line 2, column 10: group not defined in policy: "group:nope"/],
    ['an undefined tag', '{"acls": [{"action": "accept", "src": ["*"],\n "dst": ["tag:nope:22"]}]}', /^line 2, column 10: dst="tag:nope": tag not found: "tag:nope"/],
    ['an undefined host', '{"acls": [{"action": "accept", "src": ["nohost"], "dst": ["*:*"]}]}', /host not defined in policy: "nohost"/],
    ['an unknown field', '{\n  "acls": [],\n  "derpMap": {}\n}', /^line 3, column 3: unknown field: "derpMap"/],
    ['a syntax error', '{\n  "acls": [\n    {"action": "accept",, }\n  ]\n}', /^line 3, column \d+: invalid HuJSON/],
    ['ports on ICMP', '{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:22"], "proto": "icmp"}]}', /protocol does not support specific ports: "icmp", only "\*" is allowed/],
    ['grants', '{"grants": []}', /"grants" are not supported by weft server yet/],
    ['autogroup:self', '{"acls": [{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"]}]}', /"autogroup:self" is not supported by weft server yet/],
    ['autogroup:internet as a source', '{"acls": [{"action": "accept", "src": ["autogroup:internet"], "dst": ["*:*"]}]}', /autogroup not supported for ACL sources: "autogroup:internet"/],
  ])('%s', (_n, text, want) => {
    expect(errorsOf(text)).toMatch(want);
  });

  it('reads "proto": "" as the default protocols', () => {
    expect(compile('{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:22"], "proto": ""}]}').rules![0]).not.toHaveProperty('IPProto');
  });

  it('accepts comments, trailing commas, case-insensitive names and "#" comment keys in ACLs', () => {
    expect(errorsOf('{\n  // all\n  "ACLs": [{"Action": "accept", "#why": "x", "SRC": ["*"], "dst": ["*:*"],},],\n}')).toBe('');
  });
});
