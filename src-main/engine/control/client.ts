/**
 * The control client: keeps this node registered with a headscale-compatible server and its netmap current.
 *
 *   start ─▶ connecting ─▶ (register) ─┬─▶ needs-login ─(approved)─┐
 *                ▲                      └──────────────────────────┴─▶ connected (map stream)
 *                └──── backoff ◀── stream/connection lost, or 120 s of silence ◀──┘
 *   register errors (bad key, expired, logged out) ─▶ error / expired (no retry)
 *
 * The first connection's failure rejects start() so the CLI can exit with a clear message; after the node
 * has been connected once, every network failure is retried with jittered exponential backoff and the last
 * good netmap is kept. A malformed map message is logged and skipped; the netmap stays as it was.
 */
import { EventEmitter } from 'node:events';
import { hostname as osHostname } from 'node:os';
import { MeshError, type SerializedError } from '../../../src-shared/errors.ts';
import { generateKeyPair, keyPairFromPrivate, keyText, parseKeyText, type KeyPair } from '../../protocol/crypto/keys.ts';
import { CONTROL_BACKOFF_MAX_MS, CONTROL_BACKOFF_MIN_MS, CONTROL_CAPVER, MAP_COMPRESSION, MAP_WATCHDOG_MS } from '../constants.ts';
import { loadState, saveState, type PersistedState } from '../state/store.ts';
import { realClock, type Clock, type TimerHandle } from '../sys/clock.ts';
import { discardLogf, type Logf } from '../sys/log.ts';
import { applyMapResponse, emptyNetMap, type NetMap } from './map-session.ts';
import type { PingRequest } from '../../protocol/control/tailcfg.ts';
import { MapStreamDecoder, parseMapBody } from '../../protocol/control/stream-framing.ts';
import { dialControl, fetchServerKey, openStream, postJson, type ControlConn } from './transport.ts';

import type { JoinStage } from '../../../src-shared/model/status.ts';

export type ControlStateName = 'connecting' | 'needs-login' | 'connected' | 'expired' | 'error';

export interface ControlStatus {
  state: ControlStateName;
  url: string;
  error: SerializedError | null;
  authUrl: string | null;
  /** Where the current (re)connection stands, for the join screen. */
  stage: JoinStage | null;
}

export interface ControlClientInit {
  server: URL;
  stateDir: string;
  authKey?: string;
  hostname?: string;
  /** @default CONTROL_CAPVER */
  capver?: number;
  clock?: Clock;
  logf?: Logf;
  /** Randomness for backoff jitter; @default Math.random */
  random?: () => number;
  /** Restart the map poll after this much silence; @default MAP_WATCHDOG_MS */
  mapWatchdogMs?: number;
}

export interface ControlClientEvents {
  status: [ControlStatus];
  netmap: [NetMap];
}

interface RegisterResponseShape {
  Error?: string;
  AuthURL?: string;
  MachineAuthorized?: boolean;
  NodeKeyExpired?: boolean;
}

const PAST_EXPIRY = '1970-01-01T00:02:03Z';

/** Two resyncs closer than this: the second waits for the normal reconnect backoff. */
const RESYNC_QUICK_GAP_MS = 60_000;
/** A PingRequest answer gives up after this long (Tailscale's answerHeadPing uses 15 s). */
const PING_TIMEOUT_MS = 15_000;
/** PingRequest answers running at once; more are dropped (a control server cannot pile up sockets here). */
const PING_MAX_IN_FLIGHT = 4;

export class ControlClient extends EventEmitter<ControlClientEvents> {
  // Owned by this instance.
  private st: ControlStatus;
  private nm: NetMap = emptyNetMap;
  private conn: ControlConn | null = null;
  private stream: { cancel(): void } | null = null;
  private watchdog: TimerHandle | null = null;
  private retryTimer: TimerHandle | null = null;
  private failures = 0;
  private stopped = false;
  private everConnected = false;
  private state: PersistedState | null = null;
  private machine!: KeyPair;
  private node!: KeyPair;
  private readonly disco: KeyPair = generateKeyPair();
  /** Our UDP endpoints as reported to control (empty until the data plane reports some). */
  private endpoints: string[] = [];
  private readonly capver: number;
  private readonly clock: Clock;
  private readonly logf: Logf;
  private readonly random: () => number;

