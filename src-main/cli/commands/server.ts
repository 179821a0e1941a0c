/**
 * `weft server`: the embedded headscale-compatible control server, and the entry to its admin verbs.
 *
 *   weft server --listen ADDR [--server-url URL] [--data DIR] [--derp] [--stun ADDR]   serve until SIGINT/SIGTERM
 *   weft server … [--policy FILE]                                                    with an ACL policy
 *   weft server users|preauthkeys|nodes|policy …                                     admin (server-admin.ts)
 *
 * The admin verbs and the SQLite store are loaded lazily, so the rest of the CLI never loads the native
 * SQLite module, and a build without them still serves a clear message instead of a crash.
 */
import { parseHostPort } from '../../protocol/wire/addr.ts';
import { ensureDataDir } from '../../server/control/noise-key.ts';
import { startServerStack } from '../../server/stack.ts';
import { HA_PROBE_INTERVAL_MS, HA_PROBE_TIMEOUT_MS } from '../../server/control/constants.ts';
import { checkDnsSettings, DEFAULT_BASE_DOMAIN, parseExtraRecord, parseSplitDns } from '../../server/control/dns-config.ts';
import { defaultServerDataDir, serverDbPath } from '../../server/store/paths.ts';
import type { ServerStore } from '../../server/store/types.ts';
import { CliError, parseFlags, untilSignal, type Command } from '../command.ts';

const ADMIN_GROUPS = new Set(['users', 'user', 'preauthkeys', 'preauthkey', 'nodes', 'node', 'policy', 'policies']);

const usage = `usage: weft server --listen ADDR [--server-url URL] [--data DIR] [--derp] [--stun ADDR] [--policy FILE] [DNS flags]
       weft server users|preauthkeys|nodes|policy <verb> [flags]   (run 'weft server users --help')

  --listen ADDR       HTTP listen address, e.g. 0.0.0.0:8080 (TLS is a reverse proxy's job)
  --server-url URL    the URL clients use (default http://ADDR); AuthURLs and the tailnet name come from it
  --data DIR          database and keys (default ${defaultServerDataDir()})
  --derp              serve an embedded DERP relay on /derp and hand it out as region 999
  --stun ADDR         serve STUN on this UDP address (e.g. 0.0.0.0:3478) and put it in the DERP map
  --policy FILE       ACL policy in headscale's format (JSON or HuJSON), reloaded when it changes; a bad
                      change is refused (see the log) and the last good policy stays, also across a restart
                      (a copy is kept in the data directory). Check one with 'weft server policy check FILE'.
                      Without it every node may reach every other.
  --ha-probe-interval SECONDS  how often subnet routers with a standby are pinged (default 10, at least 2;
                      0 turns the HA prober off); one that does not answer in time loses its routes to the standby
  --ha-probe-timeout SECONDS   how long a pinged router has to answer (default 5, at least 1, below the interval)

  DNS (sent to every node; MagicDNS is on by default, as in headscale):
  --base-domain NAME  node names are NAME-of-node.NAME (default ${DEFAULT_BASE_DOMAIN})
  --no-magic-dns      nodes do not answer names at 100.100.100.100 (names stay under the base domain)
  --nameserver IP     the nodes' DNS server for other names (repeatable); without one they keep their own
  --search-domain D   an extra search domain (repeatable)
  --split-dns D=IP[,IP]  names under D go to these servers (repeatable; "D=" answers them on the node)
  --extra-record NAME=IP an extra A/AAAA record (repeatable)`;

const stamp = (): string => new Date().toISOString();

/** "host:port" or "[v6]:port", where port 0 (any free port) is allowed, unlike in parseHostPort. */
function listenAddr(s: string): { host: string; port: number } | null {
  const any = /:0$/.test(s);
  const p = parseHostPort(any ? `${s.slice(0, -1)}1` : s);
  return p && { host: p.host, port: any ? 0 : p.port };
}

/** The admin verbs, loaded on demand. */
async function runAdmin(argv: string[]): Promise<number> {
  let mod: { serverAdmin?: unknown };
  try {
    mod = (await import('./server-admin.ts')) as { serverAdmin?: unknown };
  } catch (e) {
    throw new CliError(`the admin commands are not available in this build (${(e as Error).message})`, 1);
  }
  if (typeof mod.serverAdmin !== 'function') throw new CliError('the admin commands are not available in this build (server-admin.ts has no serverAdmin)', 1);
  const run = mod.serverAdmin as (argv: string[]) => Promise<number>;
  return run(argv);
}

async function openStore(dataDir: string): Promise<ServerStore> {
  let mod: { openSqliteStore?: unknown };
  try {
    mod = (await import('../../server/store/sqlite.ts')) as { openSqliteStore?: unknown };
  } catch (e) {
    throw new CliError(`the SQLite store is not available in this build (${(e as Error).message})`, 1);
  }
  if (typeof mod.openSqliteStore !== 'function') throw new CliError('the SQLite store is not available in this build', 1);
  const open = mod.openSqliteStore as (path: string) => ServerStore;
  return open(serverDbPath(dataDir));
}

/**
 * The HA prober's timing from --ha-probe-interval/--ha-probe-timeout (seconds), checked as headscale checks
 * node.routes.ha: interval 0 (off) or at least 2 s; timeout at least 1 s and shorter than the interval.
 */
