import { describe, expect, it } from 'vitest';
import { parseRequest, parseResponse } from '../../../src-shared/ipc/contract.ts';

describe('settings in the contract', () => {
  it('a settings:set update carries only the keys it names (no defaults slip in)', () => {
    expect(parseRequest('settings:set', { notifications: false })).toEqual({ ok: true, value: { notifications: false } });
    expect(parseRequest('settings:set', { acceptRoutes: true, acceptDns: false })).toEqual({ ok: true, value: { acceptRoutes: true, acceptDns: false } });
    expect(parseRequest('settings:set', { acceptDns: 'yes' })).toMatchObject({ ok: false, error: { code: 'invalid-payload' } });
    expect(parseRequest('settings:set', { unknownKey: true })).toMatchObject({ ok: false, error: { code: 'invalid-payload' } });
  });

  it('settings from an older weftd (without subnet routes and MagicDNS) read with their defaults', () => {
    const old = { autoStart: false, startMinimised: false, notifications: true, profiles: [], activeProfile: null };
    expect(parseResponse('settings:get', old)).toEqual({ ok: true, value: { ...old, acceptRoutes: false, acceptDns: true } });
  });
});
