// Probe tool for the NAT lab, run inside a namespace: `node --import tsx test/lab/udp-tool.ts CMD ...`
// (lab.ts exports udpToolArgv()). Every command is bounded in time. Output is one JSON object per line.
//
//   listen PORTSPEC SECONDS        PORTSPEC = PORT | IP:PORT[,IP:PORT...]; prints {"listening":[...]} once bound,
//                                  then {"from","port","hex","to"} per datagram.
//   send FROM_PORT IP:PORT HEX [WAIT_S]
//                                  sends one datagram from FROM_PORT (0 = any), prints {"sent","local"}; with
//                                  WAIT_S > 0 prints replies like `listen` until WAIT_S is over.
//   stun IP:PORT [FROM_PORT] [TIMEOUT_S]
//                                  STUN Binding Request (RFC 5389); prints {"mapped":"ip:port","local":port}.
//   natpmp GATEWAY [TIMEOUT_S]     NAT-PMP external address request (RFC 6886); prints {"result","epoch","address"}.
//   natpmp-map GATEWAY INTERNAL_PORT EXTERNAL_PORT LIFETIME [TIMEOUT_S]
//                                  NAT-PMP UDP mapping request; prints {"result","epoch","internal","external","lifetime"}.
//   pcp-announce GATEWAY [TIMEOUT_S]
//                                  PCP ANNOUNCE (RFC 6887); prints {"version","opcode","result","epoch"}.
//   agent SECONDS                  reads JSON commands from stdin (see AgentCommand) and reports events.
// Exit code: 0 ok, 1 timeout / no answer, 2 usage error.
import { createSocket } from 'node:dgram';
import type { RemoteInfo, Socket } from 'node:dgram';
import { createServer, connect } from 'node:net';
import type { Server } from 'node:net';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';

export type AgentCommand =
  | { op: 'bind'; id: string; port?: number; ip?: string }
  | { op: 'send'; id: string; to: string; port: number; hex: string }
  | { op: 'close'; id: string }
  | { op: 'tcp-listen'; id: string; ip?: string; port: number }
  | { op: 'tcp-connect'; id: string; to: string; port: number; timeoutMs?: number }
  | { op: 'exit' };

export type AgentEvent =
  | { ev: 'ready' }
  | { ev: 'bound'; id: string; port: number }
  | { ev: 'sent'; id: string; to: string; port: number }
  | { ev: 'recv'; id: string; from: string; port: number; hex: string }
  | { ev: 'closed'; id: string }
  | { ev: 'tcp-listening'; id: string; port: number }
  | { ev: 'tcp-accept'; id: string; from: string; port: number }
  | { ev: 'tcp-connect'; id: string; ok: boolean; error?: string }
  | { ev: 'error'; id?: string; message: string };

const MAX_SECONDS = 3600;

function out(obj: object): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

class UsageError extends Error {}

function num(s: string | undefined, what: string, min: number, max: number, dflt?: number): number {
  if (s === undefined) {
    if (dflt === undefined) throw new UsageError(`missing ${what}`);
    return dflt;
  }
  const n = Number(s);
  if (!Number.isFinite(n) || n < min || n > max) throw new UsageError(`bad ${what}: ${s}`);
  return n;
}

function hostPort(s: string | undefined, what: string): { ip: string; port: number } {
  if (s === undefined) throw new UsageError(`missing ${what}`);
  const i = s.lastIndexOf(':');
  if (i <= 0) throw new UsageError(`bad ${what} (want IP:PORT): ${s}`);
  return { ip: s.slice(0, i), port: num(s.slice(i + 1), `${what} port`, 1, 65535) };
}

function hexBytes(s: string): Buffer {
  if (!/^([0-9a-fA-F]{2})*$/.test(s)) throw new UsageError(`bad hex: ${s}`);
  return Buffer.from(s, 'hex');
}

function bindUdp(port: number, ip?: string): Promise<Socket> {
  return new Promise((res, rej) => {
    const s = createSocket('udp4');
    s.once('error', rej);
    s.bind({ port, address: ip, exclusive: true }, () => {
      s.removeListener('error', rej);
      res(s);
    });
  });
}

function recvLine(msg: Buffer, rinfo: RemoteInfo, to: string): object {
  return { from: rinfo.address, port: rinfo.port, hex: msg.toString('hex'), to };
}

