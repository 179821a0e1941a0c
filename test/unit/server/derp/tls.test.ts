/**
 * The DERP server behind an HTTPS listener the caller owns (as `weft server` with TLS), with Weft's DerpConn
 * dialling `https://…/derp`. The certificate is a throwaway self-signed one made with the system openssl;
 * without openssl the test is skipped.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DerpConn } from '../../../../src-main/engine/relay/client.ts';
import { realClock } from '../../../../src-main/engine/sys/clock.ts';
import { generateKeyPair } from '../../../../src-main/protocol/crypto/keys.ts';
import { RawClient, startHarness, until, type Harness } from './harness.ts';

function makeCert(): { key: string; cert: string } | null {
  const dir = mkdtempSync(join(tmpdir(), 'weft-derp-tls-'));
  try {
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=derp.test', '-addext', 'subjectAltName=DNS:derp.test', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')],
      { stdio: 'ignore', timeout: 10_000 },
    );
    return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') };
  } catch {
    return null;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const cert = makeCert();

describe.skipIf(!cert)('DERP server over TLS', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({}, cert!);
  });
  afterAll(async () => {
    await h.close();
  });

  it('relays between two DerpConn clients over https', async () => {
    const conns = [generateKeyPair(), generateKeyPair()].map(
      (kp) =>
        new DerpConn({
          target: { regionId: 900, host: '127.0.0.1', port: h.port, secure: true, serverName: 'derp.test', insecure: true },
          nodePriv: kp.priv,
          clock: realClock,
          logf: () => {},
          preferred: true,
        }),
    );
    const [a, b] = conns as [DerpConn, DerpConn];
    const got: Uint8Array[] = [];
    b.on('packet', (_src, data) => got.push(data.slice()));
    try {
      a.start();
      b.start();
      await until(() => a.connected && b.connected, 5000, 'TLS DERP connected');
      a.send(b.nodePub, new Uint8Array([9, 8, 7]));
      await until(() => got.length === 1);
      expect(got[0]).toEqual(new Uint8Array([9, 8, 7]));
    } finally {
      a.close();
      b.close();
    }
  });

  it('sends the 101 head and ServerKey over TLS', async () => {
    const r = new RawClient(h.port, { tls: true });
    try {
      expect(await r.next(0x01)).not.toBeNull();
      expect(r.head).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    } finally {
      r.destroy();
    }
  });
});