  constructor(private readonly init: ControlClientInit) {
    super();
    this.capver = init.capver ?? CONTROL_CAPVER;
    this.clock = init.clock ?? realClock;
    this.logf = init.logf ?? discardLogf;
    this.random = init.random ?? Math.random;
    this.st = { state: 'connecting', url: init.server.origin, error: null, authUrl: null, stage: null };
  }

  get status(): ControlStatus {
    return this.st;
  }

  get netmap(): NetMap {
    return this.nm;
  }

  get nodePublic(): Uint8Array {
    return this.node.pub;
  }

  get nodePrivate(): Uint8Array {
    return this.node.priv;
  }

  get discoPrivate(): Uint8Array {
    return this.disco.priv;
  }

  get discoPublic(): Uint8Array {
    return this.disco.pub;
  }

  get machinePublic(): Uint8Array {
    return this.machine.pub;
  }

  private setStatus(s: Partial<ControlStatus>): void {
    this.st = { ...this.st, ...s };
    this.emit('status', this.st);
  }

  private hostname(): string {
    return this.init.hostname ?? this.state?.hostname ?? osHostname();
  }

  /** Loads or creates the persisted keys. */
  private async loadKeys(): Promise<void> {
    const saved = await loadState(this.init.stateDir);
    const machinePriv = saved ? parseKeyText('privkey', saved.machinePrivate) : null;
    this.machine = machinePriv ? keyPairFromPrivate(machinePriv) : generateKeyPair();
    const nodePriv = saved?.nodePrivate ? parseKeyText('privkey', saved.nodePrivate) : null;
    this.node = nodePriv ? keyPairFromPrivate(nodePriv) : generateKeyPair();
    this.state = {
      version: 1,
      machinePrivate: keyText('privkey', this.machine.priv),
      nodePrivate: keyText('privkey', this.node.priv),
      loginServer: saved?.loginServer ?? null,
      hostname: this.init.hostname ?? saved?.hostname ?? null,
    };
    await saveState(this.init.stateDir, this.state);
  }

  /** Connects, registers and opens the map stream. Rejects if the first attempt fails. */
  async start(): Promise<void> {
    await this.loadKeys();
    await this.connectOnce();
  }

  /** Network conditions for Hostinfo.NetInfo; PreferredDERP becomes our HomeDERP for peers. */
  private netInfo: Record<string, unknown> | null = null;

  setNetInfo(ni: Record<string, unknown>): void {
    this.netInfo = ni;
  }

  /** Routes this node announces (Hostinfo.RoutableIPs), sent with the next register or map request. */
  private routableIPs: string[] = [];

  setRoutableIPs(prefixes: readonly string[]): void {
    this.routableIPs = [...prefixes];
  }

  private hostinfo(): Record<string, unknown> {
    return {
      Hostname: this.hostname(),
      OS: 'linux',
      GoArch: process.arch,
      IPNVersion: 'weft-0.1.0',
      FrontendLogID: '',
      BackendLogID: '',
      ...(this.netInfo ? { NetInfo: this.netInfo } : {}),
      ...(this.routableIPs.length ? { RoutableIPs: [...this.routableIPs] } : {}),
    };
  }

  private async connectOnce(): Promise<void> {
    this.setStatus({ state: 'connecting', stage: 'reaching-server' });
    const serverPub = await fetchServerKey(this.init.server, this.capver);
    this.setStatus({ stage: 'handshake' });
    const conn = await dialControl({ server: this.init.server, capver: this.capver, machinePriv: this.machine.priv, serverPub });
    this.setStatus({ stage: 'registering' });
    if (this.stopped) {
      conn.close();
      return;
    }
    this.conn = conn;
    conn.session.once('close', () => this.onConnectionLost(new Error('control connection closed')));
    try {
      await this.register();
      if (this.stopped) return;
      // headscale <= 0.26 stores the disco key, endpoints and hostinfo only from a lite update, so one goes
      // out before the stream (newer versions take them from the stream request too).
      await this.pushLiteUpdate();
      await this.openMap();
      this.failures = 0;
      this.everConnected = true;
    } catch (e) {
      conn.close();
      this.conn = null;
      throw e;
    }
  }

