/**
 * `weft netcheck [--json] [--stun HOST:PORT]... [--derp-map FILE] [--state-dir DIR]`: probe the NAT and print
 * the report. STUN servers come from --stun (in order; the first RFC 5780 one drives the behaviour tests) and
 * from the DERP map's nodes (which also give region latencies and the preferred region): a file, or, when
 * neither option is given, the control server's map from the running engine.
 */
import { lookup } from 'node:dns/promises';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { DerpMap } from '../../../src-shared/model/derp-map.ts';
import { NetcheckReport } from '../../../src-shared/model/netcheck.ts';
import { netcheckTargetsFromMap, runNetcheck, type NetcheckTarget } from '../../engine/netcheck/prober.ts';
import { connectDaemon } from '../../daemon/api-client.ts';
import { explain } from '../../engine/netcheck/report.ts';
import { parseHostPort } from '../../protocol/wire/addr.ts';
import { CliError, parseFlags, type Command } from '../command.ts';
import { RUN_DIR_FLAGS, runDirOf } from '../daemon-call.ts';
import { portMappingProbe } from '../../engine/netcheck/portmap-report.ts';

const usage = `usage: weft netcheck [--json] [--stun HOST:PORT]... [--derp-map FILE] [--socket-dir DIR | --state-dir DIR] [--no-portmap] [--port N]

  --stun HOST:PORT   a STUN server (repeatable); RFC 5780 servers give mapping and filtering
  --derp-map FILE    a DERP map (tailcfg JSON); its STUN nodes are probed for region latency
  --socket-dir DIR   without --stun and --derp-map: use the DERP map of the engine running there (weftd)
  --state-dir DIR    the same, for a foreground weft up with that state directory
  --no-portmap       skip the NAT-PMP / PCP / UPnP probe
  --port N           local UDP port for the main probe socket (default: any)
  --json             print one JSON object instead of the human report`;

async function resolveHost(host: string): Promise<string> {
  if (isIP(host)) return host;
  try {
    return (await lookup(host, { family: 4 })).address;
  } catch (e) {
    throw new CliError(`cannot resolve STUN host "${host}": ${(e as Error).message}`, 1);
  }
}

/** Reads a DERP map file and turns its STUN-capable nodes into probe targets (up to two nodes a region). */
export async function derpTargets(file: string): Promise<NetcheckTarget[]> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new CliError(`cannot read DERP map ${file}: ${(e as Error).message}`, 1);
  }
  const parsed = DerpMap.safeParse(json);
  if (!parsed.success) throw new CliError(`DERP map ${file} is not a valid tailcfg DERPMap: ${parsed.error.issues[0]?.message ?? 'invalid'}`, 1);
  return netcheckTargetsFromMap(parsed.data, resolveHost);
}

/** The DERP map of the running `weft up` (the control server's), or null when no node is running there. */
async function runningDerpMap(runDir: string): Promise<DerpMap | null> {
  const daemon = await connectDaemon(runDir).catch(() => null);
  if (!daemon) return null;
  try {
    const r = await daemon.invoke('engine:derp-map', {});
    if (!r.ok) throw new CliError(`the running weft: ${r.error.message}`, 1);
    return r.value;
  } finally {
    daemon.close();
  }
}

export const netcheckCommand: Command = {
  summary: 'probe the NAT',
  async run(argv) {
    const { values } = parseFlags(
      argv,
      {
        json: { type: 'boolean' },
        stun: { type: 'string', multiple: true },
        'derp-map': { type: 'string' },
        'no-portmap': { type: 'boolean' },
        port: { type: 'string' },
        ...RUN_DIR_FLAGS,
        help: { type: 'boolean' },
      },
      usage,
    );
    if (values.help) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    const targets: NetcheckTarget[] = [];
    for (const s of values.stun ?? []) {
      const hp = parseHostPort(s, 3478);
      if (!hp) throw new CliError(`--stun must be HOST:PORT, got "${s}"`);
      targets.push({ addr: { ip: await resolveHost(hp.host), port: hp.port }, regionId: null });
    }
    if (values['derp-map']) targets.push(...(await derpTargets(values['derp-map'])));
    if (targets.length === 0) {
      // Neither given: use the control server's DERP map, from the running node.
      const map = await runningDerpMap(runDirOf(values));
      if (map) targets.push(...(await netcheckTargetsFromMap(map, resolveHost)));
      if (targets.length === 0) {
        throw new CliError(`no STUN servers: give --stun HOST:PORT or --derp-map FILE, or run weft up so the control server's DERP map can be used\n\n${usage}`);
      }
    }
    const localPort = values.port === undefined ? 0 : Number(values.port);
    if (!Number.isInteger(localPort) || localPort < 0 || localPort > 65535) throw new CliError(`--port must be 0-65535, got "${values.port}"`);

    const report = NetcheckReport.parse(
      await runNetcheck({
        targets,
        localPort,
        ...(values['no-portmap'] ? {} : { portMapping: portMappingProbe() }),
      }),
    );
    process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${explain(report).join('\n')}\n`);
    return 0;
  },
};
