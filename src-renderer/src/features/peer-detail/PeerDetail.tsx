/**
 * One peer in depth: its DNS name, path and endpoint, a latency sparkline (bounded history from `mesh:stats`),
 * handshake and byte counters, the subnet routes it offers (and whether this device uses them), the facts both sides
 * reported, and the explanation of its link (`why-relayed` for relayed links).
 */
import { useMemo } from 'react';
import type { LinkExplanation, ReasonSide } from '../../../../src-shared/explain/why-relayed.ts';
import { AddressList } from '../../components/AddressList.tsx';
import { Facts, yesNo } from '../../components/Facts.tsx';
import { PathBadge } from '../../components/PathBadge.tsx';
import { Sparkline } from '../../components/Sparkline.tsx';
import { formatBytes, formatMs, formatRelative } from '../../lib/format.ts';
import { useNow } from '../../lib/hooks.ts';
import { linkFor } from '../../store/selectors/mesh.ts';
import { peerRoutes, selectTailnet } from '../../store/selectors/tailnet.ts';
import { actions, useWeft } from '../../store/use-weft.ts';
import { useCopy } from '../shell/use-copy.ts';

const SIDE_TEXT: Record<ReasonSide, string> = { 'this-device': 'This device', peer: 'Peer', both: 'Both sides', network: 'Network' };

