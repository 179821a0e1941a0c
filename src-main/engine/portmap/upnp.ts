/**
 * UPnP IGD client (IO): fetch the device description from the SSDP LOCATION, pick the WAN connection
 * service (dataplane spec §8.5), and call AddAnyPortMapping / AddPortMapping / DeletePortMapping /
 * GetExternalIPAddress / GetStatusInfo over SOAP.
 *
 * HTTP goes through an injectable `HttpRequester`; the default uses the global fetch (undici), which keeps
 * node:http out of engine/ (style guide §1 rule 3). Timeouts run on the injected Clock.
 * Safety: the description must come from the gateway when `gateway` is given, control URLs must be on the
 * same host as the description, redirects are refused and bodies are capped at 256 KiB.
 */
import { randomInt } from 'node:crypto';
import { realClock, type Clock } from '../sys/clock.ts';
import { discardLogf, type Logf } from '../sys/log.ts';
import { ipv4ToBytes } from '../../protocol/wire/addr.ts';
import {
  UPNP_WANIP2,
  UpnpError,
  buildSoapRequest,
  parseDeviceDescription,
  parseSoapResponse,
  rankServices,
  type SoapFault,
  type SoapOk,
} from '../../protocol/wire/upnp.ts';
import { isRfc1918 } from './gateway.ts';

const MAX_BODY_BYTES = 256 * 1024;
const DEFAULT_HTTP_TIMEOUT_MS = 3000;
export const UPNP_DESCRIPTION = 'weft-portmap';

export interface HttpRequest {
  method: 'GET' | 'POST';
  url: string;
  headers: Record<string, string>;
  body?: string;
  signal: AbortSignal;
}
export interface HttpResponse {
  status: number;
  body: string;
}
export type HttpRequester = (req: HttpRequest) => Promise<HttpResponse>;

/** Default requester: global fetch, no redirects, body capped at 256 KiB. */
export const fetchRequester: HttpRequester = async (req) => {
  const res = await fetch(req.url, {
    method: req.method,
    headers: req.headers,
    ...(req.body !== undefined ? { body: req.body } : {}),
    signal: req.signal,
    redirect: 'error',
  });
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (res.body) {
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > MAX_BODY_BYTES) {
        await reader.cancel();
        throw new Error(`response body larger than ${MAX_BODY_BYTES} bytes`);
      }
      chunks.push(value);
    }
  }
  const all = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.byteLength;
  }
  return { status: res.status, body: new TextDecoder().decode(all) };
};

/** A chosen WAN connection service. */
export interface UpnpTarget {
  controlUrl: string;
  serviceType: string;
}

interface Common {
  clock?: Clock;
  /** Per HTTP request; default 3000 ms. */
  timeoutMs?: number;
  logf?: Logf;
  http?: HttpRequester;
}

type SoapResult = SoapOk | SoapFault | { kind: 'error'; error: string };

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function request(o: Common, req: Omit<HttpRequest, 'signal'>): Promise<HttpResponse> {
  const clock = o.clock ?? realClock;
  const ac = new AbortController();
  const timer = clock.setTimeout(() => ac.abort(new Error(`timed out after ${o.timeoutMs ?? DEFAULT_HTTP_TIMEOUT_MS} ms`)), o.timeoutMs ?? DEFAULT_HTTP_TIMEOUT_MS);
  try {
    return await (o.http ?? fetchRequester)({ ...req, signal: ac.signal });
  } catch (e) {
    throw ac.signal.aborted ? (ac.signal.reason as Error) : e;
  } finally {
    clock.clearTimeout(timer);
  }
}

/** Calls one SOAP action. Network and parse problems come back as kind 'error'; never throws. */
export async function upnpSoap(o: Common & { target: UpnpTarget; action: string; args?: readonly (readonly [string, string | number])[] }): Promise<SoapResult> {
  const req = buildSoapRequest(o.target.serviceType, o.action, o.args ?? []);
  let res: HttpResponse;
  try {
    res = await request(o, {
      method: 'POST',
      url: o.target.controlUrl,
      headers: { 'Content-Type': req.contentType, SOAPAction: req.soapAction },
      body: req.body,
    });
  } catch (e) {
    return { kind: 'error', error: `${o.action}: ${errText(e)}` };
  }
  const parsed = parseSoapResponse(res.body, o.action);
  if (parsed.kind === 'malformed') return { kind: 'error', error: `${o.action}: HTTP ${res.status}, ${parsed.reason}` };
  if (parsed.kind === 'ok' && res.status !== 200) return { kind: 'error', error: `${o.action}: HTTP ${res.status}` };
  return parsed;
}

