/**
 * The policy's autoApprovers (headscale 0.29.2 policy/v2 NodeCanApproveRoute, policy.go ApproveRoutesWithPolicy):
 * which of the routes a node announces are approved without an admin. Pure.
 *
 *   routes     an announced subnet route is approved when an autoApprovers.routes entry equals it or contains it
 *              (10.0.0.0/8 approves an announced 10.1.0.0/24, not the other way round) and the node is one of
 *              that entry's approvers
 *   exitNode   an announced /0 is approved only through exitNode approvers (a routes entry for 0.0.0.0/0 does
 *              not make an exit node)
 *   approvers  user@ and group:… stand for their users' untagged nodes, tag:… for the nodes carrying the tag
 *
 * Auto-approval only adds: the result is the node's approved routes plus the announced routes the policy
 * approves, so a route an admin approved stays, and one an admin removed comes back the next time the rules run
 * (registration, a change in what the node announces, a policy reload), as in headscale.
 */
import { parseRange } from './ipset.ts';
import type { PolicyDoc } from './parse.ts';
import type { PolicyNode } from './compile.ts';
import { isExitRoute, sortPrefixes } from '../routes/routes.ts';

/** Whether `node` is one of `approvers` (user@, group:…, tag:…; anything else approves nobody). */
function isApprover(doc: PolicyDoc, node: PolicyNode, approvers: readonly string[]): boolean {
  const untagged = node.tags.length === 0;
  const isUser = (alias: string): boolean => untagged && (node.user === alias.replace(/@$/, '') || node.user === alias);
  return approvers.some((a) => {
    if (a.startsWith('tag:')) return node.tags.includes(a);
    if (a.startsWith('group:')) return (doc.groups.get(a)?.members ?? []).some((m) => m.includes('@') && isUser(m));
    return a.includes('@') && isUser(a);
  });
}

/** The announced routes the policy approves for `node`. */
export function policyApprovedRoutes(doc: PolicyDoc, node: PolicyNode, announced: readonly string[]): string[] {
  const out: string[] = [];
  // Entries are checked prefixes (parse.ts/compile.ts refuse others); a route inside one is approved by it.
  const entries = [...doc.autoApprovers.routes].flatMap(([prefix, e]) => {
    const r = parseRange(prefix);
    return r ? [{ r, approvers: e.approvers }] : [];
  });
  for (const route of announced) {
    if (isExitRoute(route)) {
      if (isApprover(doc, node, doc.autoApprovers.exitNode)) out.push(route);
      continue;
    }
    const rr = parseRange(route);
    if (!rr) continue;
    const ok = entries.some(({ r, approvers }) => r.family === rr.family && r.first <= rr.first && rr.last <= r.last && isApprover(doc, node, approvers));
    if (ok) out.push(route);
  }
  return out;
}

/**
 * The node's approved routes after auto-approval: `approved` plus what the policy approves of `announced`,
 * canonical and sorted; null when that adds nothing.
 */
export function autoApprove(doc: PolicyDoc, node: PolicyNode, announced: readonly string[], approved: readonly string[]): string[] | null {
  const have = new Set(approved);
  const extra = policyApprovedRoutes(doc, node, announced).filter((r) => !have.has(r));
  return extra.length === 0 ? null : sortPrefixes([...approved, ...extra]);
}
