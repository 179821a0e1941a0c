/**
 * The behaviour every ServerStore must have, as one suite: sqlite.test.ts runs it on the SQLite store, and the
 * in-memory store's test can run it too (`describeServerStore('memory', () => createMemoryStore())`).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { NewNode, NodeRecord, ServerStore } from '../../../../src-main/server/store/types.ts';

const T0 = 1_700_000_000_000;

/** A stored node as the store returns it (node `id` of user 1, offline, addresses 100.64.0.<id>), for pure tests. */
export function nodeRecord(id: number, extra: Partial<NodeRecord> = {}): NodeRecord {
  return {
    id,
    userId: 1,
    machineKey: `mkey:${String(id).padStart(64, '0')}`,
    nodeKey: `nodekey:${String(id).padStart(64, '0')}`,
    discoKey: null,
    hostname: `n${id}`,
    givenName: `n${id}`,
    ipv4: `100.64.0.${id}`,
    ipv6: `fd7a:115c:a1e0::${id}`,
    endpoints: [],
    hostinfo: null,
    homeDerp: 0,
    ephemeral: false,
    createdAt: 0,
    expiresAt: null,
    lastSeen: null,
    online: false,
    authKeyId: null,
    tags: [],
    approvedRoutes: [],
    primaryRoutes: [],
    ...extra,
  };
}

export function newNode(userId: number, i: number | string, extra: Partial<NewNode> = {}): NewNode {
  return {
    userId,
    machineKey: `mkey:${String(i).padStart(64, '0')}`,
    nodeKey: `nodekey:${String(i).padStart(64, '0')}`,
    hostname: `host-${i}`,
    hostinfo: null,
    ephemeral: false,
    expiresAt: null,
    authKeyId: null,
    ...extra,
  };
}

/** What registerWithAuthKey takes: a NewNode without the fields the key decides. */
export function keyNode(i: number | string, extra: Partial<NewNode> = {}): Omit<NewNode, 'userId' | 'ephemeral' | 'authKeyId'> {
  const { userId: _u, ephemeral: _e, authKeyId: _a, ...rest } = newNode(0, i, extra);
  return rest;
}