function describeFailure(r: SoapFault | { kind: 'error'; error: string }, action: string): string {
  return r.kind === 'error' ? r.error : `${action} failed: UPnP error ${r.errorCode ?? '?'} (${r.description || 'no description'})`;
}

function isUsableV4(ip: string | null | undefined): ip is string {
  const b = ip ? ipv4ToBytes(ip) : null;
  return b !== null && !(b[0] === 0 && b[1] === 0 && b[2] === 0 && b[3] === 0) && b[0] !== 127;
}

function isPrivateV4(ip: string): boolean {
  const b = ipv4ToBytes(ip);
  if (!b) return false;
  // RFC 1918, RFC 6598 shared (CGNAT) space, link-local.
  return isRfc1918(ip) || (b[0] === 100 && (b[1]! & 0xc0) === 64) || (b[0] === 169 && b[1] === 254);
}

/** GetExternalIPAddress; null when the call fails or the address is 0.0.0.0 / loopback / junk. */
export async function upnpGetExternalIp(o: Common & { target: UpnpTarget }): Promise<string | null> {
  const r = await upnpSoap({ ...o, action: 'GetExternalIPAddress' });
  const ip = r.kind === 'ok' ? r.values['NewExternalIPAddress'] : undefined;
  return isUsableV4(ip) ? ip : null;
}

export type SelectResult = { ok: true; target: UpnpTarget; externalIp: string | null } | { ok: false; error: string };

/**
 * Fetches the description at `location` and picks the service: among the WAN connection services (best
 * type first), prefer connected with a public external IP, then connected with a private one, then
 * connected, then the first (spec §8.5). With one candidate no status calls are made.
 */
export async function upnpSelectService(o: Common & { location: string; gateway?: string }): Promise<SelectResult> {
  const logf = o.logf ?? discardLogf;
  let loc: URL;
  try {
    loc = new URL(o.location);
  } catch {
    return { ok: false, error: `UPnP: bad location ${o.location}` };
  }
  if (loc.protocol !== 'http:') return { ok: false, error: `UPnP: location is not http: ${o.location}` };
  if (o.gateway !== undefined && loc.hostname !== o.gateway) {
    return { ok: false, error: `UPnP: location host ${loc.hostname} is not the gateway ${o.gateway}` };
  }
  let res: HttpResponse;
  try {
    res = await request(o, { method: 'GET', url: o.location, headers: {} });
  } catch (e) {
    return { ok: false, error: `UPnP: fetching description failed: ${errText(e)}` };
  }
  if (res.status !== 200) return { ok: false, error: `UPnP: description fetch returned HTTP ${res.status}` };
  const desc = parseDeviceDescription(res.body, o.location);
  if (desc.kind === 'malformed') return { ok: false, error: `UPnP: bad description: ${desc.reason}` };
  const candidates = rankServices(desc.services).filter((s) => new URL(s.controlUrl).host === loc.host);
  if (candidates.length === 0) return { ok: false, error: 'UPnP: no WANIPConnection/WANPPPConnection service on the gateway' };
  const first = candidates[0]!;
  if (candidates.length === 1) return { ok: true, target: { controlUrl: first.controlUrl, serviceType: first.serviceType }, externalIp: null };

  let best: { score: number; target: UpnpTarget; ip: string | null } | null = null;
  for (const c of candidates) {
    const target = { controlUrl: c.controlUrl, serviceType: c.serviceType };
    const st = await upnpSoap({ ...o, target, action: 'GetStatusInfo' });
    const status = st.kind === 'ok' ? (st.values['NewConnectionStatus'] ?? '') : '';
    const connected = status === 'Connected' || status === 'Up';
    const ip = connected ? await upnpGetExternalIp({ ...o, target }) : null;
    const score = !connected ? 0 : ip === null ? 1 : isPrivateV4(ip) ? 2 : 3;
    logf(`portmap: upnp service=${c.serviceType} url=${c.controlUrl} status=${status || '-'} ext=${ip ?? '-'} score=${score}`);
    if (best === null || score > best.score) best = { score, target, ip };
    if (score === 3) break;
  }
  return best && best.score > 0 ? { ok: true, target: best.target, externalIp: best.ip } : { ok: true, target: { controlUrl: first.controlUrl, serviceType: first.serviceType }, externalIp: null };
}

