/**
 * weftd in a lab namespace, and the dev bridge as its client: what the app-e2e, create-network and demo runs
 * start where they used to start a dev bridge that held the engine itself.
 */
import { join } from 'node:path';
import type { HostName, Lab, LabProcess } from './lab.ts';
import { WEFT } from './peers.ts';

export interface Weftd {
  proc: LabProcess;
  /** The daemon's data directory (settings, networks, keys). */
  stateDir: string;
  /** The run directory of its local API (both sockets). */
  runDir: string;
  iface: string;
}

/** Starts `weft daemon` in `host` with its own state and run directories; resolves once it serves. */
export async function startWeftd(lab: Lab, host: HostName, o: { name: string; iface: string; env?: Record<string, string>; extra?: string[] }): Promise<Weftd> {
  const stateDir = join(lab.tmpDir, `${o.name}-state`);
  const runDir = join(lab.tmpDir, `${o.name}-run`);
  const proc = lab.spawn(host, [...WEFT, 'daemon', '--state-dir', stateDir, '--socket-dir', runDir, '--iface', o.iface, ...(o.extra ?? [])], o.env ? { env: o.env } : {});
  await proc.waitForOutput(/weftd: ready/, 30_000);
  return { proc, stateDir, runDir, iface: o.iface };
}

export interface Bridge {
  proc: LabProcess;
  /** The page to open, with the bridge URL and its token. */
  url: string;
  /** ws://127.0.0.1:PORT/?token=… */
  bridgeUrl: string;
}

/** The printed line: `weft dev bridge: http://127.0.0.1:P/?bridge=ws://127.0.0.1:P2/?token=T`. */
export const BRIDGE_LINE = /weft dev bridge: (http:\/\/127\.0\.0\.1:\d+\/\?bridge=(ws:\/\/127\.0\.0\.1:\d+\/\?token=[\w-]+))/;

/** Starts `weft dev-bridge` for weftd's run directory; resolves with the page URL once Vite serves. */
export async function startBridge(lab: Lab, host: HostName, d: Weftd, o: { viteCache: string; env?: Record<string, string>; extra?: string[] }): Promise<Bridge> {
  const proc = lab.spawn(host, [...WEFT, 'dev-bridge', '--socket-dir', d.runDir, '--vite-cache', o.viteCache, ...(o.extra ?? [])], o.env ? { env: o.env } : {});
  const m = await proc.waitForOutput(BRIDGE_LINE, 60_000);
  return { proc, url: m[1]!, bridgeUrl: m[2]! };
}