export function haProbeSettings(interval: string | undefined, timeout: string | undefined): { haProbeIntervalMs: number; haProbeTimeoutMs: number } {
  const seconds = (flag: string, v: string | undefined, dflt: number): number => {
    if (v === undefined) return dflt;
    const n = /^\d+(\.\d+)?$/.test(v.trim()) ? Number(v) : NaN;
    if (!Number.isFinite(n)) throw new CliError(`--${flag} must be a number of seconds, got "${v}"`);
    return Math.round(n * 1000);
  };
  const haProbeIntervalMs = seconds('ha-probe-interval', interval, HA_PROBE_INTERVAL_MS);
  const haProbeTimeoutMs = seconds('ha-probe-timeout', timeout, HA_PROBE_TIMEOUT_MS);
  if (haProbeIntervalMs !== 0 && haProbeIntervalMs < 2000) throw new CliError('--ha-probe-interval must be 0 (off) or at least 2 seconds');
  if (haProbeIntervalMs !== 0 && (haProbeTimeoutMs < 1000 || haProbeTimeoutMs >= haProbeIntervalMs)) {
    throw new CliError('--ha-probe-timeout must be at least 1 second and shorter than --ha-probe-interval');
  }
  return { haProbeIntervalMs, haProbeTimeoutMs };
}

export const serverCommand: Command = {
  summary: 'run the headscale-compatible control server, or administer it',
  async run(argv) {
    if (argv[0] && ADMIN_GROUPS.has(argv[0])) return runAdmin(argv);
    const { values } = parseFlags(
      argv,
      {
        listen: { type: 'string' },
        'server-url': { type: 'string' },
        data: { type: 'string' },
        derp: { type: 'boolean' },
        stun: { type: 'string' },
        policy: { type: 'string' },
        'ha-probe-interval': { type: 'string' },
        'ha-probe-timeout': { type: 'string' },
        'base-domain': { type: 'string' },
        'no-magic-dns': { type: 'boolean' },
        nameserver: { type: 'string', multiple: true },
        'search-domain': { type: 'string', multiple: true },
        'split-dns': { type: 'string', multiple: true },
        'extra-record': { type: 'string', multiple: true },
        help: { type: 'boolean' },
      },
      usage,
    );
    if (values.help) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    if (!values.listen) throw new CliError(`--listen is required\n\n${usage}`);
    const listen = listenAddr(values.listen);
    if (!listen) throw new CliError(`--listen must be HOST:PORT, got "${values.listen}"`);
    let serverUrl: URL | undefined;
    if (values['server-url']) {
      try {
        serverUrl = new URL(values['server-url']);
      } catch {
        throw new CliError(`--server-url must be a URL, got "${values['server-url']}"`);
      }
      if (serverUrl.protocol !== 'http:' && serverUrl.protocol !== 'https:') throw new CliError('--server-url must be http:// or https://');
    }
    const stunAddr = values.stun === undefined ? null : listenAddr(values.stun);
    if (stunAddr === null && values.stun !== undefined) throw new CliError(`--stun must be IP:PORT, got "${values.stun}"`);
    const split: Record<string, string[]> = {};
    for (const t of values['split-dns'] ?? []) {
      const r = parseSplitDns(t);
      if (!r) throw new CliError(`--split-dns must be DOMAIN=IP[,IP…], got "${t}"`);
      split[r[0]] = r[1];
    }
    const records = (values['extra-record'] ?? []).map((t) => {
      const r = parseExtraRecord(t);
      if (!r) throw new CliError(`--extra-record must be NAME=IP, got "${t}"`);
      return r;
    });
    const dnsCheck = checkDnsSettings({
      magicDns: values['no-magic-dns'] !== true,
      baseDomain: values['base-domain'] ?? DEFAULT_BASE_DOMAIN,
      nameservers: values.nameserver ?? [],
      searchDomains: values['search-domain'] ?? [],
      split,
      extraRecords: records,
    });
    if (dnsCheck.kind === 'error') throw new CliError(dnsCheck.error);
    const ha = haProbeSettings(values['ha-probe-interval'], values['ha-probe-timeout']);
    const dataDir = values.data ?? defaultServerDataDir();
    const log = (l: string): void => void process.stderr.write(`${stamp()} ${l}\n`);

    await ensureDataDir(dataDir);
    const store = await openStore(dataDir);
    try {
      const stack = await startServerStack({
        listen,
        ...(serverUrl ? { serverUrl } : {}),
        store,
        dataDir,
        derp: values.derp === true,
        stun: stunAddr,
        ...(values.policy ? { policyFile: values.policy } : {}),
        dns: dnsCheck.settings,
        control: ha,
        logf: log,
      }).catch((e: unknown) => {
        throw new CliError(`cannot start: ${(e as Error).message}`, 1);
      });
      try {
        process.stdout.write(`weft server: ready on ${stack.address.host}:${stack.address.port} (clients use ${stack.url.origin})\n`);
        await untilSignal();
        log('server: shutting down');
      } finally {
        await stack.close();
      }
    } finally {
      store.close();
    }
    return 0;
  },
};
