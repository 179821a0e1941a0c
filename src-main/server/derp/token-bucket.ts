/**
 * A token bucket over an injected "now" (Go's x/time/rate Limiter as derper uses it for PeerGone(NotHere)
 * replies). Pure: no timers; tokens are refilled lazily from the elapsed time at each allow(now).
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  /** Reports whether an event at `now` is allowed, and if so takes a token for it. */
  allow(now: number): boolean {
    const elapsed = Math.max(0, now - this.last);
    this.last = Math.max(this.last, now);
    this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.perSecond) / 1000);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
