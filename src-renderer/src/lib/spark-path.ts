/** The sparkline's geometry (pure). */

/** The path's `d` for `values`, scaled into width × height. */
export function sparkPath(values: readonly (number | null)[], width: number, height: number): { d: string; min: number; max: number } | null {
  const nums = values.filter((v): v is number => v !== null);
  if (nums.length === 0) return null;
  const min = Math.min(...nums);
  const max = Math.max(...nums);
  const span = max - min || 1;
  const step = values.length > 1 ? width / (values.length - 1) : 0;
  let d = '';
  let pen = false;
  values.forEach((v, i) => {
    if (v === null) {
      pen = false;
      return;
    }
    const x = (i * step).toFixed(1);
    const y = (height - 2 - ((v - min) / span) * (height - 4)).toFixed(1);
    d += `${pen ? 'L' : 'M'}${x} ${y}`;
    pen = true;
  });
  return { d, min, max };
}
