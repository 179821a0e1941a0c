/**
 * Mounting a feature component in jsdom for a test: the app's store singleton reset to its initial state, a
 * validated client over a FakeApi in ClientContext, React's act() around every change, and a fake clipboard.
 * Test files that use it start with `// @vitest-environment jsdom`.
 */
import { act, type ReactNode } from 'react';
import { createRoot, type Root } from 'react-dom/client';
import { ClientContext } from '../../../../src-renderer/src/app-context.ts';
import { guardApi } from '../../../../src-renderer/src/ipc/guard.ts';
import { weftStore } from '../../../../src-renderer/src/store/index.ts';
import { FakeApi, flush } from './fake-client.ts';

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

export interface Mounted {
  fake: FakeApi;
  container: HTMLElement;
  /** What was written to the clipboard, in order. */
  copied: string[];
  /** The one element with this data-testid (throws when there is none, or several). */
  byTestId(id: string): HTMLElement;
  allByTestId(id: string): HTMLElement[];
  click(el: Element): Promise<void>;
  /** Runs `f` (a store change) inside act() and lets promise callbacks settle. */
  update(f: () => void): Promise<void>;
  unmount(): void;
}

/** Resets the store; call before setting up its state for a test. */
export function resetStore(): void {
  weftStore.setState(weftStore.getInitialState(), true);
}

export async function mount(ui: ReactNode, fake = new FakeApi()): Promise<Mounted> {
  const copied: string[] = [];
  Object.defineProperty(navigator, 'clipboard', {
    configurable: true,
    value: {
      writeText: async (text: string): Promise<void> => {
        copied.push(text);
      },
    },
  });
  const client = guardApi(fake.api, 'preload', (e) => weftStore.getState().reportIpcError(e));
  const container = document.createElement('div');
  document.body.append(container);
  let root: Root | null = null;
  await act(async () => {
    root = createRoot(container);
    root.render(<ClientContext.Provider value={client}>{ui}</ClientContext.Provider>);
  });
  const all = (id: string): HTMLElement[] => [...container.querySelectorAll<HTMLElement>(`[data-testid="${id}"]`)];
  return {
    fake,
    container,
    copied,
    allByTestId: all,
    byTestId(id) {
      const found = all(id);
      if (found.length !== 1) throw new Error(`expected one [data-testid="${id}"], found ${found.length}`);
      return found[0]!;
    },
    async click(el) {
      await act(async () => {
        el.dispatchEvent(new MouseEvent('click', { bubbles: true, cancelable: true }));
        await flush();
      });
    },
    async update(f) {
      await act(async () => {
        f();
        await flush();
      });
    },
    unmount() {
      act(() => root?.unmount());
      container.remove();
    },
  };
}