  private async registerRequest(body: Record<string, unknown>, timeoutMs?: number): Promise<RegisterResponseShape> {
    const conn = this.conn;
    if (!conn) throw new MeshError('unreachable', 'not connected', true);
    const reply = await postJson(conn.session, '/machine/register', { Version: this.capver, NodeKey: keyText('nodekey', this.node.pub), Hostinfo: this.hostinfo(), ...body }, timeoutMs ? { timeoutMs } : {});
    const text = new TextDecoder().decode(reply.body).trim();
    if (reply.status !== 200) throw new MeshError('protocol', `register answered HTTP ${reply.status}: ${text.slice(0, 200)}`, reply.status >= 500);
    if (text === 'null') return {};
    try {
      return JSON.parse(text) as RegisterResponseShape;
    } catch {
      throw new MeshError('protocol', 'register reply is not JSON', true);
    }
  }

  private async register(): Promise<void> {
    const sameServer = this.state?.loginServer === this.init.server.origin;
    let resp: RegisterResponseShape;
    if (sameServer && !this.init.authKey) {
      resp = await this.registerRequest({}); // the restart fast path: an existing node answers at once
    } else if (this.init.authKey) {
      resp = await this.registerRequest({ Auth: { AuthKey: this.init.authKey } });
    } else {
      resp = await this.registerRequest({});
    }
    if (resp.NodeKeyExpired) {
      if (!this.init.authKey) {
        this.setStatus({ state: 'expired' });
        throw new MeshError('key-expired', 'this node’s key has expired or it was logged out; run weft up again with an auth key, or log in interactively after weft logout', false);
      }
      // Rotate the node key and register it with the auth key.
      this.node = generateKeyPair();
      await this.persist({ nodePrivate: keyText('privkey', this.node.priv) });
      resp = await this.registerRequest({ Auth: { AuthKey: this.init.authKey } });
    }
    if (resp.Error) throw new MeshError('auth-failed', `the server refused registration: ${resp.Error}`, false);
    // Interactive login: show the URL, then wait on Followup until approved (headscale blocks the request).
    for (let round = 0; resp.AuthURL && round < 20 && !this.stopped; round++) {
      const url = resp.AuthURL;
      this.setStatus({ state: 'needs-login', authUrl: url, stage: 'waiting-approval' });
      this.logf(`control: login required: ${url}`);
      resp = await this.registerRequest({ Followup: url }, 16 * 60_000);
      if (resp.Error && /timed out/i.test(resp.Error)) resp = { AuthURL: url };
      else if (resp.Error) throw new MeshError('auth-failed', `login failed: ${resp.Error}`, false);
    }
    if (!resp.MachineAuthorized) throw new MeshError('auth-failed', 'the server did not authorize this machine', false);
    await this.persist({ loginServer: this.init.server.origin });
    this.setStatus({ authUrl: null });
  }

  private async persist(patch: Partial<PersistedState>): Promise<void> {
    if (!this.state) return;
    this.state = { ...this.state, ...patch };
    await saveState(this.init.stateDir, this.state);
  }

  private mapRequest(stream: boolean): Record<string, unknown> {
    return {
      Version: this.capver,
      NodeKey: keyText('nodekey', this.node.pub),
      DiscoKey: keyText('discokey', this.disco.pub),
      Stream: stream,
      OmitPeers: !stream,
      ...(stream && MAP_COMPRESSION ? { Compress: MAP_COMPRESSION } : {}),
      KeepAlive: true,
      Hostinfo: this.hostinfo(),
      Endpoints: this.endpoints,
      EndpointTypes: this.endpoints.map(() => 0),
    };
  }

  /**
   * Sends endpoints, hostinfo and the disco key without disturbing the stream: a `Stream:false,
   * OmitPeers:true` map request, answered with 200 and an empty body.
   */
  async pushLiteUpdate(endpoints: readonly string[] = this.endpoints): Promise<void> {
    this.endpoints = [...endpoints];
    const conn = this.conn;
    if (!conn) return;
    const reply = await postJson(conn.session, '/machine/map', { ...this.mapRequest(false), Endpoints: this.endpoints }, { timeoutMs: 15_000 });
    if (reply.status !== 200) throw new MeshError(reply.status === 404 ? 'auth-failed' : 'protocol', `endpoint update answered HTTP ${reply.status}`, reply.status >= 500);
  }

