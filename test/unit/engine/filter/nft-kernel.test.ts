/**
 * The compiled filter in a real kernel, inside network namespaces created for this run (never the host's own
 * ruleset): nft loads it, a second load replaces it in one transaction, a load the kernel refuses leaves the
 * previous table exactly as it was, and the table can be removed. A behavioural test then joins two namespaces
 * with a veth pair whose filtered end stands in for Weft's interface, and checks what a peer can reach.
 *
 * Needs root, nft and ip (iproute2); skipped otherwise. Every wait is bounded; processes are killed by PID and
 * the namespaces deleted in afterAll even when a test fails.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileFilter, filterTableName, type CompiledFilter, type FilterTarget, type NftRuleset } from '../../../../src-main/engine/filter/compile.ts';
import { nftArgv, NftFilter } from '../../../../src-main/engine/filter/nft.ts';
import { execRunner, type CommandRunner } from '../../../../src-main/engine/io/exec.ts';
import { FilterRule } from '../../../../src-main/protocol/control/tailcfg.ts';

const ENV = { ...process.env, PATH: `${process.env['PATH'] ?? '/usr/bin:/bin'}:/usr/sbin:/sbin` };
const tool = (argv: string[]): boolean => spawnSync(argv[0]!, argv.slice(1), { stdio: 'ignore', env: ENV }).status === 0;
/** Kills a child by its PID (`ip netns exec` execs the command, so that is the node process). */
function kill(child: ChildProcess): void {
  try {
    if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
const canRun = process.getuid?.() === 0 && tool(['nft', '--version']) && tool(['ip', '-V']);

const rand = (): string => randomBytes(3).toString('hex');
const parse = (rules: unknown[]): FilterRule[] => rules.map((r) => FilterRule.parse(r));

async function run(argv: string[], input?: string): Promise<string> {
  const r = await execRunner(argv, { input, timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`${argv.join(' ')} (code ${String(r.code)}): ${r.stderr}`);
  return r.stdout;
}
const inNs =
  (ns: string): CommandRunner =>
  (argv, opts) =>
    execRunner(['ip', 'netns', 'exec', ns, ...argv], opts);

/** `nft -j list table` without handles and with zeroed counters, for comparing two listings. */
async function listing(ns: string, table: string): Promise<unknown[]> {
  const out = await run(['ip', 'netns', 'exec', ns, 'nft', '-j', 'list', 'table', 'inet', table]);
  const doc = JSON.parse(out, (k, v: unknown) => (k === 'handle' ? undefined : k === 'counter' ? 'counter' : v)) as { nftables: Record<string, unknown>[] };
  return doc.nftables.filter((e) => !('metainfo' in e));
}
const tables = async (ns: string): Promise<string> => run(['ip', 'netns', 'exec', ns, 'nft', 'list', 'tables']);

/** The comments of the rules of one listing, by chain, in order. */
function comments(l: unknown[]): string[] {
  return l.flatMap((e) => {
    const r = (e as { rule?: { chain: string; comment?: string } }).rule;
    return r ? [`${r.chain}: ${r.comment ?? '-'}`] : [];
  });
}
function commentsOf(c: CompiledFilter): string[] {
  return (c.ruleset?.nftables ?? []).flatMap((cmd) => {
    const r = (cmd['add'] as { rule?: { chain: string; comment?: string } } | undefined)?.rule;
    return r ? [`${r.chain}: ${r.comment ?? '-'}`] : [];
  });
}

const HS029_SSH = {
  SrcIPs: ['100.64.0.0-100.115.91.255', '100.115.94.0-100.127.255.255', 'fd7a:115c:a1e0::/48'],
  DstPorts: [
    { IP: '100.64.0.3', Ports: { First: 22, Last: 22 } },
    { IP: 'fd7a:115c:a1e0::3', Ports: { First: 22, Last: 22 } },
  ],
};
const ALLOW_ALL = { SrcIPs: ['*'], DstPorts: [{ IP: '*', Ports: { First: 0, Last: 65535 } }] };

describe.skipIf(!canRun)('nft in a network namespace', { timeout: 60_000 }, () => {
  const ns = `weftf${rand()}`;
  const t: FilterTarget = { iface: 'weft0', table: filterTableName('weft0'), selfAddrs: ['100.64.0.3/32', 'fd7a:115c:a1e0::3/128'] };
  const filter = new NftFilter(inNs(ns), () => undefined);

  beforeAll(async () => {
    await run(['ip', 'netns', 'add', ns]);
  }, 30_000);
  afterAll(async () => {
    await execRunner(['ip', 'netns', 'del', ns]);
  }, 30_000);

  it('loads the headscale 0.29.2 filter and reads it back', async () => {
    const c = compileFilter(parse([HS029_SSH]), t);
    expect(await filter.apply(c)).toEqual({ ok: true });
    expect(filter.status()).toMatchObject({ state: 'applied', ruleCount: 1, nftRuleCount: 6 });
    const l = await listing(ns, t.table);
    expect(l).toContainEqual({ table: { family: 'inet', name: 'weft_weft0' } });
    expect(l).toContainEqual({ chain: { family: 'inet', table: 'weft_weft0', name: 'input', type: 'filter', hook: 'input', prio: 0, policy: 'accept' } });
    expect(l).toContainEqual({ chain: { family: 'inet', table: 'weft_weft0', name: 'forward', type: 'filter', hook: 'forward', prio: 0, policy: 'accept' } });
    expect(comments(l)).toEqual(commentsOf(c));
    const text = await run(['ip', 'netns', 'exec', ns, 'nft', 'list', 'table', 'inet', t.table]);
    expect(text).toContain('iifname != "weft0" accept');
    expect(text).toContain('ip saddr { 100.64.0.0-100.115.91.255, 100.115.94.0-100.127.255.255 } ip daddr 100.64.0.3 tcp dport 22 counter packets 0 bytes 0 accept');
    expect(text).toContain('ip6 saddr fd7a:115c:a1e0::/48 ip6 daddr fd7a:115c:a1e0::3 meta l4proto ipv6-icmp counter');
    expect(text).toContain('ip daddr != 100.64.0.3 counter packets 0 bytes 0 drop');
  });

  it('a second load replaces the table whole', async () => {
    for (const rules of [[ALLOW_ALL], [], [HS029_SSH, ALLOW_ALL]]) {
      const c = compileFilter(parse(rules), t);
      expect(await filter.apply(c)).toEqual({ ok: true });
      expect(comments(await listing(ns, t.table))).toEqual(commentsOf(c));
      expect((await tables(ns)).trim()).toBe('table inet weft_weft0');
    }
  });

  it('a load the kernel refuses leaves the previous table exactly as it was', async () => {
    const good = compileFilter(parse([HS029_SSH]), t);
    expect(await filter.apply(good)).toEqual({ ok: true });
    const before = await listing(ns, t.table);
    const next = compileFilter(parse([ALLOW_ALL]), t);
    const broken = (extra: NftRuleset['nftables'][number]): CompiledFilter => ({ ...next, ruleset: { nftables: [...next.ruleset!.nftables, extra] } });
    // Refused by the kernel (a nat chain cannot hook forward), after the delete in the same batch.
    const natForward: NftRuleset['nftables'][number] = { add: { chain: { family: 'inet', table: t.table, name: 'bad', type: 'nat', hook: 'forward', prio: 0, policy: 'accept' } } };
    const r1 = await filter.apply(broken(natForward));
    expect(r1).toMatchObject({ ok: false, error: expect.stringMatching(/Operation not supported/) });
    expect(await listing(ns, t.table)).toEqual(before);
    // Refused by nft itself (`iif` resolves a missing interface).
    const iif: NftRuleset['nftables'][number] = { add: { rule: { family: 'inet', table: t.table, chain: 'input', expr: [{ match: { op: '==', left: { meta: { key: 'iif' } }, right: 'nosuchif0' } }, { accept: null }] } } };
    expect(await filter.apply(broken(iif))).toMatchObject({ ok: false, error: expect.stringMatching(/Interface does not exist/) });
    expect(await listing(ns, t.table)).toEqual(before);
    // A filter compiling refused is not loaded at all.
    expect(await filter.apply({ ...next, nftRuleCount: 0, error: 'the filter is too large' })).toMatchObject({ ok: false });
    expect(await listing(ns, t.table)).toEqual(before);
    expect(filter.status()).toMatchObject({ state: 'error', ruleCount: 1, nftRuleCount: 6, error: 'the filter is too large' });
  });

  it('a large filter goes through in several arguments', async () => {
    const wide = { SrcIPs: Array.from({ length: 6000 }, (_, i) => `fd00:${(i * 2).toString(16)}::1-fd00:${(i * 2).toString(16)}::9`), DstPorts: [{ IP: '*', Ports: { First: 22, Last: 22 } }] };
    const c = compileFilter(parse([wide]), t);
    expect(c.error).toBeNull();
    expect(nftArgv(c.ruleset!).length).toBeGreaterThan(5);
    expect(await filter.apply(c)).toEqual({ ok: true });
    const l = await listing(ns, t.table);
    expect(comments(l)).toEqual(commentsOf(c));
    const tcp = l.find((e) => (e as { rule?: { comment?: string } }).rule?.comment === 'weft: rule 0 ipv6 tcp') as { rule: { expr: { match?: { right: { set?: unknown[] } } }[] } };
    expect(tcp.rule.expr[0]!.match!.right.set).toHaveLength(6000);
  });

  it('odd interface names get their own valid table; remove deletes it and is idempotent', async () => {
    const odd: FilterTarget = { ...t, iface: 'wg-1.x', table: filterTableName('wg-1.x') };
    const other = new NftFilter(inNs(ns), () => undefined);
    expect(await other.apply(compileFilter(parse([ALLOW_ALL]), odd))).toEqual({ ok: true });
    expect(await run(['ip', 'netns', 'exec', ns, 'nft', 'list', 'table', 'inet', odd.table])).toContain('iifname != "wg-1.x" accept');
    expect(await other.remove(odd.table)).toEqual({ ok: true });
    expect(await other.remove(odd.table)).toEqual({ ok: true });
    expect((await tables(ns)).trim()).toBe('table inet weft_weft0');
    expect(await filter.remove(t.table)).toEqual({ ok: true });
    expect((await tables(ns)).trim()).toBe('');
  });
});

// ---------------------------------------------------------------------------------------------------------

/** Connects from `ns` to host:port within 1.5 s: "open" once the server's greeting arrives, "timeout", or "error CODE". */
async function probe(ns: string, host: string, port: number): Promise<string> {
  const script =
    "const net=require('net');const [h,p]=process.argv.slice(1);const s=net.connect({host:h,port:Number(p)});" +
    "const t=setTimeout(()=>{console.log('timeout');process.exit(0)},1500);" +
    "s.on('data',()=>{console.log('open');process.exit(0)});s.on('error',(e)=>{console.log('error '+e.code);process.exit(0)});";
  const r = await execRunner(['ip', 'netns', 'exec', ns, process.execPath, '-e', script, host, String(port)], { timeoutMs: 10_000 });
  return r.stdout.trim() || `failed: ${r.stderr.trim()}`;
}

async function ping(ns: string, host: string): Promise<boolean> {
  const r = await execRunner(['ip', 'netns', 'exec', ns, 'ping', '-n', '-c', '1', '-W', '2', host], { timeoutMs: 10_000 });
  return r.code === 0;
}

/** Starts TCP servers on ports 22 and 23 (both families) inside `ns`; resolves once they listen. */
function listen(ns: string): Promise<ChildProcess> {
  const script =
    "const net=require('net');let n=0;for(const port of [22,23]){net.createServer((s)=>{s.on('error',()=>{});s.end('hi\\n')})" +
    ".listen({port,host:'::',ipv6Only:false},()=>{if(++n===2)console.log('ready')})}";
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'pipe'], env: ENV });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`listener not ready: ${out}`)), 10_000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('ready')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`listener exited (${String(code)}): ${out}`));
    });
  });
}