export function PeerDetail({ id }: { id: string }) {
  const selector = useMemo(() => linkFor(id), [id]);
  const link = useWeft(selector);
  const live = useWeft((s) => s.liveStats[id]);
  const history = useWeft((s) => s.latencyHistory[id]);
  const tailnet = useWeft(selectTailnet);
  const now = useNow(2000);
  const copy = useCopy();
  const samples = useMemo(() => (history ?? []).map((h) => h.ms), [history]);

  if (!link) {
    return (
      <aside className="detail" data-testid="peer-detail">
        <header className="detail-head">
          <h2>Peer gone</h2>
          <button type="button" className="icon" aria-label="Close" onClick={() => actions().selectPeer(null)}>
            ×
          </button>
        </header>
        <p className="muted">This peer is no longer in the network map.</p>
      </aside>
    );
  }

  const { peer, kind, explanation, regionName } = link;
  const path = peer.path;
  const latency = live?.latencyMs ?? (path.kind === 'direct' ? path.latencyMs : null);
  const rx = live?.rxBytes ?? peer.rxBytes;
  const tx = live?.txBytes ?? peer.txBytes;
  const handshake = live?.lastHandshake ?? peer.lastHandshake;
  const ni = peer.netInfo;
  const disco = peer.disco;
  const routes = peerRoutes(peer, tailnet);

  return (
    <aside className="detail" data-testid="peer-detail" data-peer={peer.name} aria-label={`Details for ${peer.name}`}>
      <header className="detail-head">
        <div>
          <h2>{peer.name}</h2>
          <button type="button" className="link fqdn" data-testid="peer-fqdn" title="Copy DNS name" onClick={() => copy(peer.fqdn, peer.fqdn)}>
            {peer.fqdn}
          </button>
          <div className="row">
            <PathBadge kind={kind} detail={kind === 'relay' ? regionName : kind === 'direct' ? formatMs(latency) : null} />
            {peer.exitNode ? (
              <span className="badge badge-exit" data-testid="peer-exit-node" title="This peer offers itself as an exit node">
                exit node
              </span>
            ) : null}
          </div>
        </div>
        <button type="button" className="icon" aria-label="Close" data-testid="peer-detail-close" onClick={() => actions().selectPeer(null)}>
          ×
        </button>
      </header>

      <Explanation kind={kind} explanation={explanation} />

      <section>
        <h3>Latency</h3>
        <Sparkline values={samples} label={`Latency history of ${peer.name}`} />
        <p className="muted small">{latency !== null ? `Now ${formatMs(latency)}` : 'No direct latency (relayed or not connected).'}</p>
      </section>

      <section>
        <h3>Connection</h3>
        <Facts
          items={[
            { label: 'Path', value: kind === 'relay' ? `Relay ${regionName ?? ''}` : kind === 'direct' ? 'Direct (UDP)' : kind === 'connecting' ? 'Connecting' : 'Offline' },
            { label: 'Endpoint', value: path.kind === 'direct' ? <code>{path.endpoint}</code> : '—' },
            { label: 'Last handshake', value: formatRelative(handshake, now), title: handshake ?? undefined },
            { label: 'Received', value: formatBytes(rx) },
            { label: 'Sent', value: formatBytes(tx) },
            { label: 'Last seen', value: peer.online ? 'Online now' : formatRelative(peer.lastSeen, now, 'unknown') },
          ]}
        />
      </section>

      <section>
        <h3>Addresses</h3>
        <AddressList addresses={peer.addresses} copy={copy} />
        <Facts
          items={[
            { label: 'OS', value: peer.os ?? 'Unknown' },
            { label: 'Key expires', value: formatRelative(peer.keyExpiry, now, 'never'), title: peer.keyExpiry ?? undefined },
            { label: 'Node key', value: <code className="key">{peer.nodeKey}</code> },
          ]}
        />
        {peer.endpoints.length > 0 ? (
          <details>
            <summary>{peer.endpoints.length} published endpoint{peer.endpoints.length === 1 ? '' : 's'}</summary>
            <ul className="endpoints">
              {peer.endpoints.map((e, i) => (
                <li key={`${i}:${e}`}>
                  <code>{e}</code>
                </li>
              ))}
            </ul>
          </details>
        ) : null}
      </section>

      {routes.length > 0 ? (
        <section data-testid="peer-routes-detail">
          <h3>Subnet routes</h3>
          <ul className="route-list">
            {routes.map((r) => (
              <li key={r.prefix} className={`route route-${r.state}`} data-testid="peer-route" data-state={r.state} title={r.note ?? undefined}>
                <code>{r.prefix}</code>
                <span className="muted small">{r.text}</span>
              </li>
            ))}
          </ul>
        </section>
      ) : null}

      <section>
        <h3>What each side reported</h3>
        <Facts
          items={[
            { label: 'Peer UDP', value: yesNo(ni?.workingUDP, 'Works', 'Blocked') },
            { label: 'Peer NAT', value: ni?.mappingVariesByDestIP == null ? 'Unknown' : ni.mappingVariesByDestIP ? 'Symmetric (hard)' : 'Endpoint-independent (easy)' },
            { label: 'Peer port mapping', value: yesNo(ni?.havePortMap) },
            { label: 'Peer hairpinning', value: yesNo(ni?.hairPinning) },
            { label: 'Peer home relay', value: ni?.preferredDERP ?? peer.homeRegion ?? '—' },
            { label: 'Pings sent', value: disco ? disco.pingsSent : '—' },
            { label: 'Pongs received', value: disco ? disco.pongsReceived : '—' },
            { label: 'Pings from peer', value: disco ? disco.pingsReceived : '—' },
            { label: 'Last direct pong', value: disco ? formatRelative(disco.lastPongAt, now) : '—' },
          ]}
        />
      </section>
    </aside>
  );
}

function Explanation({ kind, explanation }: { kind: string; explanation: LinkExplanation }) {
  const body = (
    <>
      <p className="summary" data-testid="link-summary">
        {explanation.summary}
      </p>
      {explanation.reasons.length > 0 ? (
        <ul className="reasons">
          {explanation.reasons.map((r, i) => (
            <li key={i} className={`reason side-${r.side}`}>
              <span className={`side side-${r.side}`}>{SIDE_TEXT[r.side]}</span>
              <p>{r.text}</p>
              {r.fix ? <p className="fix">{r.fix}</p> : null}
            </li>
          ))}
        </ul>
      ) : null}
    </>
  );
  if (kind === 'relay') {
    return (
      <section className="explain explain-relay" data-testid="why-relayed">
        <h3>Why relayed</h3>
        {body}
      </section>
    );
  }
  return (
    <section className={`explain explain-${kind}`} data-testid="link-explanation">
      <h3>{kind === 'direct' ? 'Direct path' : kind === 'connecting' ? 'Why not direct yet' : 'Offline'}</h3>
      {body}
    </section>
  );
}
