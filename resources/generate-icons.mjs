#!/usr/bin/env node
// Generates the tray icons and the app icon as PNG files with nothing but node:zlib, so they are reproducible:
//
//   node resources/generate-icons.mjs           writes resources/tray/<state>-<variant>.png (16×16),
//                                               resources/tray/<state>-<variant>@2x.png (32×32) and resources/icon.png (512×512)
//   node resources/generate-icons.mjs --check   exits 1 if a committed file's pixels differ from what this draws
//
// States (host/tray-state.ts): disconnected (grey ring, slashed), connecting (amber open arc), connected (green disc,
// check), some-relayed (green disc, check, orange relay badge), needs-login (amber disc, "!"), error (red disc, "×").
// Variants: "light" is for light panels (dark grey strokes; glyph marks cut out, so the light panel shows through),
// "dark" for dark panels (light grey strokes; glyph marks in white). Shapes are drawn in unit coordinates with 4×4 supersampling.
import { Buffer } from 'node:buffer';
import { readFileSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync, inflateSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));

export const STATES = ['disconnected', 'connecting', 'connected', 'some-relayed', 'needs-login', 'error'];
export const VARIANTS = ['light', 'dark'];

const GREEN = [47, 179, 109, 255];
const AMBER = [240, 165, 0, 255];
const ORANGE = [240, 120, 20, 255];
const RED = [229, 72, 77, 255];
const NEUTRAL = { light: [60, 60, 60, 255], dark: [232, 232, 232, 255] };
const ERASE = null;

// --- shapes: (x, y) in [0,1]² → inside? ---
const disc = (cx, cy, r) => (x, y) => (x - cx) ** 2 + (y - cy) ** 2 <= r * r;
const ring = (cx, cy, r, w) => (x, y) => Math.abs(Math.hypot(x - cx, y - cy) - r) <= w / 2;
const arc = (cx, cy, r, w, from, span) => (x, y) => {
  if (!ring(cx, cy, r, w)(x, y)) return false;
  const a = (((Math.atan2(y - cy, x - cx) * 180) / Math.PI - from) % 360 + 360) % 360;
  return a <= span;
};
const segment = (x0, y0, x1, y1, w) => (x, y) => {
  const dx = x1 - x0;
  const dy = y1 - y0;
  const t = Math.max(0, Math.min(1, ((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy)));
  return Math.hypot(x - (x0 + t * dx), y - (y0 + t * dy)) <= w / 2;
};
const roundRect = (x0, y0, x1, y1, r) => (x, y) => {
  const cx = Math.max(x0 + r, Math.min(x1 - r, x));
  const cy = Math.max(y0 + r, Math.min(y1 - r, y));
  return (x - cx) ** 2 + (y - cy) ** 2 <= r * r;
};
const wave = (y0, amp, w) => (x, y) => x > 0.16 && x < 0.84 && Math.abs(y - (y0 + amp * Math.sin((x - 0.16) * 2 * Math.PI * 1.2))) <= w / 2;

const WHITE = [255, 255, 255, 255];
const check = [segment(0.3, 0.52, 0.45, 0.66, 0.11), segment(0.45, 0.66, 0.71, 0.37, 0.11)];

/** The layers of one tray icon, painted in order ([shape, colour] or [shape, ERASE]). */
export function trayLayers(state, variant) {
  const n = NEUTRAL[variant];
  const mark = variant === 'dark' ? WHITE : ERASE;
  switch (state) {
    case 'disconnected':
      return [[ring(0.5, 0.5, 0.34, 0.12), n], [segment(0.22, 0.78, 0.78, 0.22, 0.11), n]];
    case 'connecting':
      return [[arc(0.5, 0.5, 0.34, 0.14, -90, 270), AMBER], [disc(0.5, 0.5, 0.1), n]];
    case 'connected':
      return [[disc(0.5, 0.5, 0.42), GREEN], ...check.map((s) => [s, mark])];
    case 'some-relayed':
      return [[disc(0.5, 0.5, 0.42), GREEN], ...check.map((s) => [s, mark]), [disc(0.77, 0.77, 0.23), ERASE], [disc(0.77, 0.77, 0.17), ORANGE]];
    case 'needs-login':
      return [[disc(0.5, 0.5, 0.42), AMBER], [segment(0.5, 0.27, 0.5, 0.55, 0.12), mark], [disc(0.5, 0.72, 0.07), mark]];
    case 'error':
      return [[disc(0.5, 0.5, 0.42), RED], [segment(0.35, 0.35, 0.65, 0.65, 0.11), mark], [segment(0.65, 0.35, 0.35, 0.65, 0.11), mark]];
    default:
      throw new Error(`unknown state ${state}`);
  }
}

export function appIconLayers() {
  return [
    [roundRect(0.03, 0.03, 0.97, 0.97, 0.2), [31, 42, 68, 255]],
    [wave(0.31, 0.05, 0.075), [127, 209, 185, 255]],
    [wave(0.5, 0.05, 0.075), [244, 211, 94, 255]],
    [wave(0.69, 0.05, 0.075), [127, 209, 185, 255]],
    [(x, y) => y > 0.18 && y < 0.82 && (Math.abs(x - 0.36) < 0.025 || Math.abs(x - 0.64) < 0.025), [233, 238, 245, 220]],
  ];
}

/** Renders layers to RGBA rows (size×size×4 bytes). */
export function render(layers, size, ss = 4) {
  const px = new Uint8Array(size * size * 4);
  for (let py = 0; py < size; py++) {
    for (let pxi = 0; pxi < size; pxi++) {
      let r = 0, g = 0, b = 0, a = 0;
      for (let sy = 0; sy < ss; sy++) {
        for (let sx = 0; sx < ss; sx++) {
          const x = (pxi + (sx + 0.5) / ss) / size;
          const y = (py + (sy + 0.5) / ss) / size;
          let c = [0, 0, 0, 0];
          for (const [inside, colour] of layers) {
            if (!inside(x, y)) continue;
            if (colour === ERASE) c = [0, 0, 0, 0];
            else {
              const al = colour[3] / 255;
              const ca = c[3] / 255;
              const oa = al + ca * (1 - al);
              c = oa === 0 ? [0, 0, 0, 0] : [0, 1, 2].map((i) => (colour[i] * al + c[i] * ca * (1 - al)) / oa).concat([oa * 255]);
            }
          }
          const w = c[3] / 255;
          r += c[0] * w;
          g += c[1] * w;
          b += c[2] * w;
          a += w;
        }
      }
      const o = (py * size + pxi) * 4;
      const n = ss * ss;
      px[o] = a ? Math.round(r / a) : 0;
      px[o + 1] = a ? Math.round(g / a) : 0;
      px[o + 2] = a ? Math.round(b / a) : 0;
      px[o + 3] = Math.round((a / n) * 255);
    }
  }
  return px;
}

// --- PNG (RGBA, 8 bit, no interlace) ---
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

export function crc32(buf) {
  let c = 0xffffffff;
  for (const byte of buf) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'ascii');
  Buffer.from(data).copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

export function encodePng(rgba, size) {
  const raw = Buffer.alloc((size * 4 + 1) * size);
  for (let y = 0; y < size; y++) {
    raw[y * (size * 4 + 1)] = 0; // filter: none
    Buffer.from(rgba.buffer, rgba.byteOffset + y * size * 4, size * 4).copy(raw, y * (size * 4 + 1) + 1);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr.set([8, 6, 0, 0, 0], 8); // 8-bit RGBA
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 9 })), chunk('IEND', Buffer.alloc(0))]);
}

