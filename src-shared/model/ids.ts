/**
 * Branded identifiers of the control protocol (control-protocol §2.1, style.md §2 item 16).
 *
 * Keys travel as text: a fixed lowercase prefix followed by exactly 64 hex digits (TS: types/key/*.go):
 *
 *   nodekey:<64 hex>    WireGuard public key of a node (RegisterRequest.NodeKey, Node.Key)
 *   discokey:<64 hex>   disco (NAT traversal) public key (MapRequest.DiscoKey, Node.DiscoKey)
 *   mkey:<64 hex>       machine public key; also the server's Noise key from GET /key
 *
 * Parsing accepts upper- or lower-case hex and always yields lowercase, so two spellings of one key compare
 * equal. The prefix is case-sensitive, as in Go. Each kind is a distinct brand, so a disco key can never be
 * passed where a node key is expected.
 *
 * `NodeId` is a node's numeric database ID (`Node.ID`, `PeersRemoved`, `PeerChange.NodeID`, the decimal keys
 * of `OnlineChange`). It is kept as its canonical decimal string so that it can key a `Map` and be compared
 * with `===` whichever JSON form it arrived in.
 *
 * This module is shared with the renderer: it imports nothing but zod.
 */
import { z } from 'zod';

const ZERO_HEX = '0'.repeat(64);

export const NodeKey = z
  .string()
  .regex(/^nodekey:[0-9a-fA-F]{64}$/, 'expected "nodekey:" followed by 64 hex digits')
  .transform((s) => s.toLowerCase())
  .brand<'NodeKey'>();
export type NodeKey = z.infer<typeof NodeKey>;

export const DiscoKey = z
  .string()
  .regex(/^discokey:[0-9a-fA-F]{64}$/, 'expected "discokey:" followed by 64 hex digits')
  .transform((s) => s.toLowerCase())
  .brand<'DiscoKey'>();
export type DiscoKey = z.infer<typeof DiscoKey>;

export const MachineKey = z
  .string()
  .regex(/^mkey:[0-9a-fA-F]{64}$/, 'expected "mkey:" followed by 64 hex digits')
  .transform((s) => s.toLowerCase())
  .brand<'MachineKey'>();
export type MachineKey = z.infer<typeof MachineKey>;

/** A node ID from JSON: a non-negative safe integer, or its decimal text (as map keys carry it). */
export const NodeId = z
  .union([z.number(), z.string().regex(/^[0-9]{1,16}$/)], { error: 'expected a node ID (a non-negative integer)' })
  .transform((v) => (typeof v === 'number' ? v : Number(v)))
  .pipe(z.int('expected a node ID (a non-negative integer)').nonnegative('expected a node ID (a non-negative integer)'))
  .transform((n) => String(n))
  .brand<'NodeId'>();
export type NodeId = z.infer<typeof NodeId>;

/** The all-zero keys Go emits for an unset key (headscale ≤ 0.27 sends them for `Machine`/`DiscoKey`). */
export const ZERO_NODE_KEY: NodeKey = NodeKey.parse(`nodekey:${ZERO_HEX}`);
export const ZERO_DISCO_KEY: DiscoKey = DiscoKey.parse(`discokey:${ZERO_HEX}`);
export const ZERO_MACHINE_KEY: MachineKey = MachineKey.parse(`mkey:${ZERO_HEX}`);

export function parseNodeKey(s: string): NodeKey | null {
  const r = NodeKey.safeParse(s);
  return r.success ? r.data : null;
}

export function parseDiscoKey(s: string): DiscoKey | null {
  const r = DiscoKey.safeParse(s);
  return r.success ? r.data : null;
}

export function parseMachineKey(s: string): MachineKey | null {
  const r = MachineKey.safeParse(s);
  return r.success ? r.data : null;
}

export function parseNodeId(v: string | number): NodeId | null {
  const r = NodeId.safeParse(v);
  return r.success ? r.data : null;
}

/** Reports whether `k` is the all-zero key of its kind. */
export function isZeroKey(k: NodeKey | DiscoKey | MachineKey): boolean {
  return k.slice(k.indexOf(':') + 1) === ZERO_HEX;
}

/** The 64 lowercase hex digits of a key, without its prefix. */
export function keyHex(k: NodeKey | DiscoKey | MachineKey): string {
  return k.slice(k.indexOf(':') + 1);
}

/** The numeric form of a node ID, as it goes back into JSON (`PeersRemoved`, `PeerChange.NodeID`). */
export function nodeIdNumber(id: NodeId): number {
  return Number(id);
}
