import { join } from 'node:path'
import Database from 'better-sqlite3'
import t from 'tap'
import { createLogger } from '../../agent/logger.ts'
import type { Member } from '../../agent/membership.ts'
import { Store } from '../../agent/store.ts'

const log = createLogger('silent')
const member = (peerId: string, state: Member['state'] = 'alive'): Member => ({
  peerId, name: `n-${peerId}`, state, role: 'member', addrs: ['/ip4/10.0.0.1/tcp/4001'], lastSeen: 1234,
  health: { cpuPct: 1, load1: 0.1, memUsedBytes: 1, memTotalBytes: 2, diskFreeBytes: 3, uptimeS: 4, tempC: null, accelerators: [], version: '0.1.0' }
})

t.test('migrates once, in WAL mode, and keeps members and events across reopen', async (t) => {
  const path = join(t.testdir(), 'noodle.db')
  const store = new Store({ path, log })
  t.equal(store.schemaVersion, 1)
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
  t.equal(again.schemaVersion, 1, 'reopening does not migrate again')
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

t.test('started, it drops events older than 30 days; stopped, it closes', async (t) => {
  const store = new Store({ path: join(t.testdir(), 'noodle.db'), log })
  store.recordEvent('old', null, {}, Date.now() - 31 * 86_400_000)
  store.recordEvent('recent', null, {}, Date.now() - 29 * 86_400_000)
  store.start()
  t.same(store.events().map((e) => e.type), ['recent'])
  store.stop()
  t.throws(() => store.events(), 'closed after stop')
})
