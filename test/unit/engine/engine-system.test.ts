/**
 * The engine drives routes, the ACL filter and MagicDNS from the netmap (issue 12), against the embedded control
 * server in-process, with a fake WireGuard interface and a recording system:
 *  - fail closed: stale state is cleaned and the allow-nothing filter installed before the interface exists, and
 *    the filter from control before the peers are configured; a filter that cannot be installed at first keeps the
 *    interface down;
 *  - a filter from control that cannot be applied keeps the last good one (allow nothing), is reported, and is
 *    tried again with the next netmap while the engine keeps serving;
 *  - routes go to the system's table (peers' own addresses, with this node's source), not through the interface;
 *  - stop removes routes, DNS and, last, the filter.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DnsStatus, FilterStatus } from '../../../src-shared/model/tailnet.ts';
import { Engine } from '../../../src-main/engine/engine.ts';
import type { RouterState } from '../../../src-main/engine/router/linux.ts';
import type { DataPathMode, DataPathPort, TailnetSystem } from '../../../src-main/engine/system.ts';
import { FakeWgInterface } from '../../../src-main/engine/wg/fake.ts';
import type { FilterRule } from '../../../src-main/protocol/control/tailcfg.ts';
import { createServer, type WeftServer } from '../../../src-main/server/server.ts';
import { MemoryStore } from '../../../src-main/server/store/memory.ts';
import { eventually } from '../../support/eventually.ts';

class RecordingSystem implements TailnetSystem {
  calls: string[] = [];
  routerStates: RouterState[] = [];
  filterError: string | null = null;
  /** Fails only filters from control (the allow-nothing one still loads). */
  failRules: string | null = null;
  filterStatusRules = (): readonly FilterRule[] | null => this.applied;
  private applied: readonly FilterRule[] | null = null;
  private lastError: string | null = null;
  router = {
    table: 7070,
    set: async (s: RouterState): Promise<void> => {
      this.calls.push('router.set');
      this.routerStates.push(s);
    },
    cleanup: async (): Promise<void> => {
      this.calls.push('router.cleanup');
    },
    markStale: (): void => {
      this.calls.push('router.markStale');
    },
  };
  filter = {
    apply: async (rules: readonly FilterRule[] | null): Promise<string | null> => {
      this.calls.push(rules === null ? 'filter.apply(none)' : `filter.apply(${rules.length})`);
      if (rules !== null && this.failRules) {
        this.lastError = this.failRules;
        return this.failRules;
      }
      if (this.filterError) {
        this.lastError = this.filterError;
        return this.filterError;
      }
      this.applied = rules;
      this.lastError = null;
      return null;
    },
    status: (): FilterStatus => ({
      state: this.lastError && this.applied === null ? 'error' : this.applied === null ? 'none' : 'applied',
      ruleCount: this.applied?.length ?? 0,
      nftRuleCount: 0,
      appliedAt: null,
      error: this.lastError,
      skipped: [],
    }),
    enforced: (): readonly FilterRule[] | null => this.applied,
    check: async (): Promise<void> => {
      this.calls.push('filter.check');
    },
    remove: async (): Promise<void> => {
      this.calls.push('filter.remove');
    },
  };
  dns = {
    cleanupAtStart: async (): Promise<void> => {
      this.calls.push('dns.cleanupAtStart');
    },
    apply: async (): Promise<void> => {
      this.calls.push('dns.apply');
    },
    status: (): DnsStatus => ({ acceptDns: true, mode: 'off', suffix: null, serving: false, error: null }),
    check: async (): Promise<void> => {
      this.calls.push('dns.check');
    },
    close: async (): Promise<void> => {
      this.calls.push('dns.close');
    },
  };
  lan = (): { iface: string; prefix: string }[] => [{ iface: 'eth0', prefix: '192.168.1.0/24' }];
  datapath: DataPathPort | null = null;
}

/** A data path port that records its calls and answers with `mode` (kernel, or proxy with a reason). */
class RecordingDataPath implements DataPathPort {
  ports: { publicPort: number; discoPort: number }[] = [];
  constructor(
    private readonly calls: string[],
    private mode: DataPathMode,
  ) {}
  async cleanupAtStart(): Promise<void> {
    this.calls.push('datapath.cleanupAtStart');
  }
  async apply(ports: { publicPort: number; discoPort: number }): Promise<DataPathMode> {
    this.calls.push('datapath.apply');
    this.ports.push(ports);
    return this.mode;
  }
  status(): DataPathMode {
    return this.mode;
  }
  async check(): Promise<DataPathMode> {
    this.calls.push('datapath.check');
    return this.mode;
  }
  async remove(): Promise<void> {
    this.calls.push('datapath.remove');
    this.mode = { mode: 'proxy', reason: 'removed' };
  }
}

