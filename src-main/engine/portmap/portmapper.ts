/**
 * Port-mapping client: probes the default gateway for NAT-PMP (RFC 6886), PCP (RFC 6887) and UPnP IGD
 * (SSDP), and creates / releases a UDP mapping with NAT-PMP, PCP or UPnP. See dataplane spec §8.
 *
 * Every call uses an ephemeral UDP socket of its own (never magicsock's socket), closed before it returns.
 * Time comes from the injected Clock. Server ports are injectable so tests can run a fake gateway on
 * 127.0.0.1; the defaults are the real ones (5351 and 1900).
 *
 * UPnP IGD SOAP calls live in ./upnp.ts; createMapping uses them per spec §8.2. Renewal (at half the
 * lifetime) is not done here.
 */
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { bindUdp, type UdpSocket } from '../io/udp.ts';
import { realClock, type Clock, type TimerHandle } from '../sys/clock.ts';
import { discardLogf, type Logf } from '../sys/log.ts';
import { findDefaultGateway, localIpForGateway } from './gateway.ts';
import { upnpAddPortMapping, upnpDeletePortMapping, upnpSelectService, type HttpRequester, type UpnpTarget } from './upnp.ts';
import { ipToBytes, ipv4ToBytes, type UdpAddr } from '../../protocol/wire/addr.ts';
import {
  NATPMP_PORT,
  NATPMP_VERSION,
  NatPmpResult,
  encodeNatPmpRequest,
  natpmpResultText,
  parseNatPmpResponse,
  type NatPmpExternalAddressResponse,
  type NatPmpMapResponse,
} from '../../protocol/wire/natpmp.ts';
import {
  PCP_NONCE_LEN,
  PCP_OP_MAP,
  PCP_PROTO_UDP,
  PCP_VERSION,
  PcpResult,
  encodePcpRequest,
  parsePcpResponse,
  pcpResultText,
  type PcpErrorResponse,
  type PcpMapResponse,
} from '../../protocol/wire/pcp.ts';
import {
  SSDP_MULTICAST_V4,
  SSDP_PORT,
  SSDP_ST_ALL,
  SSDP_ST_IGD1,
  encodeMSearch,
  isInternetGatewayDevice,
  parseSsdpResponse,
} from '../../protocol/wire/ssdp.ts';

/** RFC 6886 §3.1: first retransmission after 250 ms, doubling after that. */
const RETRANSMIT_INITIAL_MS = 250;
/** After the first answer to every kind of probe, keep listening this long for more UPnP answers. */
const PROBE_GRACE_MS = 50;
const MAX_UPNP_LOCATIONS = 10;
const DEFAULT_TIMEOUT_MS = 500;
const DEFAULT_LIFETIME_S = 7200;

export interface PortMapProbe {
  natpmp: boolean;
  pcp: boolean;
  upnp: boolean;
  /** Public IPv4 reported by NAT-PMP, if any. */
  externalV4: string | null;
  /** First (sorted) IGD description URL answered by the gateway. */
  upnpLocation: string | null;
  /** All distinct IGD description URLs seen (at most 10), sorted. */
  upnpLocations: string[];
  natpmpEpoch: number | null;
  pcpEpoch: number | null;
  /** Clock time (ms) the probe started. */
  at: number;
}

export interface ProbeOptions {
  gateway: string;
  /** Our IPv4 address toward the gateway (PCP client address). Looked up from the interfaces if omitted. */
  localIp?: string;
  clock?: Clock;
  /** Total listening time; default 500 ms. */
  timeoutMs?: number;
  logf?: Logf;
  signal?: AbortSignal;
  /** NAT-PMP / PCP server port; default 5351. */
  serverPort?: number;
  /** SSDP port on the gateway and multicast group; default 1900. */
  ssdpPort?: number;
  /** SSDP multicast group; default 239.255.255.250; null = unicast M-SEARCH only. */
  ssdpMulticast?: string | null;
}

export type MappingProtocol = 'natpmp' | 'pcp' | 'upnp';