export function describeServerStore(name: string, open: () => ServerStore): void {
  describe(`ServerStore contract (${name})`, () => {
    let s: ServerStore;
    beforeEach(() => {
      s = open();
    });
    afterEach(() => {
      s.close();
    });

    describe('users', () => {
      it('creates, lists and finds users by name and id', () => {
        const a = s.createUser('alice', T0);
        const b = s.createUser('bob', T0 + 1);
        expect(a).toEqual({ id: a.id, name: 'alice', createdAt: T0 });
        expect(b.id).not.toBe(a.id);
        expect(s.listUsers()).toEqual([a, b]);
        expect(s.userByName('bob')).toEqual(b);
        expect(s.userById(a.id)).toEqual(a);
        expect(s.userByName('carol')).toBeNull();
        expect(s.userById(999)).toBeNull();
      });

      it('refuses a second user with the same name', () => {
        s.createUser('alice', T0);
        expect(() => s.createUser('alice', T0)).toThrow();
        expect(s.listUsers()).toHaveLength(1);
      });
    });

    describe('pre-auth keys', () => {
      it('returns a 48-hex-character key once and lists only its prefix', () => {
        const u = s.createUser('alice', T0);
        const { key, record } = s.createPreAuthKey({ userId: u.id, reusable: true, ephemeral: true, expiresAt: T0 + 3600_000 }, T0);
        expect(key).toMatch(/^[0-9a-f]{48}$/);
        expect(record).toEqual({
          id: record.id,
          userId: u.id,
          prefix: key.slice(0, 8),
          reusable: true,
          ephemeral: true,
          createdAt: T0,
          expiresAt: T0 + 3600_000,
          usedAt: null,
          revokedAt: null,
        });
        expect(JSON.stringify(s.listPreAuthKeys())).not.toContain(key);
        expect(s.listPreAuthKeys()).toEqual([record]);
      });

      it('lists keys per user', () => {
        const a = s.createUser('alice', T0);
        const b = s.createUser('bob', T0);
        const ka = s.createPreAuthKey({ userId: a.id, reusable: false, ephemeral: false, expiresAt: null }, T0).record;
        const kb = s.createPreAuthKey({ userId: b.id, reusable: false, ephemeral: false, expiresAt: null }, T0).record;
        expect(s.listPreAuthKeys(a.id)).toEqual([ka]);
        expect(s.listPreAuthKeys(b.id)).toEqual([kb]);
        expect(s.listPreAuthKeys().map((k) => k.id)).toEqual([ka.id, kb.id]);
      });

      it('expires (revokes) a key once, keeping the first time', () => {
        const u = s.createUser('alice', T0);
        const { record } = s.createPreAuthKey({ userId: u.id, reusable: false, ephemeral: false, expiresAt: null }, T0);
        expect(s.expirePreAuthKey(record.id, T0 + 5)).toBe(true);
        expect(s.expirePreAuthKey(record.id, T0 + 9)).toBe(true);
        expect(s.listPreAuthKeys()[0]!.revokedAt).toBe(T0 + 5);
        expect(s.expirePreAuthKey(record.id + 100, T0)).toBe(false);
      });

      it('redeems a single-use key once; the same machine may retry, another may not', () => {
        const u = s.createUser('alice', T0);
        const { key, record } = s.createPreAuthKey({ userId: u.id, reusable: false, ephemeral: false, expiresAt: null }, T0);
        const r1 = s.registerWithAuthKey(key, keyNode(1), T0 + 1);
        if (!('node' in r1)) throw new Error(`expected a node, got ${r1.error}`);
        expect(r1.node).toMatchObject({ userId: u.id, authKeyId: record.id, ephemeral: false, ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0::1' });
        expect(s.listPreAuthKeys()[0]!.usedAt).toBe(T0 + 1);
        expect(s.registerWithAuthKey(key, keyNode(2), T0 + 2)).toEqual({ error: 'used' });
        const retry = s.registerWithAuthKey(key, keyNode(1, { nodeKey: 'nodekey:retry' }), T0 + 3);
        expect(retry).toEqual({ node: { ...r1.node, nodeKey: 'nodekey:retry' } });
        expect(s.listPreAuthKeys()[0]!.usedAt).toBe(T0 + 1);
        expect(s.listNodes()).toHaveLength(1);
      });

      it('redeems a reusable key for many machines and never marks it used', () => {
        const u = s.createUser('alice', T0);
        const { key } = s.createPreAuthKey({ userId: u.id, reusable: true, ephemeral: true, expiresAt: null }, T0);
        for (let i = 1; i <= 3; i++) expect(s.registerWithAuthKey(key, keyNode(i), T0)).toMatchObject({ node: { ephemeral: true, userId: u.id } });
        expect(s.listNodes()).toHaveLength(3);
        expect(s.listPreAuthKeys()[0]!.usedAt).toBeNull();
      });

      it('rejects unknown, expired and revoked keys without registering anything', () => {
        const u = s.createUser('alice', T0);
        const exp = s.createPreAuthKey({ userId: u.id, reusable: true, ephemeral: false, expiresAt: T0 + 10 }, T0);
        const rev = s.createPreAuthKey({ userId: u.id, reusable: true, ephemeral: false, expiresAt: null }, T0);
        s.expirePreAuthKey(rev.record.id, T0);
        expect(s.registerWithAuthKey('0'.repeat(48), keyNode(1), T0)).toEqual({ error: 'unknown' });
        expect(s.registerWithAuthKey(exp.record.prefix, keyNode(1), T0)).toEqual({ error: 'unknown' });
        expect(s.registerWithAuthKey(exp.key, keyNode(1), T0 + 9)).toMatchObject({ node: {} });
        expect(s.registerWithAuthKey(exp.key, keyNode(2), T0 + 10)).toEqual({ error: 'expired' });
        expect(s.registerWithAuthKey(rev.key, keyNode(3), T0)).toEqual({ error: 'revoked' });
        expect(s.listNodes().map((n) => n.machineKey)).toEqual([keyNode(1).machineKey]);
      });

      it('does not use up a single-use key that was rejected as expired', () => {
        const u = s.createUser('alice', T0);
        const k = s.createPreAuthKey({ userId: u.id, reusable: false, ephemeral: false, expiresAt: T0 }, T0);
        expect(s.registerWithAuthKey(k.key, keyNode(1), T0)).toEqual({ error: 'expired' });
        expect(s.listPreAuthKeys()[0]!.usedAt).toBeNull();
      });
    });

    describe('registration and addresses', () => {
      it('allocates the lowest free address pair, and reuses a deleted node’s addresses', () => {
        const u = s.createUser('alice', T0);
        const nodes = [1, 2, 3].map((i) => s.registerForUser(newNode(u.id, i), T0));
        expect(nodes.map((n) => [n.ipv4, n.ipv6])).toEqual([
          ['100.64.0.1', 'fd7a:115c:a1e0::1'],
          ['100.64.0.2', 'fd7a:115c:a1e0::2'],
          ['100.64.0.3', 'fd7a:115c:a1e0::3'],
        ]);
        expect(s.deleteNode(nodes[1]!.id)).toBe(true);
        const n4 = s.registerForUser(newNode(u.id, 4), T0);
        expect([n4.ipv4, n4.ipv6]).toEqual(['100.64.0.2', 'fd7a:115c:a1e0::2']);
        expect(n4.id).not.toBe(nodes[1]!.id);
        expect(s.registerForUser(newNode(u.id, 5), T0).ipv4).toBe('100.64.0.4');
      });

      it('gives every node distinct addresses and a unique DNS-safe name', () => {
        const u = s.createUser('alice', T0);
        const nodes = Array.from({ length: 100 }, (_, i) => s.registerForUser(newNode(u.id, i, { hostname: i < 3 ? 'My Laptop' : `h${i}` }), T0));
        expect(new Set(nodes.map((n) => n.ipv4)).size).toBe(100);
        expect(new Set(nodes.map((n) => n.ipv6)).size).toBe(100);
        expect(new Set(nodes.map((n) => n.givenName)).size).toBe(100);
        expect(nodes.slice(0, 3).map((n) => n.givenName)).toEqual(['my-laptop', 'my-laptop-2', 'my-laptop-3']);
        expect(nodes[0]!.hostname).toBe('My Laptop');
        // 100.64.0.83 is skipped: its IPv6 mirror would be fd7a:115c:a1e0::53, Tailscale's service address.
        expect(nodes.map((n) => n.ipv4)).not.toContain('100.64.0.83');
      });

      it('re-registration keeps the id, addresses and given name and updates the rest', () => {
        const a = s.createUser('alice', T0);
        const b = s.createUser('bob', T0);
        const n1 = s.registerForUser(newNode(a.id, 1, { hostinfo: '{"Hostname":"x"}' }), T0);
        s.registerForUser(newNode(a.id, 2), T0);
        const again = s.registerForUser(newNode(b.id, 1, { nodeKey: 'nodekey:new', hostname: 'renamed', expiresAt: T0 + 99, ephemeral: true }), T0 + 5);
        expect(again).toEqual({
          ...n1,
          userId: b.id,
          nodeKey: 'nodekey:new',
          hostname: 'renamed',
          ephemeral: true,
          expiresAt: T0 + 99,
        });
        expect(s.nodeByNodeKey(n1.nodeKey)).toBeNull();
        expect(s.nodeByNodeKey('nodekey:new')?.id).toBe(n1.id);
        expect(s.listNodes()).toHaveLength(2);
      });

      it('re-registration with a pre-auth key keeps the node too', () => {
        const u = s.createUser('alice', T0);
        const n1 = s.registerForUser(newNode(u.id, 1), T0);
        const k = s.createPreAuthKey({ userId: u.id, reusable: false, ephemeral: false, expiresAt: null }, T0);
        const r = s.registerWithAuthKey(k.key, keyNode(1, { nodeKey: 'nodekey:rotated' }), T0 + 1);
        expect(r).toEqual({ node: { ...n1, nodeKey: 'nodekey:rotated', authKeyId: k.record.id } });
      });
    });

    describe('pending registrations', () => {
      it('adds, finds, approves and deletes', () => {
        const u = s.createUser('alice', T0);
        const p = { id: 'reg-abc_123', machineKey: 'mkey:1', nodeKey: 'nodekey:1', hostname: 'laptop', hostinfo: '{}', createdAt: T0 };
        s.addPending(p);
        expect(s.pendingById(p.id)).toEqual({ ...p, approvedUserId: null });
        expect(s.approvePending(p.id, u.id)).toBe(true);
        expect(s.pendingById(p.id)?.approvedUserId).toBe(u.id);
        expect(s.approvePending('nope', u.id)).toBe(false);
        expect(s.approvePending(p.id, 999)).toBe(false);
        s.deletePending(p.id);
        expect(s.pendingById(p.id)).toBeNull();
        s.deletePending(p.id);
      });

      it('counts them, and sweeps those created before a time', () => {
        const p = (id: string, createdAt: number) => ({ id, machineKey: `mkey:${id}`, nodeKey: `nodekey:${id}`, hostname: id, hostinfo: null, createdAt });
        expect(s.countPending()).toBe(0);
        s.addPending(p('old1', T0));
        s.addPending(p('old2', T0 + 1));
        s.addPending(p('new', T0 + 10));
        expect(s.countPending()).toBe(3);
        expect(s.sweepPending(T0 + 10)).toBe(2);
        expect(s.countPending()).toBe(1);
        expect(s.pendingById('new')).not.toBeNull();
        expect(s.pendingById('old1')).toBeNull();
        expect(s.sweepPending(T0 + 10)).toBe(0);
      });
    });

    describe('nodes', () => {
      it('finds nodes by id, machine key and node key, and lists them per user', () => {
        const a = s.createUser('alice', T0);
        const b = s.createUser('bob', T0);
        const n1 = s.registerForUser(newNode(a.id, 1), T0);
        const n2 = s.registerForUser(newNode(b.id, 2), T0);
        expect(n1).toMatchObject({ discoKey: null, endpoints: [], hostinfo: null, homeDerp: 0, lastSeen: null, createdAt: T0, authKeyId: null });
        expect(s.nodeById(n1.id)).toEqual(n1);
        expect(s.nodeByMachineKey(n2.machineKey)).toEqual(n2);
        expect(s.nodeByNodeKey(n2.nodeKey)).toEqual(n2);
        expect(s.nodeById(999)).toBeNull();
        expect(s.nodeByMachineKey('mkey:none')).toBeNull();
        expect(s.listNodes()).toEqual([n1, n2]);
        expect(s.listNodes(a.id)).toEqual([n1]);
        expect(s.listNodes(b.id)).toEqual([n2]);
      });

      it('stores tags, and keeps them when the node registers again', () => {
        const u = s.createUser('alice', T0);
        const n = s.registerForUser(newNode(u.id, 1), T0);
        expect(n.tags).toEqual([]);
        expect(s.updateNode(n.id, { tags: ['tag:server', 'tag:web'] })?.tags).toEqual(['tag:server', 'tag:web']);
        const again = s.registerForUser(newNode(u.id, 1, { nodeKey: 'nodekey:new' }), T0 + 1);
        expect(again.id).toBe(n.id);
        expect(again.tags).toEqual(['tag:server', 'tag:web']);
        expect(s.updateNode(n.id, { tags: [] })?.tags).toEqual([]);
      });

      it('finds another node holding a disco key', () => {
        const u = s.createUser('alice', T0);
        const n1 = s.registerForUser(newNode(u.id, 1), T0);
        const n2 = s.registerForUser(newNode(u.id, 2), T0);
        expect(s.otherNodeWithDiscoKey('discokey:1', n2.id)).toBeNull();
        s.updateNode(n1.id, { discoKey: 'discokey:1' });
        expect(s.otherNodeWithDiscoKey('discokey:1', n2.id)).toBe(n1.id);
        expect(s.otherNodeWithDiscoKey('discokey:1', n1.id)).toBeNull();
        expect(s.otherNodeWithDiscoKey('discokey:2', n2.id)).toBeNull();
      });

      it('patches only the given fields', () => {
        const u = s.createUser('alice', T0);
        const n = s.registerForUser(newNode(u.id, 1), T0);
        const p1 = s.updateNode(n.id, { discoKey: 'discokey:1', endpoints: ['192.0.2.1:41641', '[2001:db8::1]:41641'], homeDerp: 2, lastSeen: T0 + 1 });
        expect(p1).toEqual({ ...n, discoKey: 'discokey:1', endpoints: ['192.0.2.1:41641', '[2001:db8::1]:41641'], homeDerp: 2, lastSeen: T0 + 1 });
        const p2 = s.updateNode(n.id, { nodeKey: 'nodekey:b', hostinfo: '{"OS":"linux"}', expiresAt: T0 + 7 });
        expect(p2).toEqual({ ...p1, nodeKey: 'nodekey:b', hostinfo: '{"OS":"linux"}', expiresAt: T0 + 7 });
        const p3 = s.updateNode(n.id, { discoKey: null, hostinfo: null, expiresAt: null, lastSeen: null, endpoints: [] });
        expect(p3).toEqual({ ...p2, discoKey: null, hostinfo: null, expiresAt: null, lastSeen: null, endpoints: [] });
        expect(s.updateNode(n.id, {})).toEqual(p3);
        expect(s.nodeById(n.id)).toEqual(p3);
        expect(s.updateNode(999, { lastSeen: T0 })).toBeNull();
      });

      it('deletes a node once', () => {
        const u = s.createUser('alice', T0);
        const n = s.registerForUser(newNode(u.id, 1), T0);
        expect(s.deleteNode(n.id)).toBe(true);
        expect(s.deleteNode(n.id)).toBe(false);
        expect(s.nodeById(n.id)).toBeNull();
        expect(s.nodeByMachineKey(n.machineKey)).toBeNull();
      });

      it('has a change counter', () => {
        expect(typeof s.changeCounter()).toBe('number');
      });
    });
  });
}
