import t from 'tap'
import { MotionDetector } from '../../media/motion.ts'

/** A 64×64 grey frame with a white square of `side` at (x, y); rows padded to `stride`. */
function frame (x: number, y: number, side: number, stride = 64 * 3 + 4, grey = 40): Uint8Array {
  const rgb = new Uint8Array(stride * 64).fill(grey)
  for (let r = y; r < y + side; r++) for (let c = x; c < x + side; c++) rgb.fill(255, r * stride + c * 3, r * stride + c * 3 + 3)
  return rgb
}

t.test('motion: what changed past the pixel and area thresholds since the last frame the camera was given', async (t) => {
  const detector = new MotionDetector({ step: 4, pixelThreshold: 25, areaThreshold: 0.01 })
  const stride = 64 * 3 + 4
  const grid = (x: number, y: number, side: number, grey?: number) => detector.grid(frame(x, y, side, stride, grey), 64, 64, stride)
  t.ok(detector.moved(grid(0, 0, 16)), 'nothing given yet: it moved')
  detector.given(grid(0, 0, 16))
  t.notOk(detector.moved(grid(0, 0, 16)), 'the same frame again')
  t.notOk(detector.moved(grid(0, 0, 16, 50)), 'the whole frame 10 levels brighter: noise, not motion')
  t.notOk(detector.moved(grid(0, 0, 15)), 'a one-pixel edge between samples: not seen (the grid is coarse on purpose)')
  // A slow walker: 4 px a frame is little between two frames, but adds up against the frame last given.
  const steps = [4, 8, 12].map((x) => detector.moved(grid(x, 0, 16)))
  t.same(steps, [true, true, true], 'each step compared with the frame the camera last had')
  detector.given(grid(24, 24, 16))
  t.notOk(detector.moved(grid(24, 24, 16)))
  t.ok(detector.moved(detector.grid(frame(24, 24, 16, 32 * 3), 32, 32, 32 * 3)), 'another size: compared with nothing')
})
