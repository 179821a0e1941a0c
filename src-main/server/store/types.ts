/**
 * What `weft server` persists, as one interface: users, pre-auth keys, nodes and their keys, pending interactive
 * registrations. The SQLite implementation (store/sqlite.ts) is the real one; an in-memory one serves unit tests.
 *
 * Rules every implementation keeps:
 *  - pre-auth keys are stored hashed (only a short prefix in clear, for listing); the plaintext is returned once;
 *  - redeeming a single-use key and registering the node happen in one transaction (no double use);
 *  - addresses are allocated in the same transaction as the node insert (no two nodes share one);
 *  - nothing acknowledged is lost on a crash (SQLite: WAL, synchronous=FULL).
 * Times are Unix milliseconds. Keys are in Tailscale's text form ("mkey:…", "nodekey:…", "discokey:…").
 */

export interface UserRecord {
  id: number;
  name: string;
  createdAt: number;
}

export interface PreAuthKeyRecord {
  id: number;
  userId: number;
  /** The first characters of the key, to tell keys apart in listings (the rest is only stored hashed). */
  prefix: string;
  reusable: boolean;
  ephemeral: boolean;
  createdAt: number;
  /** null: never expires. */
  expiresAt: number | null;
  /** Set when a single-use key was redeemed; reusable keys keep null. */
  usedAt: number | null;
  /** Set by `preauthkeys expire`. */
  revokedAt: number | null;
}

export interface NodeRecord {
  id: number;
  userId: number;
  machineKey: string;
  nodeKey: string;
  /** null until the node reports one. */
  discoKey: string | null;
  /** The hostname the node asked for, and the unique DNS-safe name it was given. */
  hostname: string;
  givenName: string;
  ipv4: string;
  ipv6: string;
  endpoints: string[];
  /** The node's last Hostinfo as JSON text (shown to peers as is), null until reported. */
  hostinfo: string | null;
  /** The home DERP region from its NetInfo (0 = none). */
  homeDerp: number;
  ephemeral: boolean;
  createdAt: number;
  /** Node key expiry; null = no expiry. A past value means expired (logged out or `nodes expire`). */
  expiresAt: number | null;
  lastSeen: number | null;
  /**
   * Connected to the running server (a map stream open, or within the short grace after the last one ended), as
   * that server last wrote it; `weft server nodes list` shows it. A server clears it for every node on start and stop.
   */
  online: boolean;
  /** The pre-auth key it registered with, null for interactive registration. */
  authKeyId: number | null;
  /**
   * Its tags ("tag:…", set with `weft server nodes tag`). A tagged node is no longer its user's for the policy
   * (headscale 0.29): `user@` and autogroup:member leave it out, `tag:` aliases and autogroup:tagged take it in.
   */
  tags: string[];
  /**
   * The routes an admin (`weft server nodes approve-routes`) or the policy's autoApprovers approved, as canonical
   * prefixes. Only those the node also announces (Hostinfo.RoutableIPs, matched exactly) are used, as in headscale.
   */
  approvedRoutes: string[];
  /**
   * The subnet routes this node serves as the elected primary, as the running server last wrote them (for
   * `weft server nodes list-routes`, which reads the database in another process); cleared on start and stop.
   */
  primaryRoutes: string[];
}

/** A registration waiting for an admin (`weft server nodes register --key ID`) or the app to approve it. */
export interface PendingRegistration {
  /** The id in the AuthURL (random, URL-safe). */
  id: string;
  machineKey: string;
  nodeKey: string;
  hostname: string;
  hostinfo: string | null;
  createdAt: number;
  /** Set when approved: the user it was approved for. */
  approvedUserId: number | null;
}

export type RedeemError = 'unknown' | 'expired' | 'used' | 'revoked';

export interface NewNode {
  userId: number;
  machineKey: string;
  nodeKey: string;
  hostname: string;
  hostinfo: string | null;
  ephemeral: boolean;
  expiresAt: number | null;
  authKeyId: number | null;
}

export interface NodePatch {
  nodeKey?: string;
  discoKey?: string | null;
  endpoints?: string[];
  hostinfo?: string | null;
  homeDerp?: number;
  expiresAt?: number | null;
  lastSeen?: number | null;
  online?: boolean;
  tags?: string[];
  approvedRoutes?: string[];
  primaryRoutes?: string[];
}

export interface ServerStore {
  // users
  createUser(name: string, now: number): UserRecord;
  listUsers(): UserRecord[];
  userByName(name: string): UserRecord | null;
  userById(id: number): UserRecord | null;

  // pre-auth keys
  /** Creates a key; `key` is the plaintext, shown once and never stored. */
  createPreAuthKey(o: { userId: number; reusable: boolean; ephemeral: boolean; expiresAt: number | null }, now: number): { key: string; record: PreAuthKeyRecord };
  listPreAuthKeys(userId?: number): PreAuthKeyRecord[];
  /** Revokes a key (by id); false when there is no such key. */
  expirePreAuthKey(id: number, now: number): boolean;
  /**
   * Registers (or re-registers) a node with a pre-auth key, atomically: checks the key (hash match, not expired,
   * not revoked, single-use not used), marks a single-use key used, and inserts the node with fresh addresses, or
   * updates the node that already has this machine key (keeping its id and addresses).
   */
  registerWithAuthKey(plaintextKey: string, node: Omit<NewNode, 'userId' | 'ephemeral' | 'authKeyId'>, now: number): { node: NodeRecord } | { error: RedeemError };
  /** Registers (or re-registers) a node for a user without a key (interactive approval), atomically. */
  registerForUser(node: NewNode, now: number): NodeRecord;

  // pending interactive registrations
  addPending(p: Omit<PendingRegistration, 'approvedUserId'>): void;
  pendingById(id: string): PendingRegistration | null;
  approvePending(id: string, userId: number): boolean;
  deletePending(id: string): void;
  /** How many registrations are pending (approved or not). */
  countPending(): number;
  /** Deletes the pending registrations created before `createdBefore` (Unix ms); returns how many. */
  sweepPending(createdBefore: number): number;

  // nodes
  nodeById(id: number): NodeRecord | null;
  nodeByMachineKey(machineKey: string): NodeRecord | null;
  nodeByNodeKey(nodeKey: string): NodeRecord | null;
  /** The id of a node other than `exceptId` that holds this disco key, or null (disco keys are one node's each). */
  otherNodeWithDiscoKey(discoKey: string, exceptId: number): number | null;
  listNodes(userId?: number): NodeRecord[];
  updateNode(id: number, patch: NodePatch): NodeRecord | null;
  deleteNode(id: number): boolean;

  /**
   * A number that changes whenever another process (the admin CLI) changed the database, so a running server can
   * notice `nodes delete/expire/register` and push map updates (SQLite: PRAGMA data_version).
   */
  changeCounter(): number;
  close(): void;
}

/** Address pools (control-protocol: 100.64.0.0/10 and fd7a:115c:a1e0::/48), allocated lowest-free first. */
export const IPV4_POOL = '100.64.0.0/10';
export const IPV6_POOL = 'fd7a:115c:a1e0::/48';
