import { mkdtemp, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cloneConfig, type WgConfig } from '../../../../src-main/engine/wg/config.ts';
import { HelperClient, startHelperServer, type HelperServer } from '../../../../src-main/engine/wg/helper.ts';
import { HelperWgInterface } from '../../../../src-main/engine/wg/helper-iface.ts';
import {
  parseHelperLine,
  parseHelperRequest,
  type Helper,
  type HelperOp,
  type HelperRequest,
  type HelperRequestOf,
  type HelperResult,
} from '../../../../src-main/engine/wg/helper-ops.ts';
import { WgError } from '../../../../src-main/engine/wg/iface.ts';
import { validateAddresses, validateMtu, validateRoutes } from '../../../../src-main/engine/wg/validate.ts';

const K = 'ab'.repeat(32);
const UAPI = `set=1\nlisten_port=1\npublic_key=${K}\nendpoint=1.2.3.4:5\nallowed_ip=10.0.0.1/32\n\n`;

describe('helper request validation', () => {
  const valid: HelperRequest[] = [
    { op: 'create-interface', name: 'weft0' },
    { op: 'create-interface', name: 'weftabcdefghij' },
    { op: 'set-addresses', name: 'weft0', addresses: ['100.64.0.1/32', 'fd7a:115c:a1e0::1', '10.0.0.1'], mtu: 1280 },
    { op: 'set-routes', name: 'weft0', prefixes: ['100.64.0.0/10', 'fd7a:115c:a1e0::/48', '10.0.0.7'] },
    { op: 'set-routes', name: 'weft0', prefixes: [] },
    { op: 'set-config', name: 'weft0', uapi: UAPI },
    { op: 'get-stats', name: 'weft0' },
    { op: 'destroy-interface', name: 'weft0' },
    { op: 'cleanup-stale', prefix: 'weft' },
    { op: 'cleanup-stale', prefix: 'weftab12' },
  ];
  it.each(valid)('accepts $op', (req) => {
    expect(parseHelperRequest(req)).toEqual({ ok: true, request: req });
  });

  const refused: [string, unknown, RegExp][] = [
    ['a foreign interface', { op: 'create-interface', name: 'eth0' }, /interface names must match/],
    ['the bare prefix as a name', { op: 'create-interface', name: 'weft' }, /interface names must match/],
    ['upper case', { op: 'destroy-interface', name: 'WEFT0' }, /interface names must match/],
    ['shell metacharacters', { op: 'destroy-interface', name: 'weft0;reboot' }, /interface names must match/],
    ['a name over 14 chars', { op: 'create-interface', name: 'weft12345678901' }, /interface names must match/],
    ['an unknown op', { op: 'exec', argv: ['sh', '-c', 'id'] }, /op/],
    ['an extra field', { op: 'create-interface', name: 'weft0', argv: ['x'] }, /argv|unrecognized/i],
    ['a missing field', { op: 'set-addresses', name: 'weft0', addresses: [] }, /mtu/],
    ['a hostname address', { op: 'set-addresses', name: 'weft0', addresses: ['example.com'], mtu: 1280 }, /not an IP address/],
    ['an address with an option', { op: 'set-addresses', name: 'weft0', addresses: ['10.0.0.1/32 peer 1.1.1.1'], mtu: 1280 }, /not an IP address/],
    ['a tiny MTU', { op: 'set-addresses', name: 'weft0', addresses: [], mtu: 100 }, /mtu/],
    ['an IPv4 default route', { op: 'set-routes', name: 'weft0', prefixes: ['0.0.0.0/0'] }, /default route/],
    ['an IPv6 default route', { op: 'set-routes', name: 'weft0', prefixes: ['::/0'] }, /default route/],
    ['a route with a via', { op: 'set-routes', name: 'weft0', prefixes: ['10.0.0.0/8 via 1.2.3.4'] }, /not an IP prefix/],
    ['a /33', { op: 'set-routes', name: 'weft0', prefixes: ['10.0.0.0/33'] }, /not an IP prefix/],
    ['UAPI get', { op: 'set-config', name: 'weft0', uapi: 'get=1\n\n' }, /starts with set=1/],
    ['UAPI fwmark', { op: 'set-config', name: 'weft0', uapi: 'set=1\nfwmark=51820\n\n' }, /fwmark/],
    ['UAPI unknown key', { op: 'set-config', name: 'weft0', uapi: 'set=1\nprotocol_version=2\n\n' }, /unknown device key/],
    ['UAPI two requests', { op: 'set-config', name: 'weft0', uapi: 'set=1\n\nset=1\nreplace_peers=true\n\n' }, /exactly one/],
    ['a cleanup prefix of other interfaces', { op: 'cleanup-stale', prefix: 'eth' }, /cleanup prefixes must match/],
    ['a cleanup prefix of everything', { op: 'cleanup-stale', prefix: '' }, /cleanup prefixes must match/],
    ['not an object', 'create-interface weft0', /refused/],
  ];
  it.each(refused)('refuses %s', (_n, req, why) => {
    const r = parseHelperRequest(req);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error).toBeInstanceOf(WgError);
      expect(r.error.code).toBe('invalid');
      expect(r.error.message).toMatch(why);
    }
  });

  it('parses wire lines with an id', () => {
    expect(parseHelperLine('{"id":3,"op":"get-stats","name":"weft0"}')).toEqual({ id: 3, parsed: { ok: true, request: { op: 'get-stats', name: 'weft0' } } });
    for (const bad of ['not json', '[1]', '{"op":"get-stats","name":"weft0"}', '{"id":-1,"op":"get-stats","name":"weft0"}']) {
      const r = parseHelperLine(bad);
      expect(r.id).toBeNull();
      expect(r.parsed.ok).toBe(false);
    }
  });
});