  /** Opens the map stream and resolves once the first full map has been applied. */
  private openMap(): Promise<void> {
    const conn = this.conn!;
    const decoder = new MapStreamDecoder();
    // Each stream is its own map session (as in Tailscale): it starts empty, and the netmap shown to users
    // is replaced only once this session's first full map has arrived.
    let session: NetMap = emptyNetMap;
    return new Promise<void>((resolve, reject) => {
      let first = true;
      let status = 0;
      const fail = (e: Error): void => {
        if (first) {
          first = false;
          reject(e);
        } else this.onConnectionLost(e);
      };
      this.armWatchdog();
      this.stream = openStream(conn.session, '/machine/map', this.mapRequest(true), {
        onStatus: (s) => {
          status = s;
          if (s !== 200) fail(new MeshError(s === 404 ? 'auth-failed' : 'protocol', `map request answered HTTP ${s}`, s >= 500));
        },
        onData: (chunk) => {
          if (status !== 200) return;
          this.armWatchdog();
          const bodies = decoder.push(chunk);
          if (!Array.isArray(bodies)) {
            fail(new MeshError('protocol', `map stream: ${bodies.reason}`, true));
            return;
          }
          for (const body of bodies) {
            const parsed = parseMapBody(body, MAP_COMPRESSION === 'zstd');
            if (parsed.kind !== 'ok') {
              if (this.resyncAfterBadDelta(first, `unreadable map message (${parsed.reason})`)) return;
              continue;
            }
            const json = parsed.value;
            if (process.env['WEFT_DEBUG_MAP']) this.logf(`[v1] map message: keys=${Object.keys(json as object).join(",")} ${JSON.stringify(json).length}B`);
            const r = applyMapResponse(session, json);
            if (r.kind === 'error') {
              if (this.resyncAfterBadDelta(first, `bad map message (${r.reason})`)) return;
              continue;
            }
            session = r.netmap;
            // Answered before the keep-alive check, off the stream's reader (Tailscale's direct.go does the same).
            if (r.pingRequest) void this.answerPing(r.pingRequest);
            if (r.keepAlive || !session.self) continue;
            this.nm = session;
            this.emit('netmap', this.nm);
            const want = session.self.Expired ? 'expired' : 'connected';
            if (first) {
              first = false;
              this.setStatus({ state: want, error: null, ...(want === 'connected' ? { stage: 'connected' as const } : {}) });
              resolve();
            } else if (want !== this.st.state) this.setStatus({ state: want });
          }
        },
        onEnd: (err) => fail(err ?? new Error('map stream ended')),
      });
    });
  }

  /**
   * A map message that cannot be applied. Before the first full map it is skipped (the stream is still young);
   * after it, a delta we could not apply means our netmap may now miss a change, so, as Tailscale's controlclient
   * does on a map-session error, the stream is dropped and a new one starts from a fresh full map. The last good
   * netmap stays in force meanwhile. Returns true when the stream was dropped.
   */
  private resyncAfterBadDelta(first: boolean, why: string): boolean {
    if (first) {
      this.logf(`control: ${why}; keeping the last good netmap`);
      return false;
    }
    // At once the first time; a server that keeps sending what we cannot apply gets the normal backoff instead.
    const now = this.clock.now();
    const soon = now - this.lastResyncAt > RESYNC_QUICK_GAP_MS;
    this.lastResyncAt = now;
    this.logf(`control: ${why}; keeping the last good netmap and requesting a fresh full map${soon ? '' : ' (after a backoff: the last resync was recent)'}`);
    this.onConnectionLost(new Error(`${why}: resynchronising`), soon ? 0 : undefined);
    return true;
  }

  private lastResyncAt = -Infinity;
  private pingsInFlight = 0;