/** Sends `req` (with retransmits at 250 ms, doubling) until `accept` returns a value or timeoutMs passes. */
function request<T>(
  sock: Socket,
  req: Buffer,
  ip: string,
  port: number,
  timeoutMs: number,
  accept: (msg: Buffer, rinfo: RemoteInfo) => T | undefined,
): Promise<T | undefined> {
  return new Promise((res) => {
    let interval = 250;
    let retx: NodeJS.Timeout | undefined;
    const send = (): void => {
      sock.send(req, port, ip);
      retx = setTimeout(send, interval);
      interval = Math.min(interval * 2, 2000);
    };
    const finish = (v: T | undefined): void => {
      clearTimeout(retx);
      clearTimeout(overall);
      sock.removeListener('message', onMsg);
      res(v);
    };
    const onMsg = (msg: Buffer, rinfo: RemoteInfo): void => {
      const v = accept(msg, rinfo);
      if (v !== undefined) finish(v);
    };
    const overall = setTimeout(() => finish(undefined), timeoutMs);
    sock.on('message', onMsg);
    send();
  });
}

const STUN_COOKIE = 0x2112a442;

/** Parses a STUN Binding Success Response for `txid`; returns "ip:port" from XOR-MAPPED-ADDRESS or MAPPED-ADDRESS. */
export function parseStunResponse(msg: Buffer, txid: Buffer): string | undefined {
  if (msg.length < 20 || msg.readUInt16BE(0) !== 0x0101 || msg.readUInt32BE(4) !== STUN_COOKIE) return undefined;
  if (!msg.subarray(8, 20).equals(txid)) return undefined;
  const end = Math.min(msg.length, 20 + msg.readUInt16BE(2));
  let mapped: string | undefined;
  for (let off = 20; off + 4 <= end; ) {
    const type = msg.readUInt16BE(off);
    const len = msg.readUInt16BE(off + 2);
    const v = msg.subarray(off + 4, off + 4 + len);
    if ((type === 0x0020 || type === 0x0001) && len >= 8 && v[1] === 0x01) {
      let port = v.readUInt16BE(2);
      let a = v.readUInt32BE(4);
      if (type === 0x0020) {
        port ^= STUN_COOKIE >>> 16;
        a = (a ^ STUN_COOKIE) >>> 0;
      }
      const s = `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}:${port}`;
      if (type === 0x0020) return s;
      mapped ??= s;
    }
    off += 4 + len + ((4 - (len % 4)) % 4);
  }
  return mapped;
}

async function cmdListen(args: string[]): Promise<number> {
  const spec = args[0];
  if (spec === undefined) throw new UsageError('missing PORTSPEC');
  const seconds = num(args[1], 'SECONDS', 0, MAX_SECONDS);
  const binds = spec.split(',').map((p) => (p.includes(':') ? hostPort(p, 'PORTSPEC') : { ip: undefined, port: num(p, 'PORT', 1, 65535) }));
  const socks: Socket[] = [];
  for (const b of binds) {
    const s = await bindUdp(b.port, b.ip);
    const to = `${b.ip ?? '0.0.0.0'}:${b.port}`;
    s.on('message', (msg, rinfo) => out(recvLine(msg, rinfo, to)));
    socks.push(s);
  }
  out({ listening: binds.map((b) => `${b.ip ?? '0.0.0.0'}:${b.port}`) });
  await new Promise((r) => setTimeout(r, seconds * 1000));
  for (const s of socks) s.close();
  return 0;
}

async function cmdSend(args: string[]): Promise<number> {
  const from = num(args[0], 'FROM_PORT', 0, 65535);
  const to = hostPort(args[1], 'IP:PORT');
  const data = hexBytes(args[2] ?? '');
  const wait = num(args[3], 'WAIT_S', 0, MAX_SECONDS, 0);
  const s = await bindUdp(from);
  const local = s.address().port;
  s.on('message', (msg, rinfo) => out(recvLine(msg, rinfo, `0.0.0.0:${local}`)));
  await new Promise<void>((res, rej) => s.send(data, to.port, to.ip, (err) => (err ? rej(err) : res())));
  out({ sent: `${to.ip}:${to.port}`, local });
  if (wait > 0) await new Promise((r) => setTimeout(r, wait * 1000));
  s.close();
  return 0;
}