export interface PortMapping {
  protocol: MappingProtocol;
  internalPort: number;
  externalIp: string;
  externalPort: number;
  /** Lifetime granted by the gateway. */
  lifetimeS: number;
  /** Clock time (ms) the mapping was granted. */
  createdAt: number;
  /** Server epoch from the mapping response (a decrease later means the gateway lost its state). */
  epoch: number;
  /** PCP mapping nonce (needed to renew or delete). */
  nonce?: Uint8Array;
  /** UPnP service the mapping was made on (needed to delete). `lifetimeS` 0 = permanent lease. */
  upnp?: UpnpTarget;
}

export type MapResult = { ok: true; mapping: PortMapping } | { ok: false; error: string; resultCode?: number };

export interface CreateMappingOptions {
  gateway: string;
  /** Our IPv4 address toward the gateway (PCP client address). */
  localIp: string;
  /** Local UDP port to map (magicsock's port). */
  internalPort: number;
  /** Requested lifetime; default 7200 s. */
  lifetimeS?: number;
  /** Force a protocol (no fallback to another); otherwise chosen from the probe per spec §8.2. */
  prefer?: MappingProtocol;
  probe?: PortMapProbe;
  /** Suggested external port (the previously mapped one); default 0 = any. */
  suggestedExternalPort?: number;
  clock?: Clock;
  /** How long to wait for each answer (retransmitting at 250 ms, 750 ms, ...); default 500 ms. */
  timeoutMs?: number;
  logf?: Logf;
  signal?: AbortSignal;
  /** NAT-PMP / PCP server port; default 5351. */
  serverPort?: number;
  /** IGD description URL; default probe.upnpLocation. */
  upnpLocation?: string;
  /** Try UPnP when NAT-PMP/PCP fails and an IGD location is known; default true. */
  upnpFallback?: boolean;
  /** Per-request UPnP HTTP timeout; default 3000 ms. */
  httpTimeoutMs?: number;
  /** UPnP HTTP client; default global fetch. */
  http?: HttpRequester;
}

export interface ReleaseMappingOptions {
  gateway: string;
  localIp: string;
  mapping: PortMapping;
  clock?: Clock;
  /** How long to wait for the gateway to acknowledge; default 500 ms. */
  timeoutMs?: number;
  logf?: Logf;
  serverPort?: number;
  httpTimeoutMs?: number;
  http?: HttpRequester;
}

