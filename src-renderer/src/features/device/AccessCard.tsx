/**
 * "Who can reach this device": the effective access computed from the ACL filter the engine enforces, one row per
 * grant (who, protocols, ports), and the filter's own state (applied when, how many rules; none yet; or the error
 * with the last good filter kept).
 */
import { selectAccessCard } from '../../store/selectors/tailnet.ts';
import { useWeft } from '../../store/use-weft.ts';

export function AccessCard() {
  const card = useWeft(selectAccessCard);
  return (
    <div className="card access" data-testid="access-card">
      <h2>Who can reach this device</h2>
      {!card.known || !card.filter ? (
        <p className="muted">No access information yet: it appears once this device is connected.</p>
      ) : (
        <>
          <p className={`line line-${card.filter.tone}`} data-testid="access-filter" data-tone={card.filter.tone}>
            {card.filter.text}
          </p>
          {card.empty ? (
            <p data-testid="access-empty">{card.empty}</p>
          ) : card.rows.length > 0 ? (
            <ul className="access-rows">
              {card.rows.map((r) => (
                <li key={r.key} className="access-row" data-testid="access-grant" data-anyone={r.anyone ? 'true' : 'false'}>
                  <span className="access-who" title={r.sources ? `Sources: ${r.sources}` : undefined}>
                    {r.anyone ? <strong>{r.who}</strong> : r.who}
                  </span>
                  <span className="access-what">
                    <span className="access-proto">{r.protocols}</span>
                    {r.ports.map((port, i) => (
                      <code key={`${i}:${port}`} className="port" data-testid="access-port">
                        {port}
                      </code>
                    ))}
                  </span>
                </li>
              ))}
            </ul>
          ) : null}
          {card.skipped.length > 0 ? (
            <details>
              <summary>
                {card.skipped.length} filter entr{card.skipped.length === 1 ? 'y' : 'ies'} skipped
              </summary>
              <ul className="notes">
                {card.skipped.map((k, i) => (
                  <li key={i}>{k}</li>
                ))}
              </ul>
            </details>
          ) : null}
        </>
      )}
    </div>
  );
}
