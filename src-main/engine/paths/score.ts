/**
 * Path preference: which of two confirmed UDP paths to a peer is better (dataplane-protocol §4.7;
 * TS: wgengine/magicsock/endpoint.go betterAddr). Used by the per-peer path reducer (endpoint.ts) when a
 * pong confirms a candidate: the candidate replaces bestAddr only if `betterAddr(candidate, best)`.
 *
 * Scoring, given candidate a and current b:
 *
 *   same address ──────────────▶ a better only if its path MTU is larger
 *   b missing ─────────────────▶ a better;   a missing ──▶ not better
 *   direct vs peer-relay ──────▶ the direct one wins, whatever the latencies
 *   otherwise, points:
 *     latency   the faster gets 100 − ⌊100·faster/slower⌋ (its % speed-up), the slower 0
 *     address   loopback +50, else link-local +30, else private (RFC 1918 / ULA) +20;  IPv6 +10
 *     stickiness a ≤ 1 point against b's 0 keeps b (a < ~1 % faster is not worth a switch)
 *   a better iff aPoints > bPoints
 *
 * Pure; no I/O, no clock.
 */
import { ipToBytes, isV4Mapped, sameAddr, type UdpAddr } from '../../protocol/wire/addr.ts';

/** A pong-confirmed path to a peer. */
export interface PathQuality {
  readonly addr: UdpAddr;
  /** Round-trip time of the confirming ping. */
  readonly latencyMs: number;
  /** Largest on-the-wire packet known to pass (0 or absent = unknown / the safe default). */
  readonly wireMtu?: number;
  /** Reports whether this path goes through a peer relay (Geneve) rather than straight to the peer. */
  readonly relayed?: boolean;
}

/** Points for the kind of address: loopback 50, link-local 30, private 20, else 0; plus 10 for IPv6. */
export function addressBonus(ip: string): number {
  const raw = ipToBytes(ip);
  if (!raw) return 0;
  const b = isV4Mapped(raw) ? raw.subarray(12) : raw;
  let pts = 0;
  if (b.length === 4) {
    const [o0, o1] = [b[0]!, b[1]!];
    if (o0 === 127) pts += 50;
    else if (o0 === 169 && o1 === 254) pts += 30;
    else if (o0 === 10 || (o0 === 172 && (o1 & 0xf0) === 16) || (o0 === 192 && o1 === 168)) pts += 20;
    return pts;
  }
  const isLoopback = b.every((v, i) => v === (i === 15 ? 1 : 0));
  if (isLoopback) pts += 50;
  else if (b[0] === 0xfe && (b[1]! & 0xc0) === 0x80) pts += 30;
  else if ((b[0]! & 0xfe) === 0xfc) pts += 20;
  return pts + 10;
}

/** The latency points of a and b (at most one is non-zero): the faster one's percentage speed-up. */
export function latencyPoints(aMs: number, bMs: number): [number, number] {
  if (aMs > bMs && aMs > 0) return [0, 100 - Math.floor((bMs * 100) / aMs)];
  if (bMs > 0) return [100 - Math.floor((aMs * 100) / bMs), 0];
  return [0, 0];
}

/** Reports whether candidate `a` should replace current `b` as the path to a peer. */
export function betterAddr(a: PathQuality | null, b: PathQuality | null): boolean {
  if (a && b && sameAddr(a.addr, b.addr) && !!a.relayed === !!b.relayed) return (a.wireMtu ?? 0) > (b.wireMtu ?? 0);
  if (!a) return false;
  if (!b) return true;
  if (!a.relayed && b.relayed) return true;
  if (a.relayed && !b.relayed) return false;
  let [aPoints, bPoints] = latencyPoints(a.latencyMs, b.latencyMs);
  aPoints += addressBonus(a.addr.ip);
  bPoints += addressBonus(b.addr.ip);
  if (aPoints <= 1 && bPoints === 0) return false;
  return aPoints > bPoints;
}
