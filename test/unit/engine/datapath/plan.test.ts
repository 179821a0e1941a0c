/**
 * The kernel data path's nft JSON (engine/datapath/plan.ts): the golden document for one pair of ports, and what
 * the validator refuses before anything reaches nft.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DATAPATH_MARK } from '../../../../src-main/engine/constants.ts';
import {
  dataPathRuleset,
  dataPathTableName,
  DISCO_MAGIC_INT,
  removeDataPathRuleset,
  validateDataPath,
  type DataPathScope,
} from '../../../../src-main/engine/datapath/plan.ts';
import { filterTableName, type Json, type NftRuleset } from '../../../../src-main/engine/filter/compile.ts';
import { repoRoot } from '../../../support/vectors.ts';

const P = 41641;
const Q = 41642;
const SCOPE: DataPathScope = { iface: 'weft0', table: 'weft_dp_weft0', ports: { publicPort: P, discoPort: Q } };
const plan = (): NftRuleset => dataPathRuleset({ table: 'weft_dp_weft0', publicPort: P, discoPort: Q });

/** A deep copy of the planned ruleset with `edit` applied to its commands. */
function edited(edit: (cmds: { [k: string]: Json }[]) => void): NftRuleset {
  const r = JSON.parse(JSON.stringify(plan())) as NftRuleset;
  edit(r.nftables);
  return r;
}

/** The expression list of the n-th rule command. */
function ruleExpr(cmds: { [k: string]: Json }[], n: number): Json[] {
  const rules = cmds.flatMap((c) => {
    const add = c['add'] as { rule?: { expr: Json[] } } | undefined;
    return add?.rule ? [add.rule.expr] : [];
  });
  return rules[n]!;
}

describe('dataPathRuleset', () => {
  it('matches the golden JSON (checked against `nft -j list table` of the loaded table)', () => {
    const golden = JSON.parse(readFileSync(resolve(repoRoot, 'test/fixtures/datapath/weft0-41641-41642.json'), 'utf8')) as unknown;
    expect(dataPathRuleset({ table: 'weft_dp_weft0', publicPort: P, discoPort: Q, mark: 0x1000 })).toEqual(golden);
    expect(plan()).toEqual(golden);
  });

  it('replaces the table atomically: add, delete, then the table defined in full', () => {
    const t = { table: { family: 'inet', name: 'weft_dp_weft0' } };
    expect(plan().nftables.slice(0, 3)).toEqual([{ add: t }, { delete: t }, { add: t }]);
    expect(removeDataPathRuleset('weft_dp_weft0')).toEqual({ nftables: [{ add: t }, { delete: t }] });
  });

  it('uses the disco magic as an exact integer and a mark outside Tailscale’s 0xff0000', () => {
    expect(DISCO_MAGIC_INT).toBe(0x5453f09f92ac);
    expect(DISCO_MAGIC_INT).toBe(92719496008364);
    expect(Number.isSafeInteger(DISCO_MAGIC_INT)).toBe(true);
    expect(DATAPATH_MARK & 0xff0000).toBe(0);
    expect(DATAPATH_MARK & (DATAPATH_MARK - 1)).toBe(0); // one bit
  });

  it('names the table after the Weft interface, never like a filter table', () => {
    expect(dataPathTableName('weft0')).toBe('weft_dp_weft0');
    // The filter escapes '_' as "_5f", so no interface's filter table is a data path table.
    expect(filterTableName('dp_weft0')).toBe('weft_dp_5fweft0');
  });

  it('puts the given ports and mark where they belong', () => {
    const r = dataPathRuleset({ table: 'weft_dp_weft7', publicPort: 1000, discoPort: 2000, mark: 0x4 });
    const text = JSON.stringify(r);
    expect(text).not.toContain(String(P));
    expect(validateDataPath(r, { iface: 'weft7', table: 'weft_dp_weft7', ports: { publicPort: 1000, discoPort: 2000 } })).toEqual({ ok: true });
    expect(ruleExpr(r.nftables, 2)).toEqual([
      { match: { op: '==', left: { payload: { protocol: 'udp', field: 'sport' } }, right: 2000 } },
      { mangle: { key: { meta: { key: 'mark' } }, value: { '|': [{ meta: { key: 'mark' } }, 4] } } },
    ]);
  });
});

