/**
 * Test support for the host: an engine double with a scriptable status report, and a way to run the host's
 * FakeClock timers together with the promise chains they start.
 */
import { EventEmitter } from 'node:events';
import type { NetcheckReport } from '../../../src-shared/model/netcheck.ts';
import type { PingResult } from '../../../src-shared/ipc/contract.ts';
import type { DerpMap } from '../../../src-shared/model/derp-map.ts';
import type { PeerStatus, StatusReport } from '../../../src-shared/model/status.ts';
import type { ControlStatus } from '../../../src-main/engine/control/client.ts';
import { emptyNetMap, type NetMap } from '../../../src-main/engine/control/map-session.ts';
import type { Node } from '../../../src-main/protocol/control/tailcfg.ts';
import type { EngineEvents, EngineInit } from '../../../src-main/engine/engine.ts';
import type { HostedEngine } from '../../../src-main/host/host.ts';
import type { FakeClock } from '../../sim/fake-clock.ts';
import type { NodeId } from '../../../src-shared/model/ids.ts';

export function peer(id: string, over: Partial<PeerStatus> = {}): PeerStatus {
  return {
    id,
    name: `peer${id}`,
    fqdn: `peer${id}.tailnet.example.com`,
    nodeKey: `nodekey:${id.padStart(64, '0')}`,
    discoKey: null,
    addresses: [`100.64.0.${id}`, `fd7a:115c:a1e0::${id}`],
    allowedIPs: [`100.64.0.${id}/32`],
    primaryRoutes: [],
    exitNode: false,
    endpoints: [`192.0.2.${id}:41641`],
    homeRegion: 1,
    online: true,
    lastSeen: null,
    keyExpiry: null,
    path: { kind: 'connecting' },
    lastHandshake: null,
    rxBytes: 0,
    txBytes: 0,
    netInfo: null,
    disco: null,
    ...over,
  };
}

export const DERP_MAP = {
  Regions: {
    '1': { RegionID: 1, RegionCode: 'fra', RegionName: 'Frankfurt', Nodes: [] },
    '2': { RegionID: 2, RegionCode: 'nyc', RegionName: 'New York', Nodes: [] },
  },
};

export const NETCHECK: NetcheckReport = {
  udp: true,
  publicV4: '198.51.100.7',
  mapping: 'endpoint-independent',
  filtering: 'address-and-port-dependent',
  mappingVariesByDestIP: false,
  portPreserved: true,
  hairpinning: null,
  portMapping: { natpmp: false, pcp: false, upnp: false, externalV4: null, usable: null, error: null },
  regionLatencyMs: { '1': 12 },
  preferredRegion: 1,
  natType: 'easy',
  behindNat: true,
  rfc5780: false,
  localPort: 41641,
  servers: [],
  notes: [],
};

export class FakeEngine extends EventEmitter<EngineEvents> implements HostedEngine {
  started = 0;
  stopped = 0;
  statusCalls = 0;
  /** What start() does; default: connected at once. */
  startImpl: () => Promise<void> = async () => this.setControl({ state: 'connected', stage: 'connected' });
  report: StatusReport = {
    control: { state: 'connecting', url: 'https://hs.example.com', error: null, authUrl: null, stage: null },
    self: { name: 'laptop', fqdn: 'laptop.tailnet.example.com', nodeKey: `nodekey:${'a'.repeat(64)}`, addresses: ['100.64.0.1', 'fd7a:115c:a1e0::1'], keyExpiry: null },
    peers: [],
    tailnet: null,
  };
  /** What control reports (status, netmap) and how often logout was called. */
  private readonly c: { st: ControlStatus; nm: NetMap; logouts: number } = {
    st: { state: 'connecting', url: 'https://hs.example.com', error: null, authUrl: null, stage: null },
    nm: emptyNetMap,
    logouts: 0,
  };
  readonly control: HostedEngine['control'];

  constructor(readonly init: EngineInit) {
    super();
    const c = this.c;
    this.control = {
      get status() {
        return c.st;
      },
      get netmap() {
        return c.nm;
      },
      logout: async () => {
        c.logouts++;
      },
      loadOnly: async () => undefined,
    };
  }

  get logouts(): number {
    return this.c.logouts;
  }

  setNetmap(peers: { id: string; os?: string }[], homeDerp = 1): void {
    const nodes = new Map<NodeId, Node>(peers.map((p) => [p.id as NodeId, { ID: p.id, Hostinfo: p.os ? { OS: p.os } : undefined } as unknown as Node]));
    this.c.nm = { ...emptyNetMap, self: { HomeDERP: homeDerp } as unknown as Node, peers: nodes, derpMap: DERP_MAP };
  }

  /** Changes the control status as the engine would, and emits control:status. */
  setControl(s: Partial<ControlStatus>): void {
    const st = (this.c.st = { ...this.c.st, ...s });
    this.report = { ...this.report, control: { state: st.state, url: st.url, error: st.error?.message ?? null, authUrl: st.authUrl, stage: st.stage } };
    this.emit('control:status', this.report.control);
  }

  setPeers(peers: PeerStatus[]): void {
    this.report = { ...this.report, peers };
  }

  async start(): Promise<void> {
    this.started++;
    await this.startImpl();
  }

  async stop(): Promise<void> {
    this.stopped++;
  }

  async status(): Promise<StatusReport> {
    this.statusCalls++;
    return structuredClone(this.report);
  }

  async netcheck(): Promise<NetcheckReport> {
    return NETCHECK;
  }

  /** Peers answer pings when they are in the report; anything else is unknown, as in the engine. */
  async ping(target: string, _timeoutMs: number): Promise<PingResult> {
    const p = this.report.peers.find((x) => x.name === target || x.addresses.includes(target));
    if (!p) throw new Error(`no peer named ${target}`);
    return { peer: p.name, reply: p.path.kind === 'direct' ? { from: p.path.endpoint, latencyMs: p.path.latencyMs } : null };
  }

  get derpMap(): DerpMap | null {
    return this.c.nm.derpMap;
  }
}

/** Lets pending promise chains run (several macrotask turns). */
export async function settle(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((r) => setImmediate(r));
}

/** Advances the fake clock in steps, letting the promise chains each timer starts run in between. */
export async function advance(clock: FakeClock, ms: number, step = 10): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    clock.advance(Math.min(step, ms - t));
    await settle(2);
  }
}
