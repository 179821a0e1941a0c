/**
 * out/main/weft.js: the `weft` command from the app's build (bundled JavaScript, no tsx at start). The packages run
 * it with ELECTRON_RUN_AS_NODE=1 as /usr/bin/weft (resources/linux/weft), so systemd's `weft daemon` (weftd) and the
 * CLI need neither npm nor a TypeScript compiler. Electron-free.
 */
import { main } from '../cli/main.ts';

process.exitCode = await main(process.argv.slice(2));
