/**
 * How a snapshot is drawn: the frame scaled to fit SNAPSHOT_MAX_SIDE × SNAPSHOT_MAX_SIDE (its aspect kept), boxes in
 * red. Pure (no node-av), so the main thread may use its rules; snapshot-jpeg.ts runs the graph in a camera's decode
 * thread.
 */

/**
 * Snapshots are sharp enough to tell what was found, and bounded whatever the camera's size (1080p, 4K, or a tall
 * 2000×16000): neither side is over this.
 */
export const SNAPSHOT_MAX_SIDE = 1280
/**
 * The most bytes a snapshot's JPEG can take: 3 a pixel of the largest (twice its 4:2:0 samples; 1280×1280 of pure
 * noise at mjpeg's best quantizer is 1.7 MB). A file larger than this is no snapshot of ours.
 */
export const MAX_SNAPSHOT_BYTES = SNAPSHOT_MAX_SIDE * SNAPSHOT_MAX_SIDE * 3
/** Boxes drawn on one snapshot at most (the wire's cap on a result's detections). */
export const MAX_SNAPSHOT_BOXES = 64
/** Corners in the source frame's pixels, the box format everywhere. */
export type Box = readonly [number, number, number, number]

/** Whether a value is a box: four finite numbers (what crosses a thread is checked again here). */
export function isBox (value: unknown): value is Box {
  return Array.isArray(value) && value.length === 4 && value.every((v) => typeof v === 'number' && Number.isFinite(v))
}

/**
 * The FFmpeg filter graph that scales a `width`×`height` frame to fit SNAPSHOT_MAX_SIDE square (its aspect kept) for
 * a snapshot and draws `boxes` (source pixels).
 */
export function snapshotGraph (width: number, height: number, boxes: readonly Box[]): { graph: string, width: number, height: number } {
  // Fit into SNAPSHOT_MAX_SIDE square, never enlarged.
  const scale = Math.min(1, SNAPSHOT_MAX_SIDE / width, SNAPSHOT_MAX_SIDE / height)
  // yuv420p needs even sides.
  const w = Math.max(2, Math.round(width * scale / 2) * 2)
  const h = Math.max(2, Math.round(height * scale / 2) * 2)
  const kx = w / width
  const ky = h / height
  const thickness = Math.max(2, Math.round(w / 320))
  const draws: string[] = []
  for (const box of boxes.slice(0, MAX_SNAPSHOT_BOXES)) {
    if (!isBox(box)) continue
    const clampX = (v: number): number => Math.min(Math.max(Math.round(v * kx), 0), w - 1)
    const clampY = (v: number): number => Math.min(Math.max(Math.round(v * ky), 0), h - 1)
    const x1 = clampX(Math.min(box[0], box[2]))
    const y1 = clampY(Math.min(box[1], box[3]))
    const x2 = clampX(Math.max(box[0], box[2]))
    const y2 = clampY(Math.max(box[1], box[3]))
    draws.push(`drawbox=x=${x1}:y=${y1}:w=${Math.max(1, x2 - x1 + 1)}:h=${Math.max(1, y2 - y1 + 1)}:color=red:t=${thickness}`)
  }
  // Full range, as JPEG is; yuv420p, which mjpeg takes (yuvj420p is deprecated).
  return { graph: [`scale=${w}:${h}:out_range=full`, 'format=yuv420p', ...draws].join(','), width: w, height: h }
}
