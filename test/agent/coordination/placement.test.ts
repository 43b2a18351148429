import t from 'tap'
import { place } from '../../../agent/coordination/placement.ts'
import type { HomedWork, NodeCapacity } from '../../../agent/coordination/placement.ts'
import { WorkItemSchema } from '../../../protocols/work.ts'
import type { WorkItemInput } from '../../../protocols/work.ts'

const GiB = 1024 ** 3
const box = (peerId: string, o: Partial<NodeCapacity> = {}): NodeCapacity =>
  ({ peerId, accelerators: 0, cpus: 4, cpuPct: 10, memFreeBytes: 4 * GiB, running: [], modelMs: new Map(), ...o })
const work = (home: string, item: WorkItemInput): HomedWork => ({ home, item: WorkItemSchema.parse(item) })
const where = (nodes: NodeCapacity[], items: HomedWork[], takeLimitPct?: number) =>
  Object.fromEntries(place(nodes, items, takeLimitPct).map((p) => [p.workId, p.node]))

t.test('work stays at home, where its data is, while home has headroom', async (t) => {
  const placements = place([box('a'), box('b', { cpuPct: 0 })], [work('a', { id: 'cam', kind: 'camera', accelerator: 'none' })])
  t.same(placements, [{ workId: 'cam', node: 'a', reason: 'at home, where its data is' }])
})

t.test('work that wants an accelerator goes to one with headroom; work that needs one goes nowhere else', async (t) => {
  const nodes = [box('a'), box('gpu', { accelerators: 1 }), box('busy-gpu', { accelerators: 1, cpuPct: 85 })]
  t.same(where(nodes, [
    work('a', { id: 'detect', kind: 'camera', accelerator: 'preferred' }),
    work('a', { id: 'plain', kind: 'camera', accelerator: 'none' })
  ]), { detect: 'gpu', plain: 'a' })
  const [none] = place([box('a')], [work('a', { id: 'llm', kind: 'model', accelerator: 'required' })])
  t.same(none, { workId: 'llm', node: null, reason: 'no live node may run it' })
})

t.test('work moves off an overloaded node, and off a dead one (absent from the live nodes)', async (t) => {
  const item = { id: 'cam', kind: 'camera', accelerator: 'none' } as const
  t.same(where([box('a', { cpuPct: 95, running: ['cam'] }), box('b')], [work('a', item)]), { cam: 'b' }, 'over 90%: moved')
  t.same(where([box('a', { cpuPct: 85, running: ['cam'] }), box('b')], [work('a', item)]), { cam: 'a' }, 'under 90% it stays (hysteresis)')
  t.same(where([box('b', { cpuPct: 30 }), box('c')], [work('a', item)]), { cam: 'c' }, 'home dead: the node with most headroom')
})

t.test('pinned work stays home; capacity is used up as work is placed; nobody with room keeps work where it is', async (t) => {
  t.same(where([box('a', { cpuPct: 99 }), box('b')], [work('a', { id: 'usb', kind: 'camera', pinned: true })]), { usb: 'a' },
    'pinned: home even without headroom')
  const heavy = (id: string) => work('a', { id, kind: 'model', cpuPct: 200, accelerator: 'none' })
  const placed = place([box('a', { cpuPct: 0 }), box('b', { cpuPct: 0 })], [heavy('m1'), heavy('m2'), heavy('m3')])
  t.same(placed.map((p) => [p.workId, p.node, p.reason]), [
    ['m1', 'a', 'at home, where its data is'],
    ['m2', 'b', 'most headroom'],
    ['m3', 'a', 'no live node has headroom: left where it is']
  ], 'each node takes what fits under 80% (one model of 50% each); the third stays home, flagged')
  t.same(where([box('a', { cpuPct: 99 }), box('b', { cpuPct: 99, running: ['w'] })], [work('a', { id: 'w', kind: 'model' })]), { w: 'b' },
    'no room anywhere: it stays where it runs')
  t.same(where([box('a', { memFreeBytes: 0 }), box('b', { memFreeBytes: 0 })], [work('x', { id: 'w', kind: 'model' })]), { w: null },
    'home dead and no memory anywhere: unplaced')
  t.same(place([box('a', { cpuPct: 95 }), box('b', { cpuPct: 90 })], [work('x', { id: 'w', kind: 'model' })]),
    [{ workId: 'w', node: 'b', reason: 'its node and home are gone and no node has headroom: least loaded' }],
    'home dead and every node busy: the least loaded runs it rather than nobody')
  t.same(where([box('a', { cpuPct: 95 }), box('b', { cpuPct: 95 })], [work('a', { id: 'w', kind: 'model', cpuPct: 0 })], 100), { w: 'a' },
    'a higher CPU limit (coordinator.maxCpuPct) lets busy boxes take work')
})

