// @vitest-environment jsdom
/**
 * The access policy panel of the network on this computer, rendered in jsdom: closed and quiet while the file is
 * the policy in force; open with the reason, each error with its line, while it is not (an edit by hand that was
 * refused, or a bad file at start served from the last good copy); and the reason gone once a valid policy is saved.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { PolicyEditor } from '../../../src-renderer/src/features/join/PolicyEditor.tsx';
import { FakeApi, ok } from './support/fake-client.ts';
import { mount, resetStore, type Mounted } from './support/render.tsx';

const PATH = '/var/lib/weft/server/policy.hujson';
let view: Mounted | null = null;
afterEach(() => {
  view?.unmount();
  view = null;
});

function api(problem: string | null): FakeApi {
  return new FakeApi()
    .answer('network:policy-get', () => ok({ path: PATH, text: '{"acls": [', problem }))
    .answer('network:policy-save', () => ok({ valid: true, errors: [], saved: true }));
}

describe('the access policy panel', () => {
  it('stays closed, with no warning, while the file is the policy in force', async () => {
    resetStore();
    view = await mount(<PolicyEditor />, api(null));
    expect((view.byTestId('policy-editor') as HTMLDetailsElement).open).toBe(false);
    expect(view.allByTestId('policy-problem')).toEqual([]);
    expect(view.byTestId('policy-path').textContent).toBe(PATH);
  });

  it('opens with why the file is not in force, line by line, and clears it once a valid policy is saved', async () => {
    resetStore();
    const why = `policy ${PATH} refused:\nline 2, column 5: groups["group:a"]: "group:b": group members cannot be recursive`;
    view = await mount(<PolicyEditor />, api(why));
    expect((view.byTestId('policy-editor') as HTMLDetailsElement).open).toBe(true);
    expect(view.byTestId('policy-editor').querySelector('summary')?.textContent).toBe('Access policy (needs a fix)');
    const box = view.byTestId('policy-problem');
    expect(box.getAttribute('role')).toBe('alert');
    expect([...box.querySelectorAll('.detail')].map((d) => d.textContent)).toEqual(why.split('\n'));
    expect(box.textContent).toContain('the last valid policy is, until the file is fixed');

    await view.click(view.byTestId('policy-save'));
    expect(view.fake.calls.map((c) => c.method)).toContain('network:policy-save');
    expect(view.allByTestId('policy-problem')).toEqual([]);
    expect(view.byTestId('policy-result').textContent).toMatch(/Saved/);
  });
});
