import { EventEmitter } from 'node:events'
import { multiaddr } from '@multiformats/multiaddr'
import t from 'tap'
import { createLogger } from '../../../common/logger.ts'
import { MemberBus } from '../../../agent/membership/bus.ts'
import { HealthReporter } from '../../../agent/membership/health-reporter.ts'
import type { HealthReporterComponents } from '../../../agent/membership/health-reporter.ts'
import type { HealthSample } from '../../../agent/membership/health.ts'
import { MAX_GROWN_INTERVAL_MS, RECORD_ANSWER_MS, beaconIntervalMs } from '../../../agent/membership/health-reporter.ts'
import { healthCodec } from '../../../protocols/health.ts'
import type { HealthBeacon, HealthWire } from '../../../protocols/health.ts'
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
  ingest: null, degraded: [], unable: [],
  links: []
}

/** A reporter over fakes: what it publishes, what it says on the bus, and what it logs. */
function reporter (t: { teardown: (fn: () => void) => void }, overrides: Partial<HealthReporterComponents> = {}) {
  const published: HealthWire[] = []
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
      if (codec.topic === healthCodec.topic) published.push(value as HealthWire)
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
    intervalPerMemberMs: 0,
    members: () => 1,
    startedAt: Date.now() - 5_000,
    describe: () => DESCRIBED,
    ...overrides
  })
  t.teardown(() => { health.stop() })
  return { health, published, own, lines, pubsub, bus, work, failPublish: () => { failPublish = true } }
}

const seqs = (beacons: Array<HealthBeacon | HealthWire>): number[] => beacons.map((b) => b.seq)
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

