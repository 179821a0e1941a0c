/**
 * The Electron side of the IPC contract: one invoke channel into the host's validated dispatcher, one event
 * channel out. A call is answered only when it comes from our window's top frame showing our renderer
 * (VS Code's ValidatedIpcMain); the payload itself is validated by the dispatcher (dispatch.ts).
 */
import { ipcMain, type BrowserWindow, type IpcMainInvokeEvent } from 'electron';
import type { Dispatch } from '../host/dispatch.ts';
import type { Host } from '../host/host.ts';
import { EVENT_CHANNEL, INVOKE_CHANNEL } from '../preload/channels.ts';
import { isRendererUrl } from './security.ts';

export interface IpcServerOptions {
  dispatch: Dispatch;
  host: Pick<Host, 'onAny'>;
  /** The current main window (null while none is open). */
  window: () => BrowserWindow | null;
  devUrl: string | null;
  logf: (line: string) => void;
}

/** Reports whether the call comes from the top frame of our window, showing our renderer. */
function trusted(event: IpcMainInvokeEvent, win: BrowserWindow | null, devUrl: string | null): boolean {
  if (!win || win.isDestroyed()) return false;
  const frame = event.senderFrame;
  const top = win.webContents.mainFrame;
  if (!frame || event.sender !== win.webContents) return false;
  if (frame.parent !== null || frame.routingId !== top.routingId || frame.processId !== top.processId) return false;
  return isRendererUrl(frame.url, devUrl);
}

export function serveIpc(o: IpcServerOptions): () => void {
  ipcMain.handle(INVOKE_CHANNEL, async (event, method: unknown, payload: unknown) => {
    if (!trusted(event, o.window(), o.devUrl)) {
      o.logf(`ipc: refused a call from ${event.senderFrame?.url ?? 'an unknown frame'}`);
      throw new Error('refused');
    }
    return o.dispatch(method, payload);
  });
  const off = o.host.onAny((event, payload) => {
    const win = o.window();
    if (win && !win.isDestroyed() && !win.webContents.isDestroyed()) win.webContents.send(EVENT_CHANNEL, event, payload);
  });
  return () => {
    ipcMain.removeHandler(INVOKE_CHANNEL);
    off();
  };
}