  /**
   * A PingRequest (tailcfg.PingRequest): with empty `Types`, an HTTP HEAD to its URL with the normal control HTTP
   * client (not Noise), 15 s timeout, status ignored (Tailscale's controlclient/direct.go `answerHeadPing`).
   * headscale 0.29 sends it from its debug ping page and from the HA subnet-router prober, at
   * `<server_url>/machine/ping-response?id=…`. Only URLs on the control server (its login origin, or the server_url
   * host it sends as Domain) are followed, so a netmap cannot make this node probe other hosts; other ping types
   * (disco, TSMP, c2n) are not implemented yet.
   */
  private async answerPing(req: PingRequest): Promise<void> {
    if (req.Types !== '' || req.URLIsNoise) {
      this.logf(`control: PingRequest of type ${JSON.stringify(req.Types || 'noise')} not supported; ignored`);
      return;
    }
    let url: URL;
    try {
      url = new URL(req.URL);
    } catch {
      this.logf('control: PingRequest with an unreadable URL; ignored');
      return;
    }
    // headscale builds the URL from its server_url, whose host it also sends as MapResponse.Domain: a node that
    // logged in through another name or address still answers its own server.
    const ownServer = url.origin === this.init.server.origin || ((url.protocol === 'https:' || url.protocol === 'http:') && url.hostname !== '' && url.hostname === this.nm.domain);
    if (!ownServer) {
      this.logf(`control: PingRequest to ${url.origin}, not the control server; ignored`);
      return;
    }
    if (this.pingsInFlight >= PING_MAX_IN_FLIGHT) return;
    this.pingsInFlight++;
    const t0 = this.clock.now();
    try {
      const res = await fetch(url, { method: 'HEAD', signal: AbortSignal.timeout(PING_TIMEOUT_MS), redirect: 'error' });
      if (req.Log) this.logf(`control: answered PingRequest (HTTP ${res.status} in ${Math.round(this.clock.now() - t0)} ms)`);
    } catch (e) {
      this.logf(`control: answering PingRequest failed: ${(e as Error).message}`);
    } finally {
      this.pingsInFlight--;
    }
  }

  private armWatchdog(): void {
    if (this.watchdog) this.clock.clearTimeout(this.watchdog);
    const ms = this.init.mapWatchdogMs ?? MAP_WATCHDOG_MS;
    this.watchdog = this.clock.setTimeout(() => this.onConnectionLost(new Error(`no map message for ${ms / 1000} s`)), ms);
  }

  private onConnectionLost(err: Error, delayMs?: number): void {
    if (this.stopped || !this.everConnected || this.retryTimer) return;
    this.logf(`control: connection lost: ${err.message}; reconnecting`);
    this.teardown();
    this.setStatus({ state: 'connecting', error: { code: 'unreachable', message: err.message, retryable: true } });
    this.scheduleRetry(delayMs);
  }

  private scheduleRetry(delayMs?: number): void {
    const base = Math.min(CONTROL_BACKOFF_MAX_MS, CONTROL_BACKOFF_MIN_MS * 2 ** this.failures);
    const delay = delayMs ?? Math.round(base * (0.5 + this.random() / 2));
    this.failures++;
    this.retryTimer = this.clock.setTimeout(() => {
      this.retryTimer = null;
      if (this.stopped) return;
      this.connectOnce().catch((e: unknown) => {
        const me = e instanceof MeshError ? e : new MeshError('unreachable', (e as Error).message, true);
        if (!me.retryable) {
          this.setStatus({ state: me.code === 'key-expired' ? 'expired' : 'error', error: me.toJSON(), stage: 'failed' });
          return;
        }
        this.setStatus({ state: 'connecting', error: me.toJSON() });
        this.scheduleRetry();
      });
    }, delay);
  }

  private teardown(): void {
    if (this.watchdog) this.clock.clearTimeout(this.watchdog);
    this.watchdog = null;
    this.stream?.cancel();
    this.stream = null;
    const c = this.conn;
    this.conn = null;
    c?.close();
  }

  /** Expires this node's key on the server (a past Expiry), then forgets the node key locally. */
  async logout(): Promise<void> {
    if (!this.conn) {
      const serverPub = await fetchServerKey(this.init.server, this.capver);
      this.conn = await dialControl({ server: this.init.server, capver: this.capver, machinePriv: this.machine.priv, serverPub });
    }
    const resp = await this.registerRequest({ Expiry: PAST_EXPIRY });
    if (resp.Error) throw new MeshError('protocol', `logout failed: ${resp.Error}`, false);
    await this.persist({ nodePrivate: null, loginServer: null });
    this.setStatus({ state: 'expired' });
  }

  /** Loads keys only (for logout without a running engine). */
  async loadOnly(): Promise<void> {
    await this.loadKeys();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) this.clock.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.teardown();
  }
}