describe('validate', () => {
  it('routes are canonical with host bits cleared; /0 is refused', () => {
    expect(validateRoutes(['10.1.2.3/8', '10.0.0.0/8', 'FD7A::5/48', '100.64.0.2'])).toEqual(['10.0.0.0/8', 'fd7a::/48', '100.64.0.2/32']);
    expect(() => validateRoutes(['::/0'])).toThrow(/default route/);
    expect(() => validateRoutes(['1.2.3'])).toThrow(WgError);
  });

  it('addresses keep their prefix length; bare addresses are hosts', () => {
    expect(validateAddresses(['10.0.0.1/24', '100.64.0.1', 'fd7a::1'])).toEqual(['10.0.0.1/24', '100.64.0.1/32', 'fd7a::1/128']);
    expect(() => validateAddresses(['10.0.0.1/24 dev lo'])).toThrow(WgError);
  });

  it('MTU bounds', () => {
    expect(validateMtu(1280)).toBe(1280);
    expect(() => validateMtu(575)).toThrow(WgError);
    expect(() => validateMtu(1280.5)).toThrow(WgError);
  });
});

/** A helper that records requests and answers from a table (no root, no wireguard-go). */
class RecordingHelper implements Helper {
  readonly calls: HelperRequest[] = [];
  failNext: WgError | null = null;
  closed = false;

