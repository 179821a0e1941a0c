/**
 * The few human-facing pages of the control server: `/register/:id` tells the person holding an AuthURL how
 * an admin approves it (there is no web login; approval is `weft server nodes register`). Plain HTML, no
 * scripts, every interpolated value escaped.
 */
import type { PendingRegistration } from '../store/types.ts';

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export function registerPageHtml(id: string, p: PendingRegistration | null): string {
  const safeId = escapeHtml(id);
  const body = p
    ? `<h1>Machine registration</h1>
<p>The device <b>${escapeHtml(p.hostname)}</b> asks to join this tailnet.</p>
<p>An administrator of this server approves it with:</p>
<pre><code>weft server nodes register --key ${safeId} --user USERNAME</code></pre>
<p>The device connects by itself once it is approved.</p>
<p>Node key: <code>${escapeHtml(p.nodeKey)}</code></p>`
    : `<h1>Unknown registration</h1>
<p>There is no pending registration <code>${safeId}</code>. It may have expired or been completed; run the login on the device again.</p>`;
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>weft server: registration</title></head>
<body>
${body}
</body>
</html>
`;
}
