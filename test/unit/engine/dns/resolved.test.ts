/**
 * ResolvedLink (engine/dns/os.ts): the busctl argv it runs against systemd-resolved's D-Bus API, in the order of
 * systemd's docs/RESOLVED-VPNS.md, recorded by a fake runner (no resolved runs here).
 */
import { describe, expect, it } from 'vitest';
import type { CommandOptions, CommandResult, CommandRunner } from '../../../../src-main/engine/io/exec.ts';
import { ResolvedLink, linkDomains, resolvedApplyCalls, setLinkDnsArgv } from '../../../../src-main/engine/dns/os.ts';
import type { OsDnsConfig } from '../../../../src-main/engine/dns/plan.ts';
import { HS_0292_OVERRIDE_OFF, HS_0292_OVERRIDE_ON, dnsConfig, planOf } from './dns-helpers.ts';

const MGR = ['busctl', 'call', 'org.freedesktop.resolve1', '/org/freedesktop/resolve1', 'org.freedesktop.resolve1.Manager'];
const QUAD100_V6_BYTES = ['253', '122', '17', '92', '161', '224', '0', '0', '0', '0', '0', '0', '0', '0', '0', '83'];

/** Records every argv; `fail` gives the result for calls whose method matches. */
function recorder(fail: Record<string, CommandResult> = {}): { runner: CommandRunner; calls: string[][]; opts: (CommandOptions | undefined)[] } {
  const calls: string[][] = [];
  const opts: (CommandOptions | undefined)[] = [];
  const runner: CommandRunner = async (argv, o) => {
    calls.push([...argv]);
    opts.push(o);
    const method = argv[5] ?? '';
    return fail[method] ?? { code: 0, stdout: '', stderr: '' };
  };
  return { runner, calls, opts };
}

const methods = (calls: string[][]): string[] => calls.map((c) => c[5]!);

describe('ResolvedLink.apply', () => {
  it('override on: search domains, ~. and default-route, then quad-100 as the servers', async () => {
    const plan = planOf({ dnsConfig: dnsConfig(HS_0292_OVERRIDE_ON) });
    const { runner, calls, opts } = recorder();
    await new ResolvedLink({ runner, ifindex: async () => 7 }).apply(plan.os!);
    expect(methods(calls)).toEqual([
      'SetLinkDomains',
      'SetLinkDefaultRoute',
      'SetLinkDNS',
      'SetLinkLLMNR',
      'SetLinkMulticastDNS',
      'SetLinkDNSSEC',
      'SetLinkDNSOverTLS',
      'FlushCaches',
    ]);
    expect(calls[0]).toEqual([...MGR, 'SetLinkDomains', 'ia(sb)', '7', '2', 'ts.example.com', 'false', '.', 'true']);
    expect(calls[1]).toEqual([...MGR, 'SetLinkDefaultRoute', 'ib', '7', 'true']);
    expect(calls[2]).toEqual([...MGR, 'SetLinkDNS', 'ia(iay)', '7', '2', '2', '4', '100', '100', '100', '100', '10', '16', ...QUAD100_V6_BYTES]);
    expect(calls[3]).toEqual([...MGR, 'SetLinkLLMNR', 'is', '7', 'no']);
    expect(calls[4]).toEqual([...MGR, 'SetLinkMulticastDNS', 'is', '7', 'no']);
    expect(calls[7]).toEqual([...MGR, 'FlushCaches']);
    expect(opts.every((o) => o?.timeoutMs === 5000)).toBe(true);
  });

  it('split only (override off): routing-only match domains and no default route', async () => {
    const plan = planOf({ dnsConfig: dnsConfig(HS_0292_OVERRIDE_OFF), osBase: null });
    const { runner, calls } = recorder();
    await new ResolvedLink({ runner, ifindex: async () => 3 }).apply(plan.os!);
    const domains = calls[0]!;
    expect(domains.slice(0, 8)).toEqual([...MGR, 'SetLinkDomains', 'ia(sb)', '3']);
    const pairs = domains.slice(9);
    expect(Number(domains[8])).toBe(pairs.length / 2);
    const entries = new Map<string, string>();
    for (let i = 0; i < pairs.length; i += 2) entries.set(pairs[i]!, pairs[i + 1]!);
    // The MagicDNS suffix is a search domain (which routes too); the rest are routing-only.
    expect(entries.get('ts.example.com')).toBe('false');
    expect(entries.get('corp.example')).toBe('true');
    expect(entries.get('lab.example')).toBe('true');
    expect(entries.get('64.100.in-addr.arpa')).toBe('true');
    expect(entries.get('0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa')).toBe('true');
    expect(entries.has('.')).toBe(false);
    expect(calls[1]).toEqual([...MGR, 'SetLinkDefaultRoute', 'ib', '3', 'false']);
  });

  it('retries without the reverse zones when resolved refuses that many domains', async () => {
    const plan = planOf({ dnsConfig: dnsConfig(HS_0292_OVERRIDE_OFF), osBase: null });
    let first = true;
    const calls: string[][] = [];
    const runner: CommandRunner = async (argv) => {
      calls.push([...argv]);
      if (argv[5] === 'SetLinkDomains' && first) {
        first = false;
        return { code: 1, stdout: '', stderr: 'Call failed: Argument list too long' };
      }
      return { code: 0, stdout: '', stderr: '' };
    };
    await new ResolvedLink({ runner, ifindex: async () => 3 }).apply(plan.os!);
    expect(methods(calls).slice(0, 3)).toEqual(['SetLinkDomains', 'SetLinkDomains', 'SetLinkDefaultRoute']);
    expect(calls[1]!.some((a) => a.endsWith('.arpa'))).toBe(false);
    expect(calls[1]).toContain('corp.example');
  });

  it('goes on without SetLinkDefaultRoute on systemd 237, and ignores best-effort failures', async () => {
    const os: OsDnsConfig = { nameservers: ['100.100.100.100'], searchDomains: [], matchDomains: ['corp.example'] };
    const { runner, calls } = recorder({
      SetLinkDefaultRoute: { code: 1, stdout: '', stderr: 'Call failed: Unknown method SetLinkDefaultRoute or interface org.freedesktop.resolve1.Manager.' },
      SetLinkDNSOverTLS: { code: 1, stdout: '', stderr: 'Call failed: Unknown method' },
      SetLinkMulticastDNS: { code: null, stdout: '', stderr: 'timeout' },
    });
    await new ResolvedLink({ runner, ifindex: async () => 9 }).apply(os);
    expect(methods(calls)).toContain('FlushCaches');
  });

  it('rejects when a required call fails', async () => {
    const os: OsDnsConfig = { nameservers: ['100.100.100.100'], searchDomains: [], matchDomains: [] };
    for (const method of ['SetLinkDomains', 'SetLinkDefaultRoute', 'SetLinkDNS']) {
      const { runner } = recorder({ [method]: { code: 1, stdout: '', stderr: 'Call failed: Access denied' } });
      await expect(new ResolvedLink({ runner, ifindex: async () => 9 }).apply(os), method).rejects.toThrow(new RegExp(`${method}.*Access denied`));
    }
  });

  it('reapplies the last configuration (after resolved restarted)', async () => {
    const os: OsDnsConfig = { nameservers: ['100.100.100.100'], searchDomains: ['ts.example.com'], matchDomains: [] };
    const { runner, calls } = recorder();
    const link = new ResolvedLink({ runner, ifindex: async () => 4 });
    await link.reapply();
    expect(calls).toEqual([]);
    await link.apply(os);
    await link.reapply();
    expect(calls.slice(8)).toEqual(calls.slice(0, 8));
  });
});

