import t from 'tap'
import { createLogger } from '../../common/logger.ts'
import { Membership } from '../../agent/membership/membership.ts'
import { DEFAULT_ACCEPTS, WorkItemSchema } from '../../protocols/work.ts'
import type { WorkItemInput } from '../../protocols/work.ts'
import type { ModelExchange } from '../../runtime/model-exchange.ts'
import type { CompileResult, ModelRuntime } from '../../runtime/model-runtime.ts'
import { ModelStandby } from '../../runtime/model-standby.ts'
import type { ModelRecord } from '../../runtime/registry.ts'
import { sampleBeacon } from '../helpers/beacon.ts'

const log = createLogger('silent')
const id = (c: string) => c.repeat(64)
const item = (input: WorkItemInput) => WorkItemSchema.parse(input)

function setup ({ accelerators = 0, here = [] as string[], failing = [] as string[], maxBytes = undefined as number | undefined } = {}) {
  const membership = new Membership({
    self: { peerId: 'self', name: 'me', state: 'alive', role: 'member', addrs: [], lastSeen: Date.now(), health: null },
    options: { probeAfterMs: 1000, probeTimeoutMs: 250, unresponsiveAfterMs: 10_000, reapAfterMs: 60_000 }
  })
  const present = new Set(here)
  const fetched: Array<{ id: string, alsoAsk: readonly string[] }> = []
  // Every copy here is a standby copy of 1000 bytes.
  const runtime = {
    lookup: (m: string) => present.has(m) ? ({ id: m }) as ModelRecord : undefined,
    list: () => [...present].map((m) => ({ id: m, origin: 'standby', sizeBytes: 1000 }))
  } as unknown as ModelRuntime
  const exchange = {
    fetch: async (m: string, alsoAsk: readonly string[]) => {
      fetched.push({ id: m, alsoAsk })
      if (failing.includes(m)) throw new Error('nobody has it')
      present.add(m)
      return { id: m } as CompileResult
    }
  } as unknown as ModelExchange
  const standby = new ModelStandby({ membership, running: () => [], runtime, exchange, selfId: 'self', accelerators, accepts: DEFAULT_ACCEPTS, intervalMs: 60_000, log, maxBytes })
  return { membership, standby, fetched }
}

t.test('keeps a copy of the models of movable work elsewhere, from its home, once', async (t) => {
  const { membership, standby, fetched } = setup({ here: [id('e')], failing: [id('d')] })
  membership.observeBeacon('home-1', sampleBeacon({
    name: 'one',
    work: [
      item({ id: 'yard', kind: 'camera', model: id('a') }),
      item({ id: 'yard-2', kind: 'camera', model: id('a') }),
      item({ id: 'usb', kind: 'camera', model: id('b'), source: '/dev/video0' }),
      item({ id: 'pinned', kind: 'camera', model: id('c'), pinned: true }),
      item({ id: 'gpu-only', kind: 'model', model: id('f'), accelerator: 'required' }),
      item({ id: 'by-path', kind: 'camera', model: '/models/det.onnx' }),
      item({ id: 'have', kind: 'camera', model: id('e') })
    ]
  }))
  membership.observeBeacon('home-2', sampleBeacon({ name: 'two', work: [item({ id: 'gate', kind: 'camera', model: id('d') })] }))
  t.same(standby.wanted(), [{ id: id('a'), home: 'home-1' }, { id: id('d'), home: 'home-2' }],
    'not pinned work, devices, work needing an accelerator this box lacks, files on another box, or models already here')

  standby.start()
  await t.resolveMatch(waitUntil(() => fetched.length === 2), true)
  await standby.stop()
  t.same(fetched, [{ id: id('a'), alsoAsk: ['home-1'] }, { id: id('d'), alsoAsk: ['home-2'] }], 'asked of the work\'s home, one at a time')
  t.same(standby.wanted(), [], 'fetched, or failed and not tried again at once')
  t.same(standby.wanted(Date.now() + 61_000), [{ id: id('d'), home: 'home-2' }], 'a failed fetch is tried again a minute later')
})

t.test('a box with an accelerator also keeps models of work that requires one', async (t) => {
  const { membership, standby } = setup({ accelerators: 1 })
  membership.observeBeacon('home-1', sampleBeacon({ work: [item({ id: 'gpu-only', kind: 'model', model: id('f'), accelerator: 'required' })] }))
  t.same(standby.wanted(), [{ id: id('f'), home: 'home-1' }])
})

async function waitUntil (check: () => boolean): Promise<boolean> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 5))
  return check()
}

t.test('keeps no copy for work its remoteWork policy refuses, nor for cameras it has no credentials for', async (t) => {
  const { membership, standby } = setup()
  membership.observeBeacon('home-1', sampleBeacon({
    work: [
      item({ id: 'movie', kind: 'camera', source: 'lavfi:movie=/etc/passwd', model: id('a') }),
      item({ id: 'locked', kind: 'camera', source: 'rtsp://192.0.2.10/x', model: id('b') }),
      item({ id: 'open', kind: 'camera', source: 'rtsp://192.0.2.11/x', model: id('c') })
    ],
    accepts: { ...DEFAULT_ACCEPTS, credentials: ['locked'] }
  }))
  t.same(standby.wanted(), [{ id: id('c'), home: 'home-1' }])
})

t.test('standby copies stop at models.standbyMaxBytes: members\' work cannot fill the disk', async (t) => {
  const { membership, standby, fetched } = setup({ maxBytes: 1500 })
  membership.observeBeacon('home-1', sampleBeacon({
    name: 'one',
    work: ['a', 'b', 'c'].map((c) => item({ id: `cam-${c}`, kind: 'camera', model: id(c) }))
  }))
  standby.start()
  await t.resolveMatch(waitUntil(() => fetched.length === 2), true)
  await standby.stop()
  t.same(fetched.map((f) => f.id), [id('a'), id('b')], 'the second copy went past the cap: no third is fetched')
  t.same(standby.wanted().map((w) => w.id), [id('c')], 'though it is still wanted')
})
