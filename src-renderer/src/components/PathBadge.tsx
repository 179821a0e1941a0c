/** The coloured label for a link kind (direct / relay / connecting / offline). */
export type BadgeKind = 'direct' | 'relay' | 'connecting' | 'offline';

const TEXT: Record<BadgeKind, string> = { direct: 'Direct', relay: 'Relayed', connecting: 'Connecting', offline: 'Offline' };

export function PathBadge({ kind, detail }: { kind: BadgeKind; detail?: string | null }) {
  return (
    <span className={`badge badge-${kind}`}>
      {TEXT[kind]}
      {detail ? <span className="badge-detail">· {detail}</span> : null}
    </span>
  );
}