describe('validateDataPath', () => {
  it('accepts the planned ruleset and the removal', () => {
    expect(validateDataPath(plan(), SCOPE)).toEqual({ ok: true });
    expect(validateDataPath(removeDataPathRuleset('weft_dp_weft0'), { iface: 'weft0', table: 'weft_dp_weft0' })).toEqual({ ok: true });
  });

  it('refuses a non-Weft interface', () => {
    const r = validateDataPath(dataPathRuleset({ table: 'weft_dp_eth0', publicPort: P, discoPort: Q }), { ...SCOPE, iface: 'eth0', table: 'weft_dp_eth0' });
    expect(r).toEqual({ ok: false, reason: 'interface "eth0" is not a Weft interface' });
    expect(validateDataPath(plan(), { ...SCOPE, iface: 'weft0;x' })).toMatchObject({ ok: false, reason: expect.stringMatching(/not a Weft interface/) as unknown });
  });

  it('refuses a table other than the interface’s own', () => {
    // The scope itself names another table.
    expect(validateDataPath(plan(), { ...SCOPE, table: 'weft_weft0' })).toMatchObject({ ok: false, reason: expect.stringMatching(/not the data path table of weft0/) as unknown });
    // A command touching another table (the ACL filter's, or the host's own firewall).
    for (const [name, cmd] of [
      ['weft_weft0', { delete: { table: { family: 'inet', name: 'weft_weft0' } } }],
      ['filter', { add: { rule: { family: 'inet', table: 'filter', chain: 'input', expr: [{ accept: null }] } } }],
      ['weft_dp_weft1', { add: { chain: { family: 'inet', table: 'weft_dp_weft1', name: 'pre', type: 'filter', hook: 'prerouting', prio: -300, policy: 'accept' } } }],
    ] as const) {
      const r = validateDataPath(edited((c) => c.push(cmd as unknown as { [k: string]: Json })), SCOPE);
      expect(r).toEqual({ ok: false, reason: `command 10: touches table "${name}", not weft_dp_weft0` });
    }
    // Another family, or a flush of everything.
    expect(validateDataPath(edited((c) => c.push({ delete: { table: { family: 'ip', name: 'weft_dp_weft0' } } })), SCOPE)).toEqual({ ok: false, reason: 'command 10: family "ip", not inet' });
    expect(validateDataPath(edited((c) => c.push({ flush: { ruleset: null } })), SCOPE)).toEqual({ ok: false, reason: 'command 10: only add and delete, got ["flush"]' });
    expect(validateDataPath(edited((c) => c.push({ add: { set: { family: 'inet', table: 'weft_dp_weft0', name: 's' } } })), SCOPE)).toEqual({ ok: false, reason: 'command 10: only tables, chains and rules, got ["set"]' });
  });

  it('refuses a port outside Weft’s own', () => {
    // Ports that are not P and Q (here: the rules still say 41641/41642, but the scope says otherwise).
    expect(validateDataPath(plan(), { ...SCOPE, ports: { publicPort: 51820, discoPort: Q } })).toEqual({
      ok: false,
      reason: 'command 6 expression 0: port 41641 is not Weft\'s own (51820 or 41642)',
    });
    // A rule that would steer SSH to Node's socket.
    const ssh = edited((c) => {
      const e = ruleExpr(c, 0);
      e[0] = { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: 22 } };
    });
    expect(validateDataPath(ssh, SCOPE)).toEqual({ ok: false, reason: 'command 6 expression 0: port 22 is not Weft\'s own (41641 or 41642)' });
    // A rewrite to another port.
    const to53 = edited((c) => {
      const e = ruleExpr(c, 3);
      e[2] = { mangle: { key: { payload: { protocol: 'udp', field: 'sport' } }, value: 53 } };
    });
    expect(validateDataPath(to53, SCOPE)).toEqual({ ok: false, reason: 'command 9 expression 2: port 53 is not Weft\'s own (41641 or 41642)' });
    // A port set or range hides other ports: refused as a form the data path never uses.
    const set = edited((c) => {
      ruleExpr(c, 0)[0] = { match: { op: '==', left: { payload: { protocol: 'udp', field: 'dport' } }, right: { set: [P, 22] } } };
    });
    expect(validateDataPath(set, SCOPE)).toMatchObject({ ok: false, reason: expect.stringMatching(/^command 6 expression 0: port \{"set":\[41641,22\]\} is not Weft's own/) as unknown });
    // Out-of-range or equal ports in the scope.
    expect(validateDataPath(plan(), { ...SCOPE, ports: { publicPort: 0, discoPort: Q } })).toEqual({ ok: false, reason: 'ports must be integers 1-65535, got public 0 and disco 41642' });
    expect(validateDataPath(plan(), { ...SCOPE, ports: { publicPort: 70000, discoPort: Q } })).toMatchObject({ ok: false });
    expect(validateDataPath(plan(), { ...SCOPE, ports: { publicPort: Q, discoPort: Q } })).toEqual({ ok: false, reason: 'the public and disco ports must differ (both 41642)' });
    // A removal may carry no port at all.
    expect(validateDataPath(plan(), { iface: 'weft0', table: 'weft_dp_weft0' })).toEqual({ ok: false, reason: 'command 6 expression 0: port 41641 is not Weft\'s own (none in a removal)' });
  });

  it('refuses verdicts, NAT and chains that could drop', () => {
    const withDrop = edited((c) => ruleExpr(c, 0).push({ drop: null }));
    expect(validateDataPath(withDrop, SCOPE)).toEqual({ ok: false, reason: 'command 6 expression 5: {"drop":null} is not a match or a rewrite' });
    const dropPolicy = edited((c) => {
      (c[3]!['add'] as { chain: { policy: string } }).chain.policy = 'drop';
    });
    expect(validateDataPath(dropPolicy, SCOPE)).toEqual({ ok: false, reason: 'command 3: chain "pre" must be a filter chain with policy accept' });
    const nat = edited((c) => ruleExpr(c, 0).push({ snat: { addr: '192.0.2.1' } }));
    expect(validateDataPath(nat, SCOPE)).toMatchObject({ ok: false, reason: expect.stringMatching(/is not a match or a rewrite/) as unknown });
    expect(validateDataPath({ nftables: [] }, SCOPE)).toEqual({ ok: false, reason: 'an empty command list' });
  });
});
