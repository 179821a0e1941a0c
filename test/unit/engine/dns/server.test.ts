/**
 * MagicDnsServer (engine/dns/server.ts) on 127.0.0.1 and a free port, forwarding to real upstreams: two dnsmasq
 * processes on loopback, one as the default ("." ) resolver and one for a split route. Queries and answers go
 * through dns-packet over UDP and TCP.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { existsSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import dnsPacket from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MagicDnsServer, type ListenAddr } from '../../../../src-main/engine/dns/server.ts';
import { eventually } from '../../../support/eventually.ts';
import { answerData, decode, dnsConfig, planOf, query, type Decoded } from './dns-helpers.ts';

const DNSMASQ = '/usr/sbin/dnsmasq';
const LO = '127.0.0.1';

/** A port free for both UDP and TCP on 127.0.0.1. */
async function freePort(): Promise<number> {
  for (;;) {
    const u = createSocket('udp4');
    await new Promise<void>((r) => u.bind(0, LO, () => r()));
    const port = u.address().port;
    const t = createServer();
    const ok = await new Promise<boolean>((r) => {
      t.once('error', () => r(false));
      t.listen(port, LO, () => r(true));
    });
    await new Promise<void>((r) => u.close(() => r()));
    if (ok) {
      await new Promise<void>((r) => t.close(() => r()));
      return port;
    }
  }
}

/** One UDP query; resolves with the raw response, or null after `ms`. */
function udpAsk(port: number, msg: Uint8Array, ms = 3000): Promise<Uint8Array | null> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    const t = setTimeout(() => {
      s.close();
      resolve(null);
    }, ms);
    s.on('message', (m) => {
      clearTimeout(t);
      s.close();
      resolve(new Uint8Array(m));
    });
    s.send(msg, port, LO);
  });
}

/** Queries over one TCP connection (pipelined in one write); resolves with the responses in arrival order. */
function tcpAsk(port: number, msgs: Uint8Array[], ms = 5000): Promise<Uint8Array[]> {
  return new Promise((resolve, reject) => {
    const out: Uint8Array[] = [];
    let buf = Buffer.alloc(0);
    const c = connect(port, LO, () => c.write(Buffer.concat(msgs.map((m) => dnsPacket.streamEncode(dnsPacket.decode(Buffer.from(m)))))));
    const t = setTimeout(() => {
      c.destroy();
      reject(new Error(`tcp timeout with ${out.length} answers`));
    }, ms);
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const len = buf.readUInt16BE(0);
        out.push(new Uint8Array(buf.subarray(2, 2 + len)));
        buf = buf.subarray(2 + len);
      }
      if (out.length === msgs.length) {
        clearTimeout(t);
        c.end();
        resolve(out);
      }
    });
    c.on('error', reject);
  });
}

async function udpDecoded(port: number, msg: Uint8Array): Promise<Decoded> {
  const r = await udpAsk(port, msg);
  if (!r) throw new Error('no UDP answer');
  return decode(r);
}

const children: ChildProcess[] = [];

