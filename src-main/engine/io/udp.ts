/**
 * Node UDP adapter: wraps a dgram socket as a PacketConn.
 *
 * The engine's protocol code (STUN client, disco, WireGuard relay) never owns a socket. It is handed a
 * PacketConn to send on, and the owner of the socket feeds inbound datagrams to it. That lets one socket
 * carry WireGuard, disco and STUN, so the NAT mapping STUN discovers is the one WireGuard uses.
 */
import dgram from 'node:dgram';
import type { UdpAddr } from '../../protocol/wire/addr.ts';

export type PacketHandler = (data: Uint8Array, from: UdpAddr) => void;

export interface PacketConn {
  /** Sends one datagram. Send errors are reported through the returned promise, never thrown. */
  send(data: Uint8Array, to: UdpAddr): Promise<void>;
  /** The local port this connection is bound to. */
  localPort(): number;
}

export interface UdpSocket extends PacketConn {
  /**
   * Sends one datagram and forgets it: no promise, no callback (a failed send is dropped, as UDP may drop it
   * anyway). For the per-packet relay path, where a promise per packet is measurable work.
   */
  post(data: Uint8Array, to: UdpAddr): void;
  /** Registers the inbound datagram handler (one owner; a later call replaces it). */
  onPacket(handler: PacketHandler): void;
  close(): Promise<void>;
}

/**
 * Binds a UDP socket (IPv4 unless `family` says otherwise) on `port` (0 = ephemeral). `recvBufferSize` asks for a
 * larger receive buffer (the kernel caps it at net.core.rmem_max).
 */
export async function bindUdp(opts: { port?: number; address?: string; family?: 'udp4' | 'udp6'; recvBufferSize?: number } = {}): Promise<UdpSocket> {
  const sock = dgram.createSocket({ type: opts.family ?? 'udp4', reuseAddr: false, ...(opts.recvBufferSize ? { recvBufferSize: opts.recvBufferSize } : {}) });
  let handler: PacketHandler = () => {};
  sock.on('message', (msg, rinfo) => {
    handler(new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength), { ip: rinfo.address, port: rinfo.port });
  });
  // Errors after bind (e.g. ICMP-induced) are not fatal to a UDP socket; keep it alive.
  sock.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(opts.port ?? 0, opts.address, () => {
      sock.off('error', reject);
      resolve();
    });
  });
  let closed = false;
  return {
    send: (data, to) =>
      new Promise<void>((resolve, reject) => {
        if (closed) {
          reject(new Error('socket closed'));
          return;
        }
        sock.send(data, to.port, to.ip, (err) => (err ? reject(err) : resolve()));
      }),
    post: (data, to) => {
      if (!closed) sock.send(data, to.port, to.ip);
    },
    localPort: () => sock.address().port,
    onPacket: (h) => {
      handler = h;
    },
    close: () =>
      new Promise<void>((resolve) => {
        if (closed) {
          resolve();
          return;
        }
        closed = true;
        sock.close(() => resolve());
      }),
  };
}
