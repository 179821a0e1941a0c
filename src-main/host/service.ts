/**
 * weftd as a systemd service: the unit file (one generator for the packaged file in resources/linux and for the
 * unit a dev checkout installs), and the one-time set-up the app runs with a password prompt when the service is
 * missing (no deb or rpm: a dev checkout, or a binary copied by hand).
 *
 * Hardening follows what tailscaled's unit and systemd's own guidance allow for a VPN daemon: the file system is
 * read-only except the state and run directories, the capabilities are bounded to networking plus what the socket
 * ownership needs, only /dev/net/tun is reachable, and only Unix, IP and netlink sockets can be opened.
 *
 * The set-up command is built from argv lists whose every element passes a strict whitelist and is single-quoted
 * (sudo-prompt takes one shell string); nothing from the UI or the network is ever part of it.
 */
import { HostError } from './dispatch.ts';

export const WEFTD_UNIT = 'weftd.service';
export const OPERATOR_GROUP = 'weft';

/** The unit text for `execStart` (argv; the first element an absolute path). */
export function weftdUnit(execStart: readonly string[], env: Readonly<Record<string, string>> = {}): string {
  for (const a of execStart) if (!/^[A-Za-z0-9_./:=@%+,~-]+$/.test(a)) throw new Error(`unsafe ExecStart argument ${JSON.stringify(a)}`);
  if (!execStart[0]?.startsWith('/')) throw new Error('ExecStart needs an absolute path');
  const envLines = Object.entries(env).map(([k, v]) => `Environment=${k}=${v}\n`).join('');
  return `# weftd: the Weft mesh VPN service. The app, the tray, \`weft\` and the dev bridge are its clients
# (/run/weft/weftd.sock for everyone, read-only; /run/weft/weftd-op.sock for root and the "weft" group).
[Unit]
Description=Weft mesh VPN service (weftd)
Wants=network-pre.target
After=network-pre.target NetworkManager.service systemd-resolved.service

[Service]
Type=simple
${envLines}ExecStart=${execStart.join(' ')} daemon --state-dir /var/lib/weft --socket-dir /run/weft --operator-group ${OPERATOR_GROUP}
Restart=on-failure
RestartSec=2
TimeoutStopSec=15
KillMode=mixed
StateDirectory=weft
StateDirectoryMode=0700
RuntimeDirectory=weft wireguard
RuntimeDirectoryMode=0755
RuntimeDirectoryPreserve=no
UMask=0077

NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectKernelTunables=no
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictRealtime=yes
RestrictSUIDSGID=yes
RestrictNamespaces=yes
LockPersonality=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@mount @reboot @swap @module @obsolete @cpu-emulation @debug @raw-io
DevicePolicy=closed
DeviceAllow=/dev/net/tun rw
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE CAP_CHOWN CAP_FOWNER CAP_SETUID CAP_SETGID CAP_KILL
AmbientCapabilities=

[Install]
WantedBy=multi-user.target
`;
}

/** The unit the deb and rpm install (resources/linux/weftd.service is this text; a test keeps them equal). */
export const PACKAGED_UNIT = weftdUnit(['/usr/bin/weft']);

const SAFE_ARG = /^[A-Za-z0-9_./:=@%+,~ -]+$/;

/** One argv as shell words, each single-quoted; refuses (throws) any argument outside the whitelist. */
export function quoteArgv(argv: readonly string[]): string {
  if (argv.length === 0) throw new HostError('internal', 'empty command', false);
  return argv
    .map((a) => {
      if (!SAFE_ARG.test(a)) throw new HostError('internal', `refusing to run a command with the argument ${JSON.stringify(a)}`, false);
      return `'${a}'`;
    })
    .join(' ');
}

export interface ServiceSetup {
  /** Whether the unit is already installed (a deb or rpm put it there): then it is only started. */
  installed: boolean;
  /** A unit file the user wrote (0600, in a private directory) to install when it is not. */
  unitFile?: string;
  /** operatorDropIn(user), written the same way: names the user an operator at once (no new login needed). */
  dropInFile: string;
  /** The user to make an operator, so the app can join and leave without a prompt later. */
  user: string;
}

/** A systemd drop-in that names `user` an operator of weftd (WEFT_OPERATORS). */
export function operatorDropIn(user: string): string {
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(user)) throw new HostError('internal', `not a user name: ${JSON.stringify(user)}`, false);
  return `[Service]\nEnvironment=WEFT_OPERATORS=${user}\n`;
}

/** The argv lists of the one-time set-up, run as root in this order. */
export function serviceSetupCommands(s: ServiceSetup): string[][] {
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(s.user)) throw new HostError('internal', `not a user name: ${JSON.stringify(s.user)}`, false);
  const cmds: string[][] = [];
  if (!s.installed) {
    if (!s.unitFile) throw new HostError('internal', 'no unit file to install', false);
    cmds.push(['install', '-m', '0644', '-o', 'root', '-g', 'root', s.unitFile, `/etc/systemd/system/${WEFTD_UNIT}`]);
  }
  cmds.push(['install', '-D', '-m', '0644', '-o', 'root', '-g', 'root', s.dropInFile, `/etc/systemd/system/${WEFTD_UNIT}.d/operators.conf`]);
  cmds.push(['systemctl', 'daemon-reload']);
  cmds.push(['groupadd', '-f', '--system', OPERATOR_GROUP]);
  cmds.push(['usermod', '-a', '-G', OPERATOR_GROUP, s.user]);
  cmds.push(['systemctl', 'enable', WEFTD_UNIT]);
  cmds.push(['systemctl', 'restart', WEFTD_UNIT]);
  return cmds;
}

/** The whole set-up as one shell string for sudo-prompt: the commands joined with &&. */
export function serviceSetupScript(s: ServiceSetup): string {
  return serviceSetupCommands(s).map(quoteArgv).join(' && ');
}

/** What stat tells about a path: its owner and mode bits. */
export interface PathStat {
  uid: number;
  mode: number;
}

/**
 * Why root must not run `file` from a unit (or null when it may): the file and every directory above it must belong
 * to root and be writable by nobody else, or whoever can write there gets root at the next start. A dev checkout
 * under a home directory, or an AppImage's mount, fails this; the app then asks for the deb or rpm instead.
 */
export function unsafeForRoot(file: string, stat: (p: string) => PathStat | null): string | null {
  if (!file.startsWith('/')) return `${file} is not an absolute path`;
  const parts = file.split('/').filter((x) => x !== '');
  for (let i = parts.length; i >= 0; i--) {
    const p = `/${parts.slice(0, i).join('/')}`;
    const st = stat(p);
    if (!st) return `${p} does not exist`;
    if (st.uid !== 0) return `${p} belongs to uid ${st.uid}, not root`;
    // Group/other write, unless it is a sticky directory like /tmp (then only the owner of an entry may replace it).
    if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) return `${p} is writable by users other than root`;
  }
  return null;
}
