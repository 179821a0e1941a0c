/**
 * Shows the host's notices (host/notifications.ts decides which, and rate-limits them) as desktop
 * notifications. Clicking one opens the window.
 */
import { Notification } from 'electron';
import type { Host } from '../host/host.ts';

export function showNotices(host: Pick<Host, 'onNotice'>, opts: { icon?: string; onClick: () => void }): () => void {
  return host.onNotice((n) => {
    if (!Notification.isSupported()) return;
    const note = new Notification({ title: n.title, body: n.body, silent: n.kind === 'path', ...(opts.icon ? { icon: opts.icon } : {}) });
    note.on('click', opts.onClick);
    note.show();
  });
}
