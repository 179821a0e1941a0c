/**
 * IP prefixes ("100.64.0.1/32", "fd7a:115c:a1e0::/48") as WireGuard AllowedIPs, interface addresses and
 * routes use them. Parsing is strict (no leading zeros games, no hostnames, no zones) because these strings
 * become single arguments to `ip` in the privileged helper and lines of the UAPI text protocol. Pure.
 */
import { bytesToIp, ipToBytes } from '../../protocol/wire/addr.ts';

export interface IpPrefix {
  /** Canonical address text (IPv6 in RFC 5952 short form). */
  ip: string;
  bits: number;
  family: 4 | 6;
}

/** Parses a plain IP address (either family, no zone); null when malformed. */
export function parseIp(text: string): { ip: string; family: 4 | 6 } | null {
  if (text.length === 0 || text.length > 45 || text.includes('%')) return null;
  const b = ipToBytes(text);
  if (!b) return null;
  return { ip: bytesToIp(b), family: b.length === 4 ? 4 : 6 };
}

/**
 * Parses "ip/bits". With `allowBare`, a plain address means a host prefix (/32 or /128). Host bits may be set
 * (an interface address like 10.0.0.1/24 is a valid prefix text); use `maskPrefix` for the network.
 */
export function parseIpPrefix(text: string, opts: { allowBare?: boolean } = {}): IpPrefix | null {
  const slash = text.indexOf('/');
  if (slash < 0) {
    if (!opts.allowBare) return null;
    const a = parseIp(text);
    return a ? { ...a, bits: a.family === 4 ? 32 : 128 } : null;
  }
  const a = parseIp(text.slice(0, slash));
  const bitsText = text.slice(slash + 1);
  if (!a || !/^(0|[1-9][0-9]{0,2})$/.test(bitsText)) return null;
  const bits = Number(bitsText);
  if (bits > (a.family === 4 ? 32 : 128)) return null;
  return { ...a, bits };
}

/** Canonical text of a prefix: "ip/bits". */
export function formatPrefix(p: IpPrefix): string {
  return `${p.ip}/${p.bits}`;
}

/** The prefix with its host bits cleared (10.0.0.7/24 -> 10.0.0.0/24). */
export function maskPrefix(p: IpPrefix): IpPrefix {
  const b = ipToBytes(p.ip)!;
  for (let i = 0; i < b.length; i++) {
    const keep = Math.max(0, Math.min(8, p.bits - i * 8));
    b[i] = b[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  return { ip: bytesToIp(b), bits: p.bits, family: p.family };
}

/** Canonical "ip/bits" text of a prefix string, or null when it does not parse. */
export function canonicalPrefix(text: string, opts: { allowBare?: boolean } = {}): string | null {
  const p = parseIpPrefix(text, opts);
  return p ? formatPrefix(p) : null;
}
