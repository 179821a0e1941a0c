import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { trayIconPath } from '../../../src-main/app/resources.ts';
import { TRAY_STATES } from '../../../src-main/host/tray-state.ts';
import { repoRoot } from '../../support/vectors.ts';

const dir = join(repoRoot, 'resources');

/** IHDR fields and the decoded RGBA of one of our PNGs. */
function png(file: string): { width: number; height: number; colourType: number; pixels: Buffer } {
  const b = readFileSync(file);
  expect(b.subarray(0, 8)).toEqual(Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]));
  expect(b.toString('ascii', 12, 16)).toBe('IHDR');
  const width = b.readUInt32BE(16);
  const height = b.readUInt32BE(20);
  const idat: Buffer[] = [];
  for (let off = 8; off < b.length; ) {
    const len = b.readUInt32BE(off);
    if (b.toString('ascii', off + 4, off + 8) === 'IDAT') idat.push(b.subarray(off + 8, off + 8 + len));
    off += 12 + len;
  }
  return { width, height, colourType: b[25]!, pixels: inflateSync(Buffer.concat(idat)) };
}

describe('tray icons', () => {
  it.each(TRAY_STATES.flatMap((s) => (['light', 'dark'] as const).map((v) => [s, v] as const)))('%s/%s: 16×16 and @2x 32×32 RGBA', (state, variant) => {
    const one = png(trayIconPath(dir, state, variant));
    const two = png(trayIconPath(dir, state, variant).replace(/\.png$/, '@2x.png'));
    expect([one.width, one.height, one.colourType]).toEqual([16, 16, 6]);
    expect([two.width, two.height, two.colourType]).toEqual([32, 32, 6]);
  });

  it('every state looks different from every other, in both variants, and the variants differ', () => {
    for (const variant of ['light', 'dark'] as const) {
      const seen = new Set(TRAY_STATES.map((s) => png(trayIconPath(dir, s, variant)).pixels.toString('hex')));
      expect(seen.size).toBe(TRAY_STATES.length);
    }
    for (const s of TRAY_STATES) expect(png(trayIconPath(dir, s, 'light')).pixels.equals(png(trayIconPath(dir, s, 'dark')).pixels)).toBe(false);
  });

  it('the app icon is a 512×512 PNG', () => {
    const icon = png(join(dir, 'icon.png'));
    expect([icon.width, icon.height]).toEqual([512, 512]);
  });

  it('the committed icons are what the generator draws', () => {
    expect(() => execFileSync(process.execPath, [join(dir, 'generate-icons.mjs'), '--check'], { encoding: 'utf8' })).not.toThrow();
  });
});