async function cmdStun(args: string[]): Promise<number> {
  const to = hostPort(args[0], 'IP:PORT');
  const from = num(args[1], 'FROM_PORT', 0, 65535, 0);
  const timeout = num(args[2], 'TIMEOUT_S', 0.1, 60, 3);
  const s = await bindUdp(from);
  const txid = randomBytes(12);
  const req = Buffer.alloc(20);
  req.writeUInt16BE(0x0001, 0);
  req.writeUInt16BE(0, 2);
  req.writeUInt32BE(STUN_COOKIE, 4);
  txid.copy(req, 8);
  const mapped = await request(s, req, to.ip, to.port, timeout * 1000, (m) => parseStunResponse(m, txid));
  const local = s.address().port;
  s.close();
  if (mapped === undefined) {
    out({ error: 'timeout', local });
    return 1;
  }
  out({ mapped, local });
  return 0;
}

function ipv4(b: Buffer, off: number): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

async function cmdNatpmp(args: string[]): Promise<number> {
  const gw = args[0];
  if (gw === undefined) throw new UsageError('missing GATEWAY');
  const timeout = num(args[1], 'TIMEOUT_S', 0.1, 60, 3);
  const s = await bindUdp(0);
  const reply = await request(s, Buffer.from([0, 0]), gw, 5351, timeout * 1000, (m, r) =>
    r.address === gw && m.length >= 12 && m[0] === 0 && m[1] === 128
      ? { result: m.readUInt16BE(2), epoch: m.readUInt32BE(4), address: ipv4(m, 8) }
      : undefined,
  );
  s.close();
  if (!reply) {
    out({ error: 'timeout' });
    return 1;
  }
  out(reply);
  return 0;
}

async function cmdNatpmpMap(args: string[]): Promise<number> {
  const gw = args[0];
  if (gw === undefined) throw new UsageError('missing GATEWAY');
  const internal = num(args[1], 'INTERNAL_PORT', 1, 65535);
  const external = num(args[2], 'EXTERNAL_PORT', 0, 65535);
  const lifetime = num(args[3], 'LIFETIME', 0, 0xffffffff);
  const timeout = num(args[4], 'TIMEOUT_S', 0.1, 60, 3);
  const req = Buffer.alloc(12);
  req[0] = 0;
  req[1] = 1; // map UDP
  req.writeUInt16BE(internal, 4);
  req.writeUInt16BE(external, 6);
  req.writeUInt32BE(lifetime, 8);
  const s = await bindUdp(0);
  const reply = await request(s, req, gw, 5351, timeout * 1000, (m, r) =>
    r.address === gw && m.length >= 16 && m[0] === 0 && m[1] === 129
      ? {
          result: m.readUInt16BE(2),
          epoch: m.readUInt32BE(4),
          internal: m.readUInt16BE(8),
          external: m.readUInt16BE(10),
          lifetime: m.readUInt32BE(12),
        }
      : undefined,
  );
  s.close();
  if (!reply) {
    out({ error: 'timeout' });
    return 1;
  }
  out(reply);
  return 0;
}

async function cmdPcpAnnounce(args: string[]): Promise<number> {
  const gw = args[0];
  if (gw === undefined) throw new UsageError('missing GATEWAY');
  const timeout = num(args[1], 'TIMEOUT_S', 0.1, 60, 3);
  const s = await bindUdp(0);
  // The client address field must be our own address as the server sees it; connect() makes the kernel pick it.
  await new Promise<void>((res) => s.connect(5351, gw, () => res()));
  const local = s.address().address;
  const req = Buffer.alloc(24);
  req[0] = 2; // version
  req[1] = 0; // request, opcode ANNOUNCE
  Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...local.split('.').map(Number)]).copy(req, 8);
  const reply = await new Promise<object | undefined>((res) => {
    let tries = 0;
    let t: NodeJS.Timeout | undefined;
    const send = (): void => {
      if (tries++ < 8) s.send(req);
      t = setTimeout(send, 250 * tries);
    };
    const overall = setTimeout(() => done(undefined), timeout * 1000);
    const done = (v: object | undefined): void => {
      clearTimeout(t);
      clearTimeout(overall);
      res(v);
    };
    s.on('message', (m) => {
      if (m.length >= 24 && (m[1] ?? 0) & 0x80) {
        done({ version: m[0], opcode: (m[1] ?? 0) & 0x7f, result: m[3], lifetime: m.readUInt32BE(4), epoch: m.readUInt32BE(8) });
      } else if (m.length >= 2 && m[0] === 0) {
        done({ version: 0, opcode: m[1], result: m.length >= 4 ? m.readUInt16BE(2) : undefined });
      }
    });
    send();
  });
  s.close();
  if (!reply) {
    out({ error: 'timeout' });
    return 1;
  }
  out(reply);
  return 0;
}

