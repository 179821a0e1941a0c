/**
 * The peer list: search (name, DNS name, address, OS, endpoint) and filters (online, direct, relayed); a row opens
 * the detail, the address and DNS name buttons copy them. Badges mark exit nodes and peers that offer subnet routes.
 */
import { memo, useMemo } from 'react';
import type { PeerView } from '../../../../src-shared/model/mesh.ts';
import { PathBadge, type BadgeKind } from '../../components/PathBadge.tsx';
import { formatMs, formatRelative } from '../../lib/format.ts';
import { useNow } from '../../lib/hooks.ts';
import { filteredPeers, linkKindOf, regionLabel } from '../../store/selectors/mesh.ts';
import type { PeerFilters } from '../../store/slices/ui.ts';
import { actions, useWeft } from '../../store/use-weft.ts';
import { useCopy } from '../shell/use-copy.ts';

const FILTERS: readonly { key: keyof PeerFilters; label: string }[] = [
  { key: 'online', label: 'Online' },
  { key: 'direct', label: 'Direct' },
  { key: 'relayed', label: 'Relayed' },
];

export function PeerList() {
  const search = useWeft((s) => s.search);
  const filters = useWeft((s) => s.filters);
  const total = useWeft((s) => s.snapshot.peers.length);
  const selector = useMemo(() => filteredPeers(search, filters), [search, filters]);
  const rows = useWeft(selector);
  const regions = useWeft((s) => s.snapshot.regions);
  const selected = useWeft((s) => s.selectedPeerId);
  const now = useNow(10_000);
  const copy = useCopy();

  return (
    <section className="peers" aria-label="Peers">
      <div className="toolbar">
        <input
          type="search"
          className="search"
          data-testid="peer-search"
          placeholder="Search name, IP, OS…"
          aria-label="Search peers"
          value={search}
          onChange={(e) => actions().setSearch(e.target.value)}
        />
        <div className="chips" role="group" aria-label="Filters">
          {FILTERS.map((f) => (
            <button
              key={f.key}
              type="button"
              className={`chip${filters[f.key] ? ' on' : ''}`}
              aria-pressed={filters[f.key]}
              data-testid={`peer-filter-${f.key}`}
              onClick={() => actions().toggleFilter(f.key)}
            >
              {f.label}
            </button>
          ))}
        </div>
        <span className="muted small count" data-testid="peer-count">
          {rows.length === total ? `${total} peers` : `${rows.length} of ${total}`}
        </span>
      </div>
      {rows.length === 0 ? (
        <p className="empty muted">{total === 0 ? 'No other devices in this network yet.' : 'No peers match.'}</p>
      ) : (
        <ul className="peer-rows">
          {rows.map((p) => (
            <PeerRow
              key={p.id}
              peer={p}
              kind={linkKindOf(p)}
              region={p.path.kind === 'relay' ? regionLabel(regions, p.path.region) : null}
              selected={p.id === selected}
              now={now}
              onCopy={copy}
            />
          ))}
        </ul>
      )}
    </section>
  );
}

interface RowProps {
  peer: PeerView;
  kind: BadgeKind;
  region: string | null;
  selected: boolean;
  now: number;
  onCopy: (text: string, what?: string) => void;
}

const PeerRow = memo(function PeerRow({ peer, kind, region, selected, now, onCopy }: RowProps) {
  const ip = peer.addresses[0] ?? null;
  const open = (): void => actions().selectPeer(peer.id);
  return (
    <li
      className={`peer-row${selected ? ' selected' : ''}`}
      data-testid="peer-row"
      data-peer={peer.name}
      data-kind={kind}
      role="button"
      tabIndex={0}
      aria-label={`${peer.name}, ${kind}`}
      onClick={open}
      onKeyDown={(e) => {
        if (e.target === e.currentTarget && (e.key === 'Enter' || e.key === ' ')) {
          e.preventDefault();
          open();
        }
      }}
    >
      <span className={`dot dot-${kind}`} aria-hidden="true" />
      <span className="peer-name">
        <span className="peer-title">
          <strong>{peer.name}</strong>
          {peer.exitNode ? (
            <span className="badge badge-exit" data-testid="peer-exit-node" title="This peer offers itself as an exit node">
              exit node
            </span>
          ) : null}
          {peer.routes.length > 0 ? (
            <span className="badge badge-routes" data-testid="peer-routes" title={`Subnet routes: ${peer.routes.join(', ')}`}>
              {peer.routes.length === 1 ? peer.routes[0] : `${peer.routes.length} routes`}
            </span>
          ) : null}
        </span>
        <span className="peer-sub muted small">
          <span>{peer.os ?? 'unknown OS'}</span>
          {peer.fqdn && peer.fqdn !== peer.name ? <span aria-hidden="true">·</span> : null}
          {peer.fqdn && peer.fqdn !== peer.name ? (
            <button
              type="button"
              className="link fqdn"
              data-testid="peer-copy-fqdn"
              title="Copy DNS name"
              onClick={(e) => {
                e.stopPropagation();
                onCopy(peer.fqdn, peer.fqdn);
              }}
            >
              {peer.fqdn}
            </button>
          ) : null}
        </span>
      </span>
      {ip ? (
        <button
          type="button"
          className="ip"
          data-testid="peer-copy-ip"
          title="Copy IP address"
          onClick={(e) => {
            e.stopPropagation();
            onCopy(ip, ip);
          }}
        >
          {ip}
        </button>
      ) : (
        <span className="ip muted">no address</span>
      )}
      <PathBadge kind={kind} detail={kind === 'relay' ? region : kind === 'direct' && peer.path.kind === 'direct' ? formatMs(peer.path.latencyMs) : null} />
      <span className="muted small seen">{kind === 'offline' ? `seen ${formatRelative(peer.lastSeen, now)}` : ''}</span>
    </li>
  );
});
