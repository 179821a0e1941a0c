/**
 * The plain-HTTP side of the DERP server, answered the way Tailscale's derper answers (derp/derpserver/handler.go,
 * cmd/derper/derper.go):
 *
 *   GET|HEAD /derp/probe, /derp/latency-check  200, empty, Access-Control-Allow-Origin: *  (HTTPS latency probes)
 *   other methods there                         405 "bogus probe method"
 *   /generate_204                               204, Cache-Control: no-cache…; echoes X-Tailscale-Challenge as
 *                                               X-Tailscale-Response: "response <challenge>" when the challenge is
 *                                               ≤ 64 chars of [A-Za-z0-9._:-] (captive-portal detection)
 *   /derp without Upgrade: DERP                 426 "DERP requires connection upgrade"
 *
 * and the bytes written on the hijacked socket of an accepted upgrade (101 with Derp-Version and the server key
 * as raw hex, as derper writes it). The upgrade itself is handled by server.ts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PROTOCOL_VERSION } from '../../protocol/wire/derp.ts';
import { toHex } from '../../protocol/wire/hex.ts';

export const DERP_PATH = '/derp';
export const PROBE_PATHS: readonly string[] = ['/derp/probe', '/derp/latency-check'];
export const NO_CONTENT_PATH = '/generate_204';
export const NO_CONTENT_CHALLENGE_HEADER = 'X-Tailscale-Challenge';
export const NO_CONTENT_RESPONSE_HEADER = 'X-Tailscale-Response';
/** Header a fast-start client sends when it already knows the server key (it then expects no HTTP response). */
export const FAST_START_HEADER = 'Derp-Fast-Start';

const UPGRADE_REQUIRED_TEXT = 'DERP requires connection upgrade';

/** The path of a request URL without its query ("/derp?x" → "/derp"); "" when unparsable. */
export function pathOf(url: string | undefined): string {
  if (!url) return '';
  const q = url.search(/[?#]/);
  return q < 0 ? url : url.slice(0, q);
}

/** Go's http.Error: text/plain body with a trailing newline, nosniff. */
function httpError(res: ServerResponse, status: number, text: string): void {
  const body = `${text}\n`;
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'X-Content-Type-Options': 'nosniff',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

/** derper's ProbeHandler. */
export function serveProbe(req: IncomingMessage, res: ServerResponse): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    httpError(res, 405, 'bogus probe method');
    return;
  }
  res.writeHead(200, { 'Access-Control-Allow-Origin': '*', 'Content-Length': 0 });
  res.end();
}

/** Reports whether a captive-portal challenge may be echoed (derper: ≤ 64 chars, each in [A-Za-z0-9._:-]). */
export function isEchoableChallenge(challenge: string): boolean {
  return challenge.length <= 64 && /^[A-Za-z0-9._:-]*$/.test(challenge);
}

/** derper's ServeNoContent (any method). */
export function serveNoContent(req: IncomingMessage, res: ServerResponse): void {
  const raw = req.headers[NO_CONTENT_CHALLENGE_HEADER.toLowerCase()];
  const challenge = Array.isArray(raw) ? raw[0] : raw;
  if (challenge && isEchoableChallenge(challenge)) res.setHeader(NO_CONTENT_RESPONSE_HEADER, `response ${challenge}`);
  res.setHeader('Cache-Control', 'no-cache, no-store, must-revalidate, no-transform, max-age=0');
  res.writeHead(204);
  res.end();
}

/**
 * Answers the DERP server's plain HTTP paths (probe, latency-check, generate_204, and /derp without an upgrade).
 * Returns false, touching nothing, for any other path.
 */
export function handleDerpHttpRequest(req: IncomingMessage, res: ServerResponse): boolean {
  const path = pathOf(req.url);
  if (PROBE_PATHS.includes(path)) serveProbe(req, res);
  else if (path === NO_CONTENT_PATH) serveNoContent(req, res);
  else if (path === DERP_PATH) httpError(res, 426, UPGRADE_REQUIRED_TEXT);
  else return false;
  return true;
}

/** The raw 426 response for an upgrade request that is not `Upgrade: DERP` (written on the hijacked socket). */
export function upgradeRequiredResponse(): string {
  const body = `${UPGRADE_REQUIRED_TEXT}\n`;
  return (
    'HTTP/1.1 426 Upgrade Required\r\n' +
    'Content-Type: text/plain; charset=utf-8\r\n' +
    'X-Content-Type-Options: nosniff\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    'Connection: close\r\n\r\n' +
    body
  );
}

/** derper's 101 response, byte for byte; the key as raw hex (headscale writes "nodekey:<hex>"; clients ignore it). */
export function switchingProtocolsResponse(serverPub: Uint8Array): string {
  return (
    'HTTP/1.1 101 Switching Protocols\r\n' +
    'Upgrade: DERP\r\n' +
    'Connection: Upgrade\r\n' +
    `Derp-Version: ${PROTOCOL_VERSION}\r\n` +
    `Derp-Public-Key: ${toHex(serverPub)}\r\n\r\n`
  );
}

/** The first value of a request header, or undefined. */
export function headerValue(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}
