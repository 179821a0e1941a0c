/** Pure helpers of the views: error words, join stages and URL checks, formatters, NAT words, sparkline geometry. */
import { describe, expect, it } from 'vitest';
import { ErrorCodeSchema, JoinStage } from '../../../src-shared/ipc/contract.ts';
import { NatType } from '../../../src-shared/model/netcheck.ts';
import { BEHAVIOUR_TEXT, NAT_TYPE_TEXT, portMappingText } from '../../../src-renderer/src/features/device/nat-words.ts';
import { inProgress, serverUrlProblem, STAGE_ORDER, STAGE_TEXT } from '../../../src-renderer/src/features/join/stages.ts';
import { ERROR_TEXT, errorWords } from '../../../src-renderer/src/lib/error-text.ts';
import { formatBytes, formatMs, formatRelative } from '../../../src-renderer/src/lib/format.ts';
import { sparkPath } from '../../../src-renderer/src/lib/spark-path.ts';
import { report } from './support/fixtures.ts';

describe('error words', () => {
  it('has words for every error code of the contract', () => {
    for (const code of ErrorCodeSchema.options) expect(ERROR_TEXT[code].length).toBeGreaterThan(5);
  });

  it('keeps the message as a detail unless it says nothing new', () => {
    expect(errorWords({ code: 'auth-failed', message: 'key used', retryable: false })).toEqual({ title: ERROR_TEXT['auth-failed'], detail: 'key used', retryable: false });
    expect(errorWords({ code: 'internal', message: ' ', retryable: true }).detail).toBeNull();
  });
});

describe('join stages', () => {
  it('has words for every stage and orders all but failed', () => {
    for (const s of JoinStage.options) expect(STAGE_TEXT[s]).toBeTruthy();
    expect(STAGE_ORDER).toEqual(JoinStage.options.filter((s) => s !== 'failed'));
    expect([null, 'reaching-server', 'waiting-approval', 'connected', 'failed'].map((s) => inProgress(s as JoinStage | null))).toEqual([false, true, true, false, false]);
  });

  it.each([
    ['https://hs.example.com', null],
    ['http://127.0.0.1:8080', null],
    ['', /Enter/],
    ['hs.example.com', /not a URL/],
    ['ftp://hs.example.com', /https/],
  ])('serverUrlProblem(%j)', (url, expected) => {
    const p = serverUrlProblem(url);
    if (expected === null) expect(p).toBeNull();
    else expect(p).toMatch(expected);
  });
});

describe('formatters', () => {
  it('bytes', () => {
    expect([0, 1023, 1024, 1536, 10 * 1024 * 1024, 5 * 1024 ** 4].map(formatBytes)).toEqual(['0 B', '1023 B', '1.0 KiB', '1.5 KiB', '10 MiB', '5.0 TiB']);
  });

  it('ms', () => {
    expect([null, 3.21, 42.6].map(formatMs)).toEqual(['—', '3.2 ms', '43 ms']);
  });

  it('relative times', () => {
    const now = Date.parse('2025-06-01T12:00:00Z');
    expect(formatRelative('2025-06-01T11:59:50Z', now)).toBe('10 s ago');
    expect(formatRelative('2025-06-01T12:05:00Z', now)).toBe('in 5 min');
    expect(formatRelative('2025-06-04T12:00:00Z', now)).toBe('in 3 days');
    expect(formatRelative('0001-01-01T00:00:00Z', now)).toBe('never');
    expect(formatRelative(null, now, 'unknown')).toBe('unknown');
  });
});

describe('NAT words', () => {
  it('covers every NAT type and behaviour', () => {
    for (const t of NatType.options) expect(NAT_TYPE_TEXT[t].title).toBeTruthy();
    expect(Object.keys(BEHAVIOUR_TEXT)).toHaveLength(4);
  });

  it('describes port mapping', () => {
    expect(portMappingText(report('easy'))).toBe('None found');
    const pm = (over: object) => report('easy', { portMapping: { natpmp: true, pcp: false, upnp: true, externalV4: '203.0.113.9', usable: true, error: null, ...over } });
    expect(portMappingText(pm({}))).toBe('UPnP, NAT-PMP (usable, 203.0.113.9)');
    expect(portMappingText(pm({ usable: false, error: 'CGNAT' }))).toBe('UPnP, NAT-PMP (not usable: CGNAT)');
  });
});

describe('sparkPath', () => {
  it('scales into the box and breaks at gaps', () => {
    const p = sparkPath([10, 20, null, 30], 30, 24)!;
    expect(p.min).toBe(10);
    expect(p.max).toBe(30);
    expect(p.d).toBe('M0.0 22.0L10.0 12.0M30.0 2.0');
    expect(sparkPath([null, null], 10, 10)).toBeNull();
  });
});
