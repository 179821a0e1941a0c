/**
 * IP address and UDP endpoint helpers shared by every codec: text <-> bytes for IPv4 and IPv6.
 * Pure; no Node APIs.
 */
export interface UdpAddr {
  ip: string;
  port: number;
}

/** Formats an endpoint as "ip:port" or "[ipv6]:port". */
export function formatAddr(a: UdpAddr): string {
  return a.ip.includes(':') ? `[${a.ip}]:${a.port}` : `${a.ip}:${a.port}`;
}

/** Parses "ip:port", "[v6]:port" or "host:port"; returns null when malformed. */
export function parseHostPort(s: string, defaultPort?: number): { host: string; port: number } | null {
  let host: string;
  let portText: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (v6) {
    host = v6[1]!;
    portText = v6[2];
  } else {
    const idx = s.lastIndexOf(':');
    if (idx >= 0 && s.indexOf(':') === idx) {
      host = s.slice(0, idx);
      portText = s.slice(idx + 1);
    } else {
      host = s;
    }
  }
  const port = portText === undefined ? defaultPort : Number(portText);
  if (!host || port === undefined || !Number.isInteger(port) || port < 1 || port > 65535) return null;
  return { host, port };
}

/** Returns the 4 bytes of a dotted-quad IPv4 address, or null. */
export function ipv4ToBytes(ip: string): Uint8Array | null {
  const parts = ip.split('.');
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^\d{1,3}$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out[i] = n;
  }
  return out;
}

/** Returns the 16 bytes of an IPv6 address (with optional embedded IPv4 tail), or null. */
export function ipv6ToBytes(ip: string): Uint8Array | null {
  let text = ip;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  let tail: Uint8Array | null = null;
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    tail = ipv4ToBytes(text.slice(lastColon + 1));
    if (!tail) return null;
    text = text.slice(0, lastColon) + ':0:0';
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const parseGroups = (s: string): number[] | null => {
    if (s === '') return [];
    const gs = s.split(':');
    const out: number[] = [];
    for (const g of gs) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parseGroups(halves[0]!);
  const rest = halves.length === 2 ? parseGroups(halves[1]!) : [];
  if (!head || !rest) return null;
  let groups: number[];
  if (halves.length === 2) {
    const fill = 8 - head.length - rest.length;
    if (fill < 1) return null;
    groups = [...head, ...new Array<number>(fill).fill(0), ...rest];
  } else {
    groups = head;
  }
  if (groups.length !== 8) return null;
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  if (tail) out.set(tail, 12);
  return out;
}

/** Formats 4 or 16 address bytes as text (IPv6 in RFC 5952 short form). */
export function bytesToIp(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  // Longest run of zero groups (length >= 2) becomes "::".
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Parses an IP address of either family into bytes, or null. */
export function ipToBytes(ip: string): Uint8Array | null {
  return ip.includes(':') ? ipv6ToBytes(ip) : ipv4ToBytes(ip);
}

/** Reports whether an IPv6 byte string is an IPv4-mapped address (::ffff:a.b.c.d). */
export function isV4Mapped(b: Uint8Array): boolean {
  if (b.length !== 16) return false;
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** Compares two endpoints for equality (text-normalised). */
export function sameAddr(a: UdpAddr | null | undefined, b: UdpAddr | null | undefined): boolean {
  if (!a || !b || a.port !== b.port) return false;
  if (a.ip === b.ip) return true; // the common case, without parsing (the hot path compares canonical forms)
  const ab = ipToBytes(a.ip);
  const bb = ipToBytes(b.ip);
  if (!ab || !bb) return a.ip === b.ip && a.port === b.port;
  return a.port === b.port && ab.length === bb.length && ab.every((v, i) => v === bb[i]);
}
