/**
 * The in-memory ServerStore (server/store/memory.ts) against the shared store contract, plus what is specific
 * to it: every write moves changeCounter(), so the control plane notices test writes as it notices the admin CLI.
 */
import { describe, expect, it } from 'vitest';
import { hashKey, MemoryStore } from '../../../../src-main/server/store/memory.ts';
import { describeServerStore, newNode } from '../store/store-contract.ts';

describeServerStore('memory', () => new MemoryStore());

describe('MemoryStore', () => {
  it('keeps only a hash and a short prefix of a pre-auth key', () => {
    const s = new MemoryStore();
    const u = s.createUser('alice', 1);
    const { key, record } = s.createPreAuthKey({ userId: u.id, reusable: false, ephemeral: false, expiresAt: null }, 1);
    expect(key.startsWith(record.prefix)).toBe(true);
    expect(record.prefix.length).toBeLessThan(key.length / 2);
    expect(JSON.stringify(s.listPreAuthKeys())).not.toContain(key);
    expect(hashKey(key)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('moves changeCounter on every write and not on reads', () => {
    const s = new MemoryStore();
    const c0 = s.changeCounter();
    const u = s.createUser('alice', 1);
    const c1 = s.changeCounter();
    expect(c1).toBeGreaterThan(c0);
    s.listUsers();
    s.userById(u.id);
    expect(s.changeCounter()).toBe(c1);
    const n = s.registerForUser(newNode(u.id, 1), 2);
    s.updateNode(n.id, { endpoints: ['192.0.2.1:1'] });
    expect(s.changeCounter()).toBeGreaterThan(c1);
  });

  it('hands out copies: mutating a returned record does not change the store', () => {
    const s = new MemoryStore();
    const u = s.createUser('alice', 1);
    const n = s.registerForUser(newNode(u.id, 1), 2);
    n.endpoints.push('x');
    n.ipv4 = '1.2.3.4';
    expect(s.nodeById(n.id)).toMatchObject({ endpoints: [], ipv4: '100.64.0.1' });
  });
});