function sameIp(a: string, b: string): boolean {
  const x = ipToBytes(a);
  const y = ipToBytes(b);
  if (!x || !y) return a === b;
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function isUsableV4(ip: string | null): ip is string {
  const b = ip === null ? null : ipv4ToBytes(ip);
  return b !== null && !(b[0] === 0 && b[1] === 0 && b[2] === 0 && b[3] === 0) && b[0] !== 127;
}

/**
 * Our IPv4 address toward `gateway`: the address on the interface whose subnet holds the gateway, else the
 * default route's local address if that route goes via this gateway. Null if neither.
 */
export async function localIpToward(gateway: string): Promise<string | null> {
  const direct = localIpForGateway(gateway, os.networkInterfaces());
  if (direct !== null) return direct;
  const def = await findDefaultGateway();
  return def !== null && def.gateway === gateway ? def.localIp : null;
}

/** Schedules retransmissions at 250, 750, 1750 ... ms (RFC 6886 doubling) while they fall before `until`. */
function scheduleRetransmits(clock: Clock, until: number, fire: () => void): TimerHandle[] {
  const handles: TimerHandle[] = [];
  let interval = RETRANSMIT_INITIAL_MS;
  for (let at = interval; at < until; interval *= 2, at += interval) handles.push(clock.setTimeout(fire, at));
  return handles;
}

/**
 * Sends NAT-PMP external-address and PCP ANNOUNCE requests to the gateway and SSDP M-SEARCHes (unicast
 * to the gateway, then multicast), and reports what answered within `timeoutMs`. Finishes early, 50 ms
 * after NAT-PMP, PCP and UPnP have all answered; otherwise listens the full `timeoutMs`. NAT-PMP is
 * retransmitted at 250 ms, 750 ms, ... while unanswered. Send failures (e.g. no multicast route) are
 * logged, not fatal. Rejects only if aborted or the socket cannot be bound.
 */
export async function probePortMapping(o: ProbeOptions): Promise<PortMapProbe> {
  const clock = o.clock ?? realClock;
  const logf = o.logf ?? discardLogf;
  const timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const serverPort = o.serverPort ?? NATPMP_PORT;
  const ssdpPort = o.ssdpPort ?? SSDP_PORT;
  const multicast = o.ssdpMulticast === undefined ? SSDP_MULTICAST_V4 : o.ssdpMulticast;
  const signal = o.signal;
  if (signal?.aborted) throw signal.reason;

  const res: PortMapProbe = {
    natpmp: false,
    pcp: false,
    upnp: false,
    externalV4: null,
    upnpLocation: null,
    upnpLocations: [],
    natpmpEpoch: null,
    pcpEpoch: null,
    at: clock.now(),
  };
  const localIp = o.localIp ?? (await localIpToward(o.gateway));
  const server: UdpAddr = { ip: o.gateway, port: serverPort };
  const sock = await bindUdp();
  try {
    await new Promise<void>((resolve, reject) => {
      const timers: TimerHandle[] = [];
      let done = false;
      let pmpAnswered = false;
      let pcpAnswered = false;
      let graceArmed = false;
      const stop = (): void => {
        done = true;
        for (const t of timers) clock.clearTimeout(t);
        signal?.removeEventListener('abort', onAbort);
      };
      const finish = (): void => {
        if (done) return;
        stop();
        resolve();
      };
      const onAbort = (): void => {
        if (done) return;
        stop();
        reject(signal?.reason);
      };
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      const maybeFinishEarly = (): void => {
        if (graceArmed || !pmpAnswered || !pcpAnswered || !res.upnp) return;
        graceArmed = true;
        timers.push(clock.setTimeout(finish, PROBE_GRACE_MS));
      };
      const send = (data: Uint8Array, to: UdpAddr, what: string): void => {
        sock.send(data, to).catch((e: unknown) => {
          logf(`portmap: probe send failed what=${what} to=${to.ip}:${to.port} err=${JSON.stringify(errText(e))}`);
        });
      };

      sock.onPacket((data, from) => {
        if (done || !sameIp(from.ip, o.gateway)) return;
        if (from.port === serverPort && data.length > 0) {
          if (data[0] === NATPMP_VERSION) {
            const r = parseNatPmpResponse(data);
            if (r.kind !== 'externalAddressResponse') return;
            // Result 1 may be a NAT-PMP-only server rejecting our PCP (version 2) packet; not an answer to ours.
            if (r.resultCode === NatPmpResult.UNSUPPORTED_VERSION) return;
            pmpAnswered = true;
            if (r.resultCode === NatPmpResult.SUCCESS) {
              res.natpmp = true;
              res.natpmpEpoch = r.epoch;
              if (isUsableV4(r.externalIp)) res.externalV4 = r.externalIp;
            } else {
              logf(`portmap: natpmp result=${r.resultCode} (${natpmpResultText(r.resultCode)})`);
            }
          } else if (data[0] === PCP_VERSION) {
            const r = parsePcpResponse(data);
            if (r.kind !== 'announceResponse') return;
            // UNSUPP_VERSION may be a PCP-only server rejecting our NAT-PMP (version 0) packet.
            if (r.resultCode === PcpResult.UNSUPP_VERSION) return;
            pcpAnswered = true;
            if (r.resultCode === PcpResult.SUCCESS) {
              res.pcp = true;
              res.pcpEpoch = r.epoch;
            } else {
              logf(`portmap: pcp announce result=${r.resultCode} (${pcpResultText(r.resultCode)})`);
            }
          }
          maybeFinishEarly();
          return;
        }
        // SSDP: only the gateway's own answers count (other LAN devices may answer the multicast search).
        const r = parseSsdpResponse(data);
        if (r.kind !== 'response' || !isInternetGatewayDevice(r)) return;
        res.upnp = true;
        if (r.location !== null && res.upnpLocations.length < MAX_UPNP_LOCATIONS && !res.upnpLocations.includes(r.location)) {
          res.upnpLocations.push(r.location);
        }
        maybeFinishEarly();
      });

      const pmpReq = encodeNatPmpRequest({ kind: 'externalAddressRequest' });
      send(pmpReq, server, 'natpmp');
      if (localIp !== null) send(encodePcpRequest({ kind: 'announceRequest', clientIp: localIp }), server, 'pcp');
      else logf('portmap: no local IP toward gateway; skipping PCP');
      const hostHeader = `${SSDP_MULTICAST_V4}:${SSDP_PORT}`;
      const searchAll = encodeMSearch({ st: SSDP_ST_ALL, host: hostHeader });
      send(searchAll, { ip: o.gateway, port: ssdpPort }, 'ssdp-unicast');
      if (multicast !== null) {
        send(searchAll, { ip: multicast, port: ssdpPort }, 'ssdp-multicast');
        send(encodeMSearch({ st: SSDP_ST_IGD1, host: hostHeader }), { ip: multicast, port: ssdpPort }, 'ssdp-multicast-igd');
      }
      timers.push(
        ...scheduleRetransmits(clock, timeoutMs, () => {
          if (!pmpAnswered && !done) send(pmpReq, server, 'natpmp-retransmit');
        }),
      );
      timers.push(clock.setTimeout(finish, timeoutMs));
    });
  } finally {
    await sock.close();
  }
  res.upnpLocations.sort();
  res.upnpLocation = res.upnpLocations[0] ?? null;
  logf(
    `portmap: probe gateway=${o.gateway} natpmp=${res.natpmp} pcp=${res.pcp} upnp=${res.upnp} ext=${res.externalV4 ?? '-'} ` +
      `upnpLocation=${res.upnpLocation ?? '-'}`,
  );
  return res;
}

/**
 * Sends `packet` to `to`, retransmitting on the RFC 6886 schedule, until `accept` returns a value for a
 * datagram from `to` or `timeoutMs` passes (then resolves null). Rejects if the first send fails or on abort.
 */
function exchange<T>(
  sock: UdpSocket,
  to: UdpAddr,
  packet: Uint8Array,
  accept: (data: Uint8Array) => T | undefined,
  o: { clock: Clock; timeoutMs: number; signal?: AbortSignal | undefined },
): Promise<T | null> {
  const { clock, signal } = o;
  return new Promise<T | null>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timers: TimerHandle[] = [];
    let done = false;
    const stop = (): void => {
      done = true;
      for (const t of timers) clock.clearTimeout(t);
      signal?.removeEventListener('abort', onAbort);
      sock.onPacket(() => {});
    };
    const onAbort = (): void => {
      if (done) return;
      stop();
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    sock.onPacket((data, from) => {
      if (done || from.port !== to.port || !sameIp(from.ip, to.ip)) return;
      const v = accept(data);
      if (v === undefined) return;
      stop();
      resolve(v);
    });
    sock.send(packet, to).catch((e: unknown) => {
      if (done) return;
      stop();
      reject(e instanceof Error ? e : new Error(String(e)));
    });
    timers.push(
      ...scheduleRetransmits(clock, o.timeoutMs, () => {
        if (!done) sock.send(packet, to).catch(() => {});
      }),
    );
    timers.push(
      clock.setTimeout(() => {
        if (done) return;
        stop();
        resolve(null);
      }, o.timeoutMs),
    );
  });
}

