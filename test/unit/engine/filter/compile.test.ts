/**
 * The packet filter compiler (engine/filter/compile.ts) on the exact shapes headscale 0.26.1 and 0.29.2 send,
 * on malformed filters, and against a reference model of tailscaled's verdicts (nft-model.ts) with random rules
 * and packets. The nftables side of these rulesets is checked for real in nft-kernel.test.ts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  compileFilter,
  filterTableName,
  MAX_NFT_ITEMS,
  parseFilterAddr,
  removeTable,
  type CompiledFilter,
  type FilterTarget,
} from '../../../../src-main/engine/filter/compile.ts';
import { FilterRule } from '../../../../src-main/protocol/control/tailcfg.ts';
import { acceptTexts, evaluateInput, modelVerdict, rulesOf, type Packet } from './nft-model.ts';

const T: FilterTarget = { iface: 'weft0', table: 'weft_weft0', selfAddrs: ['100.64.0.3/32', 'fd7a:115c:a1e0::3/128'] };
const parse = (rules: unknown[]): FilterRule[] => rules.map((r) => FilterRule.parse(r));
const compile = (rules: unknown[] | null, t: FilterTarget = T): CompiledFilter => compileFilter(rules === null ? null : parse(rules), t);

const CGNAT = '{ 100.64.0.0-100.115.91.255, 100.115.94.0-100.127.255.255 }';

/** headscale 0.29.2, ACL `{"action":"accept","src":["*"],"dst":["tag:server:22"]}`, as node 100.64.0.3 gets it. */
const HS029_SSH = {
  SrcIPs: ['100.64.0.0-100.115.91.255', '100.115.94.0-100.127.255.255', 'fd7a:115c:a1e0::/48'],
  DstPorts: [
    { IP: '100.64.0.3', Ports: { First: 22, Last: 22 } },
    { IP: 'fd7a:115c:a1e0::3', Ports: { First: 22, Last: 22 } },
  ],
};
/** headscale 0.26.1, the same ACL shape with `*` as 0.0.0.0/0 and ::/0 and host prefixes. */
const HS026_ALL = {
  SrcIPs: ['0.0.0.0/0', '::/0'],
  DstPorts: [
    { IP: '100.64.0.3/32', Ports: { First: 0, Last: 65535 } },
    { IP: 'fd7a:115c:a1e0::3/128', Ports: { First: 0, Last: 65535 } },
  ],
};
/** tailcfg.FilterAllowAll: what both versions send without a policy. */
const ALLOW_ALL = { SrcIPs: ['*'], DstPorts: [{ IP: '*', Ports: { First: 0, Last: 65535 } }] };

describe('address strings', () => {
  it('reads the forms tailscaled reads', () => {
    expect(parseFilterAddr('*')).toMatchObject({ kind: 'ip', set: { v4: [{ lo: 0n, hi: 2n ** 32n - 1n }], v6: [{ lo: 0n, hi: 2n ** 128n - 1n }] } });
    expect(parseFilterAddr('cap:tailscale.com/cap/relay')).toEqual({ kind: 'cap', name: 'tailscale.com/cap/relay' });
    expect(parseFilterAddr('100.64.0.0/10')).toMatchObject({ kind: 'ip', set: { v4: [{ lo: 0x64400000n, hi: 0x647fffffn }], v6: [] } });
    expect(parseFilterAddr('100.64.0.1-100.64.0.9')).toMatchObject({ kind: 'ip', set: { v4: [{ lo: 0x64400001n, hi: 0x64400009n }] } });
    expect(parseFilterAddr('fd7a:115c:a1e0::3')).toMatchObject({ kind: 'ip', set: { v4: [], v6: [{ lo: 0xfd7a115ca1e000000000000000000003n }] } });
  });

  it('rejects unmasked prefixes, bad ranges and junk', () => {
    const reason = (s: string): string | undefined => {
      const p = parseFilterAddr(s);
      return p.kind === 'error' ? p.reason : undefined;
    };
    expect(reason('100.64.0.1/10')).toMatch(/host bits/);
    expect(reason('100.64.0.9-100.64.0.1')).toMatch(/after its end/);
    expect(reason('100.64.0.1-fd7a::1')).toMatch(/mixes/);
    expect(reason('100.64.0.1-')).toMatch(/not an IP/);
    for (const bad of ['', 'localhost', '100.64.0.1/33', '100.64.0.1/08', '010.0.0.1', 'fe80::1%eth0', '1-2-3', '100.64.0.1/ 32', ' 100.64.0.1']) {
      expect(parseFilterAddr(bad).kind, bad).toBe('error');
    }
  });
});

