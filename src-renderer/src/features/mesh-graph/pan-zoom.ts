/**
 * Zoom (wheel) and pan (drag) for the mesh SVG, applied to a viewport <g> through refs: no React state, so moving
 * around never re-renders the graph. A drag that moved more than a few pixels swallows the click that ends it.
 */
import { useCallback, useEffect, useRef, type RefObject } from 'react';

const MIN_SCALE = 0.3;
const MAX_SCALE = 6;
const DRAG_THRESHOLD_PX = 4;

interface View {
  k: number;
  x: number;
  y: number;
}

export interface PanZoom {
  svgRef: RefObject<SVGSVGElement | null>;
  viewportRef: RefObject<SVGGElement | null>;
  reset: () => void;
  /** Reports whether the pointer gesture that just ended was a drag (and forgets it). */
  consumeDrag: () => boolean;
}

export function usePanZoom(): PanZoom {
  const svgRef = useRef<SVGSVGElement | null>(null);
  const viewportRef = useRef<SVGGElement | null>(null);
  const view = useRef<View>({ k: 1, x: 0, y: 0 });
  const dragged = useRef(false);

  const apply = useCallback(() => {
    const v = view.current;
    viewportRef.current?.setAttribute('transform', `translate(${v.x} ${v.y}) scale(${v.k})`);
  }, []);

  const reset = useCallback(() => {
    view.current = { k: 1, x: 0, y: 0 };
    apply();
  }, [apply]);

  useEffect(() => {
    const svg = svgRef.current;
    if (!svg) return;

    /** Screen point → the SVG's user (viewBox) coordinates. */
    const toUser = (cx: number, cy: number): { x: number; y: number } | null => {
      const m = svg.getScreenCTM();
      if (!m) return null;
      const p = new DOMPoint(cx, cy).matrixTransform(m.inverse());
      return { x: p.x, y: p.y };
    };

    const onWheel = (e: WheelEvent): void => {
      e.preventDefault();
      const p = toUser(e.clientX, e.clientY);
      if (!p) return;
      const v = view.current;
      const k = Math.min(MAX_SCALE, Math.max(MIN_SCALE, v.k * Math.exp(-e.deltaY * 0.0015)));
      view.current = { k, x: p.x - ((p.x - v.x) * k) / v.k, y: p.y - ((p.y - v.y) * k) / v.k };
      apply();
    };

    let start: { id: number; cx: number; cy: number; x: number; y: number } | null = null;
    let dragging = false;
    const onDown = (e: PointerEvent): void => {
      if (e.button !== 0) return;
      start = { id: e.pointerId, cx: e.clientX, cy: e.clientY, x: view.current.x, y: view.current.y };
      dragging = false;
      dragged.current = false;
    };
    const onMove = (e: PointerEvent): void => {
      if (!start || e.pointerId !== start.id) return;
      const dx = e.clientX - start.cx;
      const dy = e.clientY - start.cy;
      if (!dragging && Math.hypot(dx, dy) < DRAG_THRESHOLD_PX) return;
      if (!dragging) {
        dragging = true;
        svg.setPointerCapture(e.pointerId);
        svg.classList.add('panning');
      }
      const m = svg.getScreenCTM();
      const scale = m ? m.a : 1;
      view.current = { ...view.current, x: start.x + dx / scale, y: start.y + dy / scale };
      apply();
    };
    const onUp = (e: PointerEvent): void => {
      if (!start || e.pointerId !== start.id) return;
      if (dragging) {
        dragged.current = true;
        if (svg.hasPointerCapture(e.pointerId)) svg.releasePointerCapture(e.pointerId);
        svg.classList.remove('panning');
      }
      start = null;
      dragging = false;
    };

    svg.addEventListener('wheel', onWheel, { passive: false });
    svg.addEventListener('pointerdown', onDown);
    svg.addEventListener('pointermove', onMove);
    svg.addEventListener('pointerup', onUp);
    svg.addEventListener('pointercancel', onUp);
    return () => {
      svg.removeEventListener('wheel', onWheel);
      svg.removeEventListener('pointerdown', onDown);
      svg.removeEventListener('pointermove', onMove);
      svg.removeEventListener('pointerup', onUp);
      svg.removeEventListener('pointercancel', onUp);
    };
  }, [apply]);

  const consumeDrag = useCallback(() => {
    const d = dragged.current;
    dragged.current = false;
    return d;
  }, []);

  return { svgRef, viewportRef, reset, consumeDrag };
}
