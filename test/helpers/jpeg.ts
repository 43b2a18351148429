import { Decoder, Demuxer, FilterAPI } from 'node-av/api'
import { AV_LOG_ERROR, AV_LOG_QUIET } from 'node-av/constants'
import { Log } from 'node-av/lib'
import type { Frame } from 'node-av/lib'

/** A JPEG decoded back by FFmpeg, as RGB: its size and its pixels, to check what a snapshot shows. */
export interface DecodedJpeg {
  width: number
  height: number
  pixel: (x: number, y: number) => [number, number, number]
}

/** Whether a pixel is red as `drawbox` draws it (after JPEG: about 237, 12, 14). */
export function isRed ([r, g, b]: readonly number[]): boolean {
  return (r ?? 0) > 180 && (g ?? 255) < 90 && (b ?? 255) < 90
}

/** Decodes a JPEG (throws when FFmpeg cannot: not a JPEG). */
export function decodeJpeg (bytes: Uint8Array): DecodedJpeg {
  // A decoded JPEG is yuvj420p, which swscale warns about on the way to RGB.
  Log.setLevel(AV_LOG_QUIET)
  try {
    using demuxer = Demuxer.openSync(Buffer.from(bytes), { format: 'jpeg_pipe' })
    const stream = demuxer.video()
    if (stream === undefined) throw new Error('no image in it')
    using decoder = Decoder.createSync(stream)
    using rgb = FilterAPI.create('format=rgb24')
    for (const packet of demuxer.packetsSync(stream.index)) {
      decoder.decodeSync(packet)
      packet?.free()
      const frame = decoder.receiveSync()
      if (frame == null || typeof frame !== 'object') continue
      rgb.processSync(frame as Frame)
      ;(frame as Frame).free()
      const out = rgb.receiveSync() as Frame
      const data = Buffer.from((out.data as Buffer[])[0] as Buffer)
      const stride = out.linesize[0] as number
      const { width, height } = out
      out.free()
      return { width, height, pixel: (x, y) => [...data.subarray(y * stride + x * 3, y * stride + x * 3 + 3)] as [number, number, number] }
    }
    throw new Error('no frame decoded')
  } finally {
    Log.setLevel(AV_LOG_ERROR)
  }
}
