import t from 'tap'
import type { Detection } from '../../media/detections.ts'
import { insidePolygon, MAX_TRACKS_PER_CAMERA, ObjectTracker, zonesOf } from '../../media/tracker.ts'
import type { Ending } from '../../media/tracker.ts'

/** Ending by time alone. */
const ms = (n: number): Ending => ({ afterMs: n, afterMisses: 1_000_000, staleMs: n })

const det = (label: string, x: number, score = 0.8, y = 100): Detection => ({ label, score, box: [x, y - 50, x + 40, y] })

function tracker () {
  let n = 0
  return new ObjectTracker({ newId: (start) => `${start.toString(36)}-0000000${++n}`, refreshMs: 10_000 })
}

t.test('an object seen in two frames is an event; it follows the object, gets better, enters zones, and ends when gone', async (t) => {
  const tr = tracker()
  const zones = { porch: [[0, 0], [100, 0], [100, 120], [0, 120]] as Array<[number, number]> }
  t.same(tr.observe('door', 1_000, [det('person', 200)], zones, ms(2_000)), [], 'one frame is not yet an event')
  const [created] = tr.observe('door', 1_200, [det('person', 190, 0.7)], zones, ms(2_000))
  t.same(created, {
    type: 'new',
    before: null,
    after: { id: 'rs-00000001', camera: 'door', label: 'person', score: 0.8, box: [190, 50, 230, 100], zones: [], start: 1_000, end: null }
  }, 'the best score so far, the latest box, from when it was first seen')
  t.same(tr.observe('door', 1_400, [det('person', 185, 0.82)], zones, ms(2_000)), [], 'a small change is no news')
  const [better] = tr.observe('door', 1_600, [det('person', 180, 0.9)], zones, ms(2_000))
  t.match(better, { type: 'update', before: { score: 0.8 }, after: { score: 0.9, box: [180, 50, 220, 100] } })
  // It walks left, 20 px a frame (each box overlaps the last by a third), into the porch.
  const walk = [160, 140, 120, 100, 80].flatMap((x, i) => tr.observe('door', 1_800 + i * 100, [det('person', x, 0.5)], zones, ms(2_000)))
  t.same(walk, [], 'walking, outside the porch: no news')
  const [entered] = tr.observe('door', 2_300, [det('person', 60, 0.5)], zones, ms(2_000))
  t.match(entered, { type: 'update', after: { zones: ['porch'], score: 0.9, box: [60, 50, 100, 100] } }, 'it entered the porch (its bottom centre did)')
  t.same(tr.inView('door'), new Map([['person', 1]]))
  t.same(tr.expire(4_000), [], 'not gone for long enough')
  const ended = tr.expire(4_400)
  t.match(ended, [{ type: 'end', before: { end: null }, after: { end: 2_300, zones: ['porch'] } }], 'it ends at when it was last seen')
  t.same(tr.inView('door'), new Map())
})

t.test('matching: by label and overlap, best pairs first; a one-frame blip never becomes an event', async (t) => {
  const tr = tracker()
  tr.observe('c', 0, [det('car', 0), det('car', 300), det('dog', 0)], undefined, ms(1_000))
  const changes = tr.observe('c', 100, [det('car', 5), det('dog', 2), det('car', 302)], undefined, ms(1_000))
  t.same(changes.map((c) => [c.type, c.after.label, c.after.box[0]]).sort(), [['new', 'car', 302], ['new', 'car', 5], ['new', 'dog', 2]],
    'three objects: two cars apart, a dog where a car is')
  t.same(tr.observe('c', 200, [det('bird', 500)], undefined, ms(1_000)), [])
  t.same(tr.observe('c', 300, [], undefined, ms(1_000)), [], 'the bird was seen once: dropped, no event')
  t.same([...tr.inView('c')], [['car', 2], ['dog', 1]])
  t.same(tr.stopCamera('c').map((c) => c.type), ['end', 'end', 'end'], 'a camera that stops ends its events')
})

t.test('a model that finds hundreds of things a frame follows at most MAX_TRACKS_PER_CAMERA', async (t) => {
  const tr = tracker()
  const many = Array.from({ length: 500 }, (_, i) => det('x', i * 50))
  tr.observe('c', 0, many, undefined, ms(1_000))
  t.equal(tr.observe('c', 100, many, undefined, ms(1_000)).length, MAX_TRACKS_PER_CAMERA)
})

t.test('an object in view long enough is announced again every refreshMs', async (t) => {
  const tr = tracker()
  tr.observe('c', 0, [det('x', 0)], undefined, ms(60_000))
  tr.observe('c', 100, [det('x', 0)], undefined, ms(60_000))
  t.same(tr.observe('c', 5_000, [det('x', 0)], undefined, ms(60_000)), [])
  t.match(tr.observe('c', 10_100, [det('x', 0)], undefined, ms(60_000)), [{ type: 'update' }])
})

t.test('an object missed in enough results in a row, and unseen long enough, ends; a frame or two missed does not', async (t) => {
  const tr = tracker()
  const ending: Ending = { afterMs: 1_000, afterMisses: 3, staleMs: 60_000 }
  tr.observe('c', 0, [det('x', 0)], undefined, ending)
  tr.observe('c', 100, [det('x', 0)], undefined, ending)
  t.same(tr.observe('c', 200, [], undefined, ending), [])
  t.same(tr.observe('c', 300, [], undefined, ending), [])
  t.same(tr.observe('c', 400, [det('x', 0)], undefined, ending), [], 'two misses, then seen again: the same event')
  for (const at of [500, 600, 700]) t.same(tr.observe('c', at, [], undefined, ending), [], 'three misses, but seen 300 ms ago')
  t.match(tr.observe('c', 1_400, [], undefined, ending), [{ type: 'end', after: { end: 400 } }], 'missed again, unseen for 1 s: ended')
})

t.test('zones: where an object stands (its box\'s bottom centre), inside a polygon', async (t) => {
  const triangle: Array<[number, number]> = [[0, 0], [100, 0], [0, 100]]
  t.ok(insidePolygon(10, 10, triangle))
  t.notOk(insidePolygon(90, 90, triangle))
  t.same(zonesOf([0, 0, 20, 20], { tri: triangle, far: [[500, 500], [600, 500], [600, 600]] }), ['tri'])
  t.same(zonesOf([0, 0, 20, 20], undefined), [])
})
