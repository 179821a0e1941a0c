/**
 * Loads the hand-written control-protocol fixtures in test/fixtures/control: JSON messages shaped as headscale
 * 0.25–0.29 emits them (control-protocol §9), plus zstd-compressed copies made with the zstd CLI.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { repoRoot } from '../../../support/vectors.ts';

export const fixtureDir = resolve(repoRoot, 'test/fixtures/control');

/** The raw bytes of a fixture file. */
export function fixtureBytes(file: string): Uint8Array {
  return new Uint8Array(readFileSync(resolve(fixtureDir, file)));
}

/** A JSON fixture by name (without `.json`), parsed. */
export function fixture(name: string): unknown {
  return JSON.parse(readFileSync(resolve(fixtureDir, `${name}.json`), 'utf8')) as unknown;
}

/** A JSON fixture as a mutable object, for tests that derive variants from it. */
export function fixtureObject(name: string): Record<string, unknown> {
  const v = fixture(name);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`fixture ${name} is not an object`);
  return v as Record<string, unknown>;
}
