/** Unix-domain socket helpers shared by the local API and the WireGuard UAPI client. */
import net from 'node:net';

/** Reports whether something accepts connections on the unix socket at `path`. */
export function isSocketLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}
