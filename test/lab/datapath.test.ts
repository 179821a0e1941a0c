/**
 * The kernel data path (engine/datapath) against the real kernel in the NAT lab, without WireGuard: a1 behind na
 * and b1 behind nb (both masquerade: endpoint-independent mapping, address-and-port-dependent filtering), each with
 * the table loaded by NftDataPath, a UDP socket on P standing in for WireGuard and one on Q standing in for Node.
 *
 * (a) demux: disco- and STUN-binding-shaped packets to host:P reach Q; WireGuard-shaped ones, a STUN message of
 *     another method and a too-short disco-magic packet stay on P;
 * (b) one mapping: an observer on the public side sees the same public ip:port for Q's and P's sends, and its
 *     STUN-shaped answer comes back to Q;
 * (c) behind a stateful host firewall (`ct state established,related accept; policy drop`) on both hosts, disco
 *     punched from Q gets through both ways, and P works once P has sent first: the only packet the firewalls drop
 *     is the peer's first P packet;
 * (d) negative control: a variant that rewrites Q to P in output before conntrack records Node's flow as P, and
 *     the firewall drops the answers to Q;
 * and after remove() the port is untouched again; cleanupAtStart() deletes a table left behind.
 *
 * The lab's namespaces carry a per-run prefix and are deleted by lab.destroy() (processes killed by PID), also on
 * failure. Every wait is bounded. Run: npx vitest run --project lab test/lab/datapath.test.ts   (root)
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NftDataPath } from '../../src-main/engine/datapath/nft.ts';
import type { CommandRunner } from '../../src-main/engine/io/exec.ts';
import { UdpAgent, type RecvEvent } from './agent.ts';
import { createLab, type HostName, type Lab } from './lab.ts';

const P = 41641;
const Q = 41642;
const OBSERVER = { ip: '203.0.113.10', port: 3478 };
const DELIVER_MS = 3000; // a packet that should arrive
const ABSENT_MS = 1000; // how long to wait before concluding that a packet did not arrive

/** Disco-shaped: the magic, then at least 32 + 24 bytes (protocol/wire/disco.ts), then a tag to recognise it. */
const disco = (tag: string): string => `5453f09f92ac${'00'.repeat(56)}${tag}`;
/** A STUN message (RFC 8489 §5) without attributes: type, length 0, cookie, 12-byte transaction id. */
const stun = (type: number, txid: string): string => `${type.toString(16).padStart(4, '0')}00002112a442${txid}`;
/** WireGuard-shaped: a transport data message (type 4, reserved, receiver index, counter) plus a tag. */
const wg = (tag: string): string => `04000000${'11'.repeat(12)}${tag}`;
const tag = (): string => randomBytes(6).toString('hex');
const txid = (): string => randomBytes(12).toString('hex');

let lab: Lab;
const agents = new Map<HostName, UdpAgent>();
const dps = new Map<HostName, NftDataPath>();
let a2Port = 0;

const agent = (h: HostName): UdpAgent => {
  const a = agents.get(h);
  if (!a) throw new Error(`no agent in ${h}`);
  return a;
};
const dp = (h: HostName): NftDataPath => {
  const d = dps.get(h);
  if (!d) throw new Error(`no data path in ${h}`);
  return d;
};

/** The engine's CommandRunner, run inside the host's namespace. */
const runnerIn =
  (h: HostName): CommandRunner =>
  (argv, opts) =>
    lab.exec(h, [...argv], opts?.input === undefined ? { timeoutMs: opts?.timeoutMs ?? 15_000 } : { timeoutMs: opts.timeoutMs ?? 15_000, input: opts.input });

