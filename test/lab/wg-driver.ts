// Lab driver for WireGuard interfaces: runs inside a lab namespace (lab.spawn) and drives the engine's
// wireguard-go WgInterface, because a device is created in the namespace of the process that spawns wireguard-go.
//
//   node --import tsx test/lab/wg-driver.ts local
//
// Commands arrive on stdin as JSON lines {id, cmd, ...}; each gets one stdout line {id, ok, result|error}.
// Keys travel as hex. The first stdout line is {"ready":true,"pid":N}.
import { createInterface } from 'node:readline';
import { fromHex, toHex } from '../../src-main/protocol/wire/hex.ts';
import type { WgConfig } from '../../src-main/engine/wg/config.ts';
import type { WgInterface } from '../../src-main/engine/wg/iface.ts';
import { cleanupStaleInterfaces } from '../../src-main/engine/wg/stale.ts';
import { startWireguardGo } from '../../src-main/engine/wg/wireguard-go.ts';
import { WgToolsConfigurator } from '../../src-main/engine/wg/kernel.ts';
import { execRunner } from '../../src-main/engine/io/exec.ts';

export type DriverCommand =
  | { id: number; cmd: 'create'; name: string; configVia?: 'uapi' | 'wg' }
  | { id: number; cmd: 'up'; name: string; addresses: string[]; mtu?: number }
  | { id: number; cmd: 'set'; name: string; config: WireConfig }
  | { id: number; cmd: 'routes'; name: string; prefixes: string[] }
  | { id: number; cmd: 'stats'; name: string }
  | { id: number; cmd: 'close'; name: string }
  | { id: number; cmd: 'cleanup'; prefix: string }
  | { id: number; cmd: 'exit' };

export interface WireConfig {
  privateKey: string;
  listenPort: number;
  peers: { publicKey: string; endpoint: { ip: string; port: number } | null; allowedIPs: string[]; persistentKeepalive?: number }[];
}

export type DriverReply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: { code: string; message: string } };

function toConfig(w: WireConfig): WgConfig {
  return {
    privateKey: fromHex(w.privateKey),
    listenPort: w.listenPort,
    peers: w.peers.map((p) => ({ ...p, publicKey: fromHex(p.publicKey) })),
  };
}

async function serve(): Promise<void> {
  const ifaces = new Map<string, WgInterface>();
  const get = (name: string): WgInterface => {
    const i = ifaces.get(name);
    if (!i) throw new Error(`driver: no interface ${name}`);
    return i;
  };
  const out = (r: DriverReply): void => {
    process.stdout.write(`${JSON.stringify(r)}\n`);
  };
  const handle = async (c: DriverCommand): Promise<unknown> => {
    switch (c.cmd) {
      case 'create':
      {
        const dev = await startWireguardGo({ name: c.name });
        if (c.configVia !== 'wg') {
          ifaces.set(c.name, dev);
          return {};
        }
        // Set and stats through `wg` (the kernel backend's configuration channel, kernel.ts), the rest as usual.
        const tools = new WgToolsConfigurator(c.name, execRunner);
        ifaces.set(c.name, {
          name: c.name,
          up: (o) => dev.up(o),
          routes: (p) => dev.routes(p),
          close: () => dev.close(),
          set: (cfg) => tools.set(cfg),
          forgetEndpoint: (k) => tools.forgetEndpoint(k),
          stats: () => tools.stats(),
        });
        return {};
      }
      case 'up':
        await get(c.name).up({ addresses: c.addresses, ...(c.mtu !== undefined ? { mtu: c.mtu } : {}) });
        return {};
      case 'set':
        await get(c.name).set(toConfig(c.config));
        return {};
      case 'routes':
        await get(c.name).routes(c.prefixes);
        return {};
      case 'stats':
        return (await get(c.name).stats()).map((p) => ({ ...p, publicKey: toHex(p.publicKey) }));
      case 'close':
        await get(c.name).close();
        ifaces.delete(c.name);
        return {};
      case 'cleanup':
        return cleanupStaleInterfaces(c.prefix);
      case 'exit':
        for (const i of ifaces.values()) await i.close();
        process.stdout.write(`${JSON.stringify({ id: c.id, ok: true, result: {} })}\n`);
        process.exit(0);
    }
  };
  process.stdout.write(`${JSON.stringify({ ready: true, pid: process.pid })}\n`);
  let chain = Promise.resolve();
  for await (const line of createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    const c = JSON.parse(line) as DriverCommand;
    chain = chain.then(async () => {
      try {
        out({ id: c.id, ok: true, result: await handle(c) });
      } catch (e) {
        const err = e as Error & { code?: string };
        out({ id: c.id, ok: false, error: { code: err.code ?? 'error', message: err.message } });
      }
    });
  }
  await chain;
  for (const i of ifaces.values()) await i.close();
}

const [mode] = process.argv.slice(2);
if (mode === 'local') {
  await serve();
} else {
  process.stderr.write('usage: wg-driver.ts local\n');
  process.exitCode = 2;
}
