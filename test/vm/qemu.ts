// A throwaway VM that runs Debian's own kernel (fetched by test/setup/ensure-vm.sh) over this machine's userspace,
// for the one thing the namespace lab cannot do here: kernel WireGuard (this machine's kernel has no module).
//
//   initramfs (built per boot in a temp dir): static busybox + the modules for virtio, 9p and overlayfs
//   /init: mounts this machine's / read-only over virtio-9p, puts a tmpfs overlay on it (every write stays in the
//          VM's memory: nothing on this machine is touched), links the kernel's modules in (so the guest's own
//          modprobe loads wireguard, nf_tables… on demand), and runs `bash SCRIPT` as the guest's first process;
//          then powers off. What the script prints reaches the host on the serial console.
//   qemu:  software emulation (TCG): nested KVM is not usable on these machines. Killed by PID after a bound.
//
// Every path the guest sees is the host's own path (read-only), so the script runs the checkout in place.
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, copyFileSync, chmodSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { execFileSync } from 'node:child_process';

export interface VmKernel {
  release: string;
  /** The unpacked package: boot/vmlinuz-RELEASE and lib/modules/RELEASE (with modules.dep). */
  root: string;
}

/** The kernel ensure-vm.sh unpacked ($WEFT_VM_DIR/current), or null when it is not there. */
export function findVmKernel(dir = process.env['WEFT_VM_DIR'] ?? join(homedir(), '.cache', 'weft-vm')): VmKernel | null {
  const root = join(dir, 'current');
  const ready = join(root, 'ready');
  if (!existsSync(ready)) return null;
  const release = readFileSync(ready, 'utf8').trim();
  return existsSync(join(root, 'boot', `vmlinuz-${release}`)) ? { release, root } : null;
}

/** The modules (with their dependencies, in load order) that /init needs before the root is mounted. */
const EARLY_MODULES = ['virtio_pci', '9pnet_virtio', '9p', 'overlay'];

function earlyModuleFiles(k: VmKernel): string[] {
  const out: string[] = [];
  for (const m of EARLY_MODULES) {
    const deps = execFileSync('modprobe', ['-d', k.root, '-S', k.release, '--show-depends', m], { encoding: 'utf8', env: { ...process.env, PATH: `${process.env['PATH'] ?? ''}:/usr/sbin:/sbin` } });
    for (const line of deps.split('\n')) {
      const f = /^insmod (\S+)/.exec(line)?.[1];
      if (f && !out.includes(f)) out.push(f);
    }
  }
  return out;
}

const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /mods/order); do insmod /mods/$m || echo "weftvm-init: insmod $m failed"; done
arg() { tr ' ' '\\n' < /proc/cmdline | sed -n "s/^$1=//p"; }
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose hostroot /lower || echo "weftvm-init: no 9p root"
mount -t tmpfs -o size=70% tmpfs /rw; mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot || echo "weftvm-init: no overlay"
mkdir -p /newroot/usr/lib/modules
ln -s "$(arg weftvm.modules)" "/newroot/usr/lib/modules/$(uname -r)"
script="$(arg weftvm.script)"
for d in proc sys dev; do mount --move /$d /newroot/$d; done
exec switch_root /newroot /bin/bash -c 'mount -t tmpfs tmpfs /run; mkdir -p /run/netns /var/run/wireguard; bash "$0"; echo "weftvm-init: script exited $?"; echo o > /proc/sysrq-trigger; sleep 10' "$script"
`;

function buildInitramfs(k: VmKernel, dir: string): string {
  const tree = join(dir, 'initrd');
  for (const d of ['bin', 'mods', 'proc', 'sys', 'dev', 'lower', 'rw', 'newroot']) mkdirSync(join(tree, d), { recursive: true });
  copyFileSync('/usr/bin/busybox', join(tree, 'bin', 'busybox'));
  chmodSync(join(tree, 'bin', 'busybox'), 0o755);
  const files = earlyModuleFiles(k);
  for (const f of files) copyFileSync(f, join(tree, 'mods', basename(f)));
  writeFileSync(join(tree, 'mods', 'order'), files.map((f) => basename(f)).join('\n') + '\n');
  writeFileSync(join(tree, 'init'), INIT, { mode: 0o755 });
  const out = join(dir, 'initrd.cpio');
  const list = listTree(tree).join('\n') + '\n';
  const cpio = execFileSync('/usr/bin/busybox', ['cpio', '-o', '-H', 'newc'], { cwd: tree, input: list, maxBuffer: 256 * 1024 * 1024 });
  writeFileSync(out, cpio);
  return out;
}

function listTree(root: string, rel = '.'): string[] {
  const out = [rel];
  for (const e of readdirSync(join(root, rel), { withFileTypes: true })) {
    const p = `${rel}/${e.name}`;
    if (e.isDirectory()) out.push(...listTree(root, p));
    else out.push(p);
  }
  return out;
}

export interface VmRun {
  /** Everything the guest wrote to its console. */
  console: string;
  /** qemu's exit code (null when it had to be killed at the bound). */
  code: number | null;
  timedOut: boolean;
}

/**
 * The guest CPU: a fixed, older model (SSE4.2, AES-NI, no AVX) rather than `max`. With `max`, QEMU 7.2's TCG
 * advertises its then-new AVX/AVX2 emulation, and node in the guest died now and then with SIGSEGV or SIGILL (CI saw
 * both, on a start that is otherwise the same as one that had just worked). `max` with only avx, avx2, fma and f16c
 * turned off was worse here: node died with SIGILL at its first start.
 * WEFT_VM_CPU overrides it, for trying another model.
 */
const CPU = process.env['WEFT_VM_CPU'] ?? 'Westmere';

/** Boots the VM, runs `bash script` in it, and resolves when it powers off or after `timeoutMs` (then killed). */
export async function runInVm(k: VmKernel, script: string, opts: { timeoutMs: number; memMb?: number; cpus?: number; consoleFile?: string }): Promise<VmRun> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-vm-'));
  try {
    const initrd = buildInitramfs(k, dir);
    const append = ['console=ttyS0', 'quiet', 'panic=-1', `weftvm.script=${script}`, `weftvm.modules=${join(k.root, 'lib', 'modules', k.release)}`].join(' ');
    const argv = [
      '-accel', 'tcg', '-cpu', CPU, '-smp', String(opts.cpus ?? 2), '-m', String(opts.memMb ?? 2048),
      '-nodefaults', '-no-reboot', '-display', 'none', '-serial', 'stdio', '-monitor', 'none',
      '-kernel', join(k.root, 'boot', `vmlinuz-${k.release}`), '-initrd', initrd, '-append', append,
      '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
    ];
    const child = spawn('qemu-system-x86_64', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    if (opts.consoleFile) writeFileSync(opts.consoleFile, '');
    const take = (d: Buffer): void => {
      if (out.length < 8 * 1024 * 1024) out += d.toString('utf8');
      if (opts.consoleFile) appendFileSync(opts.consoleFile, d);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs);
    const code = await new Promise<number | null>((resolve) => {
      child.on('error', (e) => {
        out += `\nqemu: ${e.message}`;
        resolve(null);
      });
      child.on('exit', (c) => resolve(c));
    });
    clearTimeout(timer);
    return { console: out, code, timedOut };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The `WEFTVM key=value` lines a guest script printed (later keys win). */
export function guestFacts(consoleText: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of consoleText.replace(/\r/g, '').split('\n')) {
    const r = /^WEFTVM ([a-z0-9_.-]+)=(.*)$/.exec(line.trim());
    if (r) m.set(r[1]!, r[2]!);
  }
  return m;
}
