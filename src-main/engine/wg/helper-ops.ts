/**
 * The privileged helper's operation set: the only things an unprivileged Weft may ask root to do to the
 * network. Pure: zod schemas for requests, results and the wire envelope. helper.ts executes them.
 *
 *   op                  fields                                   result
 *   create-interface    name                                     {name, pid}      spawn wireguard-go
 *   set-addresses       name, addresses[], mtu                   {}               ip link/addr
 *   set-routes          name, prefixes[]                         {}               ip route (never /0)
 *   set-config          name, uapi (one "set=1" request text)    {}               UAPI set
 *   get-stats           name                                     {peers[]}        UAPI get (keys hex)
 *   destroy-interface   name                                     {}               routes off, stop wireguard-go
 *   cleanup-stale       prefix                                   StaleReport      stale.ts
 *
 * Every name must match WEFT_IFACE_RE (cleanup prefixes WEFT_IFACE_PREFIX_RE), addresses and prefixes must be
 * IPs/CIDRs, and the UAPI text must parse strictly (uapi.ts parseSetRequest) with no fwmark (Weft does not
 * use it, so the helper does not offer it). Unknown ops and unknown fields are refused.
 *
 * Wire (unix socket, one JSON object per line, any number per connection, replies in request order):
 *   > {"id":1,"op":"set-routes","name":"weft0","prefixes":["100.64.0.2/32"]}
 *   < {"id":1,"ok":true,"result":{}}
 *   < {"id":2,"ok":false,"error":{"code":"invalid","message":"..."}}
 */
import { z } from 'zod';
import { WEFT_IFACE_PREFIX_RE, WEFT_IFACE_RE, WgError } from './iface.ts';
import type { WgErrorCode } from './iface.ts';
import { parseIpPrefix } from './ip-prefix.ts';
import { parseSetRequest } from './uapi.ts';
import { MAX_MTU, MIN_MTU } from './validate.ts';

/** Largest request line (a set-config for thousands of peers fits easily). */
export const HELPER_MAX_LINE = 4 * 1024 * 1024;
export const HELPER_MAX_ADDRESSES = 16;
export const HELPER_MAX_ROUTES = 65_536;

const IfName = z.string().regex(WEFT_IFACE_RE, `interface names must match ${String(WEFT_IFACE_RE)}`);
const Address = z
  .string()
  .max(64)
  .refine((s) => parseIpPrefix(s, { allowBare: true }) !== null, 'not an IP address or CIDR');
const RoutePrefix = z
  .string()
  .max(64)
  .refine((s) => parseIpPrefix(s, { allowBare: true }) !== null, 'not an IP prefix (CIDR)')
  .refine((s) => parseIpPrefix(s, { allowBare: true })?.bits !== 0, 'a default route (/0) is never installed');
const UapiText = z
  .string()
  .max(HELPER_MAX_LINE)
  .superRefine((s, ctx) => {
    const r = parseSetRequest(s);
    if (!r.ok) ctx.addIssue({ code: 'custom', message: `UAPI text refused: ${r.error.kind === 'malformed' ? r.error.reason : 'errno'}` });
    else if (r.value.fwmark !== undefined) ctx.addIssue({ code: 'custom', message: 'UAPI text refused: fwmark is not offered by the helper' });
  });

export const HelperRequest = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('create-interface'), name: IfName }),
  z.strictObject({
    op: z.literal('set-addresses'),
    name: IfName,
    addresses: z.array(Address).max(HELPER_MAX_ADDRESSES),
    mtu: z.int().min(MIN_MTU).max(MAX_MTU),
  }),
  z.strictObject({ op: z.literal('set-routes'), name: IfName, prefixes: z.array(RoutePrefix).max(HELPER_MAX_ROUTES) }),
  z.strictObject({ op: z.literal('set-config'), name: IfName, uapi: UapiText }),
  z.strictObject({ op: z.literal('get-stats'), name: IfName }),
  z.strictObject({ op: z.literal('destroy-interface'), name: IfName }),
  z.strictObject({
    op: z.literal('cleanup-stale'),
    prefix: z.string().regex(WEFT_IFACE_PREFIX_RE, `cleanup prefixes must match ${String(WEFT_IFACE_PREFIX_RE)}`),
  }),
]);
export type HelperRequest = z.infer<typeof HelperRequest>;
export type HelperOp = HelperRequest['op'];
export type HelperRequestOf<O extends HelperOp> = Extract<HelperRequest, { op: O }>;

const Hex64 = z.string().regex(/^[0-9a-f]{64}$/);

export const PeerStatsWire = z.object({
  publicKey: Hex64,
  endpoint: z.object({ ip: z.string(), port: z.int() }).nullable(),
  allowedIPs: z.array(z.string()),
  rxBytes: z.number().nonnegative(),
  txBytes: z.number().nonnegative(),
  lastHandshakeUnixMs: z.number().nullable(),
});
export type PeerStatsWire = z.infer<typeof PeerStatsWire>;

export const StaleReportWire = z.object({
  killed: z.array(z.object({ name: z.string(), pid: z.int() })),
  removedSockets: z.array(z.string()),
  removedLinks: z.array(z.string()),
});

const Empty = z.object({});

export const HelperResults = {
  'create-interface': z.object({ name: z.string(), pid: z.int() }),
  'set-addresses': Empty,
  'set-routes': Empty,
  'set-config': Empty,
  'get-stats': z.object({ peers: z.array(PeerStatsWire) }),
  'destroy-interface': Empty,
  'cleanup-stale': StaleReportWire,
} as const satisfies Record<HelperOp, z.ZodType>;
export type HelperResult<O extends HelperOp> = z.infer<(typeof HelperResults)[O]>;

const ErrorCodeWire = z.enum(['invalid', 'refused', 'exists', 'not-found', 'failed']) satisfies z.ZodType<WgErrorCode>;

export const HelperReply = z.union([
  z.object({ id: z.int().nullable(), ok: z.literal(true), result: z.unknown() }),
  z.object({ id: z.int().nullable(), ok: z.literal(false), error: z.object({ code: ErrorCodeWire, message: z.string() }) }),
]);
export type HelperReply = z.infer<typeof HelperReply>;

/** The narrow privileged interface; implemented in-process (createLocalHelper) and over a socket (HelperClient). */
export interface Helper {
  call<O extends HelperOp>(req: HelperRequestOf<O>): Promise<HelperResult<O>>;
  close(): Promise<void>;
}

function issuesText(e: z.ZodError): string {
  return e.issues.map((i) => `${i.path.length ? `${i.path.join('.')}: ` : ''}${i.message}`).join('; ');
}

/** Validates one request; the WgError says exactly what was refused. */
export function parseHelperRequest(v: unknown): { ok: true; request: HelperRequest } | { ok: false; error: WgError } {
  const r = HelperRequest.safeParse(v);
  if (r.success) return { ok: true, request: r.data };
  return { ok: false, error: new WgError('invalid', `helper request refused: ${issuesText(r.error)}`) };
}

/** Splits a wire line into its id and the request (validated). */
export function parseHelperLine(line: string): { id: number | null; parsed: ReturnType<typeof parseHelperRequest> } {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return { id: null, parsed: { ok: false, error: new WgError('invalid', 'helper request is not JSON') } };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    return { id: null, parsed: { ok: false, error: new WgError('invalid', 'helper request is not a JSON object') } };
  }
  const { id, ...rest } = v as Record<string, unknown>;
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
    return { id: null, parsed: { ok: false, error: new WgError('invalid', 'helper request needs a non-negative integer id') } };
  }
  return { id, parsed: parseHelperRequest(rest) };
}
