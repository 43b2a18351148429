import t from 'tap'
import { createLogger } from '../../../common/logger.ts'
import { Election } from '../../../agent/coordination/election.ts'
import { ElectionService, TERM_STATE_KEY } from '../../../agent/coordination/election-service.ts'
import type { CoordinationRecords } from '../../../agent/coordination/coordination-records.ts'
import { MemberBus } from '../../../agent/membership/bus.ts'
import { Membership } from '../../../agent/membership/membership.ts'
import { MetricsStore } from '../../../agent/metrics/metrics.ts'
import type { EventLog } from '../../../agent/store/event-log.ts'
import type { HealthBeacon } from '../../../protocols/health.ts'
import { TOPICS } from '../../../protocols/topics.ts'
import { REJECTED_METRIC } from '../../../protocols/validator.ts'
import { eventually } from '../../helpers/eventually.ts'
import { sampleBeacon } from '../../helpers/beacon.ts'

const OPTIONS = { probeAfterMs: 1_000, probeTimeoutMs: 250, unresponsiveAfterMs: 30_000, reapAfterMs: 60_000 }

/** An election service over a real table and election, with fakes for the records, the event log and the bus's listeners. */
function service (t: { teardown: (fn: () => void) => void }, { settleUntil = Infinity } = {}) {
  const membership = new Membership({
    self: { peerId: 'self', name: 'self', state: 'alive', role: 'member', addrs: [], lastSeen: 0, health: null },
    options: OPTIONS
  })
  // The clock at 0: the term ceiling is MAX_TERM_STEP (1000) above the basis.
  const election = new Election({ selfId: 'self', term: 0, settleUntil, now: () => 0 })
  const metrics = new MetricsStore()
  const saved: Array<[string, unknown]> = []
  const recorded: Array<{ type: string, peer: string | null, data: unknown }> = []
  const records = { putState: (key: string, value: unknown) => { saved.push([key, value]) } } as unknown as CoordinationRecords
  const events = { record: (type: string, peer: string | null, data: unknown) => { recorded.push({ type, peer, data }) } } as unknown as EventLog
  const bus = new MemberBus()
  let news = 0
  bus.on('news', () => { news++ })
  const elections = new ElectionService({
    election, membership, records, events, metrics, bus, log: createLogger('silent'), self: () => ({ peerId: 'self', eligible: true, priority: 0, capability: 0 })
  })
  t.teardown(() => { elections.stop() })
  let seq = 0
  /** A member's newest beacon: the table takes it, then the bus carries it, as the membership service does. */
  const beacon = (peerId: string, fields: Partial<HealthBeacon>): void => {
    const b = sampleBeacon({ name: peerId, seq: ++seq, ...fields })
    membership.observeBeacon(peerId, b)
    bus.emit('beacon', peerId, b)
  }
  return { membership, election, metrics, saved, recorded, bus, elections, beacon, news: () => news }
}

t.test('beacons and claims on the bus move the election; its outcome is saved, recorded and announced', async (t) => {
  const s = service(t)
  s.elections.start()
  s.beacon('alpha', { role: 'coordinator', term: 8, priority: 5 })
  t.same({ coordinator: s.election.coordinator, term: s.election.term }, { coordinator: 'alpha', term: 8 }, 'a coordinator\'s beacon is its claim')
  t.same(s.saved, [[TERM_STATE_KEY, 8]], 'the new term is saved')
  t.same(s.recorded, [{ type: 'coordinator.change', peer: 'alpha', data: { term: 8, previous: null, reason: 'claimed' } }])
  t.equal(s.news(), 1, 'news: our beacon should say who coordinates')
  t.equal(s.membership.self.role, 'member')

  // A decision's claim (from the orchestrator), past the ceiling: refused, and counted under the decisions topic.
  s.bus.emit('claim', 'alpha', 8 + 2_000, TOPICS.optimizationDecisions)
  // A claim by a peer that is not a member: ignored.
  s.bus.emit('claim', 'stranger', 9, TOPICS.optimizationDecisions)
  // A member reports a term it cannot have: not a claim, but counted under the beacon topic.
  s.beacon('bravo', { role: 'member', term: 5_000 })
  t.same(s.metrics.series(REJECTED_METRIC), { [`term-jump/${TOPICS.optimizationDecisions}`]: 1, [`term-jump/${TOPICS.nodeHealth}`]: 1 })
  t.same({ coordinator: s.election.coordinator, term: s.election.term }, { coordinator: 'alpha', term: 8 }, 'nothing taken')

  // A decision at a term we had not heard of: taken.
  s.bus.emit('claim', 'alpha', 9, TOPICS.optimizationDecisions)
  t.same({ coordinator: s.election.coordinator, term: s.election.term, saved: s.saved.at(-1) }, { coordinator: 'alpha', term: 9, saved: [TERM_STATE_KEY, 9] })

  // The coordinator beacons as a member: it stepped down.
  s.beacon('alpha', { role: 'member', term: 9, priority: 5 })
  t.same({ coordinator: s.election.coordinator, term: s.election.term }, { coordinator: null, term: 9 })
  t.same(s.recorded.at(-1), { type: 'coordinator.change', peer: null, data: { term: 9, previous: 'alpha', reason: 'the coordinator stepped down' } })
  t.equal(s.saved.length, 2, 'the same term: not saved again')
  t.equal(s.news(), 3)
})

t.test('alone and settled, this node claims the next term and says so', async (t) => {
  const s = service(t, { settleUntil: 0 })
  s.elections.start()
  const seen = await eventually(() => ({ coordinator: s.election.coordinator, term: s.election.term, role: s.membership.self.role }),
    { coordinator: 'self', term: 1, role: 'coordinator' as const }, { timeoutMs: 2_000, intervalMs: 20 })
  t.same(seen, { coordinator: 'self', term: 1, role: 'coordinator' }, 'the evaluation backstop found nobody better')
  t.same(s.saved, [[TERM_STATE_KEY, 1]])
  t.same(s.recorded, [{ type: 'coordinator.change', peer: 'self', data: { term: 1, previous: null, reason: 'no coordinator: we rank best' } }])
  t.equal(s.news(), 1)
})

t.test('stopped, it hears nothing', async (t) => {
  const s = service(t)
  s.elections.start()
  t.same([s.bus.listenerCount('beacon'), s.bus.listenerCount('claim'), s.membership.listenerCount('change'), s.election.listenerCount('change')], [1, 1, 1, 1])
  s.elections.stop()
  t.same([s.bus.listenerCount('beacon'), s.bus.listenerCount('claim'), s.membership.listenerCount('change'), s.election.listenerCount('change')], [0, 0, 0, 0])
  s.beacon('alpha', { role: 'coordinator', term: 8 })
  t.same({ coordinator: s.election.coordinator, term: s.election.term, saved: s.saved }, { coordinator: null, term: 0, saved: [] })
})
