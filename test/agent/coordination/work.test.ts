import t from 'tap'
import { UNABLE_MEMORY_MS, WorkRegistry } from '../../../agent/coordination/work.ts'
import type { Decision } from '../../../protocols/decisions.ts'
import { DEFAULT_ACCEPTS, WorkItemSchema } from '../../../protocols/work.ts'
import type { WorkItemInput } from '../../../protocols/work.ts'

const item = (input: WorkItemInput) => WorkItemSchema.parse(input)
const decision = (action: Decision['action'], work: WorkItemInput, home = 'elsewhere'): Decision =>
  ({ v: 1, type: 'decision', id: 'd', term: 1, target: 'me', action, work: item(work), home, reason: 'test', at: 1, seq: 0 })

t.test('runs its own work from the start; applies run and stop; refuses what must stay at home', async (t) => {
  const work = new WorkRegistry({ selfId: 'me', configured: [item({ id: 'own', kind: 'camera' })], accepts: DEFAULT_ACCEPTS })
  let changes = 0
  work.on('change', () => { changes++ })
  work.start()
  t.same(work.runningIds(), ['own'])
  t.same(work.apply(decision('run', { id: 'moved', kind: 'model' })), { outcome: 'applied', detail: 'started' })
  t.same(work.apply(decision('run', { id: 'moved', kind: 'model' })), { outcome: 'applied', detail: 'already running' })
  t.same(work.apply(decision('run', { id: 'usb', kind: 'camera', pinned: true })), { outcome: 'rejected', detail: 'the work is pinned to its home node', reason: 'refused-work' })
  t.match(work.apply(decision('run', { id: 'v4l', kind: 'camera', source: '/dev/video0' })), { outcome: 'rejected', detail: /is not a URL \(files and devices are opened only for work homed here\)/ })
  t.same(work.apply(decision('run', { id: 'mine', kind: 'camera', source: '/dev/video0', pinned: true }, 'me')).outcome, 'applied', 'unless this is its home')
  t.same(work.apply(decision('stop', { id: 'own', kind: 'camera' })), { outcome: 'applied', detail: 'was not running' }, 'a stop for another home\'s work of the same id')
  t.same(work.apply(decision('stop', { id: 'own', kind: 'camera' }, 'me')), { outcome: 'applied', detail: 'stopped' })
  t.same(work.apply(decision('stop', { id: 'gone', kind: 'camera' })), { outcome: 'applied', detail: 'was not running' })
  t.same(work.runningIds(), ['moved', 'mine'])
  t.equal(changes, 4, 'a change for start, each run and each stop that changed something')
  work.stop()
  t.same(work.running(), [])
})

t.test('advertises its own work with the model files compiled here named by id', async (t) => {
  const work = new WorkRegistry({ selfId: 'me', configured: [item({ id: 'cam', kind: 'camera', model: '/models/det.onnx' }), item({ id: 'other', kind: 'model', model: '/m.onnx' })], accepts: DEFAULT_ACCEPTS })
  let advertised = 0
  work.on('advertised', () => { advertised++ })
  work.modelCompiled('cam', 'a'.repeat(64))
  work.modelCompiled('cam', 'a'.repeat(64))
  work.modelCompiled('moved-here', 'b'.repeat(64))
  t.same(work.advertised().map((w) => w.model), ['a'.repeat(64), '/m.onnx'])
  t.equal(advertised, 1, 'once per change, and only for work configured here')
  t.equal(work.configured[0]?.model, '/models/det.onnx', 'the configuration itself is left as written')
})

t.test('work that cannot run here is listed for the beacon, and for a while after it left, then forgotten', async (t) => {
  let now = 1_000
  const work = new WorkRegistry({ selfId: 'me', configured: [item({ id: 'cam', kind: 'camera' })], accepts: DEFAULT_ACCEPTS, now: () => now })
  let advertised = 0
  work.on('advertised', () => { advertised++ })
  work.start()
  work.cannotRun('cam', 'cannot-run')
  work.cannotRun('cam', 'cannot-run')
  t.same([work.unableList(), advertised], [[{ work: 'cam', why: 'cannot-run' }], 1], 'listed, and news once')
  work.cannotRun('cam', null)
  t.same([work.unableList(), advertised], [[], 2], 'it runs again: taken back')
  work.cannotRun('cam', 'too-slow')
  t.same(work.apply(decision('stop', { id: 'cam', kind: 'camera' }, 'me')), { outcome: 'applied', detail: 'stopped' })
  now += UNABLE_MEMORY_MS - 1
  t.same(work.unableList(), [{ work: 'cam', why: 'too-slow' }], 'still said after it moved away, so it is not sent straight back')
  now += 1
  t.same(work.unableList(), [], 'forgotten after UNABLE_MEMORY_MS')
  work.cannotRun('cam', 'cannot-run')
  t.same(work.apply(decision('run', { id: 'cam', kind: 'camera' }, 'me')), { outcome: 'applied', detail: 'started' })
  t.same(work.unableList(), [], 'sent back (nowhere else could take it): tried afresh')
})
