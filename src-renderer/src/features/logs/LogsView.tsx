/** Recent log lines with a minimum-level filter; follows new lines while scrolled to the bottom. */
import { useEffect, useRef } from 'react';
import { LogLevel } from '../../../../src-shared/ipc/contract.ts';
import { formatTime } from '../../lib/format.ts';
import { visibleLogs } from '../../store/selectors/logs.ts';
import { actions, useWeft } from '../../store/use-weft.ts';

export function LogsView() {
  const logs = useWeft(visibleLogs);
  const level = useWeft((s) => s.logLevel);
  const loaded = useWeft((s) => s.logsLoaded);
  const box = useRef<HTMLOListElement | null>(null);
  const follow = useRef(true);

  useEffect(() => {
    const el = box.current;
    if (el && follow.current) el.scrollTop = el.scrollHeight;
  }, [logs]);

  return (
    <section className="logs" data-testid="logs" aria-label="Logs">
      <div className="toolbar">
        <label className="inline">
          <span>Level</span>
          <select data-testid="logs-level" value={level} onChange={(e) => actions().setLogLevel(LogLevel.parse(e.target.value))}>
            {LogLevel.options.map((l) => (
              <option key={l} value={l}>
                {l === 'debug' ? 'Debug and above' : l === 'info' ? 'Info and above' : l === 'warn' ? 'Warnings and errors' : 'Errors only'}
              </option>
            ))}
          </select>
        </label>
        <span className="muted small">{loaded ? `${logs.length} lines` : 'Loading…'}</span>
      </div>
      <ol
        className="log-lines"
        ref={box}
        onScroll={(e) => {
          const el = e.currentTarget;
          follow.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
        }}
      >
        {logs.map((e, i) => (
          <li key={i} className={`log log-${e.level}`} data-level={e.level}>
            <time dateTime={e.at}>{formatTime(e.at)}</time>
            <span className="lvl">{e.level}</span>
            <span className="msg">{e.message}</span>
          </li>
        ))}
      </ol>
    </section>
  );
}
