/**
 * What a node may store on the server through its requests, checked before it is stored: endpoints and Hostinfo
 * are copied into every peer's map on every change, so one node must not be able to make them large for all.
 * Pure.
 *
 *   endpoints  only "IP:port" / "[IPv6]:port" with a non-zero port, each once, at most MAX_ENDPOINTS; the rest
 *              is dropped (and counted, so the caller can log it)
 *   Hostinfo   its JSON at most MAX_HOSTINFO_BYTES; an oversized one loses its Services list (the one field a
 *              client legitimately grows: one entry per listening port) and, still oversized, is refused whole
 *
 * Tailscale clients report a handful of endpoints (local addresses, STUN-discovered and port-mapped ones) and a
 * Hostinfo of one or two KiB, so real clients are never trimmed.
 */
import { bytesToIp, formatAddr, ipToBytes, parseHostPort } from '../../protocol/wire/addr.ts';
import { MAX_ENDPOINTS, MAX_HOSTINFO_BYTES } from './constants.ts';

export interface CleanEndpoints {
  endpoints: string[];
  /** How many entries were dropped (unparsable, duplicates, or over the cap). */
  dropped: number;
}

/** The endpoints worth storing: valid "IP:port" forms, each once, in the client's order, at most MAX_ENDPOINTS. */
export function cleanEndpoints(list: readonly string[]): CleanEndpoints {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const e of list) {
    if (out.length >= MAX_ENDPOINTS) break;
    if (e.length > 64) continue;
    const hp = parseHostPort(e);
    const ip = hp ? ipToBytes(hp.host) : null;
    if (!hp || !ip) continue;
    const canonical = formatAddr({ ip: bytesToIp(ip), port: hp.port });
    if (seen.has(canonical)) continue;
    seen.add(canonical);
    out.push(canonical);
  }
  return { endpoints: out, dropped: list.length - out.length };
}

export type CleanHostinfo = { kind: 'ok'; json: string; trimmed: boolean } | { kind: 'refused'; reason: string };

/** The Hostinfo to store as JSON text, within MAX_HOSTINFO_BYTES (its Services dropped first if needed), or refused. */
export function cleanHostinfo(h: Record<string, unknown>): CleanHostinfo {
  const enc = new TextEncoder();
  const json = JSON.stringify(h);
  if (enc.encode(json).length <= MAX_HOSTINFO_BYTES) return { kind: 'ok', json, trimmed: false };
  if ('Services' in h) {
    const { Services: _dropped, ...rest } = h;
    const smaller = JSON.stringify(rest);
    if (enc.encode(smaller).length <= MAX_HOSTINFO_BYTES) return { kind: 'ok', json: smaller, trimmed: true };
  }
  return { kind: 'refused', reason: `Hostinfo of ${enc.encode(json).length} bytes is over the ${MAX_HOSTINFO_BYTES}-byte limit` };
}
