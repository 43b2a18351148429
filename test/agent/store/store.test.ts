import { join } from 'node:path'
import Database from 'better-sqlite3'
import t from 'tap'
import { createLogger } from '../../../common/logger.ts'
import { healthOf } from '../../../agent/membership/membership.ts'
import type { Member } from '../../../agent/membership/membership.ts'
import { Store } from '../../../agent/store/store.ts'
import { sampleBeacon } from '../../helpers/beacon.ts'

const log = createLogger('silent')
const member = (peerId: string, state: Member['state'] = 'alive'): Member => ({
  peerId, name: `n-${peerId}`, state, role: 'member', addrs: ['/ip4/10.0.0.1/tcp/4001'], lastSeen: 1234,
  health: healthOf(sampleBeacon({ uptimeS: 4, load1: 0.1 }))
})

t.test('migrates once, in WAL mode, and keeps members and events across reopen', async (t) => {
  const path = join(t.testdir(), 'noodle.db')
  const store = new Store({ path, log })
  t.equal(store.schemaVersion, 9)
  store.saveMembers([member('a'), member('b', 'dead')])
  store.saveMembers([{ ...member('a'), state: 'left', health: null }])
  store.recordEvent('member.state', 'a', { to: 'left' }, 1000)
  store.recordEvent('other', null, { x: 1 }, 2000)
  store.close()
  store.close()

  const raw = new Database(path, { readonly: true })
  t.equal(raw.pragma('journal_mode', { simple: true }), 'wal')
  raw.close()

  const again = new Store({ path, log })
  t.teardown(() => { again.close() })
  t.equal(again.schemaVersion, 9, 'reopening does not migrate again')
  const members = again.loadMembers().sort((x, y) => x.peerId.localeCompare(y.peerId))
  t.same(members.map((m) => [m.peerId, m.state]), [['a', 'left'], ['b', 'dead']], 'upserts replace')
  t.equal(members[0]?.health, null)
  t.same(members[1]?.health, member('b').health, 'health survives as it was written')
  t.same(members[1]?.addrs, ['/ip4/10.0.0.1/tcp/4001'])
  t.same(again.events().map((e) => e.type), ['other', 'member.state'], 'newest first')
  t.match(again.events({ type: 'member.state' }), [{ peerId: 'a', at: 1000, data: { to: 'left' } }])
  t.equal(again.pruneEvents(1500), 1, 'events before the cut are pruned')
  t.equal(again.events().length, 1)
  again.deleteMembers(['a'])
  t.same(again.loadMembers().map((m) => m.peerId), ['b'])
})

t.test('keeps state across reopen, and decisions with their outcomes', async (t) => {
  const path = join(t.testdir(), 'noodle.db')
  const store = new Store({ path, log })
  t.equal(store.getState('election.term'), undefined)
  store.putState('election.term', 4)
  store.putState('election.term', 5)
  const d = { id: 'd1', term: 5, coordinator: 'c', target: 'a', action: 'run', workId: 'cam', reason: 'r', at: 10 }
  store.recordDecision(d)
  store.recordDecision({ ...d, reason: 'a repeat is ignored' })
  store.recordDecision({ ...d, id: 'd2', at: 20 })
  store.recordOutcome('d1', 'applied', 'started', 30)
  store.recordOutcome('unknown', 'applied', '', 30)
  store.close()
  const again = new Store({ path, log })
  t.teardown(() => { again.close() })
  t.equal(again.getState('election.term'), 5)
  t.same(again.decisions(), [
    { ...d, id: 'd2', at: 20, outcome: null, detail: null, outcomeAt: null },
    { ...d, outcome: 'applied', detail: 'started', outcomeAt: 30 }
  ], 'newest first, outcomes attached')
})

t.test('started, it drops events and decisions older than 30 days; stopped, it closes', async (t) => {
  const store = new Store({ path: join(t.testdir(), 'noodle.db'), log })
  store.recordDecision({ id: 'old', term: 1, coordinator: 'c', target: 'a', action: 'run', workId: 'w', reason: 'r', at: Date.now() - 31 * 86_400_000 })
  store.recordDecision({ id: 'new', term: 1, coordinator: 'c', target: 'a', action: 'run', workId: 'w', reason: 'r', at: Date.now() })
  store.recordEvent('old', null, {}, Date.now() - 31 * 86_400_000)
  store.recordEvent('recent', null, {}, Date.now() - 29 * 86_400_000)
  store.start()
  await store.prune()
  t.same(store.events().map((e) => e.type), ['recent'])
  t.same(store.decisions().map((d) => d.id), ['new'])
  store.stop()
  t.throws(() => store.events(), 'closed after stop')
})
