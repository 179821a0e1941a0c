// Verifies the NAT lab itself with raw UDP (no Weft code): RFC 4787 mapping/filtering per router profile,
// hairpinning, the UDP-blocking firewall, double NAT behind the CGN, and miniupnpd's NAT-PMP.
// Run: npx vitest run --project lab test/lab/natlab.test.ts   (root)
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UdpAgent } from './agent.ts';
import type { RecvEvent } from './agent.ts';
import { createLab, udpToolArgv } from './lab.ts';
import type { HostName, Lab, RouterProfile } from './lab.ts';
import { natDiscovery, startCoturn, startMiniupnpd, STUN } from './services.ts';

type Behaviour = 'endpoint-independent' | 'address-dependent' | 'address-and-port-dependent';

const SRV = ['203.0.113.10', '203.0.113.11', '203.0.113.12', '203.0.113.13'] as const;
// Observers in srv: mapping (.10:4000, .10:4001, .11:4000) and filtering (X = .12:4000, same IP other port,
// other IP never contacted).
const OBS = {
  m1: { ip: SRV[0], port: 4000 },
  m2: { ip: SRV[0], port: 4001 },
  m3: { ip: SRV[1], port: 4000 },
  fx: { ip: SRV[2], port: 4000 },
  fp: { ip: SRV[2], port: 4001 },
  fi: { ip: SRV[1], port: 4002 },
} as const;
type ObsId = keyof typeof OBS;

const DELIVER_MS = 2000; // a packet that should arrive
const ABSENT_MS = 1200; // how long we wait before concluding that a packet did not arrive

let lab: Lab;
let srv: UdpAgent;
const agents = new Map<HostName, UdpAgent>();
let seq = 0;

function agent(h: HostName): UdpAgent {
  const a = agents.get(h);
  if (!a) throw new Error(`no agent in ${h}`);
  return a;
}

function tag(kind: string): string {
  return Buffer.from(`${kind}-${++seq}`).toString('hex');
}

const endpoint = (e: RecvEvent): string => `${e.from}:${e.port}`;

async function observe(id: ObsId, hex: string, timeoutMs = DELIVER_MS): Promise<RecvEvent> {
  const e = await srv.waitRecv(id, (x) => x.hex === hex, timeoutMs);
  if (!e) throw new Error(`observer ${id} got nothing for ${Buffer.from(hex, 'hex').toString()}`);
  return e;
}

/** natlab "nlt.py" mapping test: one LAN socket to .10:4000, .10:4001, .11:4000; compare the sources seen. */
async function mappingTest(host: HostName): Promise<{ kind: Behaviour; seen: string[]; local: number }> {
  const lan = agent(host);
  const id = `map${++seq}`;
  const local = await lan.bind(id);
  const seen: string[] = [];
  for (const o of ['m1', 'm2', 'm3'] as const) {
    const t = tag(id);
    await lan.send(id, OBS[o].ip, OBS[o].port, t);
    seen.push(endpoint(await observe(o, t)));
  }
  await lan.close(id);
  const [s1, s2, s3] = seen;
  const kind: Behaviour =
    s1 === s2 && s2 === s3 ? 'endpoint-independent' : s1 === s2 ? 'address-dependent' : 'address-and-port-dependent';
  return { kind, seen, local };
}

/** natlab "nlt.py" filtering test: a fresh socket contacts X; then X, X's IP/other port and an unrelated IP send. */
async function filteringTest(host: HostName): Promise<{ kind: Behaviour | 'none'; mapped: string; got: ObsId[] }> {
  const lan = agent(host);
  const id = `filt${++seq}`;
  await lan.bind(id);
  const t0 = tag(id);
  await lan.send(id, OBS.fx.ip, OBS.fx.port, t0);
  const m = await observe('fx', t0);
  const tags = new Map<string, ObsId>();
  // Unrelated IP first, so that its packet cannot profit from state the others create.
  for (const o of ['fi', 'fp', 'fx'] as const) {
    const t = tag(`${id}-${o}`);
    tags.set(t, o);
    await srv.send(o, m.from, m.port, t);
  }
  await lan.waitRecv(id, (e) => tags.get(e.hex) === 'fx', DELIVER_MS);
  await new Promise((r) => setTimeout(r, 300));
  const got = lan
    .received(id)
    .map((e) => tags.get(e.hex))
    .filter((o): o is ObsId => o !== undefined);
  await lan.close(id);
  const kind = got.includes('fi')
    ? 'endpoint-independent'
    : got.includes('fp')
      ? 'address-dependent'
      : got.includes('fx')
        ? 'address-and-port-dependent'
        : 'none';
  return { kind, mapped: endpoint(m), got };
}

