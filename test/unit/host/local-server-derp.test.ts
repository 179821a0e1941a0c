/**
 * The app's own server ("Create a network on this computer") runs the same composition as `weft server`
 * (server/stack.ts): its DERP relay drops the connection of a node key the control plane stops admitting
 * (node deleted or expired), and keeps relaying for the other nodes. Real DERP clients (Weft's DerpConn)
 * against the real embedded relay.
 */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_LOCAL_POLICY, LOCAL_POLICY_FILE, startLocalServer, type LocalServer } from '../../../src-main/host/local-network.ts';
import { DerpConn } from '../../../src-main/engine/relay/client.ts';
import { realClock } from '../../../src-main/engine/sys/clock.ts';
import { generateKeyPair, keyText } from '../../../src-main/protocol/crypto/keys.ts';
import { MemoryStore } from '../../../src-main/server/store/memory.ts';
import { LAST_GOOD_POLICY_FILE } from '../../../src-main/server/server.ts';

let dir: string;
let server: LocalServer | null = null;
const conns: DerpConn[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weft-local-derp-'));
});
afterEach(async () => {
  for (const c of conns.splice(0)) c.close();
  await server?.close();
  server = null;
  await rm(dir, { recursive: true, force: true });
});

function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (cond()) resolve();
      else if (Date.now() > end) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(tick, 20);
    };
    tick();
  });
}

describe("the app's local server drops a revoked node key's DERP link", () => {
  it('a deleted node loses its relay connection; the others keep relaying', async () => {
    const store = new MemoryStore();
    server = await startLocalServer({ dataDir: dir, listen: { host: '127.0.0.1', port: 0 }, openStore: async () => store, lanAddress: () => '127.0.0.1', stun: false });
    const user = store.userByName('local')!;
    const keys = [generateKeyPair(), generateKeyPair(), generateKeyPair()];
    const nodes = keys.map((k, i) =>
      store.registerForUser({ userId: user.id, machineKey: keyText('mkey', generateKeyPair().pub), nodeKey: keyText('nodekey', k.pub), hostname: `n${i}`, hostinfo: null, ephemeral: false, expiresAt: null, authKeyId: null }, Date.now()),
    );
    const events: string[][] = [[], [], []];
    const received: Uint8Array[] = [];
    keys.forEach((k, i) => {
      const c = new DerpConn({
        target: { regionId: 999, host: '127.0.0.1', port: Number(server!.url.port), secure: false, serverName: null, insecure: false },
        nodePriv: k.priv,
        clock: realClock,
        logf: () => {},
        preferred: true,
      });
      c.on('connected', () => events[i]!.push('connected'));
      c.on('disconnected', (why) => events[i]!.push(`disconnected: ${why}`));
      if (i === 2) c.on('packet', (_src, p) => received.push(p.slice()));
      conns.push(c);
      c.start();
    });
    await until('all connected', () => conns.every((c) => c.connected));

    // The admin (or the app) deletes node 0: the control plane notices, and the relay drops that key.
    store.deleteNode(nodes[0]!.id);
    await until('node 0 dropped', () => events[0]!.some((e) => e.startsWith('disconnected')));
    expect(events[0]!.find((e) => e.startsWith('disconnected'))).toMatch(/closed|error/);
    // It is not admitted again when it redials.
    await new Promise((r) => setTimeout(r, 1500));
    expect(conns[0]!.connected).toBe(false);

    // Nodes 1 and 2 were never disturbed, and 1 still relays to 2.
    expect(events[1]).toEqual(['connected']);
    expect(events[2]).toEqual(['connected']);
    expect(conns[1]!.send(keys[2]!.pub, new Uint8Array([1, 2, 3]))).toBe(true);
    await until('node 1 relays', () => received.some((p) => p.length === 3));
  }, 15_000);
});

describe("the app's local server keeps its policy in an editable file", () => {
  it('creates it without ACLs (allow all), applies an edit, and refuses a bad one while keeping the last good policy', async () => {
    const store = new MemoryStore();
    const lines: string[] = [];
    server = await startLocalServer({ dataDir: dir, listen: { host: '127.0.0.1', port: 0 }, openStore: async () => store, lanAddress: () => '127.0.0.1', stun: false, logf: (l) => void lines.push(l) });
    expect(server.policyPath).toBe(join(dir, 'server', LOCAL_POLICY_FILE));
    expect(await readFile(server.policyPath, 'utf8')).toBe(DEFAULT_LOCAL_POLICY);
    expect((await stat(server.policyPath)).mode & 0o777).toBe(0o600);
    expect(lines.join('\n')).toMatch(/policy: loaded .*policy\.hujson/);
    await writeFile(server.policyPath, '{"acls": [{"action": "accept", "src": ["local@"], "dst": ["local@:22"]}]}');
    await until('the edit is applied', () => lines.some((l) => /policy: reloaded/.test(l)), 8000);
    await writeFile(server.policyPath, '{"acls": [{"action": "accept", "src": ["local@"], "dst": ["local@:99999"]}]}');
    await until('the bad edit is refused', () => lines.some((l) => /refused; keeping the last good policy/.test(l)), 8000);
    expect(lines.find((l) => /refused; keeping/.test(l))).toMatch(/line 1, column \d+: .*99999/);
    // A restart keeps the file as the user left it, refuses it again with its line, and serves the last good policy
    // (kept in the server's data directory) instead of failing to start.
    await server.close();
    const again: string[] = [];
    server = await startLocalServer({ dataDir: dir, listen: { host: '127.0.0.1', port: 0 }, openStore: async () => store, lanAddress: () => '127.0.0.1', stun: false, logf: (l) => void again.push(l) });
    expect(await readFile(server.policyPath, 'utf8')).toMatch(/99999/);
    expect(again.join('\n')).toMatch(/policy .*policy\.hujson refused:\nline 1, column \d+: .*99999[^]*serving the last good policy/);
    // What is served is the copy of the last edit that applied (policy-server.test checks a served filter end to end).
    expect(await readFile(join(dir, 'server', LAST_GOOD_POLICY_FILE), 'utf8')).toMatch(/"local@:22"/);
  }, 20_000);
});
