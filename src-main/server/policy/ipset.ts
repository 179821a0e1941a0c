/**
 * Sets of IP addresses as sorted, merged inclusive ranges (IPv4 and IPv6 kept apart), for compiling policy
 * into packet filters. Pure.
 *
 * `toStrings` writes a set the way headscale 0.29 does (policy/v2 `ipSetToStrings` over go4.org/netipx ranges):
 * IPv4 first, then IPv6, each in address order; a single address bare ("100.64.0.1"), a range that is exactly
 * one CIDR block as that prefix ("10.0.0.0/8"), and any other run as "first-last" ("100.64.0.0-100.115.91.255").
 * Those are the three forms tailscaled's filter parser accepts besides "*".
 */
import { bytesToIp, ipToBytes } from '../../protocol/wire/addr.ts';

export type Family = 4 | 6;

export interface IpRange {
  family: Family;
  /** Inclusive bounds as integers (32 or 128 bits). */
  first: bigint;
  last: bigint;
}

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

function toBig(b: Uint8Array): bigint {
  let v = 0n;
  for (const x of b) v = (v << 8n) | BigInt(x);
  return v;
}

/** An address integer as text. */
export function fromBig(v: bigint, family: Family): string {
  const n = family === 4 ? 4 : 16;
  const out = new Uint8Array(n);
  for (let i = n - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return bytesToIp(out);
}

/** Parses an address: its family and integer value, or null. An IPv4-mapped IPv6 address stays IPv6. */
export function parseAddr(text: string): { family: Family; value: bigint } | null {
  if (text.includes('%')) return null;
  const b = ipToBytes(text);
  if (!b) return null;
  return { family: b.length === 4 ? 4 : 6, value: toBig(b) };
}

/**
 * Parses "IP", "IP/bits" or "first-last" into a range. A prefix must be masked unless `allowHostBits` (policy
 * files write "10.0.0.1/8" now and then; headscale masks them): then the host bits are cleared.
 */
export function parseRange(text: string, opts: { allowHostBits?: boolean } = {}): IpRange | null {
  const dash = text.indexOf('-');
  if (dash > 0 && text.indexOf('-', dash + 1) < 0) {
    const a = parseAddr(text.slice(0, dash));
    const b = parseAddr(text.slice(dash + 1));
    if (!a || !b || a.family !== b.family || a.value > b.value) return null;
    return { family: a.family, first: a.value, last: b.value };
  }
  const slash = text.indexOf('/');
  if (slash < 0) {
    const a = parseAddr(text);
    return a ? { family: a.family, first: a.value, last: a.value } : null;
  }
  const a = parseAddr(text.slice(0, slash));
  const bitsText = text.slice(slash + 1);
  if (!a || !/^\d{1,3}$/.test(bitsText)) return null;
  const bits = Number(bitsText);
  const total = BITS[a.family];
  if (bits > total) return null;
  const host = (1n << BigInt(total - bits)) - 1n;
  if ((a.value & host) !== 0n && !opts.allowHostBits) return null;
  const first = a.value & ~host & ((1n << BigInt(total)) - 1n);
  return { family: a.family, first, last: first | host };
}

/** The prefix length if [first, last] is exactly one CIDR block, else null. */
function prefixLen(r: IpRange): number | null {
  const size = r.last - r.first + 1n;
  if ((size & (size - 1n)) !== 0n) return null;
  if ((r.first & (size - 1n)) !== 0n) return null;
  let hostBits = 0;
  for (let s = size; s > 1n; s >>= 1n) hostBits++;
  return BITS[r.family] - hostBits;
}

/** One range as headscale writes it: bare address, CIDR, or "first-last". */
export function rangeString(r: IpRange): string {
  if (r.first === r.last) return fromBig(r.first, r.family);
  const len = prefixLen(r);
  if (len !== null) return `${fromBig(r.first, r.family)}/${len}`;
  return `${fromBig(r.first, r.family)}-${fromBig(r.last, r.family)}`;
}

/** An immutable set of addresses. */
export class IpSet {
  /** Sorted by family (4 first) then address; non-overlapping and non-adjacent. */
  readonly ranges: readonly IpRange[];

  private constructor(ranges: IpRange[]) {
    this.ranges = ranges;
  }

  static readonly EMPTY = new IpSet([]);

  static of(ranges: Iterable<IpRange>): IpSet {
    const sorted = [...ranges].sort((a, b) => a.family - b.family || (a.first < b.first ? -1 : a.first > b.first ? 1 : 0));
    const out: IpRange[] = [];
    for (const r of sorted) {
      const top = out[out.length - 1];
      if (top && top.family === r.family && r.first <= top.last + 1n) {
        if (r.last > top.last) out[out.length - 1] = { ...top, last: r.last };
      } else out.push({ ...r });
    }
    return new IpSet(out);
  }

  get isEmpty(): boolean {
    return this.ranges.length === 0;
  }

  union(other: IpSet): IpSet {
    return IpSet.of([...this.ranges, ...other.ranges]);
  }

  /** This set without `other`'s addresses. */
  minus(other: IpSet): IpSet {
    const out: IpRange[] = [];
    for (const r of this.ranges) {
      let pieces: IpRange[] = [r];
      for (const o of other.ranges) {
        if (o.family !== r.family) continue;
        const next: IpRange[] = [];
        for (const p of pieces) {
          if (o.last < p.first || o.first > p.last) {
            next.push(p);
            continue;
          }
          if (o.first > p.first) next.push({ ...p, last: o.first - 1n });
          if (o.last < p.last) next.push({ ...p, first: o.last + 1n });
        }
        pieces = next;
      }
      out.push(...pieces);
    }
    return IpSet.of(out);
  }

  /** Whether any address is in both sets. */
  overlaps(other: IpSet): boolean {
    for (const a of this.ranges) for (const b of other.ranges) if (a.family === b.family && a.first <= b.last && b.first <= a.last) return true;
    return false;
  }

  /** Whether every address of `other` is in this set. */
  containsSet(other: IpSet): boolean {
    return other.minus(this).isEmpty;
  }

  /** Whether the address (text) is in the set. */
  has(ip: string): boolean {
    const a = parseAddr(ip);
    return a !== null && this.hasAddr(a.family, a.value);
  }

  /** Whether a parsed address is in the set (binary search over the sorted ranges). */
  hasAddr(family: Family, value: bigint): boolean {
    let lo = 0;
    let hi = this.ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = this.ranges[mid]!;
      if (r.family < family || (r.family === family && r.last < value)) lo = mid + 1;
      else if (r.family > family || r.first > value) hi = mid - 1;
      else return true;
    }
    return false;
  }

  /** headscale's string forms, IPv4 first (see the module comment). */
  toStrings(): string[] {
    return this.ranges.map(rangeString);
  }
}

/** A set from address, prefix or range strings; null (with the bad string) when one does not parse. */
export function ipSetOf(texts: Iterable<string>, opts: { allowHostBits?: boolean } = {}): { set: IpSet } | { bad: string } {
  const rs: IpRange[] = [];
  for (const t of texts) {
    const r = parseRange(t, opts);
    if (!r) return { bad: t };
    rs.push(r);
  }
  return { set: IpSet.of(rs) };
}
