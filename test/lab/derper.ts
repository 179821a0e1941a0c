// A real Tailscale DERP relay (tailscale.com/cmd/derper, pinned v1.100.0) inside the NAT lab (see
// the team reference real-peers.md, derper section). The binary is built by test/setup/ensure-peers.sh next to
// tailscaled. derper runs in the lab's `srv` namespace on one srv address:
//  - DERP over HTTPS on IP:443 with a self-signed certificate for the IP (made with openssl, `-certmode manual`);
//    DERP map entries for it say `insecurefortests: true`, so Tailscale clients skip verification for this node only;
//  - STUN on IP:stunPort (UDP). derper binds STUN to the host part of `-a` (derper.go: JoinHostPort(listenHost,
//    stun-port)), so it does not take the port on the other srv addresses. It does so in a goroutine that ignores a
//    bind error, though: if another process already holds IP:stunPort (coturn from services.ts listens on
//    203.0.113.10 and .11, ports 3478/3479; headscale's embedded DERP on its listen IP:3478), derper would start
//    without STUN and the other server would answer. startDerper() therefore checks that derper owns the socket and
//    fails otherwise; pick another `ip` (e.g. .12-.14), another stunPort, or stunPort -1 (no STUN) in such labs.
//  - no plain-HTTP port (`-http-port=-1`), no mesh key (`-mesh-psk-file=`, so no stray key file on the host is
//    read), no client verification (the default: it would need a local tailscaled). Its private key is written to the
//    per-run directory (`-c`). derper makes no outbound connections with these flags.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Lab, LabProcess } from './lab.ts';
import { peersDir, type DerpNodeSpec } from './headscale.ts';
import { TAILSCALE_VERSION } from './tailscaled.ts';

export interface Derper {
  /** DERP region id; default 901. */
  regionId: number;
  /** The srv address derper listens on; default 203.0.113.11. */
  ip: string;
  /** https://IP (DERP at /derp, probe at /derp/probe). */
  url: string;
  /** UDP STUN port on `ip`; -1 when STUN is off. */
  stunPort: number;
  /** The DERP map node for derpMapYaml() (region code "lab<regionId>", insecureForTests). */
  node: DerpNodeSpec;
  /** The self-signed certificate derper serves (PEM). */
  certPath: string;
  proc: LabProcess;
  /**
   * derper's expvars (GET /debug/vars, fetched from srv with the derper's IP as source, which TS_ALLOW_DEBUG_IP
   * admits): e.g. `derp.gauge_current_connections`, `derp.packets_received`, `derp.packets_sent`.
   */
  debugVars(): Promise<Record<string, unknown>>;
  /** SIGTERM, waits for the exit (SIGKILL after 3 s). */
  stop(): Promise<void>;
}

export interface StartDerperOptions {
  /** One of the srv addresses; default 203.0.113.11. */
  ip?: string;
  /** Default 901. */
  regionId?: number;
  /** UDP STUN port on `ip`; default 3478; -1 = no STUN (`-stun=false`). */
  stunPort?: number;
}

const READY_TIMEOUT_MS = 15_000;
const DERP_PORT = 443;

