/** isMountPoint: how a bind-mounted resolv.conf (ip netns exec, containers) is recognised and written in place. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMountPoint } from '../../../../src-main/engine/dns/os.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weft-mountinfo-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('isMountPoint', () => {
  it('reads field 5 of mountinfo, with octal escapes', async () => {
    const info = join(dir, 'mountinfo');
    await writeFile(
      info,
      [
        '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw',
        '812 22 8:1 /etc/netns/w1-a1/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/sda1 rw',
        '813 22 0:5 / /mnt/with\\040space rw - tmpfs tmpfs rw',
      ].join('\n') + '\n',
    );
    expect(await isMountPoint('/etc/resolv.conf', info)).toBe(true);
    expect(await isMountPoint('/mnt/with space', info)).toBe(true);
    expect(await isMountPoint('/etc/hosts', info)).toBe(false);
    expect(await isMountPoint('/etc/resolv.conf', join(dir, 'absent'))).toBe(false);
  });

  it('sees this process’s own root as a mount point', async () => {
    expect(await isMountPoint('/')).toBe(true);
  });
});
