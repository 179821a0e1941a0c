/**
 * `weft server --policy FILE` end to end with Weft's own control client: each node's map carries its compiled
 * filter and only the peers the policy lets it talk to; a changed file is reloaded and pushed; a bad change is
 * refused with its line and the last good policy stays; a bad file at start fails the start, unless a last good
 * copy from an earlier run is in the data directory, which is then served.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ControlClient } from '../../../../src-main/engine/control/client.ts';
import { keyText } from '../../../../src-main/protocol/crypto/keys.ts';
import { eventually, Harness, peerNames } from './harness.ts';

let h: Harness;
let dir: string;
let logs: string[];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'weft-policy-'));
  logs = [];
});
afterEach(async () => {
  await h?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const filterOf = (c: ControlClient): unknown => c.netmap.packetFilter;

describe('weft server --policy', () => {
  it('sends each node its filter and only the peers it may talk to; reloads changes; keeps the last good policy', async () => {
    const path = join(dir, 'policy.hujson');
    // Only alpha may reach gamma on TCP 22. beta is in no rule.
    const v1 = `{
  // v1
  "acls": [{"action": "accept", "src": ["alice@"], "dst": ["carol@:22"], "proto": "tcp"}],
}`;
    writeFileSync(path, v1);
    h = new Harness();
    // Users before the server loads the policy (it checks user names at load).
    h.userId = h.store.createUser('alice', Date.now()).id;
    h.key = h.store.createPreAuthKey({ userId: h.userId, reusable: true, ephemeral: false, expiresAt: null }, Date.now()).key;
    const bobId = h.store.createUser('bob', Date.now()).id;
    const carolId = h.store.createUser('carol', Date.now()).id;
    const keyFor = (userId: number): string => h.store.createPreAuthKey({ userId, reusable: true, ephemeral: false, expiresAt: null }, Date.now()).key;
    await h.start({ policyFile: path, logf: (l) => void logs.push(l) });

    const a = await h.client('alpha');
    await a.start();
    const b = await h.client('beta', { authKey: keyFor(bobId) });
    await b.start();
    const c = await h.client('gamma', { authKey: keyFor(carolId) });
    await c.start();
    const ip = (cl: ControlClient): string => h.store.nodeByNodeKey(keyText('nodekey', cl.nodePublic))!.ipv4;

    await eventually('alpha and gamma see each other, beta sees nobody', () =>
      peerNames(a).join() === 'gamma' && peerNames(c).join() === 'alpha' && peerNames(b).length === 0 ? true : undefined,
    );
    expect(filterOf(c)).toEqual([
      { SrcIPs: [ip(a), expect.stringMatching(/^fd7a:/)], DstPorts: [{ IP: ip(c), Ports: { First: 22, Last: 22 } }, { IP: expect.stringMatching(/^fd7a:/), Ports: { First: 22, Last: 22 } }], IPProto: [6] },
    ]);
    expect(filterOf(a)).toEqual([]);
    expect(filterOf(b)).toEqual([]);

    // v2: bob may reach alice on any port. The file is watched: beta and alpha now see each other.
    writeFileSync(path, `{"acls": [
      {"action": "accept", "src": ["alice@"], "dst": ["carol@:22"], "proto": "tcp"},
      {"action": "accept", "src": ["bob@"], "dst": ["alice@:*"]},
    ]}`);
    await eventually('v2 pushed', () => (peerNames(b).join() === 'alpha' && peerNames(a).join() === 'beta,gamma' ? true : undefined), 8000);
    expect((filterOf(a) as { SrcIPs: string[] }[])[0]!.SrcIPs[0]).toBe(ip(b));

    // v3 is bad (an unknown user, on line 3): refused with its line, v2 stays in force.
    writeFileSync(path, '{\n  "acls": [\n    {"action": "accept", "src": ["mallory@"], "dst": ["*:*"]}\n  ]\n}\n');
    await eventually('v3 refused', () => (logs.some((l) => /refused; keeping the last good policy/.test(l)) ? true : undefined), 8000);
    expect(logs.join('\n')).toMatch(/line 3, column 34: unknown user "mallory@"/);
    await new Promise((r) => setTimeout(r, 300));
    expect(peerNames(b).join()).toBe('alpha');
    expect(peerNames(a).join()).toBe('beta,gamma');

    // A tag changes membership: gamma tagged leaves carol@, so alpha's rule to carol@:22 no longer reaches it.
    writeFileSync(path, `{"tagOwners": {"tag:srv": ["carol@"]}, "acls": [
      {"action": "accept", "src": ["alice@"], "dst": ["carol@:22"], "proto": "tcp"},
      {"action": "accept", "src": ["bob@"], "dst": ["alice@:*"]},
    ]}`);
    await eventually('v4 loaded', () => (logs.filter((l) => /policy: reloaded/.test(l)).length >= 2 ? true : undefined), 8000);
    const gamma = h.store.nodeByNodeKey(keyText('nodekey', c.nodePublic))!;
    h.store.updateNode(gamma.id, { tags: ['tag:srv'] });
    await eventually('gamma dropped from alpha', () => (peerNames(a).join() === 'beta' && peerNames(c).length === 0 ? true : undefined), 8000);
    expect(filterOf(c)).toEqual([]);
  }, 40_000);

  it('starts before the users it names exist, and applies their rules once they do', async () => {
    const path = join(dir, 'early.json');
    writeFileSync(path, '{"acls": [{"action": "accept", "src": ["alice@"], "dst": ["carol@:22"]}]}');
    h = new Harness();
    await h.start({ policyFile: path, logf: (l) => void logs.push(l) }); // no users yet (the harness makes alice after start)
    expect(logs.join('\n')).toMatch(/line 1, column \d+: unknown user "alice@" \(users: none\); it matches no node until that user exists/);
    const carolId = h.store.createUser('carol', Date.now()).id;
    const a = await h.client('alpha');
    await a.start();
    const c = await h.client('gamma', { authKey: h.store.createPreAuthKey({ userId: carolId, reusable: true, ephemeral: false, expiresAt: null }, Date.now()).key });
    await c.start();
    await eventually('alpha and gamma see each other', () => (peerNames(a).join() === 'gamma' && peerNames(c).join() === 'alpha' ? true : undefined));
    expect((filterOf(c) as { DstPorts: { Ports: { First: number } }[] }[])[0]!.DstPorts[0]!.Ports.First).toBe(22);
  }, 20_000);

  it('an edit may keep naming a user that does not exist yet, but not add one', async () => {
    const path = join(dir, 'edit.json');
    writeFileSync(path, '{"acls": [{"action": "accept", "src": ["ghost@"], "dst": ["*:22"]}]}');
    h = new Harness();
    await h.start({ policyFile: path, logf: (l) => void logs.push(l) });
    writeFileSync(path, '{"acls": [{"action": "accept", "src": ["ghost@"], "dst": ["*:22,80"]}]}');
    await eventually('reloaded', () => (logs.some((l) => /policy: reloaded/.test(l)) ? true : undefined), 8000);
    writeFileSync(path, '{"acls": [{"action": "accept", "src": ["ghost@", "typo@"], "dst": ["*:22,80"]}]}');
    await eventually('refused', () => (logs.some((l) => /refused; keeping the last good policy/.test(l)) ? true : undefined), 8000);
    const refusal = logs.find((l) => /refused; keeping/.test(l))!;
    expect(refusal).toMatch(/unknown user "typo@"/);
    expect(refusal).not.toMatch(/"ghost@"/);
    // Two file changes, each seen by a 1 s stat poll: more than vitest's default 5 s on a loaded CI machine.
  }, 30_000);

  it('refuses to start with a bad policy file, saying where', async () => {
    const path = join(dir, 'bad.json');
    writeFileSync(path, '{\n  "groups": {"group:a": ["group:b"]}\n}');
    h = new Harness();
    await expect(h.start({ policyFile: path })).rejects.toThrow(/policy .*bad\.json refused:\nline 2, column \d+: groups\["group:a"\]: "group:b": group members cannot be recursive/);
  });

  it('after a restart with a bad policy file, serves the last good policy kept in its data directory', async () => {
    const path = join(dir, 'policy.hujson');
    const data = join(dir, 'data');
    mkdirSync(data, { mode: 0o700 });
    writeFileSync(path, '{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:22"], "proto": "tcp"}]}');
    h = new Harness();
    await h.start({ policyFile: path, dataDir: data });
    const ports = (c: ControlClient): unknown => (filterOf(c) as { DstPorts: { Ports: unknown }[] }[] | undefined)?.[0]?.DstPorts[0]?.Ports;
    const a = await h.client('alpha');
    await a.start();
    await eventually('alpha has its filter', () => (ports(a) ? true : undefined));
    expect(ports(a)).toEqual({ First: 22, Last: 22 });
    await h.server.close();

    // Edited while the server was down: a recursive group on line 2.
    writeFileSync(path, '{\n  "groups": {"group:a": ["group:b"]}, "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]\n}');
    await h.start({ policyFile: path, dataDir: data, logf: (l) => void logs.push(l) });
    const b = await h.client('beta');
    await b.start();
    await eventually('beta has its filter', () => (ports(b) ? true : undefined));
    expect(ports(b)).toEqual({ First: 22, Last: 22 });
    expect(logs.join('\n')).toMatch(/policy .*policy\.hujson refused:\nline 2, column \d+: .*recursive[^]*serving the last good policy/);
  });
});