describe('compileFilter', () => {
  it('headscale 0.29.2: CGNAT ranges and the ULA /48 to port 22, per family, with ICMP', () => {
    const c = compile([HS029_SSH]);
    expect(c.error).toBeNull();
    expect(c.skipped).toEqual([]);
    expect(c.ruleCount).toBe(1);
    expect(acceptTexts(c)).toEqual([
      `ip saddr ${CGNAT} ip daddr 100.64.0.3 meta l4proto 1 counter accept`,
      `ip saddr ${CGNAT} ip daddr 100.64.0.3 tcp dport 22 counter accept`,
      `ip saddr ${CGNAT} ip daddr 100.64.0.3 udp dport 22 counter accept`,
      'ip6 saddr fd7a:115c:a1e0::/48 ip6 daddr fd7a:115c:a1e0::3 meta l4proto 58 counter accept',
      'ip6 saddr fd7a:115c:a1e0::/48 ip6 daddr fd7a:115c:a1e0::3 tcp dport 22 counter accept',
      'ip6 saddr fd7a:115c:a1e0::/48 ip6 daddr fd7a:115c:a1e0::3 udp dport 22 counter accept',
    ]);
    expect(c.nftRuleCount).toBe(6);
  });

  it('headscale 0.26.1 allow-all (0.0.0.0/0, ::/0, host prefixes) and FilterAllowAll compile alike', () => {
    const want = [
      'meta nfproto ipv4 ip daddr 100.64.0.3 meta l4proto 1 counter accept',
      'meta nfproto ipv4 ip daddr 100.64.0.3 meta l4proto 6 counter accept',
      'meta nfproto ipv4 ip daddr 100.64.0.3 meta l4proto 17 counter accept',
      'meta nfproto ipv6 ip6 daddr fd7a:115c:a1e0::3 meta l4proto 58 counter accept',
      'meta nfproto ipv6 ip6 daddr fd7a:115c:a1e0::3 meta l4proto 6 counter accept',
      'meta nfproto ipv6 ip6 daddr fd7a:115c:a1e0::3 meta l4proto 17 counter accept',
    ];
    expect(acceptTexts(compile([HS026_ALL]))).toEqual(want);
    // Destination `*` means "any of this node's addresses", never the host's other ones.
    expect(acceptTexts(compile([ALLOW_ALL]))).toEqual(want);
  });

  it('proto icmp: [1] (0.29.2) and [1, 58] (0.26.1) admit ICMP only; the family still needs a source', () => {
    const rule = (IPProto: number[]) => ({ SrcIPs: ['100.64.0.5'], DstPorts: [{ IP: '100.64.0.3', Ports: { First: 0, Last: 65535 } }], IPProto });
    const want = ['ip saddr 100.64.0.5 ip daddr 100.64.0.3 meta l4proto 1 counter accept'];
    expect(acceptTexts(compile([rule([1])]))).toEqual(want);
    expect(acceptTexts(compile([rule([1, 58])]))).toEqual(want);
  });

  it('ICMP follows the addresses of any rule, whatever its protocol and ports (tailscaled matchIPsOnly)', () => {
    const c = compile([{ SrcIPs: ['100.64.0.5'], DstPorts: [{ IP: '100.64.0.3', Ports: { First: 443, Last: 443 } }], IPProto: [6] }]);
    expect(acceptTexts(c)).toEqual(['ip saddr 100.64.0.5 ip daddr 100.64.0.3 meta l4proto 1 counter accept', 'ip saddr 100.64.0.5 ip daddr 100.64.0.3 tcp dport 443 counter accept']);
  });

  it('a GRE rule needs an all-ports destination; SCTP takes ports', () => {
    const gre = (First: number, Last: number) => ({ SrcIPs: ['100.64.0.5'], DstPorts: [{ IP: '100.64.0.3', Ports: { First, Last } }], IPProto: [47, 132] });
    expect(acceptTexts(compile([gre(0, 65535)]))).toEqual([
      'ip saddr 100.64.0.5 ip daddr 100.64.0.3 meta l4proto 1 counter accept',
      'ip saddr 100.64.0.5 ip daddr 100.64.0.3 meta l4proto 132 counter accept',
      'ip saddr 100.64.0.5 ip daddr 100.64.0.3 meta l4proto 47 counter accept',
    ]);
    expect(acceptTexts(compile([gre(1, 65535)]))).toEqual([
      'ip saddr 100.64.0.5 ip daddr 100.64.0.3 meta l4proto 1 counter accept',
      'ip saddr 100.64.0.5 ip daddr 100.64.0.3 sctp dport 1-65535 counter accept',
    ]);
  });

  it('each destination keeps its own ports; ranges merge', () => {
    const c = compile(
      [
        {
          SrcIPs: ['100.64.0.5', '100.64.0.6', '100.64.0.7/32', '10.0.0.0/8'],
          DstPorts: [
            { IP: '100.64.0.3', Ports: { First: 80, Last: 80 } },
            { IP: '100.64.0.3', Ports: { First: 81, Last: 90 } },
            { IP: '100.64.0.4', Ports: { First: 22, Last: 22 } },
            { IP: '192.168.1.0/24', Ports: { First: 0, Last: 65535 } },
          ],
          IPProto: [6],
        },
      ],
      { ...T, selfAddrs: ['100.64.0.3/32', '100.64.0.4/32'] },
    );
    expect(acceptTexts(c)).toEqual([
      'ip saddr { 10.0.0.0/8, 100.64.0.5-100.64.0.7 } ip daddr 100.64.0.3-100.64.0.4 meta l4proto 1 counter accept',
      'ip saddr { 10.0.0.0/8, 100.64.0.5-100.64.0.7 } ip daddr 100.64.0.3 tcp dport 80-90 counter accept',
      'ip saddr { 10.0.0.0/8, 100.64.0.5-100.64.0.7 } ip daddr 100.64.0.4 tcp dport 22 counter accept',
    ]);
  });

  it('a rule with IPv4-only sources never admits IPv6 (per-family participation)', () => {
    const c = compile([{ SrcIPs: ['100.64.0.5'], DstPorts: [{ IP: '*', Ports: { First: 22, Last: 22 } }] }]);
    expect(acceptTexts(c).every((t) => t.startsWith('ip saddr'))).toBe(true);
    expect(acceptTexts(c)).toHaveLength(3);
  });

  it('malformed entries are skipped with a reason and the rest still applies', () => {
    const c = compile([
      { SrcIPs: ['100.64.0.1/10', '100.64.0.5', 'cap:tailscale.com/cap/drive', '1.2.3.9-1.2.3.1'], DstPorts: [{ IP: '100.64.0.3', Ports: { First: 22, Last: 22 } }, { IP: 'cap:x', Ports: { First: 1, Last: 1 } }] },
      { SrcIPs: ['100.64.0.6'], DstPorts: [{ IP: '100.64.0.3', Ports: { First: 0, Last: 65535 } }], IPProto: [300, -1, 47] },
      { SrcIPs: ['100.64.0.7'], DstPorts: [{ IP: '100.64.0.3', Ports: { First: 9, Last: 1 } }] },
      { SrcIPs: ['100.64.0.8'], DstPorts: [{ IP: '100.64.0.3', Ports: { First: 0, Last: 70000 } }] },
    ]);
    expect(c.error).toBeNull();
    expect(c.ruleCount).toBe(4);
    expect(c.skipped).toEqual([
      'rule 0: source "100.64.0.1/10" skipped: prefix has host bits set',
      'rule 0: source "cap:tailscale.com/cap/drive" is a capability, not an address; skipped',
      'rule 0: source "1.2.3.9-1.2.3.1" skipped: range start is after its end',
      'rule 0: destination "cap:x" skipped: a capability cannot be a destination',
      'rule 1: IPProto 300, -1 outside 0..255 dropped',
      'rule 2: destination "100.64.0.3" skipped: bad port range 9-1',
      'rule 3: destination "100.64.0.3" skipped: bad port range 0-70000',
    ]);
    expect(acceptTexts(c)).toEqual([
      'ip saddr 100.64.0.5 ip daddr 100.64.0.3 meta l4proto 1 counter accept',
      'ip saddr 100.64.0.5 ip daddr 100.64.0.3 tcp dport 22 counter accept',
      'ip saddr 100.64.0.5 ip daddr 100.64.0.3 udp dport 22 counter accept',
      'ip saddr 100.64.0.6 ip daddr 100.64.0.3 meta l4proto 1 counter accept',
      'ip saddr 100.64.0.6 ip daddr 100.64.0.3 meta l4proto 47 counter accept',
    ]);
  });

  it('only out-of-range IPProto values: nothing but ICMP (tailscaled keeps the rule with no protocols)', () => {
    const c = compile([{ SrcIPs: ['100.64.0.6'], DstPorts: [{ IP: '100.64.0.3', Ports: { First: 22, Last: 22 } }], IPProto: [256] }]);
    expect(acceptTexts(c)).toEqual(['ip saddr 100.64.0.6 ip daddr 100.64.0.3 meta l4proto 1 counter accept']);
  });

  it('TSMP (99) and protocol 0 are never admitted', () => {
    const c = compile([{ SrcIPs: ['100.64.0.6'], DstPorts: [{ IP: '100.64.0.3', Ports: { First: 0, Last: 65535 } }], IPProto: [0, 99] }]);
    expect(acceptTexts(c)).toEqual(['ip saddr 100.64.0.6 ip daddr 100.64.0.3 meta l4proto 1 counter accept']);
    expect(c.skipped[0]).toMatch(/IPProto 0, 99 never admitted/);
  });

  it('SrcBits or Bits anywhere: the whole filter admits nothing', () => {
    for (const bad of [
      [HS029_SSH, { ...ALLOW_ALL, SrcBits: [32] }],
      [HS029_SSH, { SrcIPs: ['*'], DstPorts: [{ IP: '100.64.0.3', Bits: 32, Ports: { First: 0, Last: 65535 } }] }],
    ]) {
      const c = compile(bad);
      expect(c.error).toBeNull();
      expect(c.nftRuleCount).toBe(0);
      expect(acceptTexts(c)).toEqual([]);
      expect(c.skipped.join()).toMatch(/SrcBits/);
    }
    // An empty SrcBits is what Go omits; it is not a use of the field.
    expect(compile([{ ...ALLOW_ALL, SrcBits: [] }]).nftRuleCount).toBe(6);
  });

  it('capability-only rules admit nothing', () => {
    const c = compile([{ SrcIPs: ['100.64.0.5'], CapGrant: [{ Dsts: ['100.64.0.3/32'], CapMap: { 'tailscale.com/cap/drive': [{}] } }] }]);
    expect(c.nftRuleCount).toBe(0);
    expect(c.skipped).toEqual(['rule 0: capability grant only (CapGrant), admits no packets']);
  });

  it('[] and null: the skeleton only (replies in, nothing new)', () => {
    for (const c of [compile([]), compile(null)]) {
      expect(c.error).toBeNull();
      expect(c.nftRuleCount).toBe(0);
      expect(rulesOf(c.ruleset).map((r) => `${r.chain}: ${r.text}`)).toEqual([
        'input: iifname != lo ip daddr 100.100.100.100 counter drop',
        'input: iifname != lo ip6 daddr fd7a:115c:a1e0::53 counter drop',
        'input: iifname != weft0 accept',
        'input: ct state established,related counter accept',
        'input: ct state invalid counter drop',
        'input: ip daddr 100.100.100.100 counter drop',
        'input: ip6 daddr fd7a:115c:a1e0::53 counter drop',
        'input: ip daddr != 100.64.0.3 counter drop',
        'input: ip6 daddr != fd7a:115c:a1e0::3 counter drop',
        'input: counter drop',
        'forward: iifname != weft0 accept',
        'forward: ct state established,related counter accept',
        'forward: counter drop',
      ]);
    }
  });

  it('replaces the table in one transaction: add, delete, then the whole table', () => {
    const cmds = compile([HS029_SSH]).ruleset!.nftables;
    const table = { table: { family: 'inet', name: 'weft_weft0' } };
    expect(cmds.slice(0, 3)).toEqual([{ add: table }, { delete: table }, { add: table }]);
    expect(cmds.slice(3, 5)).toEqual([
      { add: { chain: { family: 'inet', table: 'weft_weft0', name: 'input', type: 'filter', hook: 'input', prio: 0, policy: 'accept' } } },
      { add: { chain: { family: 'inet', table: 'weft_weft0', name: 'forward', type: 'filter', hook: 'forward', prio: 0, policy: 'accept' } } },
    ]);
    expect(JSON.stringify(cmds)).not.toMatch(/"iif"/);
    expect(removeTable('weft_weft0')).toEqual({ nftables: [{ add: table }, { delete: table }] });
  });

  it('no self address in a family drops that family; quad-100 is never a self address', () => {
    const c = compile([ALLOW_ALL], { ...T, selfAddrs: ['100.64.0.3', '100.100.100.100', 'junk'], quad100: false });
    const texts = rulesOf(c.ruleset).map((r) => r.text);
    expect(texts).toContain('ip daddr != 100.64.0.3 counter drop');
    expect(texts).toContain('meta nfproto ipv6 counter drop');
    expect(texts.some((t) => t.includes('100.100.100.100'))).toBe(false);
    expect(c.skipped).toEqual(['self address "junk": not an IP address']);
    expect(acceptTexts(c)).toHaveLength(3);
  });

  it('refuses a filter that would be too large, offering the closed ruleset instead', { timeout: 30_000 }, () => {
    const many = Array.from({ length: 5000 }, (_, i) => ({ SrcIPs: [`10.${i >> 8}.${i & 255}.0/24`, `fd00:${i.toString(16)}::/32`], DstPorts: [{ IP: '*', Ports: { First: 22, Last: 22 } }] }));
    const c = compile(many);
    expect(c.error).toMatch(new RegExp(`more than ${MAX_NFT_ITEMS}`));
    expect(c.nftRuleCount).toBe(0);
    expect(acceptTexts(c)).toEqual([]);
    expect(rulesOf(c.ruleset).at(-1)!.text).toBe('counter drop');
    // One huge source set is refused too.
    const wide = { SrcIPs: Array.from({ length: 30000 }, (_, i) => `10.${i >> 8}.${i & 255}.1`), DstPorts: [{ IP: '*', Ports: { First: 22, Last: 22 } }] };
    expect(compile([wide]).error).toMatch(/too large/);
  });

  it('bounds the skipped list', () => {
    const c = compile([{ SrcIPs: Array.from({ length: 500 }, (_, i) => `junk${i}`), DstPorts: [] }, { SrcIPs: Array.from({ length: 500 }, (_, i) => `junk${i}`), DstPorts: [{ IP: '*', Ports: { First: 1, Last: 1 } }] }]);
    expect(c.skipped.length).toBeLessThanOrEqual(65);
    expect(c.skipped.at(-1)).toMatch(/and \d+ more/);
  });

  it('refuses bad interface and table names instead of guessing', () => {
    expect(compile([], { ...T, iface: 'weft*' })).toMatchObject({ ruleset: null, error: expect.stringMatching(/interface/) });
    expect(compile([], { ...T, iface: 'a-very-long-interface' })).toMatchObject({ ruleset: null });
    expect(compile([], { ...T, table: 'weft 0' })).toMatchObject({ ruleset: null, error: expect.stringMatching(/table/) });
  });

  it('table names are valid nft identifiers and distinct per interface', () => {
    expect(filterTableName('weft0')).toBe('weft_weft0');
    expect(filterTableName('wg-1.x')).toBe('weft_wg_2d1_2ex');
    expect(filterTableName('a_2d')).not.toBe(filterTableName('a-'));
    fc.assert(
      fc.property(fc.string({ maxLength: 15 }), fc.string({ maxLength: 15 }), (a, b) => {
        expect(filterTableName(a)).toMatch(/^weft_[A-Za-z0-9_]*$/);
        if (a !== b) expect(filterTableName(a)).not.toBe(filterTableName(b));
      }),
    );
  });
});