/** Marker returned by an exchange when the server answered in the other protocol's format. */
const OTHER_PROTOCOL = Symbol('other-protocol');
type Other = typeof OTHER_PROTOCOL;

interface Ctx {
  sock: UdpSocket;
  server: UdpAddr;
  clock: Clock;
  timeoutMs: number;
  logf: Logf;
  signal?: AbortSignal | undefined;
}

type Attempt = MapResult | { ok: false; otherProtocol: true };

async function mapWithNatPmp(ctx: Ctx, o: CreateMappingOptions, lifetimeS: number): Promise<Attempt> {
  let externalIp = o.probe?.externalV4 ?? null;
  if (!isUsableV4(externalIp)) {
    const r = await exchange<NatPmpExternalAddressResponse | Other>(
      ctx.sock,
      ctx.server,
      encodeNatPmpRequest({ kind: 'externalAddressRequest' }),
      (data) => {
        if (data[0] === PCP_VERSION) return parsePcpResponse(data).kind === 'malformed' ? undefined : OTHER_PROTOCOL;
        const p = parseNatPmpResponse(data);
        return p.kind === 'externalAddressResponse' ? p : undefined;
      },
      ctx,
    );
    if (r === null) return { ok: false, error: `NAT-PMP: no answer to external address request within ${ctx.timeoutMs} ms` };
    if (r === OTHER_PROTOCOL) return { ok: false, otherProtocol: true };
    if (r.resultCode !== NatPmpResult.SUCCESS) {
      return {
        ok: false,
        error: `NAT-PMP external address request failed: result ${r.resultCode} (${natpmpResultText(r.resultCode)})`,
        resultCode: r.resultCode,
      };
    }
    if (!isUsableV4(r.externalIp)) {
      return { ok: false, error: `NAT-PMP: gateway reported unusable external address ${r.externalIp ?? '-'}` };
    }
    externalIp = r.externalIp;
  }

  const r = await exchange<NatPmpMapResponse | Other>(
    ctx.sock,
    ctx.server,
    encodeNatPmpRequest({
      kind: 'mapRequest',
      protocol: 'udp',
      internalPort: o.internalPort,
      suggestedExternalPort: o.suggestedExternalPort ?? 0,
      lifetimeS,
    }),
    (data) => {
      if (data[0] === PCP_VERSION) return parsePcpResponse(data).kind === 'malformed' ? undefined : OTHER_PROTOCOL;
      const p = parseNatPmpResponse(data);
      if (p.kind !== 'mapResponse' || p.protocol !== 'udp') return undefined;
      // A full success reply must be for our port; a short error reply carries no port.
      if (p.resultCode === NatPmpResult.SUCCESS && p.internalPort !== o.internalPort) return undefined;
      return p;
    },
    ctx,
  );
  if (r === null) return { ok: false, error: `NAT-PMP: no answer to UDP map request within ${ctx.timeoutMs} ms` };
  if (r === OTHER_PROTOCOL) return { ok: false, otherProtocol: true };
  if (r.resultCode !== NatPmpResult.SUCCESS) {
    return {
      ok: false,
      error: `NAT-PMP UDP map request failed: result ${r.resultCode} (${natpmpResultText(r.resultCode)})`,
      resultCode: r.resultCode,
    };
  }
  if (r.lifetimeS === 0 || r.externalPort === 0) {
    return { ok: false, error: `NAT-PMP: gateway granted an empty mapping (port ${r.externalPort}, lifetime ${r.lifetimeS} s)` };
  }
  return {
    ok: true,
    mapping: {
      protocol: 'natpmp',
      internalPort: o.internalPort,
      externalIp,
      externalPort: r.externalPort,
      lifetimeS: r.lifetimeS,
      createdAt: ctx.clock.now(),
      epoch: r.epoch,
    },
  };
}