/** Path of the pinned derper binary; throws (saying how to build it) when it is missing. */
export function derperBinary(): string {
  const p = join(peersDir(), `tailscale-v${TAILSCALE_VERSION}`, 'derper');
  if (!existsSync(p)) {
    throw new Error(`derper ${TAILSCALE_VERSION} is not installed at ${p}; run: bash test/setup/ensure-peers.sh tailscale`);
  }
  return p;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Starts derper in srv and waits (bounded, ~15 s) until GET https://IP/derp/probe answers 200 from inet and, unless
 * STUN is off, derper itself holds the STUN socket.
 */
export async function startDerper(lab: Lab, opts: StartDerperOptions = {}): Promise<Derper> {
  const bin = derperBinary();
  const ip = opts.ip ?? '203.0.113.11';
  const regionId = opts.regionId ?? 901;
  const stunPort = opts.stunPort ?? 3478;
  if (!lab.addr.srv.includes(ip)) throw new Error(`derper: ${ip} is not a srv address (${lab.addr.srv.join(', ')})`);
  if (stunPort !== -1 && !(Number.isInteger(stunPort) && stunPort > 0 && stunPort < 65536)) {
    throw new Error(`derper: bad stunPort ${stunPort}`);
  }

  const dir = join(lab.tmpDir, `derper-${ip}`);
  if (existsSync(dir)) throw new Error(`derper is already running on ${ip} in this lab`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // derper's manual mode reads CERTDIR/HOSTNAME.crt and .key (HOSTNAME with [^a-zA-Z0-9-.] removed; an IP stays).
  const certPath = join(dir, `${ip}.crt`);
  const keyPath = join(dir, `${ip}.key`);
  const cert = await lab.exec(
    'srv',
    [
      'openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-subj', `/CN=${ip}`, '-addext', `subjectAltName=IP:${ip}`, '-keyout', keyPath, '-out', certPath,
    ],
    { timeoutMs: 15_000 },
  );
  if (cert.code !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`derper: openssl req failed (code ${String(cert.code)}): ${cert.stdout}${cert.stderr}`);
  }

  const url = `https://${ip}`;
  const argv = [
    bin,
    '-a', `${ip}:${DERP_PORT}`,
    '-certmode', 'manual',
    '-certdir', dir,
    '-hostname', ip,
    '-http-port=-1',
    '-c', join(dir, 'derper.key'),
    '-mesh-psk-file=',
  ];
  argv.push(...(stunPort === -1 ? ['-stun=false'] : ['-stun-port', String(stunPort)]));
  // TS_ALLOW_DEBUG_IP: /debug/ answers requests from this source address (only processes in srv can use it).
  const proc = lab.spawn('srv', argv, { env: { TS_ALLOW_DEBUG_IP: ip } });
  let exitCode: number | null | undefined;
  void proc.exited.then((c) => {
    exitCode = c;
  });
  const fail = (what: string): Error =>
    new Error(`derper on ${ip}: ${what}\n--- derper output (tail) ---\n${proc.output().slice(-4000)}`);

  try {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let last = '';
    for (;;) {
      if (exitCode !== undefined) throw fail(`exited (code ${String(exitCode)}) while starting`);
      const r = await lab.exec(
        'inet',
        ['curl', '-sk', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2', `${url}/derp/probe`],
        { timeoutMs: 5_000 },
      );
      if (r.stdout.trim() === '200') break;
      last = `curl code ${String(r.code)}, HTTP ${r.stdout.trim()} ${r.stderr.trim()}`;
      if (Date.now() > deadline) throw fail(`GET ${url}/derp/probe did not answer 200 within ${READY_TIMEOUT_MS} ms (${last})`);
      await sleep(100);
    }
    if (stunPort !== -1) {
      // derper binds STUN in a goroutine and ignores a bind failure: make sure the socket is derper's.
      const ss = await lab.exec('srv', ['ss', '-Hulnp', 'src', `${ip}:${stunPort}`], { timeoutMs: 10_000 });
      if (!ss.stdout.includes(`pid=${proc.pid},`)) {
        throw fail(
          `UDP ${ip}:${stunPort} (STUN) is not held by derper (pid ${proc.pid}); another server in this lab has it? ` +
            `ss: ${ss.stdout.trim() || '(nothing listening)'}${ss.stderr}`,
        );
      }
    }
  } catch (e) {
    await proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true }); // so a retry on this IP is possible
    throw e;
  }

  const node: DerpNodeSpec = {
    regionId,
    regionCode: `lab${regionId}`,
    name: `${regionId}a`,
    hostName: ip,
    ipv4: ip,
    derpPort: DERP_PORT,
    stunPort,
    insecureForTests: true,
  };

  return {
    regionId,
    ip,
    url,
    stunPort,
    node,
    certPath,
    proc,
    async debugVars() {
      const r = await lab.exec(
        'srv',
        ['curl', '-sk', '--fail', '--max-time', '5', '--interface', ip, `${url}/debug/vars`],
        { timeoutMs: 10_000 },
      );
      let v: unknown;
      try {
        v = JSON.parse(r.stdout);
      } catch {
        throw new Error(`derper /debug/vars (curl code ${String(r.code)}): ${r.stdout.slice(0, 2000)}${r.stderr}`);
      }
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`derper /debug/vars: ${r.stdout.slice(0, 2000)}`);
      return v as Record<string, unknown>;
    },
    async stop() {
      await proc.kill('SIGTERM');
    },
  };
}
