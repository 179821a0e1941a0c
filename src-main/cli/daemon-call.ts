/**
 * How the CLI finds and calls the running engine (weftd, or a foreground `weft up`) over its local API.
 *
 * The run directory holding the two sockets is, in order: --socket-dir; the --state-dir of a foreground
 * `weft up` (which serves its API there, so several can run side by side in tests); $WEFT_RUN_DIR; /run/weft.
 */
import type { MethodName, MethodRequest, MethodResponse } from '../../src-shared/ipc/contract.ts';
import { connectDaemon, DaemonUnavailable, type DaemonClient } from '../daemon/api-client.ts';
import { DEFAULT_RUN_DIR } from '../daemon/api-server.ts';
import { isWeftInterfaceName } from '../engine/wg/iface.ts';
import { CliError } from './command.ts';

/** The flags every client command takes to find the engine. */
export const RUN_DIR_FLAGS = { 'socket-dir': { type: 'string' }, 'state-dir': { type: 'string' } } as const;

export const RUN_DIR_USAGE = `  --socket-dir DIR    where the running engine's sockets are (default: $WEFT_RUN_DIR or ${DEFAULT_RUN_DIR})
  --state-dir DIR     talk to the foreground \`weft up --state-dir DIR\` instead`;

export function runDirOf(values: { 'socket-dir'?: string | undefined; 'state-dir'?: string | undefined }): string {
  return values['socket-dir'] ?? values['state-dir'] ?? process.env['WEFT_RUN_DIR'] ?? DEFAULT_RUN_DIR;
}

export async function connectOrExplain(runDir: string): Promise<DaemonClient> {
  try {
    return await connectDaemon(runDir);
  } catch (e) {
    if (e instanceof DaemonUnavailable) throw new CliError(`weft is not running: ${e.message} (start it with "weft up" or the weftd service)`, 1);
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') throw new CliError(`cannot reach the Weft service in ${runDir}: permission denied`, 1);
    throw new CliError((e as Error).message, 1);
  }
}

/** One call on a fresh connection; an error answer becomes a CliError with the daemon's message. */
export async function callDaemon<M extends MethodName>(runDir: string, method: M, request: MethodRequest<M>, timeoutMs?: number): Promise<MethodResponse<M>> {
  const c = await connectOrExplain(runDir);
  try {
    const r = await c.invoke(method, request, timeoutMs);
    if (!r.ok) throw new CliError(r.error.message, 1);
    return r.value;
  } finally {
    c.close();
  }
}

/** --iface and --port of the commands that run an engine (weft daemon, weft up), checked. */
export function engineFlags(values: { iface?: string | undefined; port?: string | undefined }): { iface: string; udpPort: number } {
  const iface = values.iface ?? 'weft0';
  if (!isWeftInterfaceName(iface)) throw new CliError(`--iface must be "weft" followed by 1-10 of [0-9a-z], got "${iface}"`);
  const udpPort = values.port === undefined ? 41641 : Number(values.port);
  if (!Number.isInteger(udpPort) || udpPort < 0 || udpPort > 65535) throw new CliError(`--port must be 0-65535, got "${values.port}"`);
  return { iface, udpPort };
}
