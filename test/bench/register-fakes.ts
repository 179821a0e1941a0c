// Registers N extra nodes with a control server, for the bench's 250-peer footprint: each is Weft's own
// ControlClient with fresh keys (a real TS2021 registration and first map), stopped right after, so it stays in
// every netmap as an offline peer. Runs inside a lab namespace:
//   node --import tsx test/bench/register-fakes.ts SERVER_URL AUTH_KEY COUNT STATE_DIR
// Prints `registered N`. Bounded: at most 8 at a time, each within 30 s.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ControlClient } from '../../src-main/engine/control/client.ts';
import { parseServerUrl } from '../../src-main/engine/control/transport.ts';

const [url, authKey, countText, dir] = process.argv.slice(2);
const count = Number(countText);
if (!url || !authKey || !dir || !Number.isInteger(count) || count < 1 || count > 1000) {
  process.stderr.write('usage: register-fakes.ts SERVER_URL AUTH_KEY COUNT STATE_DIR\n');
  process.exit(2);
}
const server = parseServerUrl(url);
let done = 0;
let next = 0;
async function worker(): Promise<void> {
  while (next < count) {
    const i = next++;
    const stateDir = join(dir!, `fake${i}`);
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const c = new ControlClient({ server, stateDir, authKey: authKey!, hostname: `fake${i}` });
    const timer = setTimeout(() => void c.stop(), 30_000);
    try {
      await c.start();
      done++;
    } finally {
      clearTimeout(timer);
      await c.stop();
    }
  }
}
await Promise.all(Array.from({ length: 8 }, () => worker()));
process.stdout.write(`registered ${done}\n`);
process.exit(done === count ? 0 : 1);
