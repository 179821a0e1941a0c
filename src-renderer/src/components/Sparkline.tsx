/**
 * A small latency sparkline: one SVG path over the samples, with gaps where a sample is null (no direct latency).
 * Presentational only; the caller passes the (bounded) samples.
 */
import { memo } from 'react';
import { sparkPath } from '../lib/spark-path.ts';

export interface SparklineProps {
  values: readonly (number | null)[];
  width?: number;
  height?: number;
  label: string;
}

export const Sparkline = memo(function Sparkline({ values, width = 240, height = 48, label }: SparklineProps) {
  const p = sparkPath(values, width, height);
  return (
    <svg className="sparkline" width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="img" aria-label={label}>
      {p ? <path d={p.d} /> : <text x={width / 2} y={height / 2} textAnchor="middle" dominantBaseline="middle">no samples yet</text>}
    </svg>
  );
});
