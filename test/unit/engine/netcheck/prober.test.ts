/**
 * The prober over real loopback sockets against Weft's own STUN server (RFC 5780 on 127.0.0.1 + 127.0.0.2).
 * There is no NAT on loopback, so this pins the "open" path, the RFC 5780 plumbing and socket cleanup; the
 * NAT behaviours themselves are tested in the lab (test/lab/netcheck.test.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runNetcheck } from '../../../../src-main/engine/netcheck/prober.ts';
import { startStunServer, type StunServer } from '../../../../src-main/server/stun/server.ts';
import { bindUdp } from '../../../../src-main/engine/io/udp.ts';

let srv: StunServer;
let port: number;

beforeAll(async () => {
  // Find two free ports by binding and releasing them, then start the four-socket server on them.
  const probe = await Promise.all([bindUdp({ address: '127.0.0.1' }), bindUdp({ address: '127.0.0.2' })]);
  const ports = probe.map((s) => s.localPort());
  await Promise.all(probe.map((s) => s.close()));
  port = ports[0]!;
  srv = await startStunServer({ primary: { ip: '127.0.0.1', port: ports[0]! }, alt: { ip: '127.0.0.2', port: ports[1]! } });
});

afterAll(async () => {
  await srv?.close();
});

describe('runNetcheck on loopback', () => {
  it('runs the RFC 5780 tests and reports an open, unfiltered host', async () => {
    const r = await runNetcheck({ targets: [{ addr: { ip: '127.0.0.1', port }, regionId: 7 }] });
    expect(r.udp).toBe(true);
    expect(r.rfc5780).toBe(true);
    expect(r.behindNat).toBe(false);
    expect(r.mapping).toBe('endpoint-independent');
    expect(r.filtering).toBe('endpoint-independent');
    expect(r.natType).toBe('open');
    expect(r.hairpinning).toBeNull();
    expect(r.portPreserved).toBe(true);
    expect(r.regionLatencyMs['7']).toBeGreaterThanOrEqual(0);
    expect(r.preferredRegion).toBe(7);
    expect(srv.stats().answered).toBeGreaterThanOrEqual(5);
  });

  it('reports udp-blocked when nothing answers, within the STUN timeout', async () => {
    const dead = await bindUdp({ address: '127.0.0.1' }); // a port that swallows everything
    const t0 = performance.now();
    const r = await runNetcheck({ targets: [{ addr: { ip: '127.0.0.1', port: dead.localPort() }, regionId: null }], stun: { timeoutMs: 300, retransmitMs: [0, 100] } });
    await dead.close();
    expect(r.udp).toBe(false);
    expect(r.natType).toBe('udp-blocked');
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('binds the main socket to the requested port', async () => {
    const s = await bindUdp({ address: '127.0.0.1' });
    const want = s.localPort();
    await s.close();
    const r = await runNetcheck({ targets: [{ addr: { ip: '127.0.0.1', port }, regionId: null }], localPort: want });
    expect(r.localPort).toBe(want);
    expect(r.servers[0]?.mapped).toBe(`127.0.0.1:${want}`);
  });
});