function pcpMapRequest(localIp: string, internalPort: number, lifetimeS: number, nonce: Uint8Array, extPort: number, extIp: string): Uint8Array {
  return encodePcpRequest({
    kind: 'mapRequest',
    clientIp: localIp,
    lifetimeS,
    nonce,
    protocol: PCP_PROTO_UDP,
    internalPort,
    suggestedExternalPort: extPort,
    suggestedExternalIp: extIp,
  });
}

function acceptPcpMap(nonce: Uint8Array, internalPort: number): (data: Uint8Array) => PcpMapResponse | PcpErrorResponse | Other | undefined {
  return (data) => {
    if (data[0] === NATPMP_VERSION) return parseNatPmpResponse(data).kind === 'malformed' ? undefined : OTHER_PROTOCOL;
    const p = parsePcpResponse(data);
    if (p.kind === 'errorResponse') return p.opcode === PCP_OP_MAP ? p : undefined;
    if (p.kind === 'announceResponse' && p.resultCode === PcpResult.UNSUPP_VERSION) return OTHER_PROTOCOL;
    if (p.kind !== 'mapResponse') return undefined;
    if (p.protocol !== PCP_PROTO_UDP || p.internalPort !== internalPort) return undefined;
    if (p.nonce.length !== nonce.length || !p.nonce.every((v, i) => v === nonce[i])) return undefined;
    return p;
  };
}

