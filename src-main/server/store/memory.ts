/**
 * An in-memory ServerStore (store/types.ts) for unit tests and throwaway servers. It keeps every rule of the
 * interface: pre-auth keys stored only as a SHA-256 hash plus a short clear prefix, single-use redemption and
 * node insertion in one step (JavaScript runs it without interleaving), addresses allocated lowest-free in
 * 100.64.0.0/10 and fd7a:115c:a1e0::/48 by the rules the SQLite store shares (allocate.ts).
 *
 * `changeCounter()` increases on every write. With SQLite it counts other processes' writes; here there is no
 * other process, so a test that writes to the store directly plays the admin CLI and the server notices it
 * the same way.
 *
 * Records handed out are copies: callers cannot change the store by mutating them.
 */
import { createHash, randomBytes } from 'node:crypto';
import { hostOfIpv4, ipv4ForHost, ipv6ForHost, lowestFreeHost, uniqueGivenName } from './allocate.ts';
import type { NewNode, NodePatch, NodeRecord, PendingRegistration, PreAuthKeyRecord, RedeemError, ServerStore, UserRecord } from './types.ts';

/** Plaintext pre-auth keys are 48 hex characters (as the SQLite store makes them); the first 8 stay in clear. */
const KEY_BYTES = 24;
const KEY_PREFIX_CHARS = 8;

export function hashKey(plaintext: string): string {
  return createHash('sha256').update(plaintext, 'utf8').digest('hex');
}

// ---------------------------------------------------------------------------------------------------------

interface StoredKey {
  record: PreAuthKeyRecord;
  hash: string;
}

export class MemoryStore implements ServerStore {
  // Owned by this instance; every write goes through a method below and bumps `changes`.
  readonly #users = new Map<number, UserRecord>();
  readonly #keys = new Map<number, StoredKey>();
  readonly #nodes = new Map<number, NodeRecord>();
  readonly #pending = new Map<string, PendingRegistration>();
  #nextUser = 1;
  #nextKey = 1;
  #nextNode = 1;
  #changes = 0;
  #closed = false;

  #write(): void {
    if (this.#closed) throw new Error('store: closed');
    this.#changes++;
  }

  // users ---------------------------------------------------------------------------------------------------

