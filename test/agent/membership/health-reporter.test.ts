import { EventEmitter } from 'node:events'
import { multiaddr } from '@multiformats/multiaddr'
import t from 'tap'
import { createLogger } from '../../../common/logger.ts'
import { MemberBus } from '../../../agent/membership/bus.ts'
import { HealthReporter } from '../../../agent/membership/health-reporter.ts'
import type { HealthReporterComponents } from '../../../agent/membership/health-reporter.ts'
import type { HealthSample } from '../../../agent/membership/health.ts'
import { healthCodec } from '../../../protocols/health.ts'
import type { HealthBeacon } from '../../../protocols/health.ts'
import { TOPICS } from '../../../protocols/topics.ts'
import { eventually } from '../../helpers/eventually.ts'

const SAMPLE: HealthSample = { cpuPct: 12, load1: 0.5, memUsedBytes: 100, memTotalBytes: 400, diskFreeBytes: 9, tempC: 41, accelerators: [] }
const DESCRIBED: ReturnType<HealthReporterComponents['describe']> = {
  role: 'member',
  term: 3,
  eligible: true,
  priority: 0,
  cpus: 4,
  providers: ['cpu'],
  models: [],
  work: [],
  accepts: { sources: [], maxModelBytes: 0, credentials: [] },
  running: [],
  ingest: null
}

/** A reporter over fakes: what it publishes, what it says on the bus, and what it logs. */
function reporter (t: { teardown: (fn: () => void) => void }, overrides: Partial<HealthReporterComponents> = {}) {
  const published: HealthBeacon[] = []
  const own: HealthBeacon[] = []
  const lines: string[] = []
  const pubsub = new EventTarget()
  const bus = new MemberBus()
  bus.on('own-beacon', (b) => { own.push(b) })
  const work = new EventEmitter<{ change: [], advertised: [] }>()
  let failPublish = false
  const mesh = {
    node: {
      getMultiaddrs: () => [multiaddr('/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'), multiaddr('/ip4/10.0.0.5/tcp/4001')],
      services: { pubsub }
    },
    publish: async (codec: { topic: string }, value: unknown) => {
      if (failPublish) throw new Error('no route')
      if (codec.topic === healthCodec.topic) published.push(value as HealthBeacon)
    }
  }
  const health = new HealthReporter({
    mesh: mesh as never,
    bus,
    work,
    sampler: { sample: () => SAMPLE },
    log: createLogger('debug', { write: (line: string) => { lines.push(line); return true } } as never),
    name: 'alpha',
    version: '1.2.3',
    intervalMs: 60_000,
    startedAt: Date.now() - 5_000,
    describe: () => DESCRIBED,
    ...overrides
  })
  t.teardown(() => { health.stop() })
  return { health, published, own, lines, pubsub, bus, work, failPublish: () => { failPublish = true } }
}

const seqs = (beacons: HealthBeacon[]): number[] => beacons.map((b) => b.seq)
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

t.test('start beacons at once: the sample, what describe says, the addresses others can dial; the same beacon goes on the bus', async (t) => {
  const { health, published, own } = reporter(t)
  health.start()
  await sleep(0)
  t.equal(published.length, 1)
  t.match(published[0], { v: 1, name: 'alpha', version: '1.2.3', seq: 1, cpuPct: 12, tempC: 41, term: 3, role: 'member', addrs: ['/ip4/10.0.0.5/tcp/4001'] })
  t.ok((published[0]?.uptimeS ?? 0) >= 5, 'uptime from startedAt')
  t.same(own, published, 'own-beacon carries exactly the beacon sent')
  t.same(health.announceAddrs(), ['/ip4/10.0.0.5/tcp/4001'], 'loopback left out when there is another address, /p2p taken off')
})

t.test('news, a change of work and a new listener each bring a beacon early; a burst shares one', async (t) => {
  const { health, published, bus, work, pubsub } = reporter(t)
  health.start()
  bus.emit('news')
  bus.emit('news')
  work.emit('change')
  t.same(seqs(await eventually(() => published, (p) => p.length >= 2, { timeoutMs: 2_000, intervalMs: 5 })), [1, 2], 'three reasons within a few ms: one early beacon')
  work.emit('advertised')
  t.same(seqs(await eventually(() => published, (p) => p.length >= 3, { timeoutMs: 2_000, intervalMs: 5 })), [1, 2, 3], 'our advertised work changed: another')
  pubsub.dispatchEvent(new CustomEvent('subscription-change', { detail: { subscriptions: [{ topic: TOPICS.systemEvents, subscribe: true }] } }))
  pubsub.dispatchEvent(new CustomEvent('subscription-change', { detail: { subscriptions: [{ topic: TOPICS.nodeHealth, subscribe: false }] } }))
  await sleep(60)
  t.same(seqs(published), [1, 2, 3], 'another topic, or leaving ours: no beacon')
  pubsub.dispatchEvent(new CustomEvent('subscription-change', { detail: { subscriptions: [{ topic: TOPICS.nodeHealth, subscribe: true }] } }))
  t.same(seqs(await eventually(() => published, (p) => p.length >= 4, { timeoutMs: 2_000, intervalMs: 5 })), [1, 2, 3, 4], 'a peer started listening to beacons: one for it')
})

t.test('stopped, it listens to nothing and sends nothing', async (t) => {
  const { health, published, bus, work } = reporter(t)
  health.start()
  t.same([bus.listenerCount('news'), work.listenerCount('change'), work.listenerCount('advertised')], [1, 1, 1])
  health.stop()
  t.same([bus.listenerCount('news'), work.listenerCount('change'), work.listenerCount('advertised')], [0, 0, 0], 'every listener removed')
  bus.emit('news')
  await sleep(60)
  t.same(seqs(published), [1])
})

t.test('a beacon that cannot be built or sent is logged; the reporter goes on', async (t) => {
  let fail = true
  const { health, published, lines, bus, failPublish } = reporter(t, { describe: () => { if (fail) throw new Error('disk gone'); return DESCRIBED } })
  health.start()
  t.same(published, [], 'nothing sent')
  t.match(lines.join(''), /"msg":"health beacon not built"/)
  fail = false
  bus.emit('news')
  t.same(seqs(await eventually(() => published, (p) => p.length >= 1, { timeoutMs: 2_000, intervalMs: 5 })), [2], 'the next beacon goes out (the failed one used up seq 1)')
  failPublish()
  bus.emit('news')
  t.match(await eventually(() => lines.join(''), (text) => text.includes('health beacon not published'), { timeoutMs: 2_000, intervalMs: 5 }), /"msg":"health beacon not published"/)
})