describe.skipIf(!canRun)('the filter between two namespaces', { timeout: 90_000 }, () => {
  const id = rand();
  const nsA = `weftfa${id}`; // filtered: stands in for this node
  const nsB = `weftfb${id}`; // a peer
  const ifA = `weftv${id}`;
  const ifB = `weftp${id}`;
  const t: FilterTarget = { iface: ifA, table: filterTableName(ifA), selfAddrs: ['100.64.0.3/32', 'fd7a:115c:a1e0::3/128'] };

  beforeAll(async () => {
    await run(['ip', 'netns', 'add', nsA]);
    await run(['ip', 'netns', 'add', nsB]);
    await run(['ip', '-n', nsA, 'link', 'set', 'lo', 'up']);
    await run(['ip', '-n', nsB, 'link', 'set', 'lo', 'up']);
    await run(['ip', '-n', nsA, 'link', 'add', ifA, 'type', 'veth', 'peer', 'name', ifB, 'netns', nsB]);
    await run(['ip', '-n', nsA, 'addr', 'add', '100.64.0.3/24', 'dev', ifA]);
    await run(['ip', '-n', nsA, 'addr', 'add', 'fd7a:115c:a1e0::3/64', 'dev', ifA, 'nodad']);
    // Another address of the host (a LAN or docker address, say): a weak host answers it on any interface.
    await run(['ip', '-n', nsA, 'addr', 'add', '10.99.0.1/32', 'dev', 'lo']);
    await run(['ip', '-n', nsB, 'addr', 'add', '100.64.0.9/24', 'dev', ifB]);
    await run(['ip', '-n', nsB, 'addr', 'add', 'fd7a:115c:a1e0::9/64', 'dev', ifB, 'nodad']);
    await run(['ip', '-n', nsA, 'link', 'set', ifA, 'up']);
    await run(['ip', '-n', nsB, 'link', 'set', ifB, 'up']);
    await run(['ip', '-n', nsB, 'route', 'add', '10.99.0.1/32', 'dev', ifB]);
    // WireGuard has no neighbour discovery; a veth does, and the filter would drop it (it is not addressed to
    // a self address), so the IPv6 neighbours are fixed.
    const mac = async (ns: string, dev: string): Promise<string> => (JSON.parse(await run(['ip', '-n', ns, '-j', 'link', 'show', 'dev', dev])) as { address: string }[])[0]!.address;
    await run(['ip', '-n', nsA, 'neigh', 'replace', 'fd7a:115c:a1e0::9', 'lladdr', await mac(nsB, ifB), 'dev', ifA, 'nud', 'permanent']);
    await run(['ip', '-n', nsB, 'neigh', 'replace', 'fd7a:115c:a1e0::3', 'lladdr', await mac(nsA, ifA), 'dev', ifB, 'nud', 'permanent']);
  }, 60_000);

  afterAll(async () => {
    await execRunner(['ip', 'netns', 'del', nsA]);
    await execRunner(['ip', 'netns', 'del', nsB]);
  }, 30_000);

  it('a peer reaches TCP 22 on this node only, and nothing else of the host', async () => {
    const listener = await listen(nsA);
    try {
      // Without a filter everything answers, the host's other address included.
      expect(await Promise.all([probe(nsB, '100.64.0.3', 23), probe(nsB, '10.99.0.1', 22), probe(nsB, 'fd7a:115c:a1e0::3', 23)])).toEqual(['open', 'open', 'open']);

      const filter = new NftFilter(inNs(nsA), () => undefined);
      const rule = { SrcIPs: ['100.64.0.9', 'fd7a:115c:a1e0::9'], DstPorts: [{ IP: '*', Ports: { First: 22, Last: 22 } }], IPProto: [6] };
      expect(await filter.apply(compileFilter(parse([rule]), t))).toEqual({ ok: true });
      const [v4ssh, v4other, v6ssh, v6other, weakHost, pinged] = await Promise.all([
        probe(nsB, '100.64.0.3', 22),
        probe(nsB, '100.64.0.3', 23),
        probe(nsB, 'fd7a:115c:a1e0::3', 22),
        probe(nsB, 'fd7a:115c:a1e0::3', 23),
        probe(nsB, '10.99.0.1', 22),
        ping(nsB, '100.64.0.3'),
      ]);
      expect({ v4ssh, v4other, v6ssh, v6other, weakHost, pinged }).toEqual({ v4ssh: 'open', v4other: 'timeout', v6ssh: 'open', v6other: 'timeout', weakHost: 'timeout', pinged: true });

      // The drops are counted.
      const l = await listing(nsA, t.table);
      const raw = await run(['ip', 'netns', 'exec', nsA, 'nft', 'list', 'table', 'inet', t.table]);
      expect(l.length).toBeGreaterThan(0);
      expect(raw).toMatch(/counter packets [1-9]\d* bytes \d+ drop comment "weft: not allowed by the tailnet policy"/);
      expect(raw).toMatch(/counter packets [1-9]\d* bytes \d+ drop comment "weft: not an address of this node \(ipv4\)"/);

      // headscale's `[]`: nothing new gets in, and the host's own connections still work (replies pass).
      expect(await filter.apply(compileFilter([], t))).toEqual({ ok: true });
      expect(await probe(nsB, '100.64.0.3', 22)).toBe('timeout');
      const server = spawn('ip', ['netns', 'exec', nsB, process.execPath, '-e', "require('net').createServer((s)=>s.end('hi\\n')).listen(2222,'100.64.0.9',()=>console.log('ready'))"], { stdio: ['ignore', 'pipe', 'ignore'], env: ENV });
      try {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('peer server not ready')), 10_000);
          server.stdout.setEncoding('utf8').on('data', (d: string) => {
            if (d.includes('ready')) {
              clearTimeout(timer);
              resolve();
            }
          });
        });
        expect(await probe(nsA, '100.64.0.9', 2222)).toBe('open');
      } finally {
        kill(server);
      }
    } finally {
      kill(listener);
    }
  });
});
