#!/usr/bin/env node
// The `weft` command. It runs the TypeScript sources directly through tsx's loader, so `npx weft` works
// right after `npm ci` with no build step; the desktop app bundles the same engine with electron-vite.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./main.ts');
process.exitCode = await main(process.argv.slice(2));
