import t from 'tap'
import { FAR_SILENCE, Membership, VERDICT_SEQ_SLACK } from '../../../agent/membership/membership.ts'
import type { Member, MemberChange } from '../../../agent/membership/membership.ts'
import { sampleBeacon } from '../../helpers/beacon.ts'

const options = { probeAfterMs: 1000, probeTimeoutMs: 250, unresponsiveAfterMs: 10_000, reapAfterMs: 60_000 }

function setup () {
  const self: Member = { peerId: 'self', name: 'me', state: 'alive', role: 'member', addrs: [], lastSeen: 1, health: null }
  const table = new Membership({ self, options, now: () => 1_000_000 })
  const changes: string[] = []
  table.on('change', (c: MemberChange) => { changes.push(`${c.member.name}:${c.from ?? 'new'}->${c.to} (${c.reason})`) })
  table.observeBeacon('p1', sampleBeacon({ name: 'one', startedAt: 5, seq: 2 }))
  table.observeBeacon('p2', sampleBeacon({ name: 'two', startedAt: 5, seq: 9 }))
  changes.length = 0
  return { table, changes }
}

t.test('unsorted() lists every member, self included; beaconOf() names the beacon a verdict is made against', async (t) => {
  const { table } = setup()
  t.same(table.unsorted().map((m) => m.peerId).sort(), ['p1', 'p2', 'self'])
  t.same(table.beaconOf('p1'), { startedAt: 5, seq: 2 })
  t.equal(table.beaconOf('nobody'), undefined)
})

t.test('a suspect verdict, then a dead one, against the beacon we hold', async (t) => {
  const { table, changes } = setup()
  t.equal(table.observeVerdict('p1', 'suspect', { startedAt: 5, seq: 2 }, 'unanswered'), true)
  t.equal(table.observeVerdict('p1', 'suspect', { startedAt: 5, seq: 2 }, 'unanswered'), false, 'the same verdict again is no news')
  t.equal(table.observeVerdict('p1', 'dead', { startedAt: 5, seq: 2 }, 'not refuted'), true)
  t.equal(table.observeVerdict('p1', 'dead', { startedAt: 5, seq: 2 }, 'not refuted'), false, 'the dead stay dead')
  t.same(changes, ['one:alive->suspect (unanswered)', 'one:suspect->dead (not refuted)'])
  t.equal(table.observeBeacon('p1', sampleBeacon({ name: 'one', startedAt: 5, seq: 3 })), true, 'its newer beacon brings it back')
  t.equal(table.get('p1')?.state, 'alive')
})

t.test('a newer beacon refutes a verdict; a dead verdict on a member held alive only makes it suspect', async (t) => {
  const { table, changes } = setup()
  t.equal(table.observeVerdict('p2', 'suspect', { startedAt: 5, seq: 8 }, 'unanswered'), false, 'made against an older beacon: void')
  t.equal(table.observeVerdict('p2', 'dead', { startedAt: 4, seq: 99 }, 'not refuted'), false, 'made against an older run: void')
  t.equal(table.observeVerdict('p2', 'dead', { startedAt: 5, seq: 9 }, 'not refuted'), true, 'taken, but…')
  t.equal(table.get('p2')?.state, 'suspect', '…we never heard it suspected: suspect, and it will refute')
  t.equal(table.observeVerdict('self', 'dead', { startedAt: 0, seq: 0 }, 'x'), false, 'never about ourselves (we refute instead)')
  t.equal(table.observeVerdict('nobody', 'suspect', { startedAt: 0, seq: 0 }, 'x'), false, 'nor about strangers')
  t.same(changes, ['two:alive->suspect (not refuted)'])
})

t.test('partial mesh: a closed connection brings a probe, not suspicion (connections are closed on purpose)', async (t) => {
  for (const partialMesh of [false, true]) {
    const self: Member = { peerId: 'self', name: 'me', state: 'alive', role: 'member', addrs: [], lastSeen: 1, health: null }
    const table = new Membership({ self, options: { ...options, partialMesh }, now: () => 1_000_000 })
    table.observeBeacon('p1', sampleBeacon({ name: 'one', startedAt: 5, seq: 2 }))
    table.observeDisconnect('p1')
    t.same([table.get('p1')?.state, table.takeProbes()], partialMesh ? ['alive', ['p1']] : ['suspect', ['p1']],
      partialMesh ? 'partial: still alive, probed at once' : 'full: suspect, probed at once')
  }
})

