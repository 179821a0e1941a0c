/**
 * This device: its DNS name and addresses, key expiry, MagicDNS and subnet routes in a line each, a warning for
 * every subnet route that overlaps the LAN (the LAN wins), who can reach it (AccessCard), and the NAT report card
 * (type, mapping, filtering, hairpinning, port mapping, relay region latencies) with a button to run netcheck again.
 */
import { useState } from 'react';
import type { IpcError } from '../../../../src-shared/ipc/contract.ts';
import { AddressList } from '../../components/AddressList.tsx';
import { Facts, yesNo } from '../../components/Facts.tsx';
import { useClient } from '../../app-context.ts';
import { errorWords } from '../../lib/error-text.ts';
import { formatMs, formatRelative } from '../../lib/format.ts';
import { useNow } from '../../lib/hooks.ts';
import { dnsLine, routesLine, selectLanOverlaps, selectTailnet } from '../../store/selectors/tailnet.ts';
import { actions, useWeft } from '../../store/use-weft.ts';
import { useCopy } from '../shell/use-copy.ts';
import { AccessCard } from './AccessCard.tsx';
import { BEHAVIOUR_TEXT, NAT_TYPE_TEXT, portMappingText } from './nat-words.ts';

export function DeviceCard() {
  const client = useClient();
  const self = useWeft((s) => s.snapshot.self);
  const report = useWeft((s) => s.snapshot.netcheck);
  const regions = useWeft((s) => s.snapshot.regions);
  const control = useWeft((s) => s.snapshot.control);
  const tailnet = useWeft(selectTailnet);
  const peers = useWeft((s) => s.snapshot.peers);
  const overlaps = useWeft(selectLanOverlaps);
  const now = useNow(30_000);
  const copy = useCopy();
  const [running, setRunning] = useState(false);
  const [error, setError] = useState<IpcError | null>(null);

  const run = async (): Promise<void> => {
    setRunning(true);
    setError(null);
    const r = await client.call('netcheck:run', {});
    setRunning(false);
    if (r.ok) actions().setNetcheck(r.value);
    else setError(r.error);
  };

  const regionName = (id: number): string => regions.find((r) => r.id === id)?.name ?? `Region ${id}`;
  const latencies = report
    ? Object.entries(report.regionLatencyMs)
        .map(([id, ms]) => ({ id: Number(id), ms }))
        .sort((a, b) => a.ms - b.ms)
    : [];
  const nat = report ? NAT_TYPE_TEXT[report.natType] : null;
  const dns = tailnet ? dnsLine(tailnet.dns) : null;
  const routes = tailnet ? routesLine(tailnet, peers) : null;

  return (
    <section className="device" data-testid="device-card" aria-label="This device">
      <div className="card">
        <h2>{self?.name ?? 'This device'}</h2>
        {self?.fqdn ? (
          <button type="button" className="link fqdn" data-testid="self-fqdn" title="Copy DNS name" onClick={() => copy(self.fqdn, self.fqdn)}>
            {self.fqdn}
          </button>
        ) : null}
        {overlaps.map((o) => (
          <div key={`${o.peer} ${o.prefix}`} className="warn" role="status" data-testid="route-overlap" data-prefix={o.prefix} data-peer={o.peer}>
            {o.note}
          </div>
        ))}
        <AddressList addresses={self?.addresses ?? []} copy={copy} />
        <Facts
          items={[
            { label: 'Network', value: control?.url ?? '—' },
            { label: 'Key expires', value: formatRelative(self?.keyExpiry ?? null, now, 'never'), title: self?.keyExpiry ?? undefined },
            { label: 'Home relay', value: self?.homeRegion != null ? regionName(self.homeRegion) : '—' },
            {
              label: 'MagicDNS',
              value: dns ? (
                <span className={`line-${dns.tone}`} data-testid="dns-line" data-mode={dns.mode}>
                  {dns.text}
                </span>
              ) : (
                '—'
              ),
            },
            {
              label: 'Subnet routes',
              value: routes ? (
                <span className={`line-${routes.tone}`} data-testid="routes-line">
                  {routes.text}
                </span>
              ) : (
                '—'
              ),
            },
            { label: 'Node key', value: self ? <code className="key">{self.nodeKey}</code> : '—' },
          ]}
        />
      </div>

      <AccessCard />

      <div className="card">
        <div className="card-head">
          <h2>NAT report</h2>
          <button type="button" className="primary" data-testid="run-netcheck" onClick={() => void run()} disabled={running}>
            {running ? 'Running…' : 'Run netcheck'}
          </button>
        </div>
        {error ? (
          <div className="error" role="alert" data-testid="netcheck-error">
            <strong>{errorWords(error).title}</strong>
            {errorWords(error).detail ? <span className="detail">{errorWords(error).detail}</span> : null}
          </div>
        ) : null}
        {report && nat ? (
          <>
            <div className={`nat-type nat-${report.natType}`} data-testid="nat-type">
              <strong>{nat.title}</strong>
              <p>{nat.detail}</p>
            </div>
            <Facts
              items={[
                { label: 'UDP', value: report.udp ? 'Works' : 'Blocked' },
                { label: 'Public IPv4', value: report.publicV4 ?? '—' },
                { label: 'Mapping', value: BEHAVIOUR_TEXT[report.mapping] },
                { label: 'Filtering', value: BEHAVIOUR_TEXT[report.filtering] },
                { label: 'Port preserved', value: yesNo(report.portPreserved) },
                { label: 'Hairpinning', value: yesNo(report.hairpinning) },
                { label: 'Port mapping', value: portMappingText(report) },
                { label: 'Behind NAT', value: yesNo(report.behindNat) },
                { label: 'Local port', value: report.localPort },
              ]}
            />
            <h3>Relay regions</h3>
            {latencies.length === 0 ? (
              <p className="muted small">No relay region answered.</p>
            ) : (
              <ul className="regions">
                {latencies.map((l) => (
                  <li key={l.id} className={l.id === report.preferredRegion ? 'preferred' : ''}>
                    <span>{regionName(l.id)}</span>
                    <span className="bar" style={{ width: `${Math.min(100, (l.ms / Math.max(1, latencies[latencies.length - 1]!.ms)) * 100)}%` }} />
                    <span className="ms">{formatMs(l.ms)}</span>
                    {l.id === report.preferredRegion ? <span className="muted small">preferred</span> : null}
                  </li>
                ))}
              </ul>
            )}
            {report.notes.length > 0 ? (
              <details>
                <summary>How this was measured</summary>
                <ul className="notes">
                  {report.notes.map((n, i) => (
                    <li key={i}>{n}</li>
                  ))}
                </ul>
              </details>
            ) : null}
          </>
        ) : (
          <p className="muted">No NAT report yet. Run netcheck to see how this network treats direct connections.</p>
        )}
      </div>
    </section>
  );
}
