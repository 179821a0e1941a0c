import { describe, expect, it } from 'vitest';
import type { UdpAddr } from '../../../../src-main/protocol/wire/addr.ts';
import { StunClient } from '../../../../src-main/engine/netcheck/stun-client.ts';
import { parseTailscaleBindingRequest, encodeTailscaleResponse, changeRequestAttr } from '../../../../src-main/protocol/wire/stun.ts';
import { respond } from '../../../../src-main/server/stun/respond.ts';
import { FakeClock } from '../../../sim/fake-clock.ts';

const server = { ip: '203.0.113.10', port: 3478 };
const me = { ip: '198.51.100.2', port: 40000 };

function setup() {
  const clock = new FakeClock();
  const sent: { data: Uint8Array; to: UdpAddr; at: number }[] = [];
  const client = new StunClient({ clock, send: async (data, to) => void sent.push({ data, to, at: clock.now() }) });
  return { clock, sent, client };
}

describe('StunClient', () => {
  it('sends tailnode requests on the retransmit schedule and resolves with the answer and RTT', async () => {
    const { clock, sent, client } = setup();
    const p = client.request(server, { retransmitMs: [0, 100, 300], timeoutMs: 1000 });
    clock.advance(150);
    expect(sent.map((s) => s.at)).toEqual([0, 100]);
    const second = parseTailscaleBindingRequest(sent[1]!.data);
    if (second.kind !== 'request') throw new Error('client must send Tailscale-form requests');
    clock.advance(20);
    expect(client.handlePacket(encodeTailscaleResponse(second.txid, me), server)).toBe(true);
    const a = await p;
    expect(a?.mapped).toEqual(me);
    expect(a?.rttMs).toBe(70); // measured from the try it answers
    expect(client.outstanding).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it('resolves null after the timeout and leaves nothing behind', async () => {
    const { clock, sent, client } = setup();
    const p = client.request(server, { retransmitMs: [0, 200, 600], timeoutMs: 1500 });
    clock.advance(1500);
    expect(await p).toBeNull();
    expect(sent).toHaveLength(3);
    expect(client.outstanding).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it('ignores answers to unknown transactions and non-STUN packets', async () => {
    const { clock, client } = setup();
    const p = client.request(server, { timeoutMs: 500 });
    expect(client.handlePacket(encodeTailscaleResponse(new Uint8Array(12), me), server)).toBe(false);
    expect(client.handlePacket(new Uint8Array([1, 0, 0, 0]), server)).toBe(false);
    clock.advance(500);
    expect(await p).toBeNull();
  });

  it('carries CHANGE-REQUEST and reports the error answer of a server that lacks RFC 5780', async () => {
    const { clock, sent, client } = setup();
    const p = client.request(server, { changeIp: true, changePort: true, timeoutMs: 500 });
    clock.advance(0);
    const req = sent[0]!;
    const parsed = parseTailscaleBindingRequest(req.data);
    if (parsed.kind !== 'request') throw new Error('bad request');
    expect(changeRequestAttr(parsed.msg)).toEqual({ changeIp: true, changePort: true });
    const reply = respond({ primary: server }, { altIp: false, altPort: false }, req.data, me)!;
    expect(client.handlePacket(reply.data, server)).toBe(true);
    const a = await p;
    expect(a?.kind).toBe('error');
    expect(a?.error?.code).toBe(420);
  });

  it('close() abandons outstanding requests', async () => {
    const { client } = setup();
    const p = client.request(server);
    client.close();
    expect(await p).toBeNull();
  });
});
