/**
 * SSDP (UPnP Device Architecture 1.x discovery) text messages. Pure; no Node APIs.
 *
 * M-SEARCH request (UDP, to 239.255.255.250:1900 or unicast to the gateway), CRLF line endings:
 *
 *   M-SEARCH * HTTP/1.1
 *   HOST: 239.255.255.250:1900
 *   ST: ssdp:all
 *   MAN: "ssdp:discover"
 *   MX: 2
 *   <empty line>
 *
 * Search response (UDP, unicast back to the searcher):
 *
 *   HTTP/1.1 200 OK
 *   CACHE-CONTROL: max-age=120
 *   ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1
 *   USN: uuid:...::urn:schemas-upnp-org:device:InternetGatewayDevice:1
 *   LOCATION: http://192.168.1.1:5000/rootDesc.xml
 *   SERVER: OS/1.0 UPnP/1.1 miniupnpd/2.3
 *   <empty line>
 *
 * Header names are case-insensitive; the parser lower-cases them. Bare LF line endings are tolerated.
 */

export const SSDP_PORT = 1900;
export const SSDP_MULTICAST_V4 = '239.255.255.250';
export const SSDP_ST_ALL = 'ssdp:all';
export const SSDP_ST_IGD1 = 'urn:schemas-upnp-org:device:InternetGatewayDevice:1';

export interface MSearchOptions {
  /** Search target; default "ssdp:all". */
  st?: string;
  /** Maximum wait in seconds the responder may delay its answer; default 2. */
  mx?: number;
  /** HOST header; default "239.255.255.250:1900" (also used for unicast searches). */
  host?: string;
}

/** Builds the M-SEARCH request text. */
export function buildMSearch(opts: MSearchOptions = {}): string {
  const host = opts.host ?? `${SSDP_MULTICAST_V4}:${SSDP_PORT}`;
  const st = opts.st ?? SSDP_ST_ALL;
  const mx = opts.mx ?? 2;
  for (const [name, v] of [
    ['host', host],
    ['st', st],
  ] as const) {
    if (/[\r\n]/.test(v)) throw new RangeError(`ssdp: ${name} must not contain line breaks`);
  }
  if (!Number.isInteger(mx) || mx < 1 || mx > 5) throw new RangeError(`ssdp: mx out of range: ${mx}`);
  return `M-SEARCH * HTTP/1.1\r\nHOST: ${host}\r\nST: ${st}\r\nMAN: "ssdp:discover"\r\nMX: ${mx}\r\n\r\n`;
}

/** Builds the M-SEARCH request as bytes ready to send. */
export function encodeMSearch(opts: MSearchOptions = {}): Uint8Array {
  return new TextEncoder().encode(buildMSearch(opts));
}

export interface SsdpResponse {
  kind: 'response';
  statusCode: number;
  /** Lower-cased header name -> value (trimmed; the first occurrence wins). No prototype. */
  headers: Record<string, string>;
  /** Convenience copies of common headers; null when absent. */
  location: string | null;
  st: string | null;
  usn: string | null;
  server: string | null;
}

export interface SsdpMalformed {
  kind: 'malformed';
  reason: string;
}

/** Largest datagram we bother to parse. */
const MAX_SSDP_BYTES = 8192;

/** Parses an SSDP search response ("HTTP/1.1 200 OK" + headers). Never throws; ignores any body. */
export function parseSsdpResponse(bytes: Uint8Array): SsdpResponse | SsdpMalformed {
  if (bytes.length === 0) return { kind: 'malformed', reason: 'empty' };
  if (bytes.length > MAX_SSDP_BYTES) return { kind: 'malformed', reason: 'too long' };
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  const headEnd = text.search(/\r?\n\r?\n/);
  const head = headEnd >= 0 ? text.slice(0, headEnd) : text;
  const lines = head.split(/\r?\n/);
  const status = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
  if (!status) return { kind: 'malformed', reason: 'not an HTTP response status line' };
  const headers: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const line of lines.slice(1)) {
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) return { kind: 'malformed', reason: 'bad header line' };
    const name = line.slice(0, colon).trim().toLowerCase();
    if (name === '' || /\s/.test(name)) return { kind: 'malformed', reason: 'bad header name' };
    if (!(name in headers)) headers[name] = line.slice(colon + 1).trim();
  }
  return {
    kind: 'response',
    statusCode: Number(status[1]),
    headers,
    location: headers['location'] ?? null,
    st: headers['st'] ?? null,
    usn: headers['usn'] ?? null,
    server: headers['server'] ?? null,
  };
}

/** Reports whether a search response advertises a UPnP InternetGatewayDevice (any version). */
export function isInternetGatewayDevice(resp: SsdpResponse): boolean {
  if (resp.statusCode !== 200) return false;
  for (const name of ['st', 'nt', 'usn']) {
    const v = resp.headers[name];
    if (v !== undefined && v.includes(':InternetGatewayDevice:')) return true;
  }
  return false;
}
