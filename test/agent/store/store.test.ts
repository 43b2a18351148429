import { join } from 'node:path'
import Database from 'better-sqlite3'
import t from 'tap'
import { createLogger } from '../../../common/logger.ts'
import { healthOf } from '../../../agent/membership/membership.ts'
import type { Member } from '../../../agent/membership/membership.ts'
import { CoordinationRecords } from '../../../agent/coordination/coordination-records.ts'
import { MemberRecords } from '../../../agent/membership/member-records.ts'
import { EventLog } from '../../../agent/store/event-log.ts'
import { Store } from '../../../agent/store/store.ts'
import { sampleBeacon } from '../../helpers/beacon.ts'

const log = createLogger('silent')
const member = (peerId: string, state: Member['state'] = 'alive'): Member => ({
  peerId, name: `n-${peerId}`, state, role: 'member', addrs: ['/ip4/10.0.0.1/tcp/4001'], lastSeen: 1234,
  health: healthOf(sampleBeacon({ uptimeS: 4, load1: 0.1 }))
})
/** The store with the records of the subsystems these tests write through. */
function open (path: string) {
  const store = Store.open({ path, log })
  return { store, members: new MemberRecords({ store }), events: new EventLog({ store }), records: new CoordinationRecords({ store }) }
}

t.test('migrates once, in WAL mode, and keeps members and events across reopen', async (t) => {
  const path = join(t.testdir(), 'noodle.db')
  const { store, members: saved, events } = open(path)
  t.equal(store.schemaVersion, 12)
  saved.save([member('a'), member('b', 'dead')])
  saved.save([{ ...member('a'), state: 'left', health: null }])
  events.record('member.state', 'a', { to: 'left' }, 1000)
  events.record('other', null, { x: 1 }, 2000)
  store.close()
  store.close()

  const raw = new Database(path, { readonly: true })
  t.equal(raw.pragma('journal_mode', { simple: true }), 'wal')
  raw.close()

  const again = open(path)
  t.teardown(() => { again.store.close() })
  t.equal(again.store.schemaVersion, 12, 'reopening does not migrate again')
  const members = again.members.load().sort((x, y) => x.peerId.localeCompare(y.peerId))
  t.same(members.map((m) => [m.peerId, m.state]), [['a', 'left'], ['b', 'dead']], 'upserts replace')
  t.equal(members[0]?.health, null)
  t.same(members[1]?.health, member('b').health, 'health survives as it was written')
  t.same(members[1]?.addrs, ['/ip4/10.0.0.1/tcp/4001'])
  t.same(again.events.list().map((e) => e.type), ['other', 'member.state'], 'newest first')
  t.match(again.events.list({ type: 'member.state' }), [{ peerId: 'a', at: 1000, data: { to: 'left' } }])
  t.match(await again.store.prune(1500 + 30 * 86_400_000), { events: 1 }, 'the store\'s retention drops the events older than 30 days')
  t.same(again.events.list().map((e) => e.at), [2000])
  again.members.remove(['a'])
  t.same(again.members.load().map((m) => m.peerId), ['b'])
})

t.test('keeps state across reopen, and decisions with their outcomes', async (t) => {
  const path = join(t.testdir(), 'noodle.db')
  const { store, records } = open(path)
  t.equal(records.getState('election.term'), undefined)
  records.putState('election.term', 4)
  records.putState('election.term', 5)
  const d = { id: 'd1', term: 5, coordinator: 'c', target: 'a', action: 'run', workId: 'cam', reason: 'r', at: 10 }
  records.recordDecision(d)
  records.recordDecision({ ...d, reason: 'a repeat is ignored' })
  records.recordDecision({ ...d, id: 'd2', at: 20 })
  records.recordOutcome('d1', 'applied', 'started', 30)
  records.recordOutcome('unknown', 'applied', '', 30)
  store.close()
  const again = open(path)
  t.teardown(() => { again.store.close() })
  t.equal(again.records.getState('election.term'), 5)
  t.same(again.records.decisions(), [
    { ...d, id: 'd2', at: 20, outcome: null, detail: null, outcomeAt: null },
    { ...d, outcome: 'applied', detail: 'started', outcomeAt: 30 }
  ], 'newest first, outcomes attached')
})

t.test('started, it drops events and decisions older than 30 days; stopped, it closes', async (t) => {
  const { store, records, events } = open(join(t.testdir(), 'noodle.db'))
  records.recordDecision({ id: 'old', term: 1, coordinator: 'c', target: 'a', action: 'run', workId: 'w', reason: 'r', at: Date.now() - 31 * 86_400_000 })
  records.recordDecision({ id: 'new', term: 1, coordinator: 'c', target: 'a', action: 'run', workId: 'w', reason: 'r', at: Date.now() })
  events.record('old', null, {}, Date.now() - 31 * 86_400_000)
  events.record('recent', null, {}, Date.now() - 29 * 86_400_000)
  store.start()
  await store.prune()
  t.same(events.list().map((e) => e.type), ['recent'])
  t.same(records.decisions().map((d) => d.id), ['new'])
  store.stop()
  t.throws(() => events.list(), 'closed after stop')
})

t.test('a store closed in the middle of a prune pass ends the pass quietly', async (t) => {
  const { store, events } = open(join(t.testdir(), 'noodle.db'))
  const old = Date.now() - 31 * 86_400_000
  store.database.transaction(() => { for (let i = 0; i < 1500; i++) events.record('old', null, {}, old) })()
  const pass = store.prune()
  store.close()
  t.same(await pass, {}, 'nothing more is tried once the database is closed')
  t.same(await store.prune(), {}, 'and a pass on a closed store does nothing')
})

t.test('a failed write is reported to the disk status and logged at most every few seconds, never thrown', async (t) => {
  const observed: unknown[] = []
  const logged: Array<{ msg: string, failedWrites: number }> = []
  const store = Store.open({
    path: join(t.testdir(), 'noodle.db'),
    log: createLogger('error', { write: (line: string) => { logged.push(JSON.parse(line)) } }),
    disk: { observe: (err) => { observed.push(err); return true } }
  })
  t.teardown(() => { store.close() })
  const full = Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' })
  store.write(() => { throw full })
  store.write(() => { throw full })
  t.same(observed, [full, full], 'each failure is reported')
  t.same(logged.map((l) => [l.msg, l.failedWrites]), [['a write to the store failed; the agent goes on without it', 1]], 'logged once within the interval')
  const events = new EventLog({ store })
  store.write(() => { events.record('after', null, {}) })
  t.same(events.list().map((e) => e.type), ['after'], 'writes that succeed go on')
})
