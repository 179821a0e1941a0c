/**
 * Logf: injected logging. Subsystems take a Logf and prefix it; nothing under engine/ calls console.
 * Lines are `key=value` style; verbose lines start with "[v1] " so a sink can filter them.
 */
export type Logf = (line: string) => void;

export const discardLogf: Logf = () => {};

/** Returns a Logf that prepends `prefix` to every line. */
export function withPrefix(logf: Logf, prefix: string): Logf {
  return (line) => logf(prefix + line);
}