t.test('the placement is deterministic: ties go to the lower peer id', async (t) => {
  const item = work('gone', { id: 'cam', kind: 'camera' })
  t.same(where([box('b'), box('a')], [item]), { cam: 'a' })
  t.same(where([box('a'), box('b')], [item]), { cam: 'a' })
})

t.test('work that leaves home goes to the box that measured its model fastest; speed alone never pulls it from home', async (t) => {
  const model = 'a'.repeat(64)
  const camera = work('home', { id: 'cam', kind: 'camera', model, accelerator: 'none' })
  const measured = (ms: number) => new Map([[model, ms]])
  t.same(where([box('home', { modelMs: measured(90) }), box('fast', { modelMs: measured(20) })], [camera]), { cam: 'home' },
    'a home with headroom keeps its work, however fast another box measured the model')
  t.same(place([box('b', { cpuPct: 0, modelMs: measured(90) }), box('c', { cpuPct: 50, modelMs: measured(20) })], [camera]),
    [{ workId: 'cam', node: 'c', reason: 'runs its model fastest (p50 20 ms), with headroom' }], 'home dead: the fastest box, even with less headroom')
  t.same(where([box('home', { cpuPct: 95, running: ['cam'] }), box('b', { modelMs: measured(90) }), box('c', { modelMs: measured(30) })], [camera]),
    { cam: 'c' }, 'home overloaded: the fastest box')
  t.same(where([box('b', { cpuPct: 0, modelMs: measured(20) }), box('c', { cpuPct: 0, modelMs: measured(60), running: ['cam'] })], [camera]),
    { cam: 'c' }, 'where it runs now, unless another box is far faster: moves are not free')
  t.same(where([box('b', { cpuPct: 50, modelMs: measured(90) }), box('c', { cpuPct: 0 })], [camera]), { cam: 'c' },
    'a box that has not measured the model yet is not held to be slower: headroom decides')
  t.same(where([box('b', { cpuPct: 0, modelMs: new Map([['f'.repeat(64), 1]]) }), box('c', { cpuPct: 50 })], [camera]), { cam: 'b' },
    'another model\'s latency says nothing: most headroom')
})

t.test('a node that says it cannot run the work, or too slowly, keeps it only if no other node may take it', async (t) => {
  const item = { id: 'cam', kind: 'camera', accelerator: 'none' } as const
  const cannot = new Map([['cam', 'cannot-run' as const]])
  const slow = new Map([['cam', 'too-slow' as const]])
  t.same(place([box('a', { running: ['cam'], unable: cannot }), box('b')], [work('a', item)]), [{ workId: 'cam', node: 'b', reason: 'most headroom; its node cannot run its model' }],
    'its detector cannot run at home: moved to the other node')
  t.same(place([box('a', { running: ['cam'], unable: cannot })], [work('a', item)]),
    [{ workId: 'cam', node: 'a', reason: 'its model cannot run there, and no other live node may run it: left where it is' }], 'nowhere else to go: it stays, failing visibly, rather than stopped')
  t.same(place([box('a', { running: ['cam'], unable: cannot }), box('b', { cpuPct: 95 })], [work('a', item)]),
    [{ workId: 'cam', node: 'b', reason: 'its node cannot run it and no node has headroom: least loaded' }], 'a node without headroom that can run it beats one that cannot')
  t.same(where([box('a', { running: ['cam'], unable: slow }), box('b', { cpuPct: 60 })], [work('a', item)]), { cam: 'b' }, 'too slow at home: another node with headroom takes it')
  t.same(place([box('a', { running: ['cam'], unable: slow }), box('b', { cpuPct: 95 })], [work('a', item)]),
    [{ workId: 'cam', node: 'a', reason: 'it runs too slowly there, and no other live node fits: left where it is' }], 'nobody else fits: it stays, slow rather than not at all')
  t.same(where([box('a', { unable: new Map([['other', 'cannot-run' as const]]) }), box('b')], [work('a', item)]), { cam: 'a' }, 'what a node says of other work does not move this one')
})