/** Starts dnsmasq on 127.0.0.1:<port> with the given extra options and waits until it answers. */
async function startDnsmasq(port: number, extra: string[], probe: string): Promise<void> {
  const args = [
    '--no-daemon',
    '--no-resolv',
    '--no-hosts',
    '--conf-file=/dev/null',
    '--pid-file=',
    `--port=${port}`,
    `--listen-address=${LO}`,
    '--bind-interfaces',
    ...extra,
  ];
  const child = spawn(DNSMASQ, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(child);
  await eventually(`dnsmasq on ${port}`, 10_000, async () => ((await udpAsk(port, query(probe, 'A'), 200)) ? true : undefined), 100);
}

const TXT = ['x', 'y', 'z'].map((c) => c.repeat(200));

let rootPort: number;
let splitPort: number;
let server: MagicDnsServer;
let dnsPort: number;

function tailnetPlan(rootUp: string, splitUp: string) {
  const cfg = dnsConfig({
    Resolvers: [{ Addr: rootUp }],
    Routes: { 'corp.test': [{ Addr: splitUp }], 'lab.test': null },
    Domains: ['ts.example.com'],
    Proxied: true,
    ExtraRecords: [{ Name: 'grafana.ts.example.com', Type: 'A', Value: '100.64.0.3' }],
  });
  return planOf({ dnsConfig: cfg });
}

const haveDnsmasq = existsSync(DNSMASQ);

describe.runIf(haveDnsmasq)('MagicDnsServer with dnsmasq upstreams', () => {
  beforeAll(async () => {
    rootPort = await freePort();
    splitPort = await freePort();
    await startDnsmasq(
      rootPort,
      ['--address=/upstream.test/192.0.2.7', '--address=/corp.test/192.0.2.66', ...TXT.map((t) => `--txt-record=big.upstream.test,${t}`)],
      'upstream.test',
    );
    await startDnsmasq(splitPort, ['--address=/corp.test/10.9.9.9'], 'corp.test');
    server = new MagicDnsServer({
      // 192.0.2.1 (TEST-NET-1) is on no interface here: that address fails, the loopback one is served.
      listen: [
        { host: LO, port: 0 },
        { host: '192.0.2.1', port: 0 },
      ],
    });
    const report = await server.start();
    expect(report.served).toHaveLength(1);
    expect(report.failed).toEqual([{ addr: { host: '192.0.2.1', port: 0 }, error: expect.stringMatching(/EADDRNOTAVAIL/) }]);
    dnsPort = report.served[0]!.port;
    server.setPlan(tailnetPlan(`${LO}:${rootPort}`, `${LO}:${splitPort}`));
  }, 30_000);

  afterAll(async () => {
    await server?.close();
    for (const c of children) if (c.pid !== undefined && c.exitCode === null) process.kill(c.pid, 'SIGTERM');
  });

  it('reports what it serves', () => {
    expect(server.served()).toEqual([{ host: LO, port: dnsPort }]);
  });

  it('answers tailnet names itself over UDP and TCP', async () => {
    expect(answerData(await udpDecoded(dnsPort, query('laptop', 'A')))).toEqual(['100.64.0.2']);
    const self = await udpDecoded(dnsPort, query('grafana.ts.example.com', 'A'));
    expect(answerData(self)).toEqual(['100.64.0.3']);
    const [tcp] = await tcpAsk(dnsPort, [query('me.ts.example.com', 'A')]);
    expect(answerData(decode(tcp!))).toEqual(['100.64.0.1']);
    expect((await udpDecoded(dnsPort, query('nope.lab.test', 'A'))).rcode).toBe('NXDOMAIN');
  });

  it('forwards other names to the default upstream, over UDP and TCP', async () => {
    const u = await udpDecoded(dnsPort, query('www.upstream.test', 'A', { id: 4242 }));
    expect([u.id, u.rcode, answerData(u)]).toEqual([4242, 'NOERROR', ['192.0.2.7']]);
    const [t] = await tcpAsk(dnsPort, [query('upstream.test', 'A')]);
    expect(answerData(decode(t!))).toEqual(['192.0.2.7']);
  });

  it('forwards a split-route name to the split upstream, not the default one', async () => {
    expect(answerData(await udpDecoded(dnsPort, query('git.corp.test', 'A')))).toEqual(['10.9.9.9']);
    const [t] = await tcpAsk(dnsPort, [query('wiki.corp.test', 'A')]);
    expect(answerData(decode(t!))).toEqual(['10.9.9.9']);
  });

  it('sets TC for a UDP asker without EDNS, and gets the whole answer over TCP from the upstream', async () => {
    const u = await udpDecoded(dnsPort, query('big.upstream.test', 'TXT'));
    expect(u.flag_tc).toBe(true);
    // dnsmasq truncates its UDP answer too; the full one can only have come over TCP from dnsmasq.
    const [t] = await tcpAsk(dnsPort, [query('big.upstream.test', 'TXT')]);
    const d = decode(t!);
    expect(t!.byteLength).toBeGreaterThan(512);
    expect([d.flag_tc, d.answers?.length]).toEqual([false, 3]);
  });

  it('passes a large answer within the EDNS size over UDP', async () => {
    const d = await udpDecoded(dnsPort, query('big.upstream.test', 'TXT', { edns: 4096 }));
    expect([d.flag_tc, d.answers?.length]).toEqual([false, 3]);
  });

  it('answers pipelined TCP queries on one connection', async () => {
    const rs = await tcpAsk(dnsPort, [query('a.upstream.test', 'A', { id: 1 }), query('laptop.ts.example.com', 'A', { id: 2 }), query('x.corp.test', 'A', { id: 3 })]);
    const byId = new Map(rs.map((r) => decode(r)).map((d) => [d.id, answerData(d)]));
    expect(byId).toEqual(
      new Map([
        [1, ['192.0.2.7']],
        [2, ['100.64.0.2']],
        [3, ['10.9.9.9']],
      ]),
    );
  });

  it('answers SERVFAIL without a plan, and serves again with one', async () => {
    server.setPlan(null);
    expect((await udpDecoded(dnsPort, query('upstream.test', 'A'))).rcode).toBe('SERVFAIL');
    server.setPlan(tailnetPlan(`${LO}:${rootPort}`, `${LO}:${splitPort}`));
    expect((await udpDecoded(dnsPort, query('upstream.test', 'A'))).rcode).toBe('NOERROR');
  });

  it('counts what it did', () => {
    const s = server.stats();
    expect(s.forwarded).toBeGreaterThan(5);
    expect(s.local).toBeGreaterThan(3);
    expect(s.inFlight).toBe(0);
  });
});

describe('MagicDnsServer limits', () => {
  /** An upstream that takes UDP queries and never answers (its TCP port is closed). */
  let hole: UdpSocket;
  let holePort: number;

  beforeAll(async () => {
    hole = createSocket('udp4');
    await new Promise<void>((r) => hole.bind(0, LO, () => r()));
    holePort = hole.address().port;
  });
  afterAll(() => hole.close());

  const plan = (): ReturnType<typeof tailnetPlan> => tailnetPlan(`${LO}:${holePort}`, `${LO}:${holePort}`);

  async function started(opts: ConstructorParameters<typeof MagicDnsServer>[0]): Promise<{ s: MagicDnsServer; port: number }> {
    const s = new MagicDnsServer({ listen: [{ host: LO, port: 0 }], ...opts });
    const r = await s.start();
    s.setPlan(plan());
    return { s, port: r.served[0]!.port };
  }

  it('answers SERVFAIL when the upstream does not answer within the query timeout', async () => {
    const { s, port } = await started({ queryTimeoutMs: 300, udpRaceMs: 100 });
    try {
      const t0 = Date.now();
      const d = await udpDecoded(port, query('slow.example', 'A', { id: 99 }));
      expect([d.id, d.rcode]).toEqual([99, 'SERVFAIL']);
      expect(Date.now() - t0).toBeLessThan(2000);
      expect(s.stats().upstreamFailures).toBe(1);
      // Local names do not wait for anything.
      expect(answerData(await udpDecoded(port, query('grafana.ts.example.com', 'A')))).toEqual(['100.64.0.3']);
    } finally {
      await s.close();
    }
  });

  it('answers SERVFAIL at once beyond the in-flight bound', async () => {
    const { s, port } = await started({ maxInFlight: 1, queryTimeoutMs: 1500 });
    try {
      const first = udpAsk(port, query('one.example', 'A', { id: 1 }));
      await eventually('first query in flight', 2000, async () => (s.stats().inFlight === 1 ? true : undefined), 10);
      const t0 = Date.now();
      const second = decode((await udpAsk(port, query('two.example', 'A', { id: 2 })))!);
      expect([second.id, second.rcode]).toEqual([2, 'SERVFAIL']);
      expect(Date.now() - t0).toBeLessThan(1000);
      expect(s.stats().overloaded).toBe(1);
      expect(decode((await first)!).rcode).toBe('SERVFAIL');
    } finally {
      await s.close();
    }
  });

  it('closes TCP connections beyond the bound', async () => {
    const { s, port } = await started({ maxTcpConnections: 1 });
    try {
      const a = connect(port, LO);
      await new Promise<void>((r) => a.once('connect', () => r()));
      await eventually('first connection counted', 2000, async () => (s.stats().tcpConnections === 1 ? true : undefined), 10);
      const b = connect(port, LO);
      const closed = await new Promise<boolean>((r) => {
        b.once('close', () => r(true));
        b.once('error', () => r(true));
        setTimeout(() => r(false), 2000);
      });
      expect(closed).toBe(true);
      // The first one still works.
      a.write(dnsPacket.streamEncode({ type: 'query', id: 5, questions: [{ name: 'grafana.ts.example.com', type: 'A' }] }));
      const resp = await new Promise<Buffer>((r) => a.once('data', (d: Buffer) => r(d)));
      expect(answerData(decode(resp.subarray(2)))).toEqual(['100.64.0.3']);
      a.destroy();
    } finally {
      await s.close();
    }
  });

  it('releases its port on close, and can serve it again', async () => {
    const { s, port } = await started({});
    await s.close();
    expect(s.served()).toEqual([]);
    const again = new MagicDnsServer({ listen: [{ host: LO, port } satisfies ListenAddr] });
    const r = await again.start();
    expect(r.served).toEqual([{ host: LO, port }]);
    await again.close();
  });
});
