// Test-side handle for a long-running `udp-tool agent` in one lab namespace: many sockets, one process, no
// per-probe process start. All waits are bounded.
import type { HostName, Lab, LabProcess } from './lab.ts';
import { udpToolArgv } from './lab.ts';
import type { AgentCommand, AgentEvent } from './udp-tool.ts';

export type RecvEvent = Extract<AgentEvent, { ev: 'recv' }>;

const POLL_MS = 20;

export class UdpAgent {
  private parsed = 0;
  private partial = '';
  private readonly events: AgentEvent[] = [];

  private constructor(
    readonly host: HostName,
    readonly proc: LabProcess,
  ) {}

  /** Starts the agent in `host`; it exits by itself after maxSeconds (and is killed by lab.destroy()). */
  static async start(lab: Lab, host: HostName, maxSeconds = 900): Promise<UdpAgent> {
    const proc = lab.spawn(host, udpToolArgv(['agent', String(maxSeconds)]));
    const a = new UdpAgent(host, proc);
    await proc.waitForOutput(/"ev":"ready"/, 15_000);
    return a;
  }

  private sync(): void {
    const out = this.proc.output();
    if (out.length <= this.parsed) return;
    const text = this.partial + out.slice(this.parsed);
    this.parsed = out.length;
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    for (const l of lines) {
      if (!l.startsWith('{')) continue;
      try {
        this.events.push(JSON.parse(l) as AgentEvent);
      } catch {
        /* not ours (e.g. a warning) */
      }
    }
  }

  /** All events so far. */
  all(): AgentEvent[] {
    this.sync();
    return [...this.events];
  }

  /** Datagrams received so far, optionally only on socket `id`. */
  received(id?: string): RecvEvent[] {
    return this.all().filter((e): e is RecvEvent => e.ev === 'recv' && (id === undefined || e.id === id));
  }

  /** Waits until an event satisfies `pred` (also considering events that already arrived). */
  async waitFor<E extends AgentEvent>(pred: (e: AgentEvent) => e is E, timeoutMs: number): Promise<E | undefined>;
  async waitFor(pred: (e: AgentEvent) => boolean, timeoutMs: number): Promise<AgentEvent | undefined>;
  async waitFor(pred: (e: AgentEvent) => boolean, timeoutMs: number): Promise<AgentEvent | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.all().find(pred);
      if (hit) return hit;
      if (Date.now() >= deadline) return undefined;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  private async command(c: AgentCommand, reply: (e: AgentEvent) => boolean, timeoutMs = 5000): Promise<AgentEvent> {
    const before = this.all().length;
    this.proc.write(JSON.stringify(c) + '\n');
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const evs = this.all().slice(before);
      const err = evs.find((e) => e.ev === 'error' && 'id' in c && e.id === c.id);
      if (err && err.ev === 'error') throw new Error(`agent ${this.host}: ${c.op} ${JSON.stringify(c)}: ${err.message}`);
      const hit = evs.find(reply);
      if (hit) return hit;
      if (Date.now() >= deadline) {
        throw new Error(`agent ${this.host}: no reply to ${JSON.stringify(c)} in ${timeoutMs} ms:\n${this.proc.output().slice(-1000)}`);
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  /** Binds UDP socket `id` (port 0 = any); returns the local port. */
  async bind(id: string, port = 0, ip?: string): Promise<number> {
    const c: AgentCommand = ip === undefined ? { op: 'bind', id, port } : { op: 'bind', id, port, ip };
    const e = await this.command(c, (x) => x.ev === 'bound' && x.id === id);
    return e.ev === 'bound' ? e.port : 0;
  }

  async send(id: string, to: string, port: number, hex = '00'): Promise<void> {
    await this.command({ op: 'send', id, to, port, hex }, (x) => x.ev === 'sent' && x.id === id && x.to === to && x.port === port);
  }

  async close(id: string): Promise<void> {
    await this.command({ op: 'close', id }, (x) => x.ev === 'closed' && x.id === id);
  }

  /** Waits for a datagram on socket `id` matching `pred`. */
  waitRecv(id: string, pred: (e: RecvEvent) => boolean, timeoutMs: number): Promise<RecvEvent | undefined> {
    return this.waitFor((e): e is RecvEvent => e.ev === 'recv' && e.id === id && pred(e), timeoutMs);
  }

  async tcpListen(id: string, port: number, ip?: string): Promise<void> {
    const c: AgentCommand = ip === undefined ? { op: 'tcp-listen', id, port } : { op: 'tcp-listen', id, port, ip };
    await this.command(c, (x) => x.ev === 'tcp-listening' && x.id === id);
  }

  /** Tries a TCP connect; resolves true if it was established within timeoutMs. */
  async tcpConnect(id: string, to: string, port: number, timeoutMs = 3000): Promise<boolean> {
    const e = await this.command(
      { op: 'tcp-connect', id, to, port, timeoutMs },
      (x) => x.ev === 'tcp-connect' && x.id === id,
      timeoutMs + 5000,
    );
    return e.ev === 'tcp-connect' && e.ok;
  }

  async stop(): Promise<void> {
    await this.proc.kill();
  }
}
