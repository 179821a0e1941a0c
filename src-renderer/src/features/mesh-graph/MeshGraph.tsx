/**
 * The mesh view: a self-centred SVG graph. This device sits in the middle; direct peers hang off it (solid line,
 * labelled with latency), relayed peers hang off a node for their relay region (dashed line through that node),
 * connecting and offline peers sit further out (dotted / faint).
 *
 * Performance with hundreds of peers: the layout (layout.ts) runs synchronously to convergence and only when the
 * graph's structure changes (throttled); nodes and links are memoised components with primitive props, so a delta
 * or a stats tick re-renders only what changed; zoom and pan write the viewport transform through a ref, never
 * through React state.
 */
import { memo, useMemo, useRef } from 'react';
import type { PeerView } from '../../../../src-shared/model/mesh.ts';
import { useThrottled } from '../../lib/hooks.ts';
import { formatMs } from '../../lib/format.ts';
import { linkKindOf, selectPeers } from '../../store/selectors/mesh.ts';
import { actions, useWeft } from '../../store/use-weft.ts';
import { computeLayout, layoutKey, relayNodeId, SELF_ID, type GraphLinkKind, type LayoutPeer, type MeshLayout, type Point } from './layout.ts';
import { usePanZoom } from './pan-zoom.ts';

/** Above this many peers, names show only on hover or selection. */
const LABEL_ALL_MAX = 40;
/** Structural changes within this window are laid out once. */
const LAYOUT_THROTTLE_MS = 400;

const selectPeer = (id: string): void => actions().selectPeer(id);

function toLayoutPeer(p: PeerView): LayoutPeer {
  return { id: p.id, kind: linkKindOf(p), region: p.path.kind === 'relay' ? p.path.region : null };
}

function useMeshLayout(peers: readonly PeerView[]): MeshLayout {
  const layoutPeers = useMemo(() => peers.map(toLayoutPeer), [peers]);
  const key = useMemo(() => layoutKey(layoutPeers), [layoutPeers]);
  const throttledKey = useThrottled(key, LAYOUT_THROTTLE_MS);
  // The newest structure, read when the throttled key moves (it is at least as new as that key).
  const latest = useRef(layoutPeers);
  latest.current = layoutPeers;
  const previous = useRef<ReadonlyMap<string, Point> | undefined>(undefined);
  return useMemo(() => {
    const l = computeLayout(latest.current, previous.current);
    previous.current = l.positions;
    return l;
  }, [throttledKey]);
}

export function MeshGraph() {
  const peers = useWeft(selectPeers);
  const regions = useWeft((s) => s.snapshot.regions);
  const selfName = useWeft((s) => s.snapshot.self?.name ?? 'This device');
  const selected = useWeft((s) => s.selectedPeerId);
  const layout = useMeshLayout(peers);
  const { svgRef, viewportRef, reset, consumeDrag } = usePanZoom();

  const relayCounts = useMemo(() => {
    const m = new Map<number, number>();
    for (const p of peers) if (p.path.kind === 'relay') m.set(p.path.region, (m.get(p.path.region) ?? 0) + 1);
    return m;
  }, [peers]);

  const e = layout.extent;
  const dense = peers.length > LABEL_ALL_MAX;
  const onSelect = (id: string): void => {
    if (!consumeDrag()) selectPeer(id);
  };

  return (
    <div className="mesh">
      <svg
        ref={svgRef}
        data-testid="mesh-view"
        className={`mesh-svg${dense ? ' dense' : ''}`}
        viewBox={`${-e} ${-e} ${2 * e} ${2 * e}`}
        preserveAspectRatio="xMidYMid meet"
        role="group"
        aria-label={`Mesh: this device and ${peers.length} peers`}
        onDoubleClick={reset}
      >
        <g ref={viewportRef}>
          <g className="trunks">
            {layout.relays.map((r) => {
              const p = layout.positions.get(relayNodeId(r));
              return p && relayCounts.has(r) ? <line key={r} className="link link-trunk" x1={0} y1={0} x2={p.x} y2={p.y} /> : null;
            })}
          </g>
          <g className="links">
            {peers.map((peer) => {
              const pos = layout.positions.get(peer.id);
              if (!pos) return null;
              const kind = linkKindOf(peer);
              const region = peer.path.kind === 'relay' ? peer.path.region : null;
              const from = region !== null ? layout.positions.get(relayNodeId(region)) : undefined;
              return (
                <PeerLink
                  key={peer.id}
                  name={peer.name}
                  kind={kind}
                  region={region}
                  x1={from?.x ?? 0}
                  y1={from?.y ?? 0}
                  x2={pos.x}
                  y2={pos.y}
                  latencyMs={peer.path.kind === 'direct' ? peer.path.latencyMs : null}
                  selected={peer.id === selected}
                />
              );
            })}
          </g>
          <g className="relays">
            {layout.relays.map((r) => {
              const p = layout.positions.get(relayNodeId(r));
              const count = relayCounts.get(r);
              if (!p || count === undefined) return null;
              const reg = regions.find((x) => x.id === r);
              return <RelayNode key={r} region={r} code={reg?.code ?? String(r)} name={reg?.name ?? `Region ${r}`} count={count} x={p.x} y={p.y} />;
            })}
          </g>
          <g className="nodes">
            {peers.map((peer) => {
              const pos = layout.positions.get(peer.id);
              if (!pos) return null;
              return (
                <PeerNode
                  key={peer.id}
                  id={peer.id}
                  name={peer.name}
                  kind={linkKindOf(peer)}
                  x={pos.x}
                  y={pos.y}
                  selected={peer.id === selected}
                  onSelect={onSelect}
                />
              );
            })}
          </g>
          <SelfNode name={selfName} at={layout.positions.get(SELF_ID) ?? { x: 0, y: 0 }} />
        </g>
      </svg>
      {peers.length === 0 ? <p className="mesh-empty muted">No other devices in this network yet.</p> : null}
      <Legend />
      <p className="mesh-hint muted small">Scroll to zoom, drag to pan, double-click to reset. Click a device for details.</p>
    </div>
  );
}