let dir: string;
let server: WeftServer;
let store: MemoryStore;
let key: string;
const engines: Engine[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weft-engine-system-'));
  store = new MemoryStore();
  const user = store.createUser('alice', Date.now()).id;
  key = store.createPreAuthKey({ userId: user, reusable: true, ephemeral: false, expiresAt: null }, Date.now()).key;
  server = await createServer({ listen: { host: '127.0.0.1', port: 0 }, store });
});

afterEach(async () => {
  for (const e of engines.splice(0)) await e.stop().catch(() => undefined);
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

function engine(name: string, system: TailnetSystem | undefined, wg: FakeWgInterface, order: string[] | null, opts: { acceptRoutes?: boolean } = {}): Engine {
  const e = new Engine({
    server: server.url,
    stateDir: join(dir, name),
    authKey: key,
    hostname: name,
    udpPort: 0,
    portMapping: false,
    createInterface: async () => {
      order?.push('createInterface');
      return wg;
    },
    ...(system ? { system } : {}),
    ...(opts.acceptRoutes !== undefined ? { acceptRoutes: opts.acceptRoutes } : {}),
  });
  engines.push(e);
  return e;
}

describe('engine and its system (routes, filter, DNS)', () => {
  it('installs the allow-nothing filter before the interface exists, and the control filter before the peers', async () => {
    const sys = new RecordingSystem();
    const wg = new FakeWgInterface('weft0');
    const origSet = wg.set.bind(wg);
    wg.set = async (cfg) => {
      sys.calls.push(`wg.set(${cfg.peers.length})`);
      await origSet(cfg);
    };
    const a = engine('a', sys, wg, sys.calls);
    await a.start();
    // A peer appears: the filter naming it goes in before WireGuard learns the peer.
    const b = engine('b', undefined, new FakeWgInterface('weft1'), null);
    await b.start();
    await eventually('a configures peer b', 10_000, async () => (sys.calls.includes('wg.set(1)') ? true : undefined));
    const c = sys.calls;
    expect(c.indexOf('router.cleanup')).toBeLessThan(c.indexOf('filter.apply(none)'));
    expect(c.indexOf('dns.cleanupAtStart')).toBeLessThan(c.indexOf('filter.apply(none)'));
    expect(c.indexOf('filter.apply(none)')).toBeLessThan(c.indexOf('createInterface'));
    const firstPeerSet = c.indexOf('wg.set(1)');
    expect(c.slice(0, firstPeerSet).some((x) => /^filter\.apply\(\d+\)$/.test(x))).toBe(true);
    // An unchanged filter is not loaded again for every netmap.
    expect(c.filter((x) => /^filter\.apply\(\d+\)$/.test(x))).toHaveLength(1);
    // The quad-100 service addresses go on the interface after the node's own.
    expect(wg.upCalls[0]?.serviceAddresses).toEqual(['100.100.100.100/32', 'fd7a:115c:a1e0::53/128']);
    const st = await a.status();
    expect(st.tailnet?.filter.state).toBe('applied');
    // Routes: b's own addresses only, in the system's table, with this node's source.
    const last = sys.routerStates[sys.routerStates.length - 1]!;
    const bAddrs = (await b.status()).self!.addresses;
    expect([...last.routes].sort()).toEqual(bAddrs.map((x) => (x.includes(':') ? `${x}/128` : `${x}/32`)).sort());
    expect(last.src4).toBe(st.self!.addresses.find((x) => !x.includes(':')));
    expect(wg.installedRoutes).toEqual([]); // nothing through the interface itself: the system routes
    await a.stop();
    expect(sys.calls.slice(-3)).toEqual(['dns.close', 'router.cleanup', 'filter.remove']);
  });

  it('keeps the interface down when the first filter cannot be installed (fail closed), and retries', async () => {
    const sys = new RecordingSystem();
    sys.filterError = 'nft: not found';
    const order: string[] = [];
    const a = engine('a', sys, new FakeWgInterface('weft0'), order);
    await a.start();
    const st = await a.status();
    expect(st.dataPlaneError).toMatch(/cannot install the inbound filter, so the interface stays down: nft: not found/);
    expect(order).toEqual([]);
    sys.filterError = null;
    await eventually('the retry creates the interface', 10_000, async () => (order.includes('createInterface') ? true : undefined));
  });

  it('keeps the last good filter (here: allow nothing) when the one from control fails, says so, keeps serving, and retries', async () => {
    const sys = new RecordingSystem();
    sys.failRules = 'nft: syntax error';
    const a = engine('a', sys, new FakeWgInterface('weft0'), null);
    await a.start();
    let st = await a.status();
    expect(st.control.state).toBe('connected');
    expect(st.tailnet?.filter).toMatchObject({ state: 'error', error: 'nft: syntax error' });
    expect(sys.filterStatusRules()).toBeNull(); // still the allow-nothing filter: fail closed
    // The engine keeps serving: a new peer is still taken in, and the failed filter is tried again with it.
    sys.failRules = null;
    const b = engine('b', undefined, new FakeWgInterface('weft1'), null);
    await b.start();
    await eventually('a takes b in and applies the filter', 10_000, async () => {
      const s = await a.status();
      return s.peers.length === 1 && s.tailnet?.filter.state === 'applied' ? s : undefined;
    });
    st = await a.status();
    expect(st.tailnet?.filter.error).toBeNull();
  });
});

describe('engine and the kernel data path (issue 13)', () => {
  it('kernel: WireGuard owns the public port, Node binds another, peers are told the public port; stop removes the rules', async () => {
    const sys = new RecordingSystem();
    const dp = new RecordingDataPath(sys.calls, { mode: 'kernel' });
    sys.datapath = dp;
    const wg = new FakeWgInterface('weft0');
    const a = engine('a', sys, wg, sys.calls);
    await a.start();
    const b = engine('b', undefined, new FakeWgInterface('weft1'), null);
    await b.start();
    expect(sys.calls.indexOf('datapath.cleanupAtStart')).toBeLessThan(sys.calls.indexOf('datapath.apply'));
    expect(sys.calls.indexOf('datapath.apply')).toBeLessThan(sys.calls.indexOf('createInterface'));
    const { publicPort, discoPort } = dp.ports[0]!;
    expect(publicPort).toBeGreaterThan(0);
    expect(discoPort).not.toBe(publicPort);
    // WireGuard listens on P; its peers are reached through loopback proxies until a direct path exists.
    await eventually('a configures b', 10_000, async () => (wg.configs.at(-1)?.peers.length === 1 ? true : undefined));
    const cfg = wg.configs.at(-1)!;
    expect(cfg.listenPort).toBe(publicPort);
    expect(cfg.peers[0]!.endpoint?.ip).toBe('127.0.0.1');
    expect((await a.status()).dataPath).toEqual({ mode: 'kernel', reason: null });
    // b learns a's endpoints with P, never Node's own port Q.
    await eventually('b sees a with endpoints', 10_000, async () => {
      const peer = [...b.control.netmap.peers.values()][0];
      return peer && peer.Endpoints.length > 0 ? peer : undefined;
    });
    const eps = [...b.control.netmap.peers.values()][0]!.Endpoints;
    expect(eps.every((e) => e.endsWith(`:${publicPort}`))).toBe(true);
    await a.stop();
    expect(sys.calls).toContain('datapath.remove');
    expect(sys.calls.indexOf('datapath.remove')).toBeLessThan(sys.calls.indexOf('filter.remove'));
  });

  it('proxy fallback: when the rules cannot go in, Node owns the port as before and status says why', async () => {
    const sys = new RecordingSystem();
    sys.datapath = new RecordingDataPath(sys.calls, { mode: 'proxy', reason: 'nft not found' });
    const wg = new FakeWgInterface('weft0');
    const a = engine('a', sys, wg, null);
    await a.start();
    expect((await a.status()).dataPath).toEqual({ mode: 'proxy', reason: 'nft not found' });
    const cfg = wg.configs.at(-1)!;
    // WireGuard on a loopback-only port of its own, not the one the data path was offered.
    expect(cfg.listenPort).not.toBe((sys.datapath as RecordingDataPath).ports[0]!.publicPort);
    await a.stop();
    expect(sys.calls).not.toContain('datapath.remove');
  });
});
