/**
 * STUN server: binds the primary socket (and, with an alternate address, the three RFC 5780 siblings) and
 * answers with respond.ts. Used standalone by `weft stun-server` and embedded by `weft server`.
 */
import { bindUdp, type UdpSocket } from '../../engine/io/udp.ts';
import { discardLogf, type Logf } from '../../engine/sys/log.ts';
import { formatAddr, type UdpAddr } from '../../protocol/wire/addr.ts';
import { isOwnAddress, respond, socketAddr, type SocketId, type StunServerAddrs } from './respond.ts';

export interface StunServer {
  /** The addresses actually bound (ports resolved when 0 was asked for). */
  addrs: StunServerAddrs;
  /** Datagrams answered and dropped since start. */
  stats(): { answered: number; dropped: number };
  close(): Promise<void>;
}

const key = (id: SocketId): string => `${id.altIp ? 1 : 0}${id.altPort ? 1 : 0}`;

export async function startStunServer(opts: StunServerAddrs & { logf?: Logf }): Promise<StunServer> {
  const logf = opts.logf ?? discardLogf;
  const sockets = new Map<string, UdpSocket>();
  const ids: SocketId[] = opts.alt
    ? [
        { altIp: false, altPort: false },
        { altIp: false, altPort: true },
        { altIp: true, altPort: false },
        { altIp: true, altPort: true },
      ]
    : [{ altIp: false, altPort: false }];
  let answered = 0;
  let dropped = 0;
  try {
    for (const id of ids) {
      const a = socketAddr(opts, id);
      sockets.set(key(id), await bindUdp({ address: a.ip, port: a.port, family: a.ip.includes(':') ? 'udp6' : 'udp4' }));
    }
  } catch (err) {
    await Promise.all([...sockets.values()].map((s) => s.close()));
    throw new Error(`stun: cannot bind ${formatAddr(opts.primary)}${opts.alt ? ` / ${formatAddr(opts.alt)}` : ''}: ${(err as Error).message}`, { cause: err });
  }
  const primarySock = sockets.get('00')!;
  const altSock = opts.alt ? sockets.get('11')! : undefined;
  const addrs: StunServerAddrs = {
    primary: { ip: opts.primary.ip, port: primarySock.localPort() },
    ...(opts.alt && altSock ? { alt: { ip: opts.alt.ip, port: altSock.localPort() } } : {}),
  };
  for (const id of ids) {
    const sock = sockets.get(key(id))!;
    sock.onPacket((data, from) => {
      const reply = isOwnAddress(addrs, from) ? null : respond(addrs, id, data, from);
      if (!reply) {
        dropped++;
        return;
      }
      answered++;
      sockets
        .get(key(reply.via))!
        .send(reply.data, from)
        .catch((e: unknown) => logf(`stun: send to ${formatAddr(from)} failed: ${(e as Error).message}`));
    });
  }
  logf(`stun: listening on ${formatAddr(addrs.primary)}${addrs.alt ? ` with RFC 5780 alternate ${formatAddr(addrs.alt)}` : ''}`);
  return {
    addrs,
    stats: () => ({ answered, dropped }),
    close: async () => {
      await Promise.all([...sockets.values()].map((s) => s.close()));
    },
  };
}

export type { StunServerAddrs, UdpAddr };