  createUser(name: string, now: number): UserRecord {
    if (!name) throw new Error('store: a user needs a name');
    if (this.userByName(name)) throw new Error(`store: user "${name}" already exists`);
    this.#write();
    const u: UserRecord = { id: this.#nextUser++, name, createdAt: now };
    this.#users.set(u.id, u);
    return { ...u };
  }

  listUsers(): UserRecord[] {
    return [...this.#users.values()].map((u) => ({ ...u }));
  }

  userByName(name: string): UserRecord | null {
    for (const u of this.#users.values()) if (u.name === name) return { ...u };
    return null;
  }

  userById(id: number): UserRecord | null {
    const u = this.#users.get(id);
    return u ? { ...u } : null;
  }

  // pre-auth keys -------------------------------------------------------------------------------------------

  createPreAuthKey(o: { userId: number; reusable: boolean; ephemeral: boolean; expiresAt: number | null }, now: number): { key: string; record: PreAuthKeyRecord } {
    if (!this.#users.has(o.userId)) throw new Error(`store: no user with id ${o.userId}`);
    this.#write();
    const key = randomBytes(KEY_BYTES).toString('hex');
    const prefix = key.slice(0, KEY_PREFIX_CHARS);
    const record: PreAuthKeyRecord = {
      id: this.#nextKey++,
      userId: o.userId,
      prefix,
      reusable: o.reusable,
      ephemeral: o.ephemeral,
      createdAt: now,
      expiresAt: o.expiresAt,
      usedAt: null,
      revokedAt: null,
    };
    this.#keys.set(record.id, { record, hash: hashKey(key) });
    return { key, record: { ...record } };
  }

  listPreAuthKeys(userId?: number): PreAuthKeyRecord[] {
    return [...this.#keys.values()].filter((k) => userId === undefined || k.record.userId === userId).map((k) => ({ ...k.record }));
  }

  expirePreAuthKey(id: number, now: number): boolean {
    const k = this.#keys.get(id);
    if (!k) return false;
    this.#write();
    k.record = { ...k.record, revokedAt: k.record.revokedAt ?? now };
    return true;
  }

  #keyByPlaintext(plaintext: string): StoredKey | null {
    const h = hashKey(plaintext);
    for (const k of this.#keys.values()) if (k.hash === h) return k;
    return null;
  }

  registerWithAuthKey(plaintextKey: string, node: Omit<NewNode, 'userId' | 'ephemeral' | 'authKeyId'>, now: number): { node: NodeRecord } | { error: RedeemError } {
    const k = this.#keyByPlaintext(plaintextKey);
    if (!k) return { error: 'unknown' };
    const r = k.record;
    if (r.revokedAt !== null) return { error: 'revoked' };
    if (r.expiresAt !== null && r.expiresAt <= now) return { error: 'expired' };
    const existing = this.#byMachine(node.machineKey);
    // A single-use key already spent still re-registers the node it created (a container restarting with the
    // same key and machine key), as headscale allows; any other use is refused.
    const sameNode = existing !== null && existing.authKeyId === r.id;
    if (!r.reusable && r.usedAt !== null && !sameNode) return { error: 'used' };
    if (!r.reusable && r.usedAt === null) {
      k.record = { ...r, usedAt: now };
    }
    const rec = this.#upsert({ ...node, userId: r.userId, ephemeral: r.ephemeral, authKeyId: r.id }, now);
    return { node: rec };
  }

  registerForUser(node: NewNode, now: number): NodeRecord {
    if (!this.#users.has(node.userId)) throw new Error(`store: no user with id ${node.userId}`);
    return this.#upsert(node, now);
  }

  #byMachine(machineKey: string): NodeRecord | null {
    for (const n of this.#nodes.values()) if (n.machineKey === machineKey) return n;
    return null;
  }

  /** Inserts a node with fresh addresses, or updates the one with this machine key (same id and addresses). */
  #upsert(n: NewNode, now: number): NodeRecord {
    this.#write();
    const existing = this.#byMachine(n.machineKey);
    if (existing) {
      const updated: NodeRecord = {
        ...existing,
        userId: n.userId,
        nodeKey: n.nodeKey,
        hostname: n.hostname,
        hostinfo: n.hostinfo ?? existing.hostinfo,
        ephemeral: n.ephemeral,
        expiresAt: n.expiresAt,
        authKeyId: n.authKeyId,
      };
      this.#nodes.set(existing.id, updated);
      return this.#copy(updated)!;
    }
    const hosts: number[] = [];
    const names = new Set<string>();
    for (const x of this.#nodes.values()) {
      const h = hostOfIpv4(x.ipv4);
      if (h !== null) hosts.push(h);
      names.add(x.givenName);
    }
    const host = lowestFreeHost(hosts.sort((a, b) => a - b));
    if (host === null) throw new Error('store: the address pool 100.64.0.0/10 is exhausted');
    const rec: NodeRecord = {
      id: this.#nextNode++,
      userId: n.userId,
      machineKey: n.machineKey,
      nodeKey: n.nodeKey,
      discoKey: null,
      hostname: n.hostname,
      givenName: uniqueGivenName(n.hostname, (name) => names.has(name)),
      ipv4: ipv4ForHost(host),
      ipv6: ipv6ForHost(host),
      endpoints: [],
      hostinfo: n.hostinfo,
      homeDerp: 0,
      ephemeral: n.ephemeral,
      createdAt: now,
      expiresAt: n.expiresAt,
      lastSeen: null,
      online: false,
      authKeyId: n.authKeyId,
      tags: [],
      approvedRoutes: [],
      primaryRoutes: [],
    };
    this.#nodes.set(rec.id, rec);
    return this.#copy(rec)!;
  }

  // pending interactive registrations ------------------------------------------------------------------------

  addPending(p: Omit<PendingRegistration, 'approvedUserId'>): void {
    this.#write();
    this.#pending.set(p.id, { ...p, approvedUserId: null });
  }

  pendingById(id: string): PendingRegistration | null {
    const p = this.#pending.get(id);
    return p ? { ...p } : null;
  }

  approvePending(id: string, userId: number): boolean {
    const p = this.#pending.get(id);
    if (!p || !this.#users.has(userId)) return false;
    this.#write();
    this.#pending.set(id, { ...p, approvedUserId: userId });
    return true;
  }

  deletePending(id: string): void {
    if (!this.#pending.has(id)) return;
    this.#write();
    this.#pending.delete(id);
  }

  countPending(): number {
    return this.#pending.size;
  }

  sweepPending(createdBefore: number): number {
    let n = 0;
    for (const [id, p] of this.#pending) {
      if (p.createdAt >= createdBefore) continue;
      if (n === 0) this.#write();
      this.#pending.delete(id);
      n++;
    }
    return n;
  }

  // nodes ---------------------------------------------------------------------------------------------------

  #copy(n: NodeRecord | undefined | null): NodeRecord | null {
    return n ? { ...n, endpoints: [...n.endpoints], tags: [...n.tags], approvedRoutes: [...n.approvedRoutes], primaryRoutes: [...n.primaryRoutes] } : null;
  }

  nodeById(id: number): NodeRecord | null {
    return this.#copy(this.#nodes.get(id));
  }

  nodeByMachineKey(machineKey: string): NodeRecord | null {
    return this.#copy(this.#byMachine(machineKey));
  }

  nodeByNodeKey(nodeKey: string): NodeRecord | null {
    for (const n of this.#nodes.values()) if (n.nodeKey === nodeKey) return this.#copy(n);
    return null;
  }

  otherNodeWithDiscoKey(discoKey: string, exceptId: number): number | null {
    for (const n of this.#nodes.values()) if (n.discoKey === discoKey && n.id !== exceptId) return n.id;
    return null;
  }

  listNodes(userId?: number): NodeRecord[] {
    return [...this.#nodes.values()]
      .filter((n) => userId === undefined || n.userId === userId)
      .sort((a, b) => a.id - b.id)
      .map((n) => this.#copy(n)!);
  }

  updateNode(id: number, patch: NodePatch): NodeRecord | null {
    const n = this.#nodes.get(id);
    if (!n) return null;
    this.#write();
    const defined = Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) as NodePatch;
    const updated: NodeRecord = {
      ...n,
      ...defined,
      endpoints: [...(patch.endpoints ?? n.endpoints)],
      tags: [...(patch.tags ?? n.tags)],
      approvedRoutes: [...(patch.approvedRoutes ?? n.approvedRoutes)],
      primaryRoutes: [...(patch.primaryRoutes ?? n.primaryRoutes)],
    };
    this.#nodes.set(id, updated);
    return this.#copy(updated);
  }

  deleteNode(id: number): boolean {
    if (!this.#nodes.has(id)) return false;
    this.#write();
    this.#nodes.delete(id);
    return true;
  }

  changeCounter(): number {
    return this.#changes;
  }

  close(): void {
    this.#closed = true;
  }
}
