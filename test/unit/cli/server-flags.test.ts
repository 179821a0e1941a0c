/** `weft server`'s HA prober flags, checked as headscale checks node.routes.ha (probe_interval, probe_timeout). */
import { describe, expect, it } from 'vitest';
import { haProbeSettings } from '../../../src-main/cli/commands/server.ts';

describe('weft server --ha-probe-interval / --ha-probe-timeout', () => {
  it('defaults to headscale 0.29.2’s 10 s and 5 s; takes seconds, fractions too; 0 turns the prober off', () => {
    expect(haProbeSettings(undefined, undefined)).toEqual({ haProbeIntervalMs: 10_000, haProbeTimeoutMs: 5_000 });
    expect(haProbeSettings('3', '1.5')).toEqual({ haProbeIntervalMs: 3_000, haProbeTimeoutMs: 1_500 });
    expect(haProbeSettings('0', undefined)).toEqual({ haProbeIntervalMs: 0, haProbeTimeoutMs: 5_000 });
  });

  it('refuses what headscale refuses, with the flag named', () => {
    expect(() => haProbeSettings('1', undefined)).toThrow(/--ha-probe-interval must be 0 \(off\) or at least 2 seconds/);
    expect(() => haProbeSettings('10', '0.5')).toThrow(/--ha-probe-timeout must be at least 1 second and shorter than --ha-probe-interval/);
    expect(() => haProbeSettings('4', '4')).toThrow(/shorter than --ha-probe-interval/);
    expect(() => haProbeSettings('ten', undefined)).toThrow(/--ha-probe-interval must be a number of seconds, got "ten"/);
    expect(() => haProbeSettings('10', '-1')).toThrow(/--ha-probe-timeout must be a number of seconds/);
  });
});
