/**
 * A frame as a JPEG with boxes drawn on it, through FFmpeg (node-av's synchronous calls): scaled to fit
 * SNAPSHOT_MAX_SIDE square, the boxes drawn in red by `drawbox`, encoded by `mjpeg`. It runs in a camera's decode
 * thread (decode-worker.ts), which holds the frames; the event loop never sees a pixel.
 */
import { Encoder, FilterAPI } from 'node-av/api'
import { FF_ENCODER_MJPEG } from 'node-av/constants'
import type { CodecContext, Frame } from 'node-av/lib'
import { NoodleError } from '../common/errors.ts'
import { snapshotGraph } from './snapshot-graph.ts'
import type { Box } from './snapshot-graph.ts'

/** mjpeg's worst quantizer (2 best, 31 worst): a 1280×720 test pattern is 50 KB at 4. */
const QUALITY = 4

/**
 * FFmpeg made no snapshot of a frame. Thrown in the decode thread, whose answer carries its message only: the main
 * thread's SnapshotFailedError ('failed'), which reaches the API as a 503 (SnapshotUnavailableError).
 */
export class SnapshotEncodeError extends NoodleError {
  constructor (message: string) {
    super('ERR_SNAPSHOT_ENCODE', message)
  }
}

export interface Jpeg {
  jpeg: Buffer
  width: number
  height: number
}

/** `frame` (any size and pixel format the decoder gives) as a JPEG with `boxes` drawn. The frame is not freed. */
export function encodeSnapshot (frame: Frame, boxes: readonly Box[]): Jpeg {
  const { graph, width, height } = snapshotGraph(frame.width, frame.height, boxes)
  using filter = FilterAPI.create(graph)
  filter.processSync(frame)
  const out = filter.receiveSync()
  if (out == null || typeof out !== 'object') throw new SnapshotEncodeError('the snapshot filter gave no frame')
  try {
    // Set on the context: node-av 6.1's `options` dictionary crashes the thread at its exit once used here.
    const configure = (context: CodecContext): void => { context.qMin = 2; context.qMax = QUALITY }
    return { jpeg: Encoder.encodeOneSync(FF_ENCODER_MJPEG, out as Frame, { configure }), width, height }
  } finally {
    (out as Frame).free()
  }
}