interface PeerLinkProps {
  name: string;
  kind: GraphLinkKind;
  region: number | null;
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  latencyMs: number | null;
  selected: boolean;
}

const PeerLink = memo(function PeerLink({ name, kind, region, x1, y1, x2, y2, latencyMs, selected }: PeerLinkProps) {
  const cls = `link link-${kind}${selected ? ' selected' : ''}`;
  if (kind === 'relay') {
    return (
      <path data-testid="mesh-link" data-peer={name} data-kind="relay" data-region={region ?? undefined} className={cls} d={`M${x1} ${y1}L${x2} ${y2}`} />
    );
  }
  return (
    <g className="link-group">
      <line data-testid="mesh-link" data-peer={name} data-kind={kind} className={cls} x1={x1} y1={y1} x2={x2} y2={y2} />
      {kind === 'direct' && latencyMs !== null ? (
        <text className="link-label" x={x1 + (x2 - x1) * 0.55} y={y1 + (y2 - y1) * 0.55} dy={-3} textAnchor="middle">
          {formatMs(latencyMs)}
        </text>
      ) : null}
    </g>
  );
});

interface PeerNodeProps {
  id: string;
  name: string;
  kind: GraphLinkKind;
  x: number;
  y: number;
  selected: boolean;
  onSelect: (id: string) => void;
}

const PeerNode = memo(function PeerNode({ id, name, kind, x, y, selected, onSelect }: PeerNodeProps) {
  return (
    <g
      className={`node node-peer node-${kind}${selected ? ' selected' : ''}`}
      transform={`translate(${x} ${y})`}
      data-testid="mesh-node"
      data-peer={name}
      role="button"
      tabIndex={0}
      aria-label={`${name}: ${kind}`}
      onClick={() => onSelect(id)}
      onKeyDown={(e) => {
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault();
          onSelect(id);
        }
      }}
    >
      <title>{name}</title>
      <circle className="hit" r={11} />
      <circle className="dot" r={6} />
      <text className="node-label" y={-11} textAnchor="middle">
        {name}
      </text>
    </g>
  );
});

const RelayNode = memo(function RelayNode({ region, code, name, count, x, y }: { region: number; code: string; name: string; count: number; x: number; y: number }) {
  // Region codes are short ("fra", "nyc"); long ones are cut at 8 characters, and the box fits the text.
  const label = code.length > 8 ? `${code.slice(0, 7)}…` : code;
  const w = Math.max(38, label.length * 8 + 14);
  return (
    <g className="node node-relay" data-testid="relay-node" data-region={region} transform={`translate(${x} ${y})`}>
      <title>{`Relay ${name} (region ${region}): ${count} peer${count === 1 ? '' : 's'}`}</title>
      <rect x={-w / 2} y={-11} width={w} height={22} rx={6} />
      <text className="relay-code" textAnchor="middle" dominantBaseline="central">
        {label}
      </text>
    </g>
  );
});

function SelfNode({ name, at }: { name: string; at: Point }) {
  return (
    <g className="node node-self" transform={`translate(${at.x} ${at.y})`} data-testid="self-node">
      <title>{`${name} (this device)`}</title>
      <circle r={17} />
      <text className="self-label" y={32} textAnchor="middle">
        {name}
      </text>
    </g>
  );
}

function Legend() {
  return (
    <ul className="legend" aria-label="Legend">
      <li>
        <svg width="28" height="8" aria-hidden="true">
          <line className="link link-direct" x1="0" y1="4" x2="28" y2="4" />
        </svg>
        Direct (latency)
      </li>
      <li>
        <svg width="28" height="8" aria-hidden="true">
          <line className="link link-relay" x1="0" y1="4" x2="28" y2="4" />
        </svg>
        Relayed via region
      </li>
      <li>
        <svg width="28" height="8" aria-hidden="true">
          <line className="link link-connecting" x1="0" y1="4" x2="28" y2="4" />
        </svg>
        Connecting
      </li>
      <li>
        <svg width="28" height="8" aria-hidden="true">
          <line className="link link-offline" x1="0" y1="4" x2="28" y2="4" />
        </svg>
        Offline
      </li>
    </ul>
  );
}
