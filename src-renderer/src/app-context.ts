/** The validated IPC client, provided once at the root so features can call methods without importing the transport. */
import { createContext, useContext } from 'react';
import type { WeftClient } from './ipc/guard.ts';

export const ClientContext = createContext<WeftClient | null>(null);

export function useClient(): WeftClient {
  const c = useContext(ClientContext);
  if (!c) throw new Error('useClient outside ClientContext');
  return c;
}
