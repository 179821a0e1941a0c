/** A definition list of label → value rows, the building block of the detail and device cards. */
import type { ReactNode } from 'react';

export interface Fact {
  label: string;
  value: ReactNode;
  title?: string;
}

export function Facts({ items, className }: { items: readonly Fact[]; className?: string }) {
  return (
    <dl className={`facts ${className ?? ''}`}>
      {items.map((f) => (
        <div className="fact" key={f.label} title={f.title}>
          <dt>{f.label}</dt>
          <dd>{f.value}</dd>
        </div>
      ))}
    </dl>
  );
}

/** "yes" / "no" / "unknown" for a nullable boolean. */
export function yesNo(v: boolean | null | undefined, yes = 'Yes', no = 'No', unknown = 'Unknown'): string {
  return v === true ? yes : v === false ? no : unknown;
}
