import t from 'tap'
import { textRegions } from '../../media/detections.ts'

t.test('text regions: thresholded cells grouped into boxes', async (t) => {
  const w = 16
  const h = 8
  const prob = new Float32Array(w * h)
  const fill = (x0: number, y0: number, x1: number, y1: number, p: number) => {
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) prob[y * w + x] = p
  }
  fill(0, 0, 8, 4, 0.9) // a word: 2×1 cells of 4 px
  fill(12, 4, 16, 8, 0.8) // a lone cell: below minCells
  fill(8, 4, 12, 8, 0.1) // faint: below the threshold
  t.same(textRegions(prob, w, h), [{ label: 'text', score: 0.9, box: { x: 0, y: 0, width: 8, height: 4 } }])
  t.equal(textRegions(prob, w, h, { minCells: 1 }).length, 2)
  t.same(textRegions(new Float32Array(w * h), w, h), [], 'an empty map finds nothing')
})
