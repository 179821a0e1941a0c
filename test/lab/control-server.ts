// What the lab tests need from a control server, whichever one runs: real headscale (headscale.ts, each pinned
// version) or `weft server` (weft-server.ts). Both run in the lab's `srv` namespace and are administered through their
// own CLI with JSON output, normalised to these shapes, so a test written against ControlServer runs against either.
import type { ExecResult, LabProcess } from './lab.ts';

export interface ControlUser {
  id: number;
  name: string;
}

/** A node as the server's `nodes list -o json` shows it, with field names normalised across servers and versions. */
export interface ControlNode {
  id: number;
  /** The hostname the node asked for. */
  name: string;
  givenName: string;
  /** Connected to the server now (a map stream open, or within its short offline grace). */
  online: boolean;
  ipAddresses: string[];
  /** "mkey:<hex>" */
  machineKey: string;
  /** "nodekey:<hex>" */
  nodeKey: string;
  /** The owning user's name ("" when the node has none, e.g. tagged-only). */
  user: string;
  /** ISO 8601; absent when the node never expires. */
  expiry?: string;
}

export interface PreauthKeyOptions {
  reusable?: boolean;
  ephemeral?: boolean;
  /** A duration like "1h" (both servers' syntax); default "1h". */
  expiration?: string;
}

export interface ControlServer {
  /** Which server this is, for test names and server-specific expectations. */
  readonly kind: 'headscale' | 'weft';
  /** E.g. "headscale 0.29.2", "weft server". */
  readonly label: string;
  /** Plain-HTTP control URL, e.g. http://203.0.113.10:8080 */
  readonly url: string;
  /** The running server process (replaced by start()). */
  readonly proc: LabProcess;
  /** The server's admin CLI with `args`, run in srv against this server's config/data (no output flag added). */
  cli(args: string[], opts?: { timeoutMs?: number }): Promise<ExecResult>;
  createUser(name: string): Promise<ControlUser>;
  listUsers(): Promise<ControlUser[]>;
  createPreauthKey(user: ControlUser, opts?: PreauthKeyOptions): Promise<string>;
  listNodes(): Promise<ControlNode[]>;
  /** Approves an interactive registration, by the id at the end of the AuthURL. */
  registerNode(user: ControlUser, authId: string): Promise<void>;
  deleteNode(id: number): Promise<void>;
  /** Expires the node's key now: it must log in again. */
  expireNode(id: number): Promise<void>;
  /** Replaces a node's approved routes (`nodes approve-routes`; approving either /0 approves both). */
  approveRoutes(nodeId: number, routes: string[]): Promise<void>;
  /** Stops the server (SIGTERM by default; SIGKILL for a crash). Config, keys and database stay. */
  stop(opts?: { signal?: NodeJS.Signals }): Promise<void>;
  /** Starts the server again on the same config and database, and waits until it answers. No-op while running. */
  start(): Promise<void>;
}
