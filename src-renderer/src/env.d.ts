/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** The dev bridge's ws:// URL, for the renderer running in a plain browser. */
  readonly VITE_WEFT_BRIDGE?: string;
}

interface ImportMeta {
  readonly env: ImportMetaEnv;
}