describe('compileFilter (property)', { timeout: 60_000 }, () => {
  const anyRule = fc.record(
    {
      SrcIPs: fc.array(fc.oneof(fc.string(), fc.constantFrom('*', '0.0.0.0/0', '::/0', 'cap:x', '100.64.0.1-100.64.0.9', '1.2.3.4/32')), { maxLength: 6 }),
      DstPorts: fc.array(
        fc.record({ IP: fc.oneof(fc.string(), fc.constantFrom('*', '100.64.0.3', 'fd7a:115c:a1e0::3/128')), Bits: fc.option(fc.integer(), { nil: undefined }), Ports: fc.record({ First: fc.integer(), Last: fc.integer() }) }, { requiredKeys: ['IP', 'Ports'] }),
        { maxLength: 4 },
      ),
      IPProto: fc.array(fc.integer({ min: -1000, max: 1000 }), { maxLength: 4 }),
      SrcBits: fc.option(fc.array(fc.integer(), { maxLength: 2 }), { nil: undefined }),
    },
    { requiredKeys: ['SrcIPs'] },
  );

  it('never throws on arbitrary rules and names', () => {
    fc.assert(
      fc.property(fc.array(anyRule, { maxLength: 5 }), fc.string(), fc.array(fc.string(), { maxLength: 3 }), (raw, iface, self) => {
        const rules = raw.map((r) => FilterRule.parse(r));
        for (const t of [T, { ...T, selfAddrs: self }, { ...T, iface, table: filterTableName(iface) }]) {
          const c = compileFilter(rules, t);
          expect(c.ruleCount).toBe(rules.length);
          expect(c.skipped.length).toBeLessThanOrEqual(65);
          JSON.stringify(c.ruleset);
        }
      }),
      { numRuns: 300 },
    );
  });

  // A small universe, so random rules and packets often meet.
  const V4 = ['100.64.0.3', '100.64.0.4', '100.64.0.5', '100.64.0.6', '10.0.0.1'];
  const V6 = ['fd7a:115c:a1e0::3', 'fd7a:115c:a1e0::5', 'fd7a:115c:a1e0::6'];
  const addrText = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom('*', '0.0.0.0/0', '::/0', '100.64.0.0/29', '100.64.0.4/31', '100.64.0.5-100.64.0.6', 'fd7a:115c:a1e0::/120', 'fd7a:115c:a1e0::4-fd7a:115c:a1e0::6') },
    { weight: 2, arbitrary: fc.constantFrom(...V4, ...V6, '100.64.0.3/32', 'fd7a:115c:a1e0::3/128') },
    { weight: 1, arbitrary: fc.constantFrom('100.64.0.1/10', 'cap:x', 'bogus', '100.100.100.100', '100.64.0.6-100.64.0.5') },
  );
  const ports = fc.oneof(
    { weight: 2, arbitrary: fc.constant({ First: 0, Last: 65535 }) },
    { weight: 4, arbitrary: fc.integer({ min: 19, max: 25 }).chain((First) => fc.record({ First: fc.constant(First), Last: fc.integer({ min: First, max: 26 }) })) },
    { weight: 1, arbitrary: fc.record({ First: fc.integer({ min: -2, max: 70000 }), Last: fc.integer({ min: -2, max: 70000 }) }) },
  );
  const rule = fc.record(
    {
      SrcIPs: fc.array(addrText, { minLength: 1, maxLength: 3 }),
      DstPorts: fc.array(fc.record({ IP: addrText, Ports: ports }), { minLength: 1, maxLength: 3 }),
      IPProto: fc.constantFrom([], [], [], [6], [17], [1], [1, 58], [47], [6, 47], [132], [300], [99], [6, 17, 132, 47, 50]),
    },
    { requiredKeys: ['SrcIPs', 'DstPorts'] },
  );
  const packet: fc.Arbitrary<Packet> = fc
    .record({
      v6: fc.boolean(),
      src: fc.nat(),
      dst: fc.constantFrom(0, 0, 0, 1, 2),
      proto: fc.constantFrom<'icmp' | number>('icmp', 'icmp', 6, 6, 6, 17, 17, 132, 47, 50, 99),
      dport: fc.constantFrom(20, 22, 22, 25, 1000),
      iif: fc.constantFrom('weft0', 'weft0', 'weft0', 'eth0', 'lo'),
      ct: fc.constantFrom<NonNullable<Packet['ct']>>('new', 'new', 'new', 'established', 'invalid'),
    })
    .map((p): Packet => {
      const fam = p.v6 ? V6 : V4;
      const dsts = p.v6 ? ['fd7a:115c:a1e0::3', 'fd7a:115c:a1e0::5', 'fd7a:115c:a1e0::53'] : ['100.64.0.3', '100.64.0.4', '100.100.100.100'];
      const proto: number = p.proto === 'icmp' ? (p.v6 ? 58 : 1) : p.proto;
      return {
        iif: p.iif,
        family: p.v6 ? 6 : 4,
        src: fam[p.src % fam.length]!,
        dst: dsts[p.dst]!,
        proto,
        ...([6, 17, 132].includes(proto) ? { dport: p.dport } : {}),
        ct: p.ct,
      };
    });

  it('gives the verdicts of the reference model (tailscaled semantics plus the self check)', () => {
    const seen = { accept: 0, drop: 0 };
    fc.assert(
      fc.property(fc.option(fc.array(rule, { maxLength: 4 }), { nil: null, freq: 20 }), fc.array(packet, { minLength: 1, maxLength: 12 }), (raw, pkts) => {
        const rules = raw === null ? null : raw.map((r) => FilterRule.parse(r));
        const c = compileFilter(rules, T);
        expect(c.error).toBeNull();
        for (const p of pkts) {
          const want = modelVerdict(rules, T.selfAddrs, T.iface, p);
          expect(evaluateInput(c.ruleset, p), JSON.stringify({ p, raw })).toBe(want);
          if (p.iif === T.iface && p.ct === 'new') seen[want]++;
        }
      }),
      { numRuns: 1500 },
    );
    // The universe is small enough that new packets from peers are both admitted (about 250 a run) and refused.
    expect(seen.accept).toBeGreaterThan(120);
    expect(seen.drop).toBeGreaterThan(500);
  });
});