beforeAll(async () => {
  const t0 = Date.now();
  lab = await createLab();
  const tLab = Date.now() - t0;
  const [, s, ...lanAgents] = await Promise.all([
    startCoturn(lab),
    UdpAgent.start(lab, 'srv', 600),
    ...(['a1', 'a2', 'c1', 'e1'] as const).map((h) => UdpAgent.start(lab, h, 600)),
  ]);
  srv = s;
  for (const a of lanAgents) agents.set(a.host, a);
  for (const [id, o] of Object.entries(OBS)) await srv.bind(id, o.port, o.ip);
  await srv.tcpListen('t443', 443, SRV[3]);
  await srv.tcpListen('t80', 80, SRV[3]);
  console.log(`lab ${lab.prefix}: createLab ${tLab} ms, lab + coturn + agents ${Date.now() - t0} ms`);
});

afterAll(async () => {
  const prefix = lab?.prefix;
  await lab?.destroy();
  if (prefix !== undefined) {
    const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
    expect(list.split('\n').filter((l) => l.startsWith(prefix))).toEqual([]);
  }
});

describe('NAT lab: isolation', () => {
  it('no host-namespace interface is linked into the lab, and inet has no default route', async () => {
    const host = spawnSync('ip', ['-o', 'link'], { encoding: 'utf8' }).stdout;
    expect(host).not.toContain(`link-netns ${lab.prefix}`);
    const r = await lab.exec('inet', ['ip', 'route', 'show', 'default']);
    expect(r.stdout.trim()).toBe('');
  });
});

describe('NAT lab: router na classification (a1 behind na)', () => {
  const cases: [RouterProfile, Behaviour, Behaviour][] = [
    [{ mapping: 'eim', filtering: 'apdf' }, 'endpoint-independent', 'address-and-port-dependent'],
    [{ mapping: 'eim', filtering: 'adf' }, 'endpoint-independent', 'address-dependent'],
    [{ mapping: 'eim', filtering: 'eif' }, 'endpoint-independent', 'endpoint-independent'],
    [{ mapping: 'edm', filtering: 'apdf' }, 'address-and-port-dependent', 'address-and-port-dependent'],
    [{ mapping: 'eim-range', filtering: 'apdf' }, 'endpoint-independent', 'address-and-port-dependent'],
  ];
  it.each(cases)('%o → mapping %s, filtering %s', async (profile, mapping, filtering) => {
    await lab.setRouter('na', profile);
    const m = await mappingTest('a1');
    expect(m.kind, m.seen.join(' ')).toBe(mapping);
    for (const s of m.seen) expect(s.startsWith(`${lab.addr.naWan}:`)).toBe(true);
    const port = Number(m.seen[0]?.split(':')[1]);
    if (profile.mapping === 'eim') expect(port).toBe(m.local); // port preservation
    if (profile.mapping === 'eim-range') {
      expect(port).toBeGreaterThanOrEqual(20000);
      expect(port).toBeLessThanOrEqual(29999);
    }
    const f = await filteringTest('a1');
    expect(f.kind, `got ${f.got.join(',')} via ${f.mapped}`).toBe(filtering);
  });

  it('turnutils_natdiscovery agrees for eim/apdf', async () => {
    await lab.setRouter('na', { mapping: 'eim', filtering: 'apdf' });
    const r = await natDiscovery(lab, 'a1', STUN.ip);
    expect(r.mapping, r.raw).toBe('endpoint-independent');
    expect(r.filtering, r.raw).toBe('address-and-port-dependent');
    expect(r.noNat).toBe(false);
  });
});

describe('NAT lab: hairpinning on na (a1 → a2 public mapping)', () => {
  async function hairpin(): Promise<{ got: RecvEvent | undefined; a1Public: string }> {
    const a1 = agent('a1');
    const a2 = agent('a2');
    const id1 = `hp${++seq}`;
    const id2 = `hp${++seq}`;
    await a1.bind(id1);
    await a2.bind(id2);
    const t1 = tag(id1);
    const t2 = tag(id2);
    await a1.send(id1, OBS.fx.ip, OBS.fx.port, t1);
    const a1Public = endpoint(await observe('fx', t1));
    await a2.send(id2, OBS.fx.ip, OBS.fx.port, t2);
    const m2 = await observe('fx', t2);
    const t = tag('hairpin');
    await a1.send(id1, m2.from, m2.port, t);
    const got = await a2.waitRecv(id2, (e) => e.hex === t, ABSENT_MS);
    await a1.close(id1);
    await a2.close(id2);
    return { got, a1Public };
  }

  it('off: not delivered', async () => {
    await lab.setRouter('na', { mapping: 'eim', filtering: 'apdf', hairpin: false });
    expect((await hairpin()).got).toBeUndefined();
  });

  it('on: delivered, source is a1 public mapping', async () => {
    await lab.setRouter('na', { mapping: 'eim', filtering: 'apdf', hairpin: true });
    const r = await hairpin();
    expect(r.got).toBeDefined();
    expect(r.got && endpoint(r.got)).toBe(r.a1Public);
  });
});