export interface UpnpMapping {
  externalIp: string;
  externalPort: number;
  /** Lease granted; 0 = permanent (the router only supports permanent leases). */
  lifetimeS: number;
}

export type UpnpMapResult = { ok: true; mapping: UpnpMapping } | { ok: false; error: string; resultCode?: number };

function pickExternalPort(suggested: number | undefined): number {
  return suggested !== undefined && suggested >= 1024 && suggested <= 65535 ? suggested : randomInt(1024, 65536);
}

/**
 * Maps UDP `internalPort` on `localIp`. WANIPConnection:2 tries AddAnyPortMapping first (the router may
 * choose the port). AddPortMapping retries with lease 0 on 402/725 and with another random port once on
 * 718. Then reads the external IP, rejecting 0.0.0.0 and loopback (the mapping is deleted again).
 */
export async function upnpAddPortMapping(
  o: Common & { target: UpnpTarget; localIp: string; internalPort: number; suggestedExternalPort?: number; lifetimeS?: number; description?: string },
): Promise<UpnpMapResult> {
  const logf = o.logf ?? discardLogf;
  let externalPort = pickExternalPort(o.suggestedExternalPort);
  let lease = o.lifetimeS ?? 7200;
  const args = (): [string, string | number][] => [
    ['NewRemoteHost', ''],
    ['NewExternalPort', externalPort],
    ['NewProtocol', 'UDP'],
    ['NewInternalPort', o.internalPort],
    ['NewInternalClient', o.localIp],
    ['NewEnabled', '1'],
    ['NewPortMappingDescription', o.description ?? UPNP_DESCRIPTION],
    ['NewLeaseDuration', lease],
  ];

  let mapped = false;
  if (o.target.serviceType === UPNP_WANIP2) {
    const r = await upnpSoap({ ...o, action: 'AddAnyPortMapping', args: args() });
    const port = r.kind === 'ok' ? Number(r.values['NewReservedPort']) : NaN;
    if (Number.isInteger(port) && port > 0 && port <= 65535) {
      externalPort = port;
      mapped = true;
    } else {
      logf(`portmap: upnp AddAnyPortMapping unusable (${r.kind === 'ok' ? 'no NewReservedPort' : describeFailure(r, 'AddAnyPortMapping')}); trying AddPortMapping`);
    }
  }
  let lastFault: SoapFault | { kind: 'error'; error: string } | null = null;
  let conflictRetried = false;
  let leaseRetried = false;
  while (!mapped) {
    const r = await upnpSoap({ ...o, action: 'AddPortMapping', args: args() });
    if (r.kind === 'ok') {
      mapped = true;
      break;
    }
    lastFault = r;
    const code = r.kind === 'fault' ? r.errorCode : null;
    if ((code === UpnpError.INVALID_ARGS || code === UpnpError.ONLY_PERMANENT_LEASES_SUPPORTED) && !leaseRetried && lease !== 0) {
      leaseRetried = true;
      lease = 0;
      continue;
    }
    if (code === UpnpError.CONFLICT_IN_MAPPING_ENTRY && !conflictRetried) {
      conflictRetried = true;
      externalPort = randomInt(1024, 65536);
      continue;
    }
    break;
  }
  if (!mapped) {
    const f = lastFault!;
    return { ok: false, error: `UPnP ${describeFailure(f, 'AddPortMapping')}`, ...(f.kind === 'fault' && f.errorCode !== null ? { resultCode: f.errorCode } : {}) };
  }
  const externalIp = await upnpGetExternalIp(o);
  if (externalIp === null) {
    await upnpDeletePortMapping({ ...o, externalPort });
    return { ok: false, error: 'UPnP: mapping made but GetExternalIPAddress gave no usable address (deleted again)' };
  }
  return { ok: true, mapping: { externalIp, externalPort, lifetimeS: lease } };
}

/** DeletePortMapping for a UDP external port; reports whether the router accepted it. Never throws. */
export async function upnpDeletePortMapping(o: Common & { target: UpnpTarget; externalPort: number }): Promise<boolean> {
  const r = await upnpSoap({
    ...o,
    action: 'DeletePortMapping',
    args: [
      ['NewRemoteHost', ''],
      ['NewExternalPort', o.externalPort],
      ['NewProtocol', 'UDP'],
    ],
  });
  if (r.kind !== 'ok') (o.logf ?? discardLogf)(`portmap: upnp ${describeFailure(r, 'DeletePortMapping')}`);
  return r.kind === 'ok';
}
