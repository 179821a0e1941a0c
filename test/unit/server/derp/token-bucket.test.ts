import { describe, expect, it } from 'vitest';
import { TokenBucket } from '../../../../src-main/server/derp/token-bucket.ts';

describe('TokenBucket (PeerGone NotHere limiter)', () => {
  it('allows a burst of 3, then one per second', () => {
    const b = new TokenBucket(1, 3, 0);
    expect([b.allow(0), b.allow(0), b.allow(0), b.allow(0)]).toEqual([true, true, true, false]);
    expect(b.allow(999)).toBe(false);
    expect(b.allow(1000)).toBe(true);
    expect(b.allow(1000)).toBe(false);
    expect([b.allow(10_000), b.allow(10_000), b.allow(10_000), b.allow(10_000)]).toEqual([true, true, true, false]);
  });

  it('does not go backwards when time does', () => {
    const b = new TokenBucket(1, 1, 5000);
    expect(b.allow(5000)).toBe(true);
    expect(b.allow(0)).toBe(false);
    expect(b.allow(5999)).toBe(false);
    expect(b.allow(6000)).toBe(true);
  });
});
