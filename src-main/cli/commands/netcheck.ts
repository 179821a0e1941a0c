/**
 * `weft netcheck [--json] [--stun HOST:PORT]... [--derp-map FILE]`: probe the NAT and print the report.
 * STUN servers come from --stun (in order; the first RFC 5780 one drives the behaviour tests) and from the
 * DERP map's nodes (which also give region latencies and the preferred region).
 */
import { lookup } from 'node:dns/promises';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { DerpMap, stunPort } from '../../../src-shared/model/derp-map.ts';
import { NetcheckReport } from '../../../src-shared/model/netcheck.ts';
import { runNetcheck, type NetcheckTarget } from '../../engine/netcheck/prober.ts';
import { explain } from '../../engine/netcheck/report.ts';
import { parseHostPort } from '../../protocol/wire/addr.ts';
import { CliError, parseFlags, type Command } from '../command.ts';
import { portMappingProbe } from '../../engine/netcheck/portmap-report.ts';

const usage = `usage: weft netcheck [--json] [--stun HOST:PORT]... [--derp-map FILE] [--no-portmap] [--port N]

  --stun HOST:PORT   a STUN server (repeatable); RFC 5780 servers give mapping and filtering
  --derp-map FILE    a DERP map (tailcfg JSON); its STUN nodes are probed for region latency
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
  const out: NetcheckTarget[] = [];
  const regions = Object.values(parsed.data.Regions).sort((x, y) => x.RegionID - y.RegionID);
  for (const r of regions) {
    if (r.NoMeasureNoHome) continue;
    const nodes = (r.Nodes ?? []).filter((n) => stunPort(n) !== null && n.IPv4 !== 'none').slice(0, 2);
    for (const n of nodes) {
      const ip = n.IPv4 ? n.IPv4 : await resolveHost(n.HostName);
      out.push({ addr: { ip, port: stunPort(n)! }, regionId: r.RegionID });
    }
  }
  return out;
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
    if (targets.length === 0) throw new CliError(`no STUN servers: give --stun HOST:PORT or --derp-map FILE\n\n${usage}`);
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