describe('ResolvedLink.revert', () => {
  it('calls RevertLink with the current ifindex', async () => {
    const { runner, calls } = recorder();
    let idx = 5;
    const link = new ResolvedLink({ runner, ifindex: async () => idx });
    idx = 12;
    await link.revert();
    expect(calls).toEqual([[...MGR, 'RevertLink', 'i', '12']]);
  });

  it('rejects when resolved refuses', async () => {
    const { runner } = recorder({ RevertLink: { code: 1, stdout: '', stderr: 'Link 12 not known' } });
    await expect(new ResolvedLink({ runner, ifindex: async () => 12 }).revert()).rejects.toThrow(/Link 12 not known/);
  });
});

describe('argv builders', () => {
  it('encodes both address families as (family, byte count, bytes)', () => {
    expect(setLinkDnsArgv(1, ['10.0.0.53', '2001:db8::1', 'junk']).slice(5)).toEqual([
      'SetLinkDNS',
      'ia(iay)',
      '1',
      '2',
      '2',
      '4',
      '10',
      '0',
      '0',
      '53',
      '10',
      '16',
      '32',
      '1',
      '13',
      '184',
      ...Array<string>(11).fill('0'),
      '1',
    ]);
  });

  it('lists a domain that is both search and match once, as a search domain', () => {
    expect(linkDomains({ nameservers: ['100.100.100.100'], searchDomains: ['TS.example.com.'], matchDomains: ['ts.example.com', 'corp.example'] })).toEqual([
      ['ts.example.com', false],
      ['corp.example', true],
    ]);
  });

  it('adds ~. only when there are servers and no match domains', () => {
    expect(linkDomains({ nameservers: [], searchDomains: ['corp.example'], matchDomains: [] })).toEqual([['corp.example', false]]);
    expect(resolvedApplyCalls(2, { nameservers: [], searchDomains: [], matchDomains: [] })[0]).toEqual([...MGR, 'SetLinkDomains', 'ia(sb)', '2', '0']);
  });
});
