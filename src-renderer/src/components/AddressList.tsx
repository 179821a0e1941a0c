/** A device's tailnet addresses, each a button that copies it. */
export function AddressList({ addresses, copy }: { addresses: readonly string[]; copy: (text: string) => void }) {
  return (
    <ul className="addr-list">
      {addresses.map((a, i) => (
        <li key={`${i}:${a}`}>
          <button type="button" className="ip" title="Copy" onClick={() => copy(a)}>
            {a}
          </button>
        </li>
      ))}
    </ul>
  );
}
