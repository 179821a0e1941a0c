/**
 * Two DERP regions (two real derpers, 901 and 902) in headscale's map. Each node's home region is the one whose
 * STUN answers (the other's STUN is dropped at its router), so a1 lives in 901 and b1 in 902. Behind EDM on both
 * sides the tunnel runs through the relay: each side sends to the peer's home region over an extra DERP
 * connection, and shows that region as the path. When b1 leaves, the derpers tell a1 (PeerGone).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, type Lab } from './lab.ts';
import { startDerper, type Derper } from './derper.ts';
import { derpMapYaml, startHeadscale } from './headscale.ts';
import { PeerKit } from './peers.ts';

let lab: Lab;
let d1: Derper;
let d2: Derper;
let kit: PeerKit;

beforeAll(async () => {
  lab = await createLab();
  d1 = await startDerper(lab, { ip: '203.0.113.12', regionId: 901 });
  d2 = await startDerper(lab, { ip: '203.0.113.13', regionId: 902 });
  const mapPath = join(lab.tmpDir, 'derp-map.yaml');
  writeFileSync(mapPath, derpMapYaml([d1.node, d2.node]));
  const hs = await startHeadscale(lab, '0.29.2', { derpMapPath: mapPath });
  const user = await hs.createUser('regions');
  const key = await hs.createPreauthKey(user, { reusable: true, expiration: '1h' });
  kit = new PeerKit({ lab, loginServer: hs.url, authKey: key });
}, 120_000);

afterAll(async () => {
  await lab?.destroy();
});

/** Drops UDP from `router`'s LAN to a derper's STUN port, so that region never answers STUN from behind it. */
async function blockStun(router: 'na' | 'nb', d: Derper): Promise<void> {
  const f = join(lab.tmpDir, `nostun-${router}.nft`);
  writeFileSync(f, `table inet nostun {\n  chain c {\n    type filter hook forward priority -10; policy accept;\n    ip daddr ${d.ip} udp dport ${d.stunPort} drop\n  }\n}\n`);
  const r = await lab.exec(router, ['nft', '-f', f]);
  if (r.code !== 0) throw new Error(`nft in ${router}: ${r.stderr}`);
}

async function derpConns(d: Derper): Promise<number> {
  const v = await d.debugVars();
  const derp = v['derp'] as Record<string, unknown> | undefined;
  const n = derp?.['gauge_current_connections'];
  return typeof n === 'number' ? n : -1;
}

describe('DERP with two regions', () => {
  it('each side relays through the peer’s home region over an extra connection, and hears when the peer leaves', async () => {
    await lab.setRouter('na', { mapping: 'edm', filtering: 'apdf' });
    await lab.setRouter('nb', { mapping: 'edm', filtering: 'apdf' });
    await blockStun('na', d2);
    await blockStun('nb', d1);
    const a = await kit.upWeft('a1');
    const b = await kit.upWeft('b1');
    let bStopped = false;
    try {
      await a.proc.waitForOutput(/engine: home DERP region 901/, 15_000);
      await b.proc.waitForOutput(/engine: home DERP region 902/, 15_000);
      await kit.expectTunnel(a, b);
      // The path names the region the packets go through: the peer's home.
      const [la, lb] = await kit.waitLinks(a, b, 'relay', 5);
      expect(la).toEqual({ kind: 'relay', region: '902' });
      expect(lb).toEqual({ kind: 'relay', region: '901' });
      // a1 holds connections to both regions (home 901, plus 902 for b1), and so does b1.
      expect(a.proc.output()).toMatch(/derp: connected to region 902/);
      expect(b.proc.output()).toMatch(/derp: connected to region 901/);
      expect(await derpConns(d1)).toBe(2);
      expect(await derpConns(d2)).toBe(2);
      // b1 leaves. Region 901, where b1 had sent to a1 over its extra connection, says it is gone; region 902, its
      // home, says it is not there when a1 next sends to it (WireGuard keeps trying).
      await b.stop();
      bStopped = true;
      await a.proc.waitForOutput(new RegExp(`derp: ${b.name} is gone from region 901`), 15_000);
      await a.proc.waitForOutput(new RegExp(`derp: ${b.name} is not connected to region 902`), 20_000);
    } finally {
      if (!bStopped) await b.stop();
      await a.stop();
    }
  }, 150_000);
});