  async call<O extends HelperOp>(req: HelperRequestOf<O>): Promise<HelperResult<O>> {
    const v = parseHelperRequest(req);
    if (!v.ok) throw v.error;
    this.calls.push(v.request);
    if (this.failNext) {
      const e = this.failNext;
      this.failNext = null;
      throw e;
    }
    const results: { [K in HelperOp]: HelperResult<K> } = {
      'create-interface': { name: 'weft0', pid: 42 },
      'set-addresses': {},
      'set-routes': {},
      'set-config': {},
      'get-stats': {
        peers: [{ publicKey: K, endpoint: { ip: '1.2.3.4', port: 5 }, allowedIPs: ['10.0.0.1/32'], rxBytes: 10, txBytes: 20, lastHandshakeUnixMs: 1_700_000_000_000 }],
      },
      'destroy-interface': {},
      'cleanup-stale': { killed: [], removedSockets: [], removedLinks: [] },
    };
    return results[v.request.op as O];
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

const CFG: WgConfig = {
  privateKey: new Uint8Array(32).fill(7),
  listenPort: 41641,
  peers: [{ publicKey: new Uint8Array(32).fill(0xab), endpoint: { ip: '1.2.3.4', port: 5 }, allowedIPs: ['10.0.0.1/32'] }],
};

describe('HelperWgInterface', () => {
  it('sends a full config once, then only diffs; repeated routes are not resent', async () => {
    const h = new RecordingHelper();
    const i = await HelperWgInterface.create(h, 'weft0');
    await i.up({ addresses: ['100.64.0.1/32'] });
    await i.set(CFG);
    await i.set(cloneConfig(CFG));
    await i.set({ ...CFG, listenPort: 1 });
    await i.routes(['10.0.0.1/32']);
    await i.routes(['10.0.0.1/32']);
    const stats = await i.stats();
    await i.close();
    await i.close();
    expect(h.calls.map((c) => c.op)).toEqual(['create-interface', 'set-addresses', 'set-config', 'set-config', 'set-routes', 'get-stats', 'destroy-interface']);
    expect(h.calls[1]).toEqual({ op: 'set-addresses', name: 'weft0', addresses: ['100.64.0.1/32'], mtu: 1280 });
    const configs = h.calls.filter((c) => c.op === 'set-config').map((c) => c.uapi);
    expect(configs[0]).toMatch(/^set=1\nprivate_key=(07){32}\nlisten_port=41641\nreplace_peers=true\n/);
    expect(configs[1]).toBe('set=1\nlisten_port=1\n\n');
    expect(stats[0]!.publicKey).toEqual(new Uint8Array(32).fill(0xab));
    expect(stats[0]!.rxBytes).toBe(10);
  });

  it('after a failed set, the next set sends the full config again', async () => {
    const h = new RecordingHelper();
    const i = await HelperWgInterface.create(h, 'weft0');
    await i.set(CFG);
    h.failNext = new WgError('failed', 'boom');
    await expect(i.set({ ...CFG, listenPort: 2 })).rejects.toThrow('boom');
    await i.set({ ...CFG, listenPort: 2 });
    const last = h.calls.at(-1);
    expect(last?.op === 'set-config' && last.uapi).toMatch(/replace_peers=true/);
  });
});

describe('helper server and client', () => {
  let dir: string;
  let server: HelperServer | undefined;
  let helper: RecordingHelper;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weft-helper-test-'));
    helper = new RecordingHelper();
  });
  afterEach(async () => {
    await server?.close();
    server = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  const uid = process.getuid?.() ?? 0;

  it('listens on a 0600 socket owned by the given uid and answers typed results', async () => {
    const path = join(dir, 'helper.sock');
    server = await startHelperServer(path, uid, { helper });
    const st = await stat(path);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.uid).toBe(uid);
    const c = await HelperClient.connect(path);
    const [created, stats] = await Promise.all([c.call({ op: 'create-interface', name: 'weft0' }), c.call({ op: 'get-stats', name: 'weft0' })]);
    expect(created).toEqual({ name: 'weft0', pid: 42 });
    expect(stats.peers[0]!.txBytes).toBe(20);
    await c.close();
    await expect(c.call({ op: 'get-stats', name: 'weft0' })).rejects.toThrow(/closed/);
  });

  it.skipIf(uid !== 0)('chowns the socket to another user (root only)', async () => {
    const path = join(dir, 'nobody.sock');
    server = await startHelperServer(path, 65534, { helper });
    expect((await stat(path)).uid).toBe(65534);
  });

  it('refuses invalid requests at the server, and passes helper errors with their code', async () => {
    const path = join(dir, 'helper.sock');
    server = await startHelperServer(path, uid, { helper });
    const c = await HelperClient.connect(path);
    const bad = { op: 'set-routes' as const, name: 'weft0', prefixes: ['0.0.0.0/0'] };
    await expect(c.call(bad)).rejects.toMatchObject({ code: 'invalid', message: expect.stringMatching(/default route/) });
    helper.failNext = new WgError('not-found', 'weft9 is not an interface this helper created');
    await expect(c.call({ op: 'destroy-interface', name: 'weft9' })).rejects.toMatchObject({ name: 'WgError', code: 'not-found' });
    expect(helper.calls.map((x) => x.op)).toEqual(['destroy-interface']);
    await c.close();
  });

  it('answers malformed lines with an error and keeps the connection', async () => {
    const path = join(dir, 'helper.sock');
    server = await startHelperServer(path, uid, { helper });
    const lines = await new Promise<string[]>((resolve, reject) => {
      const s = net.connect(path);
      let buf = '';
      s.setEncoding('utf8');
      s.on('data', (d: string) => {
        buf += d;
        if (buf.split('\n').length > 3) {
          s.destroy();
          resolve(buf.trim().split('\n'));
        }
      });
      s.on('error', reject);
      s.write('this is not json\n{"id":7,"op":"exec","argv":["sh"]}\n{"id":8,"op":"get-stats","name":"weft0"}\n');
    });
    const replies = lines.map((l) => JSON.parse(l) as { id: number | null; ok: boolean; error?: { code: string } });
    expect(replies.map((r) => [r.id, r.ok])).toEqual([
      [null, false],
      [7, false],
      [8, true],
    ]);
    expect(replies[1]!.error!.code).toBe('invalid');
  });

  it('refuses to start when another helper answers on the path; close unlinks the socket', async () => {
    const path = join(dir, 'helper.sock');
    server = await startHelperServer(path, uid, { helper });
    await expect(startHelperServer(path, uid, { helper })).rejects.toMatchObject({ code: 'exists' });
    await server.close();
    server = undefined;
    await expect(stat(path)).rejects.toThrow(/ENOENT/);
    expect(helper.closed).toBe(false); // an injected helper belongs to the caller
  });
});
