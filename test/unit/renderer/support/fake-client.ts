/**
 * A fake WeftApi for renderer tests: records calls, answers from a handler table, and pushes events by hand.
 * Payloads are `unknown` on purpose, so tests can push ones that break the contract.
 */
import type { EventName, IpcResult, MethodName, WeftApi } from '../../../../src-shared/ipc/contract.ts';

type Handler = (request: unknown) => unknown;

export class FakeApi {
  readonly calls: { method: MethodName; request: unknown }[] = [];
  readonly handlers = new Map<MethodName, Handler>();
  private readonly listeners = new Map<EventName, Set<(p: unknown) => void>>();

  answer(method: MethodName, h: Handler): this {
    this.handlers.set(method, h);
    return this;
  }

  push(event: EventName, payload: unknown): void {
    for (const l of this.listeners.get(event) ?? []) l(payload);
  }

  listenerCount(event: EventName): number {
    return this.listeners.get(event)?.size ?? 0;
  }

  get api(): WeftApi {
    const on = (event: EventName, listener: (p: never) => void): (() => void) => {
      let set = this.listeners.get(event);
      if (!set) this.listeners.set(event, (set = new Set()));
      const l = listener as (p: unknown) => void;
      set.add(l);
      return () => set.delete(l);
    };
    const invoke = async (method: MethodName, request: unknown): Promise<IpcResult<unknown>> => {
      this.calls.push({ method, request });
      const h = this.handlers.get(method);
      if (!h) return { ok: false, error: { code: 'unknown-method', message: method, retryable: false } };
      return h(request) as IpcResult<unknown>;
    };
    return { invoke, on } as unknown as WeftApi;
  }
}

export const ok = <T>(value: T): IpcResult<T> => ({ ok: true, value });

/** Lets pending promise callbacks run. */
export const flush = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};