async function sh(h: HostName, argv: string[]): Promise<string> {
  const r = await lab.exec(h, argv, { timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`${h}: ${argv.join(' ')} (code ${String(r.code)}): ${r.stderr}`);
  return r.stdout;
}

/** Waits for the datagram with payload `hex` on socket `id` of `h`. */
async function arrives(h: HostName, id: string, hex: string): Promise<RecvEvent> {
  const e = await agent(h).waitRecv(id, (x) => x.hex === hex, DELIVER_MS);
  if (!e) throw new Error(`${h}/${id} did not receive ${hex.slice(0, 24)}...; it got ${agent(h).received(id).length} datagrams`);
  return e;
}

/** Payloads received on socket `id` of `h` so far. */
const got = (h: HostName, id: string): string[] => agent(h).received(id).map((e) => e.hex);

/** The UDP InCsumErrors counter of the host's namespace (/proc/net/snmp). */
async function udpCsumErrors(h: HostName): Promise<number> {
  const lines = (await sh(h, ['cat', '/proc/net/snmp'])).split('\n').filter((l) => l.startsWith('Udp:'));
  const [head, vals] = lines.map((l) => l.trim().split(/\s+/));
  const i = head?.indexOf('InCsumErrors') ?? -1;
  if (!head || !vals || i < 0) throw new Error(`${h}: no Udp InCsumErrors in /proc/net/snmp`);
  return Number(vals[i]);
}

/** A stateful host firewall: replies and related traffic, loopback and ICMPv6 neighbour discovery only. */
async function hostFirewall(h: HostName): Promise<void> {
  const file = join(lab.tmpDir, `hostfw-${h}.nft`);
  writeFileSync(
    file,
    [
      'table inet hostfw {',
      '  chain input {',
      '    type filter hook input priority filter; policy drop;',
      '    ct state established,related accept',
      '    iif "lo" accept',
      '    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept',
      '    counter comment "dropped by policy"',
      '  }',
      '}',
      '',
    ].join('\n'),
  );
  await sh(h, ['nft', '-f', file]);
}

/** Packets the host firewall's policy has dropped so far. */
async function firewallDropped(h: HostName): Promise<number> {
  const out = await sh(h, ['nft', 'list', 'chain', 'inet', 'hostfw', 'input']);
  const m = /counter packets (\d+) bytes \d+ comment "dropped by policy"/.exec(out);
  if (!m) throw new Error(`${h}: no policy counter in\n${out}`);
  return Number(m[1]);
}

async function removeFirewall(h: HostName): Promise<void> {
  await lab.exec(h, ['nft', 'delete', 'table', 'inet', 'hostfw'], { timeoutMs: 15_000 });
}

beforeAll(async () => {
  lab = await createLab();
  const hosts: HostName[] = ['a1', 'a2', 'b1', 'srv'];
  const started = await Promise.all(hosts.map((h) => UdpAgent.start(lab, h, 300)));
  hosts.forEach((h, i) => agents.set(h, started[i]!));
  for (const h of ['a1', 'b1'] as const) {
    const d = new NftDataPath(runnerIn(h), () => undefined, 'weft0');
    expect(await d.cleanupAtStart()).toEqual({ ok: true });
    expect(await d.apply({ publicPort: P, discoPort: Q })).toEqual({ mode: 'kernel' });
    dps.set(h, d);
    await agent(h).bind('p', P);
    await agent(h).bind('q', Q);
  }
  a2Port = await agent('a2').bind('x');
  await agent('srv').bind('obs', OBSERVER.port, OBSERVER.ip);
});

afterAll(async () => {
  await lab?.destroy();
});

describe('kernel data path: disco and STUN beside WireGuard on one port', () => {
  it('(a) disco and STUN binding to host:P reach Q; everything else stays on P', async () => {
    const a2 = agent('a2');
    const toQ = [disco(tag()), stun(0x0001, txid()), stun(0x0101, txid())];
    const toP = [
      wg(tag()),
      stun(0x0003, txid()), // an Allocate request: the cookie alone is not enough
      `5453f09f92ac${tag()}`, // the disco magic in a packet too short to be disco
    ];
    for (const hex of [...toQ, ...toP]) await a2.send('x', '192.168.1.2', P, hex);
    for (const hex of toQ) expect((await arrives('a1', 'q', hex)).from).toBe('192.168.1.3');
    for (const hex of toP) await arrives('a1', 'p', hex);
    expect(got('a1', 'q')).toEqual(toQ);
    expect(got('a1', 'p')).toEqual(toP);
    // Q's answer leaves as P.
    const reply = disco(tag());
    await agent('a1').send('q', '192.168.1.3', a2Port, reply);
    expect((await arrives('a2', 'x', reply)).port).toBe(P);
  });

  it('(b) Q and P share one NAT mapping, and the STUN answer comes back to Q', async () => {
    const obs = agent('srv');
    for (const [h, pub] of [
      ['a1', lab.addr.naWan],
      ['b1', lab.addr.nbWan],
    ] as const) {
      const req = stun(0x0001, txid());
      await agent(h).send('q', OBSERVER.ip, OBSERVER.port, req);
      const fromQ = await arrives('srv', 'obs', req);
      const data = wg(tag());
      await agent(h).send('p', OBSERVER.ip, OBSERVER.port, data);
      const fromP = await arrives('srv', 'obs', data);
      expect(`${fromQ.from}:${fromQ.port}`).toBe(`${pub}:${P}`);
      expect(`${fromP.from}:${fromP.port}`).toBe(`${pub}:${P}`);
      // The observer answers the mapped address: a binding success goes to Q, other traffic to P.
      const answer = stun(0x0101, req.slice(16));
      await obs.send('obs', pub, P, answer);
      await arrives(h, 'q', answer);
      const back = wg(tag());
      await obs.send('obs', pub, P, back);
      await arrives(h, 'p', back);
      expect(got(h, 'p')).not.toContain(answer);
      expect(got(h, 'q')).not.toContain(back);
    }
  });

  it('(c) behind a stateful host firewall: disco punched from Q passes both ways; P passes once P has sent', async () => {
    for (const h of ['a1', 'b1'] as const) await hostFirewall(h);
    try {
      const [a1, b1] = [agent('a1'), agent('b1')];
      const naP = lab.addr.naWan;
      const nbP = lab.addr.nbWan;
      // b1 punches first: its NAT now lets naWan:P in; na still drops this packet (no mapping there yet).
      await b1.send('q', naP, P, disco(tag()));
      // a1's disco reaches b1's Q: through nb's mapping, rewritten to Q before conntrack, matching b1's own flow.
      const d1 = disco(tag());
      await a1.send('q', nbP, P, d1);
      expect((await arrives('b1', 'q', d1)).port).toBe(P);
      const d2 = disco(tag());
      await b1.send('q', naP, P, d2);
      expect((await arrives('a1', 'q', d2)).port).toBe(P);
      // WireGuard on a1 sends first: the NATs pass it, b1's firewall drops it (b1's P has not sent to naWan:P yet).
      const w1 = wg(tag());
      await a1.send('p', nbP, P, w1);
      expect(await b1.waitRecv('p', (e) => e.hex === w1, ABSENT_MS)).toBeUndefined();
      // Once b1's P has sent, both directions pass.
      const w2 = wg(tag());
      await b1.send('p', naP, P, w2);
      await arrives('a1', 'p', w2);
      const w3 = wg(tag());
      await a1.send('p', nbP, P, w3);
      await arrives('b1', 'p', w3);
      // Exactly one packet fell through to a firewall's policy: the first WireGuard packet, at b1.
      expect(await firewallDropped('a1')).toBe(0);
      expect(await firewallDropped('b1')).toBe(1);
      // Nothing arrived on the wrong socket, and every rewritten checksum was good.
      for (const h of ['a1', 'b1'] as const) {
        expect(got(h, 'q').some((x) => x.startsWith('04000000'))).toBe(false);
        expect(got(h, 'p').some((x) => x.startsWith('5453f09f92ac') && x.length > 40)).toBe(false);
        expect(await udpCsumErrors(h)).toBe(0);
      }
    } finally {
      for (const h of ['a1', 'b1'] as const) await removeFirewall(h);
    }
  });

  it('(d) negative control: rewriting Q to P in output before conntrack makes the firewall drop the answers', async () => {
    // The variant records Node's flow as P; the answer, rewritten to Q at raw, then matches no flow and is new.
    expect(await dp('a1').remove()).toEqual({ ok: true });
    const file = join(lab.tmpDir, 'tracked-as-p.nft');
    const pre = (match: string): string => `    fib daddr type local udp dport ${P} ${match} udp dport set ${Q}`;
    writeFileSync(
      file,
      [
        'table inet weft_dp_weft0 {',
        '  chain pre {',
        '    type filter hook prerouting priority raw; policy accept;',
        pre('udp length >= 28 @th,72,8 0x01 @th,96,32 0x2112a442'),
        '  }',
        '  chain out {',
        '    type filter hook output priority raw; policy accept;',
        `    udp sport ${Q} udp sport set ${P}`,
        '  }',
        '}',
        '',
      ].join('\n'),
    );
    await sh('a1', ['nft', '-f', file]);
    await agent('srv').bind('obs2', 3479, OBSERVER.ip);
    await agent('srv').bind('obs3', 3480, OBSERVER.ip);
    await hostFirewall('a1');
    try {
      // Fresh observer ports, so no earlier flow can match.
      const req = stun(0x0001, txid());
      await agent('a1').send('q', OBSERVER.ip, 3479, req);
      const seen = await arrives('srv', 'obs2', req);
      expect(`${seen.from}:${seen.port}`).toBe(`${lab.addr.naWan}:${P}`);
      const answer = stun(0x0101, req.slice(16));
      await agent('srv').send('obs2', lab.addr.naWan, P, answer);
      expect(await agent('a1').waitRecv('q', (e) => e.hex === answer, ABSENT_MS)).toBeUndefined();
      expect(await firewallDropped('a1')).toBe(1);

      // The same exchange with the real data path gets its answer.
      expect(await dp('a1').apply({ publicPort: P, discoPort: Q })).toEqual({ mode: 'kernel' });
      const req2 = stun(0x0001, txid());
      await agent('a1').send('q', OBSERVER.ip, 3480, req2);
      await arrives('srv', 'obs3', req2);
      const answer2 = stun(0x0101, req2.slice(16));
      await agent('srv').send('obs3', lab.addr.naWan, P, answer2);
      await arrives('a1', 'q', answer2);
      expect(await firewallDropped('a1')).toBe(1);
    } finally {
      await removeFirewall('a1');
    }
  });

  it('after remove() disco to P stays on P; cleanupAtStart() deletes a table left behind', async () => {
    expect(await dp('a1').remove()).toEqual({ ok: true });
    expect(dp('a1').status()).toEqual({ mode: 'proxy', reason: 'removed' });
    expect(await sh('a1', ['nft', 'list', 'tables'])).not.toContain('weft_dp_weft0');
    const d = disco(tag());
    await agent('a2').send('x', '192.168.1.2', P, d);
    await arrives('a1', 'p', d);
    expect(got('a1', 'q')).not.toContain(d);

    // A crashed run's table: loaded by one instance, deleted by the next one's cleanupAtStart.
    const crashed = new NftDataPath(runnerIn('a1'), () => undefined, 'weft0');
    expect(await crashed.apply({ publicPort: P, discoPort: Q })).toEqual({ mode: 'kernel' });
    expect(await sh('a1', ['nft', 'list', 'tables'])).toContain('table inet weft_dp_weft0');
    const next = new NftDataPath(runnerIn('a1'), () => undefined, 'weft0');
    expect(await next.cleanupAtStart()).toEqual({ ok: true });
    expect(await sh('a1', ['nft', 'list', 'tables'])).not.toContain('weft_dp_weft0');
  });
});