async function cmdAgent(args: string[]): Promise<number> {
  const seconds = num(args[0], 'SECONDS', 1, MAX_SECONDS);
  const socks = new Map<string, Socket>();
  const servers = new Map<string, Server>();
  const emit = (e: AgentEvent): void => out(e);
  let finish: (() => void) | undefined;
  const finished = new Promise<void>((r) => {
    finish = r;
  });
  const timer = setTimeout(() => finish?.(), seconds * 1000);

  const handle = async (c: AgentCommand): Promise<void> => {
    switch (c.op) {
      case 'bind': {
        if (socks.has(c.id)) throw new Error(`socket ${c.id} exists`);
        const s = await bindUdp(c.port ?? 0, c.ip);
        s.on('message', (msg, rinfo) =>
          emit({ ev: 'recv', id: c.id, from: rinfo.address, port: rinfo.port, hex: msg.toString('hex') }),
        );
        s.on('error', (err) => emit({ ev: 'error', id: c.id, message: err.message }));
        socks.set(c.id, s);
        emit({ ev: 'bound', id: c.id, port: s.address().port });
        return;
      }
      case 'send': {
        const s = socks.get(c.id);
        if (!s) throw new Error(`no socket ${c.id}`);
        await new Promise<void>((res, rej) => s.send(hexBytes(c.hex), c.port, c.to, (err) => (err ? rej(err) : res())));
        emit({ ev: 'sent', id: c.id, to: c.to, port: c.port });
        return;
      }
      case 'close': {
        socks.get(c.id)?.close();
        socks.delete(c.id);
        servers.get(c.id)?.close();
        servers.delete(c.id);
        emit({ ev: 'closed', id: c.id });
        return;
      }
      case 'tcp-listen': {
        const srv = createServer((sock) => {
          emit({ ev: 'tcp-accept', id: c.id, from: sock.remoteAddress ?? '', port: sock.remotePort ?? 0 });
          sock.on('error', () => undefined);
          sock.end();
        });
        await new Promise<void>((res, rej) => {
          srv.once('error', rej);
          srv.listen(c.port, c.ip, () => res());
        });
        servers.set(c.id, srv);
        const a = srv.address();
        emit({ ev: 'tcp-listening', id: c.id, port: typeof a === 'object' && a ? a.port : c.port });
        return;
      }
      case 'tcp-connect': {
        const timeoutMs = Math.min(Math.max(c.timeoutMs ?? 3000, 1), 60_000);
        await new Promise<void>((res) => {
          const sock = connect({ host: c.to, port: c.port });
          const t = setTimeout(() => done(false, 'timeout'), timeoutMs);
          let settled = false;
          const done = (ok: boolean, error?: string): void => {
            if (settled) return;
            settled = true;
            clearTimeout(t);
            sock.destroy();
            emit(error === undefined ? { ev: 'tcp-connect', id: c.id, ok } : { ev: 'tcp-connect', id: c.id, ok, error });
            res();
          };
          sock.once('connect', () => done(true));
          sock.once('error', (err) => done(false, err.message));
        });
        return;
      }
      case 'exit':
        finish?.();
        return;
    }
  };

  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (line.trim() === '') return;
    let cmd: AgentCommand;
    try {
      cmd = JSON.parse(line) as AgentCommand;
    } catch {
      emit({ ev: 'error', message: `bad JSON: ${line}` });
      return;
    }
    handle(cmd).catch((err: unknown) => {
      const base = { ev: 'error' as const, message: err instanceof Error ? err.message : String(err) };
      emit('id' in cmd ? { ...base, id: cmd.id } : base);
    });
  });
  rl.on('close', () => finish?.());
  emit({ ev: 'ready' });
  await finished;
  clearTimeout(timer);
  rl.close();
  for (const s of socks.values()) s.close();
  for (const s of servers.values()) s.close();
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...args] = argv;
  switch (cmd) {
    case 'listen':
      return cmdListen(args);
    case 'send':
      return cmdSend(args);
    case 'stun':
      return cmdStun(args);
    case 'natpmp':
      return cmdNatpmp(args);
    case 'natpmp-map':
      return cmdNatpmpMap(args);
    case 'pcp-announce':
      return cmdPcpAnnounce(args);
    case 'agent':
      return cmdAgent(args);
    default:
      throw new UsageError(`unknown command ${String(cmd)}`);
  }
}

// Only run as a program, not when imported (parseStunResponse is reusable).
if (process.argv[1] !== undefined && /udp-tool\.ts$/.test(process.argv[1])) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`udp-tool: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(err instanceof UsageError ? 2 : 1);
    },
  );
}