describe('NAT lab: short UDP timeouts on na', () => {
  it('a 3 s timeout keeps an idle mapping for 1 s but drops inbound after 5 s idle', async () => {
    await lab.setRouter('na', { mapping: 'eim', filtering: 'apdf', udpTimeoutS: 3 });
    try {
      const a1 = agent('a1');
      const id = `to${++seq}`;
      await a1.bind(id);
      const t = tag(id);
      await a1.send(id, OBS.fx.ip, OBS.fx.port, t);
      const seen = await observe('fx', t);
      // Reply from the observer after 1 s of idle: the mapping is still there.
      await new Promise((r) => setTimeout(r, 1000));
      const early = tag('early');
      await srv.send('fx', seen.from, seen.port, early);
      expect(await a1.waitRecv(id, (e) => e.hex === early, DELIVER_MS)).toBeDefined();
      // After 5 s of idle (timeout 3 s) the conntrack entry is gone, so the reply is filtered.
      await new Promise((r) => setTimeout(r, 5000));
      const late = tag('late');
      await srv.send('fx', seen.from, seen.port, late);
      expect(await a1.waitRecv(id, (e) => e.hex === late, ABSENT_MS)).toBeUndefined();
      await a1.close(id);
    } finally {
      await lab.setRouter('na', { mapping: 'eim', filtering: 'apdf' });
    }
  });
});

describe('NAT lab: fw and cgn', () => {
  it("fw 'udp443' blocks UDP, lets TCP 443 out, not TCP 80", async () => {
    await lab.setRouter('fw', { mapping: 'none', filtering: 'apdf', forward: 'udp443' });
    const e1 = agent('e1');
    const id = `fw${++seq}`;
    await e1.bind(id);
    const t = tag(id);
    await e1.send(id, OBS.fx.ip, OBS.fx.port, t);
    expect(await srv.waitRecv('fx', (e) => e.hex === t, ABSENT_MS)).toBeUndefined();
    expect(await e1.tcpConnect(`${id}-443`, SRV[3], 443, 2000)).toBe(true);
    expect(await e1.tcpConnect(`${id}-80`, SRV[3], 80, 1000)).toBe(false);
    await e1.close(id);
  });

  it('fw stateful firewall: no NAT (identity mapping), APDF', async () => {
    await lab.setRouter('fw', { mapping: 'none', filtering: 'apdf', forward: 'stateful' });
    const m = await mappingTest('e1');
    expect(m.seen).toEqual([1, 2, 3].map(() => `${lab.addr.e1}:${m.local}`));
    expect((await filteringTest('e1')).kind).toBe('address-and-port-dependent');
  });

  it('double NAT: c1 behind nc behind cgn is seen as the CGN WAN address', async () => {
    await lab.setRouter('nc', { mapping: 'eim', filtering: 'apdf' });
    await lab.setRouter('cgn', { mapping: 'eim', filtering: 'apdf' });
    const m = await mappingTest('c1');
    expect(m.kind).toBe('endpoint-independent');
    for (const s of m.seen) expect(s.startsWith(`${lab.addr.cgnWan}:`)).toBe(true);
  });
});

describe('NAT lab: miniupnpd on na', () => {
  it('answers NAT-PMP with external address 198.51.100.2', async () => {
    await lab.setRouter('na', { mapping: 'eim', filtering: 'apdf', inputDrop: false, miniupnpd: true });
    const mu = await startMiniupnpd(lab, 'na', { lanIf: 'br-lan', stunIp: STUN.ip });
    try {
      const r = await lab.exec('a1', udpToolArgv(['natpmp', '192.168.1.1', '3']), { timeoutMs: 15_000 });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const reply = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { result?: number; address?: string };
      expect(reply).toMatchObject({ result: 0, address: lab.addr.naWan });
    } finally {
      await mu.kill();
      await lab.setRouter('na', { mapping: 'eim', filtering: 'apdf' });
    }
  });
});
