import { describe, expect, it } from 'vitest';
import { MeshError } from '../../../src-shared/errors.ts';
import { METHOD_NAMES } from '../../../src-shared/ipc/contract.ts';
import { createDispatcher, HostError, type Handlers } from '../../../src-main/host/dispatch.ts';

const EMPTY = { control: null, self: null, peers: [], regions: [], netcheck: null, tailnet: null };
const SETTINGS = { autoStart: false, startMinimised: false, notifications: true, profiles: [], activeProfile: null, acceptRoutes: false, acceptDns: true };
const done = { done: true } as const;

function handlers(over: Partial<Handlers> = {}): { h: Handlers; calls: string[] } {
  const calls: string[] = [];
  const h: Handlers = {
    'mesh:snapshot': async () => (calls.push('mesh:snapshot'), EMPTY),
    'session:join': async (req) => (calls.push(`join ${req.serverUrl}`), done),
    'session:connect': async () => done,
    'session:disconnect': async () => done,
    'session:logout': async () => done,
    'session:open-auth-url': async () => done,
    'netcheck:run': async () => {
      throw new MeshError('state', 'no network', true);
    },
    'settings:get': async () => SETTINGS,
    'settings:set': async (p) => ({ ...SETTINGS, ...p }),
    'profiles:switch': async () => done,
    'profiles:remove': async () => SETTINGS,
    'network:create-local': async () => ({ serverUrl: 'http://192.168.1.5:8080', authKey: 'k'.repeat(48), qrSvg: '<svg/>', qrText: 'x' }),
    'network:policy-get': async () => ({ path: '/var/lib/weft/server/policy.hujson', text: '{}', problem: null }),
    'network:policy-check': async () => ({ valid: true, errors: [] }),
    'network:policy-save': async () => ({ valid: true, errors: [], saved: true }),
    'logs:get': async () => [],
    'engine:status': async () => ({ control: { state: 'connected', url: 'https://hs.example.com', error: null, authUrl: null, stage: 'connected' }, self: null, peers: [], tailnet: null }),
    'engine:ping': async (req) => ({ peer: req.peer, reply: null }),
    'engine:derp-map': async () => null,
    ...over,
  };
  return { h, calls };
}

describe('createDispatcher', () => {
  it('answers a valid call with the handler value', async () => {
    const { h, calls } = handlers();
    const d = createDispatcher(h);
    expect(await d('mesh:snapshot', {})).toEqual({ ok: true, value: EMPTY });
    expect(await d('session:join', { serverUrl: 'https://hs.example.com' })).toEqual({ ok: true, value: done });
    expect(calls).toEqual(['mesh:snapshot', 'join https://hs.example.com']);
  });

  it.each([
    ['session:join', { serverUrl: 'not a url' }, /serverUrl/],
    ['session:join', { serverUrl: 'https://hs.example.com', hostname: 'bad name!' }, /hostname/],
    ['mesh:snapshot', { extra: 1 }, /mesh:snapshot request/],
    ['mesh:snapshot', null, /mesh:snapshot request/],
    ['settings:set', { autoStart: 'yes' }, /autoStart/],
    ['settings:set', { unknownKey: true }, /settings:set request/],
    ['logs:get', { limit: 100000 }, /limit/],
    ['profiles:switch', { id: 42 }, /id/],
    ['network:create-local', { listen: 'everywhere' }, /listen/],
    ['network:create-local', { port: 8080 }, /network:create-local request/],
  ])('rejects a bad %s payload %j with a typed invalid-payload error and never calls the handler', async (method, payload, where) => {
    const { h, calls } = handlers();
    const r = await createDispatcher(h)(method, payload);
    expect(r).toEqual({ ok: false, error: { code: 'invalid-payload', message: expect.stringMatching(where), retryable: false } });
    expect(calls).toEqual([]);
  });

  it.each([['nope'], [''], [42], [null], [{ toString: () => 'mesh:snapshot' }], ['__proto__'], ['constructor']])('rejects the unknown method %j', async (method) => {
    const r = await createDispatcher(handlers().h)(method, {});
    expect(r).toMatchObject({ ok: false, error: { code: 'unknown-method', retryable: false } });
  });

  it('passes a MeshError or HostError code through, and hides anything else as internal', async () => {
    const logs: string[] = [];
    const d = createDispatcher(
      handlers({
        'session:connect': async () => {
          throw new HostError('helper-denied', 'the password prompt was cancelled', true);
        },
        'session:logout': async () => {
          throw new TypeError('x is undefined');
        },
      }).h,
      { logf: (l) => logs.push(l) },
    );
    expect(await d('netcheck:run', {})).toEqual({ ok: false, error: { code: 'state', message: 'no network', retryable: true } });
    expect(await d('session:connect', {})).toEqual({ ok: false, error: { code: 'helper-denied', message: 'the password prompt was cancelled', retryable: true } });
    expect(await d('session:logout', {})).toEqual({ ok: false, error: { code: 'internal', message: 'internal error: x is undefined', retryable: false } });
    expect(logs.join('\n')).toContain('session:logout failed');
  });

  it('refuses to pass on an off-contract response', async () => {
    const d = createDispatcher(handlers({ 'settings:get': async () => ({ autoStart: 'maybe' }) as unknown as typeof SETTINGS }).h);
    expect(await d('settings:get', {})).toMatchObject({ ok: false, error: { code: 'internal' } });
  });

  it('covers every contract method', () => {
    expect(Object.keys(handlers().h).sort()).toEqual([...METHOD_NAMES].sort());
  });
});