t.test('probeOnVerdict: a probe at once, no change of state; void against an older beacon, about ourselves, strangers or the dead', async (t) => {
  const { table, changes } = setup()
  t.equal(table.probeOnVerdict('p1', { startedAt: 5, seq: 2 }), true)
  t.same([table.get('p1')?.state, table.takeProbes()], ['alive', ['p1']])
  t.equal(table.probeOnVerdict('p2', { startedAt: 5, seq: 8 }), false, 'an older beacon than ours')
  t.equal(table.probeOnVerdict('p2', { startedAt: 4, seq: 99 }), false, 'an older run')
  t.equal(table.probeOnVerdict('p2', { startedAt: 6, seq: 1 }), false, 'a run we do not know')
  t.equal(table.probeOnVerdict('p2', { startedAt: 5, seq: 9 + VERDICT_SEQ_SLACK + 1 }), false, 'too far ahead of ours')
  t.equal(table.probeOnVerdict('p2', { startedAt: 5, seq: 9 + VERDICT_SEQ_SLACK }), true, 'a few pulses ahead: its maker heard them first')
  t.equal(table.probeOnVerdict('self', { startedAt: 0, seq: 0 }), false)
  t.equal(table.probeOnVerdict('nobody', { startedAt: 0, seq: 0 }), false)
  table.observeProbe('p1', 'refused')
  t.equal(table.probeOnVerdict('p1', { startedAt: 5, seq: 2 }), false, 'the dead: nothing to probe')
  t.same(changes, ['one:alive->dead (connection refused: nothing listens at its addresses)'])
})

t.test('partial mesh: a member we hold no connection to is probed for its silence FAR_SILENCE times later; a full mesh makes no difference', async (t) => {
  for (const partialMesh of [true, false]) {
    let now = 1_000_000
    const self: Member = { peerId: 'self', name: 'me', state: 'alive', role: 'member', addrs: [], lastSeen: 1, health: null }
    const table = new Membership({ self, options: { ...options, partialMesh }, now: () => now })
    // Both ids make us the pair's pinger (pairLeader): in a full mesh, each is pinged after probeAfterMs.
    table.observeBeacon('neighbour', sampleBeacon({ name: 'near', startedAt: 5, seq: 1 }))
    table.observeBeacon('far', sampleBeacon({ name: 'far', startedAt: 5, seq: 1 }))
    const near = new Set(['neighbour'])
    t.equal(table.msUntilProbe(1, near), options.probeAfterMs)
    now += options.probeAfterMs
    t.same(table.takeProbes(1, near), partialMesh ? ['neighbour'] : ['neighbour', 'far'], `${partialMesh ? 'partial' : 'full'}: one probeAfterMs`)
    if (!partialMesh) continue
    t.equal(table.msUntilProbe(1, near), (FAR_SILENCE - 1) * options.probeAfterMs, 'the far one is due later')
    now += (FAR_SILENCE - 1) * options.probeAfterMs
    t.same(table.takeProbes(1, near), ['far'], 'FAR_SILENCE × probeAfterMs')
  }
})

t.test('partial mesh: where beacons come slower than FAR_SILENCE probe waits, a far member is probed once two are missed', async (t) => {
  let now = 1_000_000
  const self: Member = { peerId: 'self', name: 'me', state: 'alive', role: 'member', addrs: [], lastSeen: 1, health: null }
  const lives: number[] = []
  const table = new Membership({ self, options: { ...options, partialMesh: true, beaconIntervalMs: (live) => { lives.push(live); return 4_800 } }, now: () => now })
  table.observeBeacon('far', sampleBeacon({ name: 'far', startedAt: 5, seq: 1 }))
  t.equal(table.msUntilProbe(1, new Set()), 9_600, 'two beacon intervals')
  t.same(lives, [2], 'for the live members, this node included')
  now += 9_599
  t.same(table.takeProbes(1, new Set()), [])
  now += 1
  t.same(table.takeProbes(1, new Set()), ['far'])
})