async function mapWithPcp(ctx: Ctx, o: CreateMappingOptions, lifetimeS: number): Promise<Attempt> {
  const nonce = new Uint8Array(randomBytes(PCP_NONCE_LEN));
  const r = await exchange(
    ctx.sock,
    ctx.server,
    pcpMapRequest(o.localIp, o.internalPort, lifetimeS, nonce, o.suggestedExternalPort ?? 0, '0.0.0.0'),
    acceptPcpMap(nonce, o.internalPort),
    ctx,
  );
  if (r === null) return { ok: false, error: `PCP: no answer to MAP request within ${ctx.timeoutMs} ms` };
  if (r === OTHER_PROTOCOL) return { ok: false, otherProtocol: true };
  if (r.resultCode !== PcpResult.SUCCESS) {
    return { ok: false, error: `PCP MAP request failed: result ${r.resultCode} (${pcpResultText(r.resultCode)})`, resultCode: r.resultCode };
  }
  if (r.kind !== 'mapResponse') return { ok: false, error: 'PCP: MAP success without a MAP body' };
  if (!isUsableV4(r.externalIp)) return { ok: false, error: `PCP: gateway assigned unusable external address ${r.externalIp}` };
  if (r.lifetimeS === 0 || r.externalPort === 0) {
    return { ok: false, error: `PCP: gateway granted an empty mapping (port ${r.externalPort}, lifetime ${r.lifetimeS} s)` };
  }
  return {
    ok: true,
    mapping: {
      protocol: 'pcp',
      internalPort: o.internalPort,
      externalIp: r.externalIp,
      externalPort: r.externalPort,
      lifetimeS: r.lifetimeS,
      createdAt: ctx.clock.now(),
      epoch: r.epoch,
      nonce,
    },
  };
}

/** A probe younger than this is trusted to say "neither NAT-PMP nor PCP" (spec §8.2 step 2). */
export const PROBE_FRESH_MS = 5000;

/**
 * The protocol createMapping tries first (spec §8.2): `prefer` if given; UPnP if a fresh probe found
 * neither NAT-PMP nor PCP but found an IGD; PCP if the probe saw PCP and not NAT-PMP; else NAT-PMP.
 * `now` is the clock time to judge freshness by; without it the probe counts as fresh.
 */
export function chooseMappingProtocol(o: { prefer?: MappingProtocol; probe?: PortMapProbe }, now?: number): MappingProtocol {
  if (o.prefer) return o.prefer;
  const p = o.probe;
  if (!p) return 'natpmp';
  const fresh = now === undefined || now - p.at < PROBE_FRESH_MS;
  if (fresh && !p.natpmp && !p.pcp && p.upnpLocation !== null) return 'upnp';
  return p.pcp && !p.natpmp ? 'pcp' : 'natpmp';
}

