/** The last server URL joined, kept in localStorage (best effort: storage may be disabled). */
const KEY = 'weft.serverUrl';

export function rememberedServerUrl(): string {
  try {
    return window.localStorage.getItem(KEY) ?? '';
  } catch {
    return '';
  }
}

export function rememberServerUrl(url: string): void {
  try {
    window.localStorage.setItem(KEY, url);
  } catch {
    // Not remembered; the active profile still carries the URL.
  }
}
