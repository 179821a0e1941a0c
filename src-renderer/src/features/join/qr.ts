/** The QR code's SVG document (made in the main process) as a data: URL for an <img>: CSP-safe, never inlined. */
export function qrDataUrl(svg: string): string {
  return `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
}
