/**
 * `weft server`'s control plane end to end on loopback, driven by Weft's own ControlClient: registration with
 * pre-auth keys and interactively, netmaps and their deltas, admin changes made straight in the store (as the
 * admin CLI makes them from another process), a restart on the same store, and hostile input.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ControlClient } from '../../../../src-main/engine/control/client.ts';
import { sortedPeers } from '../../../../src-main/engine/control/map-session.ts';
import { openStream } from '../../../../src-main/engine/control/transport.ts';
import { MapStreamDecoder, parseMapBody } from '../../../../src-main/protocol/control/stream-framing.ts';
import { generateKeyPair, keyText } from '../../../../src-main/protocol/crypto/keys.ts';
import { publicKeyOf } from '../../../../src-main/protocol/crypto/noise.ts';
import { openSqliteStore } from '../../../../src-main/server/store/sqlite.ts';
import { CAPVER, eventually, Harness, rawHandshake, rawPost, rawUpgrade, readUntilClose, peerNames } from './harness.ts';

let h: Harness;
afterEach(async () => {
  await h?.stop();
});

const peerNamed = (c: ControlClient, name: string) => sortedPeers(c.netmap).find((p) => p.Hostinfo?.Hostname === name);

describe('weft server: registration and maps', () => {
  it('two clients with a pre-auth key see each other with addresses, disco key, endpoints and home DERP', async () => {
    h = new Harness();
    await h.start();
    const a = await h.join('alpha', '192.0.2.1:41641', 999);
    const b = await h.join('beta', '198.51.100.2:41641', 998);

    const pb = await eventually('alpha sees beta with its endpoint', () => {
      const p = peerNamed(a, 'beta');
      return p && p.Endpoints.length > 0 && p.Online === true ? p : undefined;
    });
    expect(pb.Addresses).toEqual(['100.64.0.2/32', 'fd7a:115c:a1e0::2/128']);
    expect(pb.AllowedIPs).toEqual(pb.Addresses);
    expect(pb.Endpoints).toEqual(['198.51.100.2:41641']);
    expect(pb.DiscoKey).toBe(keyText('discokey', b.discoPublic));
    expect(pb.Key).toBe(keyText('nodekey', b.nodePublic));
    expect(pb.Machine).toBe(keyText('mkey', b.machinePublic));
    expect(pb.HomeDERP).toBe(998);

    const pa = await eventually('beta sees alpha', () => {
      const p = peerNamed(b, 'alpha');
      return p && p.Endpoints.length > 0 ? p : undefined;
    });
    expect(pa.Addresses).toEqual(['100.64.0.1/32', 'fd7a:115c:a1e0::1/128']);
    expect(pa.HomeDERP).toBe(999);
    expect(a.netmap.self?.Addresses).toEqual(['100.64.0.1/32', 'fd7a:115c:a1e0::1/128']);
    expect(a.netmap.domain).toBe('127.0.0.1');
    expect(a.netmap.packetFilter.length).toBe(1);
    expect(a.status.state).toBe('connected');
    const rec = h.store.nodeByNodeKey(keyText('nodekey', a.nodePublic))!;
    expect(rec.machineKey).toBe(keyText('mkey', a.machinePublic));
  });

  it('a third node appears as a delta; a deleted one disappears; an expired one is marked expired', async () => {
    h = new Harness();
    await h.start();
    const a = await h.join('alpha', '192.0.2.1:1');
    const b = await h.join('beta', '192.0.2.2:2');
    await eventually('alpha sees beta', () => (peerNames(a).includes('beta') ? true : undefined));
    const seqBefore = a.netmap.lastSeq;

    const c = await h.join('gamma', '192.0.2.3:3');
    await eventually('alpha and beta see gamma', () => (peerNames(a).includes('gamma') && peerNames(b).includes('gamma') ? true : undefined));
    expect(a.netmap.lastSeq).toBeGreaterThan(seqBefore); // same stream: it came as a delta, not a new session
    expect(peerNamed(a, 'gamma')!.Addresses[0]).toBe('100.64.0.3/32');

    // The admin CLI deletes gamma (a direct store write, noticed through changeCounter()).
    const gamma = h.store.nodeByNodeKey(keyText('nodekey', c.nodePublic))!;
    h.store.deleteNode(gamma.id);
    await eventually('gamma removed from alpha and beta', () => (!peerNames(a).includes('gamma') && !peerNames(b).includes('gamma') ? true : undefined));

    // …and expires beta. Beta is told (its own node, Expired) and its stream then ends: an expired node is not
    // served. Its client holds a reusable auth key, so it then registers again with it (and is no longer expired).
    const states: string[] = [];
    b.on('status', (st) => states.push(st.state));
    const beta = h.store.nodeByNodeKey(keyText('nodekey', b.nodePublic))!;
    h.store.updateNode(beta.id, { expiresAt: Date.now() - 1000 });
    await eventually('alpha sees beta expired', () => (peerNamed(a, 'beta')?.Expired ? true : undefined));
    await eventually('beta sees itself expired', () => (states.includes('expired') ? true : undefined));
    await eventually('beta registered again', () => {
      const rec = h.store.nodeById(beta.id);
      return rec && rec.expiresAt === null && b.status.state === 'connected' ? true : undefined;
    }, 8000);
    expect(states.slice(states.indexOf('expired'))).toContain('connecting'); // the stream of the expired node ended
    await eventually('alpha sees beta back, not expired', () => (peerNamed(a, 'beta') && !peerNamed(a, 'beta')!.Expired ? true : undefined));
  }, 20_000);

  it('a peer going offline is pushed as a patch, and its coming back too', async () => {
    h = new Harness();
    await h.start();
    const a = await h.join('alpha', '192.0.2.1:1');
    const dir = await h.stateDir();
    const b = await h.client('beta', { stateDir: dir });
    await b.start();
    await eventually('beta online for alpha', () => (peerNamed(a, 'beta')?.Online === true ? true : undefined));
    const seq = a.netmap.lastSeq;
    await b.stop();
    const p = await eventually('beta offline for alpha', () => {
      const x = peerNamed(a, 'beta');
      return x?.Online === false ? x : undefined;
    });
    expect(p.LastSeen).toBeDefined();
    expect(a.netmap.lastSeq).toBeGreaterThan(seq);
    // Back with the same state: the restart fast path, same node, online again.
    const again = await h.client('beta', { stateDir: dir, authKey: null });
    await again.start();
    await eventually('beta online again', () => (peerNamed(a, 'beta')?.Online === true ? true : undefined));
    expect(h.store.listNodes()).toHaveLength(2);
  });

  it('interactive registration: AuthURL, a page saying how to approve, connected after approval', async () => {
    h = new Harness();
    await h.start();
    const c = await h.client('delta', { authKey: null });
    const started = c.start();
    const url = await eventually('an AuthURL', () => c.status.authUrl ?? undefined);
    expect(c.status.state).toBe('needs-login');
    expect(url).toMatch(new RegExp(`^${h.url.origin}/register/[0-9a-f]{24}$`));
    const id = url.split('/').pop()!;

    const page = await fetch(url);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain(`weft server nodes register --key ${id} --user`);
    expect(html).toContain('delta');
    expect((await fetch(`${h.url.origin}/register/nope`)).status).toBe(404);

    expect(h.store.approvePending(id, h.userId)).toBe(true);
    await started;
    expect(c.status.state).toBe('connected');
    expect(c.netmap.self?.Addresses[0]).toBe('100.64.0.1/32');
    expect(h.store.pendingById(id)).toBeNull();
  });

  it('logout expires the node (past Expiry); an ephemeral node is deleted instead', async () => {
    h = new Harness();
    await h.start();
    const a = await h.join('alpha', '192.0.2.1:1');
    const b = await h.join('beta', '192.0.2.2:2');
    await eventually('alpha sees beta', () => (peerNames(a).includes('beta') ? true : undefined));
    await b.logout();
    const beta = h.store.listNodes().find((n) => n.hostname === 'beta')!;
    expect(beta.expiresAt).not.toBeNull();
    await eventually('alpha sees beta expired', () => (peerNamed(a, 'beta')?.Expired ? true : undefined));

    const eph = h.store.createPreAuthKey({ userId: h.userId, reusable: false, ephemeral: true, expiresAt: null }, Date.now()).key;
    const e = await h.client('eph', { authKey: eph });
    await e.start();
    await eventually('alpha sees eph', () => (peerNames(a).includes('eph') ? true : undefined));
    await e.logout();
    expect(h.store.listNodes().some((n) => n.hostname === 'eph')).toBe(false);
    await eventually('eph removed', () => (!peerNames(a).includes('eph') ? true : undefined));
  });

  it('removes an ephemeral node some time after its last stream ended', async () => {
    h = new Harness();
    await h.start({ control: { ephemeralTimeoutMs: 100 } });
    const a = await h.join('alpha', '192.0.2.1:1');
    const eph = h.store.createPreAuthKey({ userId: h.userId, reusable: true, ephemeral: true, expiresAt: null }, Date.now()).key;
    const e = await h.client('eph', { authKey: eph });
    await e.start();
    await eventually('alpha sees eph', () => (peerNames(a).includes('eph') ? true : undefined));
    await e.stop();
    await eventually('eph removed', () => (!peerNames(a).includes('eph') ? true : undefined));
    expect(h.store.listNodes().map((n) => n.hostname)).toEqual(['alpha']);
  });

  it('pushes a new DERP map to open streams', async () => {
    h = new Harness();
    await h.start();
    const a = await h.join('alpha', '192.0.2.1:1');
    h.server.control.setDerpMap({ Regions: { '900': { RegionID: 900, RegionCode: 'x', Nodes: [{ Name: '900a', RegionID: 900, HostName: 'derp.example' }] } } });
    await eventually('alpha has region 900', () => (a.netmap.derpMap?.Regions['900'] ? true : undefined));
  });

  it('refuses bad pre-auth keys with the register Error: unknown, used single-use, expired, revoked', async () => {
    h = new Harness();
    await h.start();
    const once = h.store.createPreAuthKey({ userId: h.userId, reusable: false, ephemeral: false, expiresAt: null }, Date.now());
    const expired = h.store.createPreAuthKey({ userId: h.userId, reusable: true, ephemeral: false, expiresAt: Date.now() - 1 }, Date.now());
    const revoked = h.store.createPreAuthKey({ userId: h.userId, reusable: true, ephemeral: false, expiresAt: null }, Date.now());
    h.store.expirePreAuthKey(revoked.record.id, Date.now());
    await (await h.client('first', { authKey: once.key })).start();
    for (const [key, msg] of [
      ['weft-auth-nope', /invalid pre auth key/],
      [once.key, /authkey already used/],
      [expired.key, /authkey expired/],
      [revoked.key, /authkey revoked/],
    ] as const) {
      const c = await h.client('x', { authKey: key });
      await expect(c.start()).rejects.toThrow(msg);
    }
  });

  it('a restarted server on the same store keeps node ids and addresses; clients reconnect without a new login', async () => {
    h = new Harness();
    await h.start();
    const a = await h.join('alpha', '192.0.2.1:1');
    const b = await h.join('beta', '192.0.2.2:2');
    await eventually('alpha sees beta', () => (peerNames(a).includes('beta') ? true : undefined));
    const before = h.store.listNodes().map((n) => [n.id, n.ipv4, n.ipv6]);
    const port = h.server.address.port;
    const seq = a.netmap.lastSeq;

    await h.server.close();
    await eventually('alpha notices', () => (a.status.state === 'connecting' ? true : undefined));
    await h.start({}, port);
    await eventually('alpha reconnected', () => (a.status.state === 'connected' && a.netmap.lastSeq !== seq && peerNames(a).includes('beta') ? true : undefined), 10_000);
    await eventually('beta reconnected', () => (b.status.state === 'connected' && peerNames(b).includes('alpha') ? true : undefined), 10_000);
    expect(h.store.listNodes().map((n) => [n.id, n.ipv4, n.ipv6])).toEqual(before);
    expect(h.store.listPreAuthKeys()).toHaveLength(1);
  }, 20_000);
});

describe('weft server: presence in the store, and node keys that stop being admitted', () => {
  it('stores a node online while it has a stream, offline after the grace, and clears stale presence on start', async () => {
    h = new Harness();
    await h.start();
    const a = await h.join('alpha', '192.0.2.1:1');
    const id = h.store.nodeByNodeKey(keyText('nodekey', a.nodePublic))!.id;
    await eventually('alpha stored online', () => (h.store.nodeById(id)?.online ? true : undefined));
    await a.stop();
    const off = await eventually('alpha stored offline', () => {
      const n = h.store.nodeById(id);
      return n && !n.online ? n : undefined;
    });
    expect(off.lastSeen).not.toBeNull();
    // A previous process that crashed left a node marked online; a new server starts with nobody online.
    await h.server.close();
    h.store.updateNode(id, { online: true });
    await h.start();
    expect(h.store.nodeById(id)!.online).toBe(false);
  });

  it('tells onNodeKeysRevoked listeners about deleted and expired nodes (as the admin CLI makes them)', async () => {
    h = new Harness();
    await h.start();
    const revoked: string[] = [];
    h.server.control.onNodeKeysRevoked((keys) => revoked.push(...keys));
    const a = await h.join('alpha', '192.0.2.1:1');
    const b = await h.join('beta', '192.0.2.2:2');
    const c = await h.join('gamma', '192.0.2.3:3');
    await eventually('alpha sees both', () => (peerNames(a).length === 2 ? true : undefined));
    const keyOf = (x: ControlClient): string => keyText('nodekey', x.nodePublic);
    h.store.deleteNode(h.store.nodeByNodeKey(keyOf(b))!.id);
    await eventually('beta revoked', () => (revoked.includes(keyOf(b)) ? true : undefined));
    // An expiry that passes by itself (no store write) is noticed by the periodic tick.
    h.store.updateNode(h.store.nodeByNodeKey(keyOf(c))!.id, { expiresAt: Date.now() + 300 });
    await eventually('gamma revoked once its expiry passed', () => (revoked.includes(keyOf(c)) ? true : undefined), 3000);
    expect(revoked).not.toContain(keyOf(a));
    expect(new Set(revoked).size).toBe(revoked.length); // each key once
  });
});

describe('weft server: on SQLite, with the admin writing through another connection', () => {
  it('pushes a deletion and completes an interactive registration made by "another process"', async () => {
    h = new Harness();
    const dir = await h.stateDir();
    const db = join(dir, 'weft.db');
    h.store = openSqliteStore(db);
    const admin = openSqliteStore(db); // what `weft server nodes …` opens
    try {
      await h.start();
      const a = await h.join('alpha', '192.0.2.1:1');
      const b = await h.join('beta', '192.0.2.2:2');
      await eventually('alpha sees beta', () => (peerNames(a).includes('beta') ? true : undefined));
      admin.deleteNode(admin.nodeByNodeKey(keyText('nodekey', b.nodePublic))!.id);
      await eventually('alpha no longer sees beta', () => (!peerNames(a).includes('beta') ? true : undefined));

      const c = await h.client('gamma', { authKey: null });
      const started = c.start();
      const url = await eventually('an AuthURL', () => c.status.authUrl ?? undefined);
      expect(admin.approvePending(url.split('/').pop()!, admin.userByName('alice')!.id)).toBe(true);
      await started;
      await eventually('alpha sees gamma', () => (peerNames(a).includes('gamma') ? true : undefined));
    } finally {
      await h.stop();
      admin.close();
      h.store.close();
    }
  });
});

describe('weft server: hostile input', () => {
  it('answers /key and /health as headscale does', async () => {
    h = new Harness();
    await h.start();
    const k = await fetch(`${h.url.origin}/key?v=${CAPVER}`);
    expect(k.status).toBe(200);
    expect(await k.json()).toEqual({ legacyPublicKey: `mkey:${'0'.repeat(64)}`, publicKey: keyText('mkey', publicKeyOf(h.noiseKey)) });
    expect((await fetch(`${h.url.origin}/key`)).status).toBe(400);
    expect((await fetch(`${h.url.origin}/key?v=x`)).status).toBe(400);
    expect(await (await fetch(`${h.url.origin}/key?v=20`)).text()).toBe('');
    expect(await (await fetch(`${h.url.origin}/health`)).json()).toEqual({ status: 'pass' });
  });

  it('refuses malformed initiations cleanly and keeps serving', async () => {
    h = new Harness();
    await h.start();
    const a = await h.join('alpha', '192.0.2.1:1');

    expect((await rawUpgrade(h.url, null)).status).toBe(400);
    expect((await rawUpgrade(h.url, '***')).status).toBe(400);
    expect((await rawUpgrade(h.url, 'AAAA', { Upgrade: 'websocket' })).status).toBe(400);
    // Wrong size: 101, then a Noise error frame, then EOF.
    const short = await rawUpgrade(h.url, Buffer.alloc(50).toString('base64'));
    expect(short.status).toBe(101);
    const r1 = await readUntilClose(short.socket!, short.head);
    expect(r1.closed).toBe(true);
    expect(r1.bytes[0]).toBe(3);
    expect(r1.bytes.subarray(3).toString()).toBe('wrong handshake initiation size');
    // Right size, garbage crypto: 101 then EOF.
    const junk = Buffer.alloc(101, 7);
    junk.writeUInt16BE(CAPVER, 0);
    junk[2] = 1;
    junk.writeUInt16BE(96, 3);
    const bad = await rawUpgrade(h.url, junk.toString('base64'));
    expect(bad.status).toBe(101);
    const r2 = await readUntilClose(bad.socket!, bad.head);
    expect(r2).toEqual({ bytes: Buffer.alloc(0), closed: true });
    // A capability version below the minimum: 101 then EOF.
    const old = await rawHandshake(h.url, publicKeyOf(h.noiseKey), 90).catch((e: Error) => e);
    expect(old).toBeInstanceOf(Error);

    await (await h.client('beta')).start();
    await eventually('alpha still gets deltas', () => (peerNames(a).includes('beta') ? true : undefined));
  });

  it('drops a connection that sends an oversize Noise frame, and only that one', async () => {
    h = new Harness();
    await h.start();
    const a = await h.join('alpha', '192.0.2.1:1');
    const { socket, rest } = await rawHandshake(h.url, publicKeyOf(h.noiseKey));
    socket.write(Buffer.from([4, 0xff, 0xff, ...new Array<number>(64).fill(0)]));
    const r = await readUntilClose(socket, rest);
    expect(r.closed).toBe(true);
    await eventually('no connection left but alpha’s', () => (h.server.control.stats().connections === 1 ? true : undefined));
    await (await h.client('beta')).start();
    await eventually('alpha still gets deltas', () => (peerNames(a).includes('beta') ? true : undefined));
  });

  it('answers garbage JSON, oversize bodies and unknown paths with clean errors on a working connection', async () => {
    h = new Harness();
    await h.start();
    const c = await h.dial();
    expect(await rawPost(c.session, '/machine/register', '{not json')).toMatchObject({ status: 400, text: expect.stringMatching(/invalid JSON/) });
    expect(await rawPost(c.session, '/machine/map', '[1,2')).toMatchObject({ status: 400 });
    expect(await rawPost(c.session, '/machine/map', '{"Version":130}')).toMatchObject({ status: 400, text: expect.stringMatching(/NodeKey/) });
    expect(await rawPost(c.session, '/machine/register', new Uint8Array([0xff, 0xfe]))).toMatchObject({ status: 400 });
    expect((await rawPost(c.session, '/machine/register', 'x'.repeat((1 << 20) + 10))).status).toBe(413);
    expect((await rawPost(c.session, '/machine/whoami', '{}')).status).toBe(501);
    expect((await rawPost(c.session, '/elsewhere', '{}')).status).toBe(404);
    // The same connection still registers fine afterwards.
    const nodeKey = keyText('nodekey', generateKeyPair().pub);
    const ok = await rawPost(c.session, '/machine/register', JSON.stringify({ Version: CAPVER, NodeKey: nodeKey, Auth: { AuthKey: h.key }, Hostinfo: { Hostname: 'raw' } }));
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.text)).toMatchObject({ MachineAuthorized: true, Error: '' });
    // An old client version is refused with 400.
    expect((await rawPost(c.session, '/machine/map', JSON.stringify({ Version: 90, NodeKey: nodeKey }))).status).toBe(400);
  });

  it('refuses a map request for a node key this machine does not own', async () => {
    h = new Harness();
    await h.start();
    const a = await h.join('alpha', '192.0.2.1:1');
    const thief = await h.dial();
    const r = await rawPost(thief.session, '/machine/map', JSON.stringify({ Version: CAPVER, NodeKey: keyText('nodekey', a.nodePublic), Stream: true }));
    expect(r.status).toBe(404);
    expect(r.text).toMatch(/does not match/);
    const unknown = await rawPost(thief.session, '/machine/map', JSON.stringify({ Version: CAPVER, NodeKey: keyText('nodekey', generateKeyPair().pub) }));
    expect(unknown.status).toBe(404);
    // Registering someone else's node key without its machine key is refused too.
    const reg = await rawPost(thief.session, '/machine/register', JSON.stringify({ Version: CAPVER, NodeKey: keyText('nodekey', a.nodePublic), Auth: { AuthKey: h.key } }));
    expect(JSON.parse(reg.text)).toMatchObject({ Error: 'node exists with a different machine key' });
    await (await h.client('beta')).start();
    await eventually('alpha still works', () => (peerNames(a).includes('beta') ? true : undefined));
  });

  it('rate-limits requests per connection', async () => {
    h = new Harness();
    await h.start({ control: { rateBurst: 3, ratePerSecond: 0.001 } });
    const c = await h.dial();
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await rawPost(c.session, '/machine/whoami', '{}')).status);
    expect(statuses).toEqual([501, 501, 501, 429, 429]);
  });

  it('sends keep-alives on an idle stream, uncompressed when the client does not ask for zstd', async () => {
    h = new Harness();
    await h.start({ control: { keepAliveMs: 50, keepAliveJitterMs: 0 } });
    const machine = generateKeyPair();
    const c = await h.dial(machine.priv);
    const nodeKey = keyText('nodekey', generateKeyPair().pub);
    await rawPost(c.session, '/machine/register', JSON.stringify({ Version: CAPVER, NodeKey: nodeKey, Auth: { AuthKey: h.key }, Hostinfo: { Hostname: 'raw' } }));
    const msgs: unknown[] = [];
    const dec = new MapStreamDecoder();
    const s = openStream(c.session, '/machine/map', { Version: CAPVER, NodeKey: nodeKey, Stream: true }, {
      onStatus: () => {},
      onData: (chunk) => {
        const bodies = dec.push(chunk);
        if (!Array.isArray(bodies)) throw new Error(bodies.reason);
        for (const b of bodies) {
          const p = parseMapBody(b, false);
          if (p.kind === 'ok') msgs.push(p.value);
        }
      },
      onEnd: () => {},
    });
    await eventually('two keep-alives', () => (msgs.filter((m) => (m as { KeepAlive?: boolean }).KeepAlive).length >= 2 ? true : undefined));
    expect(msgs[0]).toMatchObject({ Node: { Name: 'raw', Addresses: ['100.64.0.1/32', 'fd7a:115c:a1e0::1/128'] }, PacketFilters: { base: [{ SrcIPs: ['*'] }] } });
    expect(msgs[0]).not.toHaveProperty('Peers');
    expect(msgs[1]).toEqual({ KeepAlive: true });
    s.cancel();
  });
});
