/**
 * The watched policy file (server/policy/file.ts) on its own, with a fast poll: an edit made right after the first
 * load is seen, a refused text is reported once and checked again when the file is touched, a vanished file
 * keeps the last good policy, and the copy of the last good policy stands in for a file that is bad at a restart.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { PolicyWorld } from '../../../../src-main/server/policy/compile.ts';
import { PolicyFile } from '../../../../src-main/server/policy/file.ts';

let dir: string;
let pf: PolicyFile | null = null;
beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'weft-policy-file-'))));
afterEach(() => {
  pf?.stop();
  pf = null;
  rmSync(dir, { recursive: true, force: true });
});

async function until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (ok()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The first ACL's destination ports in force, as "22,80". */
const ports = (pf: PolicyFile): string => (pf.current()?.doc.doc.acls?.[0]?.dst[0]?.ports ?? []).map((r) => (r.first === r.last ? `${r.first}` : `${r.first}-${r.last}`)).join();

describe('PolicyFile', () => {
  it('sees an edit written between the first load and the first poll', async () => {
    const path = join(dir, 'p.json');
    writeFileSync(path, '{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:22"]}]}');
    const logs: string[] = [];
    let changes = 0;
    const world: PolicyWorld = { users: [], nodes: [] };
    pf = new PolicyFile({ path, world: () => world, onChange: () => changes++, logf: (l) => void logs.push(l), pollMs: 30 });
    await pf.load();
    const v1 = pf.current()!.version;
    // Same second, other size: the watcher must compare against what load() read, not against its own first stat.
    writeFileSync(path, '{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:22,80"]}]}');
    pf.watch();
    await until('the reload', () => changes === 1);
    expect(pf.current()!.version).toBe(v1 + 1);
    expect(ports(pf)).toBe('22,80');
    expect(logs.filter((l) => /policy: reloaded/.test(l))).toHaveLength(1);
  });

  it('reports a refused text once, and checks it again when the file is touched', async () => {
    const path = join(dir, 'p.json');
    writeFileSync(path, '{"acls": [{"action": "accept", "src": ["alice@"], "dst": ["*:22"]}]}');
    const logs: string[] = [];
    let changes = 0;
    const world: PolicyWorld = { users: ['alice'], nodes: [] };
    pf = new PolicyFile({ path, world: () => world, onChange: () => changes++, logf: (l) => void logs.push(l), pollMs: 30 });
    await pf.load();
    pf.watch();
    writeFileSync(path, '{"acls": [{"action": "accept", "src": ["alice@", "dave@"], "dst": ["*:22"]}]}');
    await until('the refusal', () => logs.some((l) => /refused; keeping the last good policy/.test(l)));
    await new Promise((r) => setTimeout(r, 200)); // several polls: no second report for the same write
    expect(logs.filter((l) => /refused/.test(l))).toHaveLength(1);
    expect(logs.find((l) => /refused/.test(l))).toMatch(/line 1, column \d+: .*unknown user "dave@"/);
    expect(ports(pf)).toBe('22');
    expect(changes).toBe(0);
    expect(pf.problem()).toMatch(/refused:\nline 1, column \d+: .*unknown user "dave@"/);

    // The operator creates dave, then touches the file: the same text is checked again and now applies.
    world.users = ['alice', 'dave'];
    const later = new Date(Date.now() + 2000);
    utimesSync(path, later, later);
    await until('the reload after touch', () => changes === 1);
    expect(logs.filter((l) => /policy: reloaded/.test(l))).toHaveLength(1);
    expect(pf.current()!.doc.doc.acls?.[0]?.src.map((s) => s.alias)).toEqual(['alice@', 'dave@']);
    expect(pf.problem()).toBeNull();
  });

  it('keeps the last good policy while the file is missing, and says so once', async () => {
    const path = join(dir, 'p.json');
    writeFileSync(path, '{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:22"]}]}');
    const logs: string[] = [];
    let changes = 0;
    pf = new PolicyFile({ path, world: () => ({ users: [], nodes: [] }), onChange: () => changes++, logf: (l) => void logs.push(l), pollMs: 30 });
    await pf.load();
    pf.watch();
    unlinkSync(path);
    await until('the report', () => logs.some((l) => /cannot read/.test(l)));
    await new Promise((r) => setTimeout(r, 200));
    expect(logs.filter((l) => /cannot read .*keeping the last good policy/.test(l))).toHaveLength(1);
    expect(ports(pf)).toBe('22');
    expect(pf.problem()).toMatch(/cannot be read/);
    writeFileSync(path, '{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:443"]}]}');
    await until('the new file', () => changes === 1);
    expect(ports(pf)).toBe('443');
  });

  describe('the last good copy, across a restart', () => {
    const good = '{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:22"]}]}';
    /** A first run with a good file: the copy is written (0600). */
    async function firstRun(path: string, copy: string): Promise<void> {
      writeFileSync(path, good);
      const first = new PolicyFile({ path, world: () => ({ users: [], nodes: [] }), onChange: () => {}, logf: () => {}, lastGoodPath: copy });
      await first.load();
      await first.saved();
      first.stop();
      expect(readFileSync(copy, 'utf8')).toBe(good);
      expect(statSync(copy).mode & 0o777).toBe(0o600);
    }

    it('a file that is bad at the next start is refused with its line, the copy is served, and the fix applies', async () => {
      const path = join(dir, 'p.json');
      const copy = join(dir, 'last-good.hujson');
      await firstRun(path, copy);
      // Edited while the server was down: a syntax error on line 2.
      writeFileSync(path, '{"acls": [\n  {"action": "accept", "src": ["*"] "dst": ["*:80"]}]}');
      const logs: string[] = [];
      let changes = 0;
      pf = new PolicyFile({ path, world: () => ({ users: [], nodes: [] }), onChange: () => changes++, logf: (l) => void logs.push(l), pollMs: 30, lastGoodPath: copy });
      await pf.load();
      expect(ports(pf)).toBe('22');
      expect(pf.problem()).toMatch(/refused:\n.*line 2/);
      expect(logs.join('\n')).toMatch(/refused:\n.*line 2[^]*serving the last good policy \(.*last-good\.hujson\) until .*p\.json is fixed/);
      // The bad text is not reported again by the watcher until it is written again; the fix then applies.
      pf.watch();
      await new Promise((r) => setTimeout(r, 150));
      expect(logs.filter((l) => /refused/.test(l))).toHaveLength(1);
      writeFileSync(path, '{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:443"]}]}');
      await until('the fixed file', () => changes === 1);
      expect(ports(pf)).toBe('443');
      expect(pf.problem()).toBeNull();
      await pf.saved();
      expect(readFileSync(copy, 'utf8')).toMatch(/443/);
    });

    it('a missing file at the next start serves the copy until the file is back', async () => {
      const path = join(dir, 'p.json');
      const copy = join(dir, 'last-good.hujson');
      await firstRun(path, copy);
      unlinkSync(path);
      const logs: string[] = [];
      let changes = 0;
      pf = new PolicyFile({ path, world: () => ({ users: [], nodes: [] }), onChange: () => changes++, logf: (l) => void logs.push(l), pollMs: 30, lastGoodPath: copy });
      await pf.load();
      expect(ports(pf)).toBe('22');
      expect(logs.join('\n')).toMatch(/cannot be read: [^]*serving the last good policy/);
      pf.watch();
      writeFileSync(path, '{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:8080"]}]}');
      await until('the file back', () => changes === 1);
      expect(ports(pf)).toBe('8080');
    });

    it('without a copy (a first start), a bad file stops the start: no policy would mean allow all', async () => {
      const path = join(dir, 'p.json');
      const copy = join(dir, 'last-good.hujson');
      writeFileSync(path, '{"acls": [{"action": "accept", "src": ["nobody-group:x"], "dst": ["*:22"]}]');
      pf = new PolicyFile({ path, world: () => ({ users: [], nodes: [] }), onChange: () => {}, logf: () => {}, lastGoodPath: copy });
      await expect(pf.load()).rejects.toThrow(/refused:\n.*line 1/);
      expect(pf.current()).toBeNull();
      expect(existsSync(copy)).toBe(false);
    });

    it('a copy that no longer checks is not served either', async () => {
      const path = join(dir, 'p.json');
      const copy = join(dir, 'last-good.hujson');
      writeFileSync(path, '{"acls": [');
      writeFileSync(copy, '{"acls": [');
      const logs: string[] = [];
      pf = new PolicyFile({ path, world: () => ({ users: [], nodes: [] }), onChange: () => {}, logf: (l) => void logs.push(l), lastGoodPath: copy });
      await expect(pf.load()).rejects.toThrow(/refused/);
      expect(logs.join('\n')).toMatch(/last good copy .* is refused too/);
    });
  });
});
