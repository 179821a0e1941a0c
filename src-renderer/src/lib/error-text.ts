/**
 * User-facing words for every error code of the contract. Errors are classified by code only, never by their
 * message; the message is shown as a detail under these words.
 */
import type { IpcError, IpcErrorCode } from '../../../src-shared/ipc/contract.ts';

export const ERROR_TEXT: Readonly<Record<IpcErrorCode, string>> = {
  'bad-url': 'That server address is not valid. Use the full URL, for example https://headscale.example.com.',
  unreachable: 'Could not reach the server. Check the address and this device’s internet connection.',
  'not-control-server': 'That address answered, but it is not a headscale (Tailscale control) server.',
  'handshake-rejected': 'The server refused the secure handshake. Its key or protocol version does not match.',
  protocol: 'The server answered with something Weft does not understand. It may be an unsupported version.',
  'auth-failed': 'The auth key was rejected. It may be mistyped, already used, or expired.',
  'key-expired': 'This device’s key has expired. Log in again to reconnect.',
  'logged-out': 'This device was logged out. Join the network again to reconnect.',
  state: 'That cannot be done right now (for example, a join is already in progress).',
  cancelled: 'Cancelled.',
  'invalid-payload': 'The Weft service sent data this window did not expect. The app and service versions may differ.',
  'unknown-method': 'The Weft service does not support this action. The app and service versions may differ.',
  'helper-denied': 'Weft needs administrator permission to create its network interface, and it was refused.',
  internal: 'Something went wrong inside Weft.',
  'permission-denied': 'Only an administrator or a member of the “weft” group can change the Weft service. Ask one to add you (usermod -aG weft YOUR-NAME).',
  'daemon-unavailable': 'The Weft service is not running on this computer. Install or start it to connect.',
};

export interface ErrorWords {
  title: string;
  detail: string | null;
  retryable: boolean;
}

export function errorWords(e: IpcError): ErrorWords {
  const title = ERROR_TEXT[e.code];
  const detail = e.message.trim() !== '' && e.message !== title ? e.message : null;
  return { title, detail, retryable: e.retryable };
}
