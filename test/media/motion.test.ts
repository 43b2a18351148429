import t from 'tap'
import { MotionDetector } from '../../media/motion.ts'

/** A 64×64 grey frame with a white square of `side` at (x, y); rows padded to `stride`. */
function frame (x: number, y: number, side: number, stride = 64 * 3 + 4, grey = 40): Uint8Array {
  const rgb = new Uint8Array(stride * 64).fill(grey)
  for (let r = y; r < y + side; r++) for (let c = x; c < x + side; c++) rgb.fill(255, r * stride + c * 3, r * stride + c * 3 + 3)
  return rgb
}

t.test('motion: the first frame, then what changed past the pixel and area thresholds', async (t) => {
  const motion = new MotionDetector({ step: 4, pixelThreshold: 25, areaThreshold: 0.01 })
  t.ok(motion.moved(frame(0, 0, 16), 64, 64, 64 * 3 + 4), 'the first frame has nothing to compare with')
  t.notOk(motion.moved(frame(0, 0, 16), 64, 64, 64 * 3 + 4), 'the same frame again')
  t.notOk(motion.moved(frame(0, 0, 16, 64 * 3 + 4, 50), 64, 64, 64 * 3 + 4), 'the whole frame 10 levels brighter: noise, not motion')
  t.ok(motion.moved(frame(24, 24, 16), 64, 64, 64 * 3 + 4), 'the square moved')
  t.notOk(motion.moved(frame(24, 24, 16), 64, 64, 64 * 3 + 4))
  t.notOk(motion.moved(frame(24, 24, 15), 64, 64, 64 * 3 + 4), 'a one-pixel edge between samples: not seen (the grid is coarse on purpose)')
  t.ok(motion.moved(frame(24, 24, 15), 32, 32, 32 * 3), 'another size: compared with nothing')
})
