/** Copies text to the clipboard; answers an error message instead of throwing (permissions, insecure context). */
export async function copyText(text: string): Promise<string | null> {
  try {
    if (!navigator.clipboard) return 'the clipboard is not available here';
    await navigator.clipboard.writeText(text);
    return null;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}
