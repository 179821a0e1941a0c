/** The join stages in order, with the words the join screen shows for each. */
import type { JoinStage } from '../../../../src-shared/ipc/contract.ts';

export const STAGE_ORDER: readonly JoinStage[] = ['reaching-server', 'handshake', 'registering', 'waiting-approval', 'connected'];

export const STAGE_TEXT: Readonly<Record<JoinStage, string>> = {
  'reaching-server': 'Reaching the server…',
  handshake: 'Secure handshake…',
  registering: 'Registering this device…',
  'waiting-approval': 'Waiting for approval…',
  connected: 'Connected',
  failed: 'Failed',
};

export const STAGE_STEP: Readonly<Record<Exclude<JoinStage, 'failed'>, string>> = {
  'reaching-server': 'Reach server',
  handshake: 'Handshake',
  registering: 'Register',
  'waiting-approval': 'Approval',
  connected: 'Connected',
};

/** Reports whether `stage` means a join is still under way. */
export function inProgress(stage: JoinStage | null): boolean {
  return stage !== null && stage !== 'failed' && stage !== 'connected';
}

/**
 * Checks the server URL before sending: http(s) with a host. Answers null when fine, else the problem in words.
 */
export function serverUrlProblem(raw: string): string | null {
  const s = raw.trim();
  if (s === '') return 'Enter the server address.';
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return 'That is not a URL. Use the full address, for example https://headscale.example.com.';
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return 'The address must start with https:// (or http:// for a local test server).';
  if (u.hostname === '') return 'The address has no host name.';
  return null;
}