/** Decodes a PNG written by encodePng (filter 0 rows) back to {size, rgba}; enough for --check. */
export function decodePng(buf) {
  if (buf.subarray(0, 8).compare(Buffer.from([137, 80, 78, 71, 13, 10, 26, 10])) !== 0) throw new Error('not a PNG');
  let off = 8;
  let size = 0;
  const idat = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('ascii', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (buf.readUInt32BE(off + 8 + len) !== crc32(buf.subarray(off + 4, off + 8 + len))) throw new Error(`bad CRC in ${type}`);
    if (type === 'IHDR') size = data.readUInt32BE(0);
    if (type === 'IDAT') idat.push(data);
    off += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const rgba = Buffer.alloc(size * size * 4);
  for (let y = 0; y < size; y++) raw.copy(rgba, y * size * 4, y * (size * 4 + 1) + 1, (y + 1) * (size * 4 + 1));
  return { size, rgba };
}

/** Every file this script owns: relative path → { size, rgba }. */
export function allIcons() {
  const out = new Map();
  for (const state of STATES) {
    for (const variant of VARIANTS) {
      out.set(`tray/${state}-${variant}.png`, { size: 16, rgba: render(trayLayers(state, variant), 16) });
      out.set(`tray/${state}-${variant}@2x.png`, { size: 32, rgba: render(trayLayers(state, variant), 32) });
    }
  }
  out.set('icon.png', { size: 512, rgba: render(appIconLayers(), 512, 2) });
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const checkOnly = process.argv.includes('--check');
  let bad = 0;
  const icons = allIcons();
  for (const [rel, { size, rgba }] of icons) {
    const file = join(here, rel);
    if (checkOnly) {
      const ok = existsSync(file) && (() => {
        const d = decodePng(readFileSync(file));
        return d.size === size && Buffer.compare(d.rgba, Buffer.from(rgba)) === 0;
      })();
      if (!ok) {
        console.log(`differs: resources/${rel}`);
        bad++;
      }
    } else {
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, encodePng(rgba, size));
    }
  }
  if (checkOnly && bad) process.exitCode = 1;
  else if (!checkOnly) console.log(`wrote ${icons.size} icons under resources/`);
}
