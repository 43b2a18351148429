import t from 'tap'
import { Membership } from '../../agent/membership.ts'
import type { Member, MemberChange } from '../../agent/membership.ts'
import type { HealthBeacon } from '../../protocols/health.ts'

const options = { suspectAfterMs: 1000, deadAfterMs: 3000, reapAfterMs: 60_000 }

function setup () {
  let now = 1_000_000
  const self: Member = { peerId: 'self', name: 'me', state: 'alive', role: 'member', addrs: [], lastSeen: now, health: null }
  const table = new Membership({ self, options, now: () => now })
  const changes: string[] = []
  table.on('change', (c: MemberChange) => { changes.push(`${c.member.name}:${c.from ?? 'new'}->${c.to}`) })
  return { table, changes, advance: (ms: number) => { now += ms; table.tick() }, now: () => now }
}

const beacon = (name: string, startedAt: number, seq: number, addrs: string[] = []): HealthBeacon => ({
  v: 1, name, version: '0.1.0', startedAt, seq, role: 'member', uptimeS: 1, cpuPct: 1, load1: 0,
  memUsedBytes: 1, memTotalBytes: 2, diskFreeBytes: 3, tempC: null, accelerators: [], addrs
})

t.test('beacons make members alive; silence makes them suspect, then dead; a beacon brings them back', async (t) => {
  const { table, changes, advance } = setup()
  t.equal(table.observeBeacon('p1', beacon('one', 1, 1, ['/ip4/10.0.0.9/tcp/4001'])), true, 'a new member is news')
  t.equal(table.observeBeacon('p1', beacon('one', 1, 2)), false, 'the next beacon is not')
  t.same(table.get('p1')?.addrs, ['/ip4/10.0.0.9/tcp/4001'], 'addresses are kept when a beacon has none')
  advance(999)
  t.equal(table.get('p1')?.state, 'alive')
  advance(1)
  t.equal(table.get('p1')?.state, 'suspect', 'suspect after suspectAfterMs of silence')
  advance(1999)
  t.equal(table.get('p1')?.state, 'suspect')
  advance(1)
  t.equal(table.get('p1')?.state, 'dead', 'dead after deadAfterMs of silence')
  t.equal(table.observeBeacon('p1', beacon('one', 1, 3)), true, 'coming back from dead is news')
  t.equal(table.get('p1')?.state, 'alive')
  t.same(changes, ['one:new->alive', 'one:alive->suspect', 'one:suspect->dead', 'one:dead->alive'])
})

t.test('stale and replayed beacons are ignored; a restart is news', async (t) => {
  const { table } = setup()
  table.observeBeacon('p1', beacon('one', 10, 5))
  t.equal(table.observeBeacon('p1', beacon('renamed', 10, 4)), false, 'an older seq is ignored')
  t.equal(table.observeBeacon('p1', beacon('renamed', 10, 5)), false, 'a replay is ignored')
  t.equal(table.get('p1')?.name, 'one')
  t.equal(table.observeBeacon('p1', beacon('renamed', 9, 99)), false, 'a beacon from an earlier run is ignored')
  t.equal(table.observeBeacon('p1', beacon('renamed', 11, 1)), true, 'a new run is news')
  t.equal(table.get('p1')?.name, 'renamed')
  t.equal(table.observeBeacon('self', beacon('me', 1, 1)), false, 'our own beacon is not a member update')
})

t.test('a leave is final for that run, a disconnect makes an alive member suspect', async (t) => {
  const { table, changes, advance } = setup()
  table.observeBeacon('p1', beacon('one', 10, 1))
  table.observeBeacon('p2', beacon('two', 10, 1))
  table.observeLeave('p1', { v: 1, type: 'member.leave', at: 1, startedAt: 10 })
  t.equal(table.get('p1')?.state, 'left')
  t.equal(table.observeBeacon('p1', beacon('one', 10, 2)), false, 'a late beacon of the run that left does not resurrect it')
  t.equal(table.get('p1')?.state, 'left')
  advance(5000)
  t.equal(table.get('p1')?.state, 'left', 'left members are never declared dead')
  table.observeLeave('p2', { v: 1, type: 'member.leave', at: 1, startedAt: 9 })
  t.equal(table.get('p2')?.state, 'dead', 'a leave from an older run is ignored')
  table.observeLeave('unknown', { v: 1, type: 'member.leave', at: 1, startedAt: 9 })
  t.equal(table.get('unknown'), undefined)
  t.equal(table.observeBeacon('p1', beacon('one', 11, 1)), true, 'a new run after leaving is news')
  t.equal(table.get('p1')?.state, 'alive')
  table.observeDisconnect('p1')
  t.equal(table.get('p1')?.state, 'suspect', 'every connection closed: suspect at once')
  table.observeDisconnect('p2')
  t.equal(table.get('p2')?.state, 'dead', 'a disconnect does not lift dead to suspect')
  t.match(changes, ['one:new->alive', 'two:new->alive', 'one:alive->left'])
})

t.test('dead and left members are reaped after reapAfterMs', async (t) => {
  const { table, advance } = setup()
  const reaped: string[] = []
  table.on('reap', (m) => { reaped.push(m.name) })
  table.observeBeacon('p1', beacon('one', 1, 1))
  advance(3000)
  t.equal(table.get('p1')?.state, 'dead')
  advance(56_999)
  t.ok(table.get('p1'), 'kept while under reapAfterMs')
  advance(1)
  t.equal(table.get('p1'), undefined, 'then forgotten')
  t.same(reaped, ['one'])
})

t.test('restored members are not vouched for, and are timed from the restart', async (t) => {
  const { table, advance, now } = setup()
  const old = (peerId: string, name: string, state: Member['state']): Member =>
    ({ peerId, name, state, role: 'member', addrs: [], lastSeen: now() - 3_600_000, health: null })
  table.restore([old('p1', 'was-alive', 'alive'), old('p2', 'was-left', 'left'), old('self', 'me', 'dead')])
  t.equal(table.get('p1')?.state, 'suspect', 'alive before the restart: suspect until heard from')
  t.equal(table.get('p2')?.state, 'left')
  t.equal(table.self.state, 'alive', 'a stored record of ourselves never overrides self')
  advance(2999)
  t.equal(table.get('p1')?.state, 'suspect', 'the restart itself does not make it dead')
  advance(1)
  t.equal(table.get('p1')?.state, 'dead')
})

t.test('list, count, self updates and dirty tracking', async (t) => {
  const { table } = setup()
  table.observeBeacon('p2', beacon('zulu', 1, 1))
  table.observeBeacon('p1', beacon('alpha', 1, 1))
  t.same(table.list().map((m) => m.name), ['alpha', 'me', 'zulu'], 'sorted by name')
  t.equal(table.count(), 3)
  t.equal(table.count('alive'), 3)
  t.same(table.takeDirty().map((m) => m.name).sort(), ['alpha', 'zulu'])
  t.same(table.takeDirty(), [], 'taken once')
  table.updateSelf({ addrs: ['/ip4/10.0.0.1/tcp/4001'] })
  t.same(table.self.addrs, ['/ip4/10.0.0.1/tcp/4001'])
  t.same(table.takeDirty().map((m) => m.peerId), ['self'])
})