t.test('start beacons at once: the sample, what describe says, the addresses others can dial; the same beacon goes on the bus', async (t) => {
  const { health, published, own } = reporter(t)
  health.start()
  await sleep(0)
  t.equal(published.length, 1)
  t.match(published[0], { v: 2, seq: 1, cpuPm: 120, tempDc: 410, term: 3, role: 0, record: { name: 'alpha', version: '1.2.3', addrs: ['/ip4/10.0.0.5/tcp/4001'] } })
  t.ok((published[0]?.uptimeDs ?? 0) >= 50, 'uptime from startedAt')
  t.match(own, [{ v: 1, name: 'alpha', seq: 1, cpuPct: 12, tempC: 41, role: 'member', addrs: ['/ip4/10.0.0.5/tcp/4001'] }], 'own-beacon carries the whole beacon sent')
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
  t.same([bus.listenerCount('news'), bus.listenerCount('member-met'), work.listenerCount('change'), work.listenerCount('advertised')], [1, 1, 1, 1])
  health.stop()
  t.same([bus.listenerCount('news'), bus.listenerCount('member-met'), work.listenerCount('change'), work.listenerCount('advertised')], [0, 0, 0, 0], 'every listener removed')
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

const withRecord = (published: HealthWire[]): number[] => published.filter((w) => w.record !== undefined).map((w) => w.seq)

t.test('the record goes with the first beacon, to new listeners and members met, and when it changes; pulses otherwise, news included', async (t) => {
  let priority = 0
  const { health, published, bus, pubsub } = reporter(t, { intervalMs: 40, describe: () => ({ ...DESCRIBED, priority }) })
  health.start()
  await eventually(() => published.length, (n) => n >= 3, { timeoutMs: 2_000, intervalMs: 5 })
  t.same(withRecord(published), [1], 'the first beacon only')
  t.equal(new Set(published.map((w) => w.rev)).size, 1, 'every pulse names the same revision')
  bus.emit('news')
  await sleep(30)
  t.same(withRecord(published), [1], 'news (the coordinator changed): a pulse, early')
  bus.emit('member-met', 'p-new', true)
  t.equal((await eventually(() => withRecord(published), (seqs) => seqs.length >= 2, { timeoutMs: 2_000, intervalMs: 5 })).length, 2,
    'a member joined or came back: the record, early')
  pubsub.dispatchEvent(new CustomEvent('subscription-change', { detail: { subscriptions: [{ topic: TOPICS.nodeHealth, subscribe: true }] } }))
  t.equal((await eventually(() => withRecord(published), (seqs) => seqs.length >= 3, { timeoutMs: 2_000, intervalMs: 5 })).length, 3, 'a new listener: the record again')
  priority = 5
  const rev = published.at(-1)?.rev
  const changed = await eventually(() => published.find((w) => w.rev !== rev), (w) => w !== undefined, { timeoutMs: 2_000, intervalMs: 5 })
  t.match(changed, { record: { priority: 5 } }, 'a new revision comes with its record')
})

t.test('members whose record we lack are asked for in our next beacon, early, once', async (t) => {
  const { health, published, bus } = reporter(t)
  health.start()
  bus.emit('record-wanted', 'peer-a')
  bus.emit('record-wanted', 'peer-b')
  const asking = await eventually(() => published.find((w) => w.ask !== undefined), (w) => w !== undefined, { timeoutMs: 2_000, intervalMs: 5 })
  t.same(asking?.ask, ['peer-a', 'peer-b'], 'both asks in one beacon')
  bus.emit('news')
  t.equal((await eventually(() => published, (p) => p.length >= 3, { timeoutMs: 2_000, intervalMs: 5 })).at(-1)?.ask, undefined, 'asked once')
  for (let i = 0; i < 20; i++) bus.emit('record-wanted', `peer-${i}`)
  const many = await eventually(() => published.at(-1), (w) => w?.ask !== undefined, { timeoutMs: 2_000, intervalMs: 5 })
  t.equal(many?.ask?.length, 16, 'sixteen asks at most in one beacon (the wire\'s limit); the others ask again later')
})

t.test('a member asking for our record in a loop gets it at most once a second', async (t) => {
  const { health, published, bus } = reporter(t)
  health.start()
  const started = performance.now()
  while (performance.now() - started < 2_500) {
    bus.emit('record-asked', 'hostile')
    await sleep(10)
  }
  t.equal(withRecord(published).length, 3, `the first beacon's and one per ${RECORD_ANSWER_MS} ms after it, for ~250 asks in 2.5 s`)
  t.equal(published.length, 3, 'and no other beacon')
})

t.test('a peer subscribing, or a member restarting, in a loop gets our record at most once a second; a member never met gets it at once', async (t) => {
  const { health, published, bus, pubsub } = reporter(t)
  health.start()
  const started = performance.now()
  let i = 0
  while (performance.now() - started < 2_500) {
    if (i++ % 2 === 0) pubsub.dispatchEvent(new CustomEvent('subscription-change', { detail: { subscriptions: [{ topic: TOPICS.nodeHealth, subscribe: true }] } }))
    else bus.emit('member-met', 'restarter', false)
    await sleep(10)
  }
  t.equal(withRecord(published).length, 3, `the first beacon's and one per ${RECORD_ANSWER_MS} ms after it, for ~250 events in 2.5 s`)
  const before = published.length
  bus.emit('member-met', 'newcomer', true)
  t.same(await eventually(() => published.slice(before).filter((w) => w.record !== undefined).length, 1, { timeoutMs: 200, intervalMs: 5 }), 1,
    'a newcomer: our record within the early-beacon delay, not the second')
})

t.test('an ask heard within a second of our last record is answered when the second is up, not dropped', async (t) => {
  const { health, published, bus } = reporter(t)
  health.start()
  await sleep(200)
  const asked = performance.now()
  bus.emit('record-asked', 'newcomer')
  const answer = await eventually(() => withRecord(published), (seqs) => seqs.length >= 2, { timeoutMs: 2_000, intervalMs: 5 })
  t.same(answer, [1, 2], 'answered')
  const waited = performance.now() - asked
  t.ok(waited >= RECORD_ANSWER_MS - 200 - 30, `not before a second from the first record was up (${Math.round(waited)} ms after the ask)`)
})

t.test('the interval grows with the mesh: intervalMs, or intervalPerMemberMs per live member where that is longer', async (t) => {
  t.same([1, 5, 8, 16, 100].map((n) => beaconIntervalMs(1_000, 125, n)), [1_000, 1_000, 1_000, 2_000, 12_500])
  t.equal(beaconIntervalMs(1_000, 0, 500), 1_000, '0: always intervalMs')
  t.same([100, 1_024].map((n) => beaconIntervalMs(1_000, 300, n)), [MAX_GROWN_INTERVAL_MS, MAX_GROWN_INTERVAL_MS], 'grown at most to 30 s, made-up members or not')
  t.equal(beaconIntervalMs(60_000, 300, 1_024), 60_000, 'an intervalMs set longer stands')
  let members = 16
  const { health, published } = reporter(t, { intervalMs: 50, intervalPerMemberMs: 25, members: () => members })
  t.equal(health.intervalNowMs(), 400)
  health.start()
  await sleep(600)
  t.equal(published.length, 2, 'sixteen members: every 400 ms')
  members = 2
  t.equal(health.intervalNowMs(), 50, 'a small mesh: intervalMs')
})
