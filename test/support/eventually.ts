/** Polls `fn` every `stepMs` (250 ms) until it returns a value other than undefined, for at most `ms` (and 1000 tries). */
export async function eventually<T>(what: string, ms: number, fn: () => Promise<T | undefined>, stepMs = 250): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (let i = 0; Date.now() < end && i < 1000; i++) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, stepMs));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}