async function mapWithUpnp(o: CreateMappingOptions, lifetimeS: number, clock: Clock, logf: Logf): Promise<MapResult> {
  const location = o.upnpLocation ?? o.probe?.upnpLocation ?? null;
  if (location === null) return { ok: false, error: 'UPnP: no IGD location (run a probe first)' };
  const common = { clock, logf, timeoutMs: o.httpTimeoutMs, ...(o.http ? { http: o.http } : {}) };
  const sel = await upnpSelectService({ ...common, location, gateway: o.gateway });
  if (!sel.ok) return sel;
  const r = await upnpAddPortMapping({
    ...common,
    target: sel.target,
    localIp: o.localIp,
    internalPort: o.internalPort,
    lifetimeS,
    ...(o.suggestedExternalPort !== undefined ? { suggestedExternalPort: o.suggestedExternalPort } : {}),
  });
  if (!r.ok) return r;
  return {
    ok: true,
    mapping: {
      protocol: 'upnp',
      internalPort: o.internalPort,
      externalIp: r.mapping.externalIp,
      externalPort: r.mapping.externalPort,
      lifetimeS: r.mapping.lifetimeS,
      createdAt: clock.now(),
      epoch: 0,
      upnp: sel.target,
    },
  };
}

/**
 * Asks the gateway for a UDP mapping of `internalPort`, in the order of spec §8.2 (see
 * chooseMappingProtocol). Without `prefer`: if the gateway answers in the other protocol's format (a
 * NAT-PMP-only or PCP-only server rejecting the version) that protocol is tried once; if NAT-PMP/PCP
 * fails and an IGD location is known, UPnP is tried (disable with `upnpFallback: false`). When everything
 * fails, the first failure's `resultCode` is kept and the errors are joined. Gateway errors come back as
 * `{ ok: false, error, resultCode }`; never throws except on abort.
 */
export async function createMapping(o: CreateMappingOptions): Promise<MapResult> {
  const clock = o.clock ?? realClock;
  const logf = o.logf ?? discardLogf;
  const lifetimeS = o.lifetimeS ?? DEFAULT_LIFETIME_S;
  if (!ipv4ToBytes(o.gateway)) return { ok: false, error: `not an IPv4 gateway: ${o.gateway}` };
  if (!ipv4ToBytes(o.localIp)) return { ok: false, error: `not an IPv4 local address: ${o.localIp}` };
  if (!Number.isInteger(o.internalPort) || o.internalPort < 1 || o.internalPort > 0xffff) {
    return { ok: false, error: `bad internal port ${o.internalPort}` };
  }
  if (!Number.isInteger(lifetimeS) || lifetimeS < 1 || lifetimeS > 0xffffffff) return { ok: false, error: `bad lifetime ${lifetimeS}` };
  if (o.signal?.aborted) throw o.signal.reason;

  const first = chooseMappingProtocol(o, clock.now());
  let final: MapResult;
  if (first === 'upnp') {
    final = await mapWithUpnp(o, lifetimeS, clock, logf);
  } else {
    final = await mapWithPmpOrPcp(o, first, lifetimeS, clock, logf);
    const location = o.upnpLocation ?? o.probe?.upnpLocation ?? null;
    if (!final.ok && !o.prefer && o.upnpFallback !== false && location !== null) {
      logf(`portmap: ${first} failed (${final.error}); trying UPnP`);
      const u = await mapWithUpnp(o, lifetimeS, clock, logf);
      final = u.ok ? u : { ok: false, error: `${final.error}; ${u.error}`, ...(final.resultCode !== undefined ? { resultCode: final.resultCode } : {}) };
    }
  }
  if (final.ok) {
    const m = final.mapping;
    logf(`portmap: mapped proto=${m.protocol} internal=${m.internalPort} external=${m.externalIp}:${m.externalPort} lifetime=${m.lifetimeS}s`);
  } else {
    logf(`portmap: mapping failed err=${JSON.stringify(final.error)}`);
  }
  return final;
}

