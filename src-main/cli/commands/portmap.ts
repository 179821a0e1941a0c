/**
 * `weft portmap --port N [--lifetime S] [--protocol P] [--json]`: asks the router (NAT-PMP, PCP or UPnP IGD) to forward a public
 * UDP port to local port N, prints the mapping, keeps it until SIGINT/SIGTERM (renewing at half its
 * lifetime), then releases it. A diagnostic for what the engine will do on its WireGuard socket.
 */
import { findDefaultGateway } from '../../engine/portmap/gateway.ts';
import { createMapping, probePortMapping, releaseMapping, type PortMapping } from '../../engine/portmap/portmapper.ts';
import { PORTMAP_PROBE_TIMEOUT_MS } from '../../engine/constants.ts';
import { mappingFailure } from '../../engine/netcheck/portmap-report.ts';
import { CliError, parseFlags, untilSignal, type Command } from '../command.ts';

const usage = `usage: weft portmap --port N [--lifetime SECONDS] [--protocol natpmp|pcp|upnp] [--json]

  --port N          local UDP port to forward
  --protocol P      use this protocol only (default: the best the router offers: NAT-PMP, PCP, then UPnP)
  --lifetime S      requested lifetime (default 7200); renewed at half the granted lifetime
  --json            print the mapping as JSON`;

export const portmapCommand: Command = {
  summary: 'create a port mapping on the router',
  async run(argv) {
    const { values } = parseFlags(argv, { port: { type: 'string' }, lifetime: { type: 'string' }, protocol: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean' } }, usage);
    if (values.help) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new CliError(`--port must be 1-65535\n\n${usage}`);
    const lifetimeS = values.lifetime === undefined ? 7200 : Number(values.lifetime);
    if (!Number.isInteger(lifetimeS) || lifetimeS < 1) throw new CliError('--lifetime must be a positive number of seconds');
    const prefer = values.protocol;
    if (prefer !== undefined && prefer !== 'natpmp' && prefer !== 'pcp' && prefer !== 'upnp') throw new CliError(`--protocol must be natpmp, pcp or upnp\n\n${usage}`);
    const gw = await findDefaultGateway();
    if (!gw) throw new CliError('no IPv4 default gateway', 1);
    const probe = await probePortMapping({ gateway: gw.gateway, localIp: gw.localIp, timeoutMs: PORTMAP_PROBE_TIMEOUT_MS });
    if (!probe.natpmp && !probe.pcp && !probe.upnp) throw new CliError(`the gateway ${gw.gateway} answers none of NAT-PMP, PCP and UPnP IGD`, 1);
    const protoName = prefer === 'upnp' ? 'UPnP' : prefer === 'pcp' || (!probe.natpmp && probe.pcp) ? 'PCP' : probe.natpmp ? 'NAT-PMP' : 'UPnP';
    const create = async (suggested?: number): Promise<PortMapping> => {
      const r = await createMapping({
        gateway: gw.gateway,
        localIp: gw.localIp,
        internalPort: port,
        lifetimeS,
        probe,
        ...(prefer ? { prefer } : {}),
        ...(suggested ? { suggestedExternalPort: suggested } : {}),
      });
      if (!r.ok) throw new CliError(mappingFailure(r, protoName), 1);
      return r.mapping;
    };
    let mapping = await create();
    const show = (m: PortMapping): string =>
      values.json
        ? JSON.stringify({ protocol: m.protocol, internalPort: m.internalPort, external: `${m.externalIp}:${m.externalPort}`, lifetimeS: m.lifetimeS, gateway: gw.gateway })
        : `mapped ${m.externalIp}:${m.externalPort} → ${gw.localIp}:${m.internalPort} via ${m.protocol} for ${m.lifetimeS} s`;
    process.stdout.write(`${show(mapping)}\n`);
    const signal = untilSignal();
    // Renew at half the granted lifetime until a signal arrives. A lifetime of 0 is a permanent UPnP lease: the
    // timer then never fires and only keeps the process alive while it waits (signal listeners do not).
    for (;;) {
      const renewMs = mapping.lifetimeS > 0 ? Math.max(1, Math.floor(mapping.lifetimeS / 2)) * 1000 : 2 ** 31 - 1;
      let handle: NodeJS.Timeout | undefined;
      const renew = new Promise<'renew'>((r) => (handle = setTimeout(() => r('renew'), renewMs)));
      const what = await Promise.race([signal, renew]);
      clearTimeout(handle);
      if (what !== 'renew') break;
      mapping = await create(mapping.externalPort);
    }
    await releaseMapping({ gateway: gw.gateway, localIp: gw.localIp, mapping });
    return 0;
  },
};
