/**
 * Error codes that cross process boundaries (IPC, the status socket, CLI exit messages). The UI maps codes
 * to words; nothing classifies errors by searching message text.
 */
export type ErrorCode =
  | 'bad-url' // the login server URL is not an http(s) URL
  | 'unreachable' // TCP/TLS to the server failed or timed out
  | 'not-control-server' // the server answered, but not as a Tailscale control server (e.g. /key 404)
  | 'handshake-rejected' // the Noise upgrade was refused (101 then EOF, error frame, bad tag)
  | 'protocol' // a malformed or unexpected message from the server
  | 'auth-failed' // registration refused (bad or expired pre-auth key, ...)
  | 'key-expired' // the node key expired; log in again
  | 'logged-out'
  | 'state' // the local state directory or file is unusable
  | 'cancelled';

export interface SerializedError {
  code: ErrorCode;
  message: string;
  retryable: boolean;
}

export class MeshError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'MeshError';
  }

  toJSON(): SerializedError {
    return { code: this.code, message: this.message, retryable: this.retryable };
  }
}
