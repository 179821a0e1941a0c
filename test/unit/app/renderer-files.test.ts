import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { contentTypeOf, resolveRendererFile } from '../../../src-main/app/renderer-files.ts';
import { resourcesDir, trayIconPath, unpackedPath } from '../../../src-main/app/resources.ts';

const root = '/opt/Weft/resources/app.asar/out/renderer';

describe('resolveRendererFile', () => {
  it.each([
    ['app://weft/', join(root, 'index.html')],
    ['app://weft/index.html', join(root, 'index.html')],
    ['app://weft/assets/index-abc.js?x=1#y', join(root, 'assets/index-abc.js')],
    ['app://weft/../../../etc/passwd', join(root, 'etc/passwd')], // the URL parser already resolved the dots
    ['app://weft/%2e%2e/%2e%2e/etc/passwd', join(root, 'etc/passwd')],
  ])('%s → %s', (url, file) => {
    expect(resolveRendererFile(root, url)).toBe(file);
  });

  it.each([
    ['app://weft/..%2f..%2fetc%2fpasswd'],
    ['app://weft/assets/..%2F..%2F..%2Fsecret'],
    ['app://weft/a%00b'],
    ['app://weft/..%5c..%5cwin.ini'],
    ['app://weft/%E0%A4%A'],
    ['app://evil/index.html'],
    ['https://weft/index.html'],
    ['garbage'],
  ])('refuses %s', (url) => {
    expect(resolveRendererFile(root, url)).toBeNull();
  });

  it('names content types', () => {
    expect(contentTypeOf('a/index.html')).toBe('text/html; charset=utf-8');
    expect(contentTypeOf('a/x.JS')).toBe('text/javascript; charset=utf-8');
    expect(contentTypeOf('a/x.bin')).toBe('application/octet-stream');
  });
});

describe('resources', () => {
  it('finds the unpacked resources next to the asar', () => {
    expect(unpackedPath('/opt/Weft/resources/app.asar')).toBe('/opt/Weft/resources/app.asar.unpacked');
    expect(resourcesDir('/opt/Weft/resources/app.asar')).toBe('/opt/Weft/resources/app.asar.unpacked/resources');
    expect(resourcesDir('/work/main')).toBe('/work/main/resources');
    expect(trayIconPath('/r', 'some-relayed', 'dark')).toBe('/r/tray/some-relayed-dark.png');
  });
});
