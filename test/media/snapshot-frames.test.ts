import t from 'tap'
import { createLogger } from '../../common/logger.ts'
import { FrameSource, SnapshotFailedError } from '../../media/frame-source.ts'
import type { Snapshot, TensorFrame } from '../../media/frame-source.ts'
import { filterGraph, shapeGraph } from '../../media/preprocess.ts'
import { snapshotGraph } from '../../media/snapshot-graph.ts'
import { decodeJpeg, isRed } from '../helpers/jpeg.ts'

const log = createLogger('silent')
const INPUT = { layout: 'nchw', dtype: 'uint8', scale: 'none', channels: 'rgb' } as const

/** A grey source of `size` in a decode thread of its own, feeding a 320×320 model input. */
function source (t: { teardown: (fn: () => Promise<void>) => void }, size: string): FrameSource {
  const frames = new FrameSource({
    options: { url: `lavfi:color=c=gray:size=${size}:rate=10`, width: 320, height: 320, fps: 5, loop: true, paced: true, input: INPUT, hwaccel: 'none' },
    log
  })
  frames.start()
  t.teardown(() => frames.stop())
  return frames
}

async function refusal (p: Promise<unknown>): Promise<string> {
  try {
    await p
    return 'made'
  } catch (err) {
    return err instanceof SnapshotFailedError ? `${err.code} ${err.reason}` : String(err)
  }
}

t.test('a snapshot is the frame the camera had, as a JPEG with the box drawn in red, made in the decode thread', async (t) => {
  const frames = source(t, '640x480')
  const first = await frames.next() as TensorFrame
  t.match(first, { sourceWidth: 640, sourceHeight: 480 })
  const box = [100, 60, 300, 200] as const
  const snapshot = await frames.snapshot(first.seq, [box])
  t.same([snapshot.jpeg[0], snapshot.jpeg[1], snapshot.jpeg.at(-2), snapshot.jpeg.at(-1)], [0xff, 0xd8, 0xff, 0xd9], 'a JPEG: SOI to EOI')
  t.same({ width: snapshot.width, height: snapshot.height }, { width: 640, height: 480 }, 'at the source\'s size (under 1280 wide)')
  const image = decodeJpeg(snapshot.jpeg)
  t.same({ width: image.width, height: image.height }, { width: 640, height: 480 })
  const seen = {
    left: isRed(image.pixel(101, 130)),
    top: isRed(image.pixel(200, 61)),
    right: isRed(image.pixel(299, 130)),
    bottom: isRed(image.pixel(200, 199)),
    inside: isRed(image.pixel(200, 130)),
    outside: isRed(image.pixel(50, 30))
  }
  t.same(seen, { left: true, top: true, right: true, bottom: true, inside: false, outside: false }, `the box's edges red, the rest grey (edge ${image.pixel(101, 130).join(',')}, inside ${image.pixel(200, 130).join(',')})`)
  t.comment(`640×480: ${snapshot.ms.toFixed(1)} ms in the decode thread, ${snapshot.jpeg.length} bytes`)

  // The thread holds the last two frames it gave: the first is still there after the second, gone after the third.
  const second = await frames.next() as TensorFrame
  t.equal(await refusal(frames.snapshot(first.seq, [box])), 'made', 'the frame before the newest is held')
  await frames.next()
  t.equal(await refusal(frames.snapshot(first.seq, [box])), 'ERR_SNAPSHOT_FAILED gone', 'two frames later it is not')
  t.equal(await refusal(frames.snapshot(second.seq + 1000, [box])), 'ERR_SNAPSHOT_FAILED gone', 'nor one never given')

  // One at a time: a second asked for meanwhile is refused, not queued.
  const third = second.seq + 1
  const made = frames.snapshot(third, [box])
  t.equal(await refusal(frames.snapshot(third, [box])), 'ERR_SNAPSHOT_FAILED busy')
  t.equal(await refusal(made), 'made')

  // Boxes are the detector's, but what crosses the thread is checked again: off the frame or not numbers, no crash.
  const odd = await frames.snapshot(third, [[-50, -50, 5000, 5000], [Number.NaN, 1, 2, 3], 'x' as unknown as [number, number, number, number]])
  t.same(decodeJpeg(odd.jpeg).width, 640, 'a box past the frame is clamped to it; the others are skipped')
})

t.test('a source over 1280 wide is scaled to 1280 and its boxes with it', async (t) => {
  const frames = source(t, '1920x1080')
  const frame = await frames.next() as TensorFrame
  const snapshot: Snapshot = await frames.snapshot(frame.seq, [[300, 150, 900, 600]])
  t.same({ width: snapshot.width, height: snapshot.height }, { width: 1280, height: 720 })
  const image = decodeJpeg(snapshot.jpeg)
  // 300 × 2/3 = 200, 150 × 2/3 = 100, 900 × 2/3 = 600, 600 × 2/3 = 400.
  t.same([isRed(image.pixel(201, 250)), isRed(image.pixel(400, 101)), isRed(image.pixel(400, 250))], [true, true, false])
  t.comment(`1920×1080 → 1280×720: ${snapshot.ms.toFixed(1)} ms in the decode thread, ${snapshot.jpeg.length} bytes`)
})

t.test('a snapshot\'s graph: bounded size, even sides, boxes clamped, at most 64', async (t) => {
  t.same(snapshotGraph(641, 481, []), { graph: 'scale=642:482:out_range=full,format=yuv420p', width: 642, height: 482 })
  const many = snapshotGraph(3840, 2160, Array.from({ length: 100 }, () => [0, 0, 3840, 2160] as const))
  t.same([many.width, many.height, many.graph.split('drawbox').length - 1], [1280, 720, 64])
  t.match(many.graph, /drawbox=x=0:y=0:w=1280:h=720:color=red:t=4/)
  t.same(snapshotGraph(640, 480, [[-10, 470, 700, 900]]).graph.split(',').at(-1), 'drawbox=x=0:y=470:w=640:h=10:color=red:t=2')
})

t.test('a snapshot fits 1280×1280 whichever side is long, its aspect kept', async (t) => {
  const size = (w: number, h: number): [number, number] => { const g = snapshotGraph(w, h, []); return [g.width, g.height] }
  t.same(size(2000, 16000), [160, 1280], 'a tall frame: 1280 high, not 1280 wide (10240 high)')
  t.same(size(1080, 1920), [720, 1280], 'a portrait 1080p camera')
  t.same(size(16000, 2000), [1280, 160])
  t.same(size(3000, 3000), [1280, 1280])
  t.same(size(1280, 1280), [1280, 1280], 'never enlarged, never over')
  t.same(size(4, 40000), [2, 1280], 'even sides, at least 2')
  t.match(snapshotGraph(2000, 16000, [[0, 8000, 2000, 16000]]).graph, /^scale=160:1280:out_range=full,format=yuv420p,drawbox=x=0:y=640:w=160:h=640:/, 'boxes scaled with it')
})

t.test('the decode thread\'s graph: the model\'s shape, the frame rate picked before it (the source frames kept)', async (t) => {
  const options = { width: 640, height: 384, fps: 5 }
  t.equal(shapeGraph(options), 'scale=640:384:force_original_aspect_ratio=decrease:threads=1,pad=640:384:(ow-iw)/2:(oh-ih)/2,format=rgb24')
  t.equal(`fps=5,${shapeGraph(options)}`, filterGraph(options), 'with FFmpeg\'s fps filter, the one graph (bench, ffmpeg -vf)')
})
