import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../../support/vectors.ts';

// js-yaml and ajv come with electron-builder (its own config loading uses them); electron-builder ships its schema.
const require = createRequire(import.meta.url);
const yaml = require('js-yaml') as { load(text: string): unknown };
type Validate = ((data: unknown) => boolean) & { errors?: unknown };
const Ajv = (require('ajv') as { default: new (o: object) => { compile(schema: unknown): Validate } }).default;

interface BuilderConfig {
  appId: string;
  files: string[];
  asarUnpack: string[];
  linux: { target: string[]; icon: string; extraResources: { from: string; to: string }[] };
  mac: { target: string[] };
  win: { target: string[] };
  deb: { depends: string[] };
}

describe('electron-builder.yml', () => {
  const cfg = yaml.load(readFileSync(join(repoRoot, 'electron-builder.yml'), 'utf8')) as BuilderConfig;

  it("is valid against electron-builder's own schema", () => {
    const validate = new Ajv({ allErrors: true, strict: false }).compile(require('app-builder-lib/scheme.json'));
    const ok = validate(cfg);
    expect(validate.errors ?? null).toBeNull();
    expect(ok).toBe(true);
  });

  it('builds AppImage, deb and rpm, with dmg and nsis entries', () => {
    expect(cfg.linux.target).toEqual(['AppImage', 'deb', 'rpm']);
    expect(cfg.mac.target).toEqual(['dmg']);
    expect(cfg.win.target).toEqual(['nsis']);
    expect(cfg.deb.depends).toContain('wireguard-go');
  });

  it('packages the build output and the icons, unpacked for the tray', () => {
    expect(cfg.files).toEqual(expect.arrayContaining(['out/**', 'package.json', 'resources/tray/**', 'resources/icon.png']));
    expect(cfg.asarUnpack).toEqual(['resources/**']);
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { main: string };
    expect(pkg.main).toBe('out/main/main.js');
  });

  it("ships the pinned wireguard-go outside the asar, in <resources>/bin where the engine looks (Linux only), and npm ci builds it", () => {
    expect(cfg.linux.extraResources).toEqual([
      { from: 'resources/bin/wireguard-go', to: 'bin/wireguard-go' },
      { from: 'resources/bin/wireguard-go.version', to: 'bin/wireguard-go.version' },
    ]);
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts['postinstall']).toBe('bash scripts/build-wireguard-go.sh --optional');
  });
});
