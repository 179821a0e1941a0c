/** Copy-to-clipboard with a notice either way (the clipboard can be refused: permissions, focus, insecure page). */
import { useCallback } from 'react';
import { actions } from '../../store/use-weft.ts';
import { copyText } from '../../lib/clipboard.ts';

export function useCopy(): (text: string, what?: string) => void {
  return useCallback((text: string, what = text) => {
    void copyText(text).then((err) => {
      if (err === null) actions().showNotice('info', `Copied ${what}`);
      else actions().showNotice('error', `Could not copy ${what}: ${err}`);
    });
  }, []);
}
