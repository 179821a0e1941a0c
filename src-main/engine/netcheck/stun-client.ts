/**
 * STUN client over an injected packet sender.
 *
 * It owns no socket: the owner of the UDP socket (magicsock later, the netcheck prober now) passes every
 * inbound datagram to `handlePacket`, which consumes the ones that answer an outstanding request. That is
 * what lets STUN share the socket that carries WireGuard and disco, so the mapping it learns is theirs.
 *
 * Each try of a request gets its own transaction ID, so a late answer to an early try still gives a true
 * round-trip time for that try (as Tailscale's netcheck does, one TxID per probe).
 */
import type { UdpAddr } from '../../protocol/wire/addr.ts';
import { toHex } from '../../protocol/wire/hex.ts';
import {
  Attr,
  StunType,
  addressAttr,
  attr,
  encodeTailscaleRequest,
  errorCodeAttr,
  mappedAddress,
  parseStun,
  softwareAttr,
  TXID_LEN,
} from '../../protocol/wire/stun.ts';
import type { Clock, TimerHandle } from '../sys/clock.ts';
import { STUN_RETRANSMIT_MS, STUN_TIMEOUT_MS } from '../constants.ts';

export interface StunAnswer {
  kind: 'success' | 'error';
  /** Our address as the server saw it (success only). */
  mapped: UdpAddr | null;
  /** Where the answer came from. */
  from: UdpAddr;
  rttMs: number;
  responseOrigin: UdpAddr | null;
  otherAddress: UdpAddr | null;
  software: string | null;
  error: { code: number; reason: string } | null;
}

export interface StunRequestOptions {
  changeIp?: boolean;
  changePort?: boolean;
  /** Overall wait for an answer, default STUN_TIMEOUT_MS. */
  timeoutMs?: number;
  /** Send offsets in ms from the start, one try each; default STUN_RETRANSMIT_MS. */
  retransmitMs?: readonly number[];
  signal?: AbortSignal;
}

export interface StunClientComponents {
  send: (data: Uint8Array, to: UdpAddr) => Promise<void>;
  clock: Clock;
  /** Random bytes for transaction IDs; defaults to crypto.getRandomValues. */
  randomBytes?: (n: number) => Uint8Array;
}

interface Pending {
  sentAt: number;
  to: UdpAddr;
  finish: (a: StunAnswer | null) => void;
}

export class StunClient {
  // Owned by this instance; changed only by request() and handlePacket().
  private readonly pending = new Map<string, Pending>();
  private readonly active = new Set<(a: StunAnswer | null) => void>();
  private readonly random: (n: number) => Uint8Array;

  constructor(private readonly c: StunClientComponents) {
    this.random = c.randomBytes ?? ((n) => crypto.getRandomValues(new Uint8Array(n)));
  }

  /** Number of requests awaiting an answer (for leak checks). */
  get outstanding(): number {
    return this.active.size;
  }

  /** Sends a binding request (with retransmits) and resolves with the first answer, or null on timeout. */
  request(to: UdpAddr, opts: StunRequestOptions = {}): Promise<StunAnswer | null> {
    const { clock } = this.c;
    const schedule = opts.retransmitMs ?? STUN_RETRANSMIT_MS;
    const extra = opts.changeIp || opts.changePort ? [attr.changeRequest(!!opts.changeIp, !!opts.changePort)] : [];
    return new Promise((resolve) => {
      const txids: string[] = [];
      const timers: TimerHandle[] = [];
      let done = false;
      const finish = (a: StunAnswer | null): void => {
        if (done) return;
        done = true;
        this.active.delete(finish);
        for (const t of timers) clock.clearTimeout(t);
        for (const id of txids) this.pending.delete(id);
        opts.signal?.removeEventListener('abort', onAbort);
        resolve(a);
      };
      const onAbort = (): void => finish(null);
      if (opts.signal?.aborted) {
        finish(null);
        return;
      }
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.active.add(finish);
      const sendTry = (): void => {
        if (done) return;
        const txid = this.random(TXID_LEN);
        const id = toHex(txid);
        txids.push(id);
        this.pending.set(id, { sentAt: clock.now(), to, finish });
        // A send error (no route, blocked) is the same to us as a lost packet: the timeout decides.
        this.c.send(encodeTailscaleRequest(txid, extra), to).catch(() => {});
      };
      for (const at of schedule) timers.push(clock.setTimeout(sendTry, at));
      timers.push(clock.setTimeout(() => finish(null), opts.timeoutMs ?? STUN_TIMEOUT_MS));
    });
  }

  /**
   * Offers an inbound datagram. Returns true when it was a STUN answer to one of our transactions (consumed),
   * false otherwise (the caller hands it to the next consumer). Never throws.
   */
  handlePacket(data: Uint8Array, from: UdpAddr): boolean {
    if (this.pending.size === 0) return false;
    const msg = parseStun(data);
    if (msg.kind !== 'stun') return false;
    if (msg.type !== StunType.BindingSuccess && msg.type !== StunType.BindingError) return false;
    const p = this.pending.get(toHex(msg.txid));
    if (!p) return false;
    const isErr = msg.type === StunType.BindingError;
    p.finish({
      kind: isErr ? 'error' : 'success',
      mapped: isErr ? null : mappedAddress(msg),
      from,
      rttMs: Math.max(0, this.c.clock.now() - p.sentAt),
      responseOrigin: addressAttr(msg, Attr.ResponseOrigin),
      otherAddress: addressAttr(msg, Attr.OtherAddress),
      software: softwareAttr(msg),
      error: isErr ? (errorCodeAttr(msg) ?? { code: 0, reason: 'error response without ERROR-CODE' }) : null,
    });
    return true;
  }

  /** Abandons every outstanding request (they resolve null). */
  close(): void {
    for (const finish of [...this.active]) finish(null);
  }
}

/** Reports whether `a` is a success answer that carries a mapped address. */
export function isMapped(a: StunAnswer | null | undefined): a is StunAnswer & { mapped: UdpAddr } {
  return !!a && a.kind === 'success' && a.mapped !== null;
}