async function mapWithPmpOrPcp(o: CreateMappingOptions, first: 'natpmp' | 'pcp', lifetimeS: number, clock: Clock, logf: Logf): Promise<MapResult> {
  let sock: UdpSocket;
  try {
    sock = await bindUdp();
  } catch (e) {
    return { ok: false, error: `cannot bind UDP socket: ${errText(e)}` };
  }
  const ctx: Ctx = {
    sock,
    server: { ip: o.gateway, port: o.serverPort ?? NATPMP_PORT },
    clock,
    timeoutMs: o.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    logf,
    signal: o.signal,
  };
  const attempt = (p: 'natpmp' | 'pcp'): Promise<Attempt> => (p === 'pcp' ? mapWithPcp(ctx, o, lifetimeS) : mapWithNatPmp(ctx, o, lifetimeS));
  try {
    const result = await attempt(first);
    if (result.ok || !('otherProtocol' in result)) return result;
    const other = first === 'pcp' ? 'natpmp' : 'pcp';
    if (o.prefer) return { ok: false, error: `${first}: gateway answered only in ${other} format (unsupported version)` };
    logf(`portmap: gateway does not speak ${first}; trying ${other}`);
    const second = await attempt(other);
    return second.ok || !('otherProtocol' in second) ? second : { ok: false, error: 'gateway rejected both NAT-PMP and PCP versions' };
  } catch (e) {
    if (o.signal?.aborted) throw e;
    return { ok: false, error: `send failed: ${errText(e)}` };
  } finally {
    await sock.close();
  }
}

/**
 * Deletes a mapping (NAT-PMP or PCP MAP with lifetime 0, UPnP DeletePortMapping) and waits up to
 * `timeoutMs` for the gateway's acknowledgement. Never throws; failures are logged.
 */
export async function releaseMapping(o: ReleaseMappingOptions): Promise<void> {
  const clock = o.clock ?? realClock;
  const logf = o.logf ?? discardLogf;
  const m = o.mapping;
  if (m.protocol === 'upnp') {
    if (!m.upnp) {
      logf('portmap: release failed: UPnP mapping has no control URL');
      return;
    }
    const acked = await upnpDeletePortMapping({
      clock,
      logf,
      timeoutMs: o.httpTimeoutMs,
      target: m.upnp,
      externalPort: m.externalPort,
      ...(o.http ? { http: o.http } : {}),
    });
    logf(`portmap: release proto=upnp internal=${m.internalPort} external=${m.externalIp}:${m.externalPort} acked=${acked}`);
    return;
  }
  let sock: UdpSocket;
  try {
    sock = await bindUdp();
  } catch (e) {
    logf(`portmap: release failed: cannot bind: ${errText(e)}`);
    return;
  }
  const server: UdpAddr = { ip: o.gateway, port: o.serverPort ?? NATPMP_PORT };
  const opts = { clock, timeoutMs: o.timeoutMs ?? DEFAULT_TIMEOUT_MS };
  try {
    let acked: boolean;
    if (m.protocol === 'pcp') {
      if (!m.nonce || m.nonce.length !== PCP_NONCE_LEN) {
        logf('portmap: release failed: PCP mapping has no nonce');
        return;
      }
      const req = pcpMapRequest(o.localIp, m.internalPort, 0, m.nonce, m.externalPort, m.externalIp);
      const r = await exchange(sock, server, req, acceptPcpMap(m.nonce, m.internalPort), opts);
      acked = r !== null && r !== OTHER_PROTOCOL && r.resultCode === PcpResult.SUCCESS;
    } else {
      // RFC 6886 §3.4: delete = map request with lifetime 0 and suggested external port 0.
      const req = encodeNatPmpRequest({ kind: 'mapRequest', protocol: 'udp', internalPort: m.internalPort, suggestedExternalPort: 0, lifetimeS: 0 });
      const r = await exchange(
        sock,
        server,
        req,
        (data) => {
          const p = parseNatPmpResponse(data);
          return p.kind === 'mapResponse' && p.protocol === 'udp' && (p.internalPort === m.internalPort || p.resultCode !== 0) ? p : undefined;
        },
        opts,
      );
      acked = r !== null && r.resultCode === NatPmpResult.SUCCESS;
    }
    logf(`portmap: release proto=${m.protocol} internal=${m.internalPort} external=${m.externalIp}:${m.externalPort} acked=${acked}`);
  } catch (e) {
    logf(`portmap: release failed: ${errText(e)}`);
  } finally {
    await sock.close();
  }
}
