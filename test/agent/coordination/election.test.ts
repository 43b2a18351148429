import t from 'tap'
import { CLOCK_SLACK_MS, Election, MAX_TERM_STEP, capabilityOf, compareCandidates, plausibleTerm, termBasis, termCeiling } from '../../../agent/coordination/election.ts'
import type { Candidate, ElectionChange } from '../../../agent/coordination/election.ts'
import type { Member, MemberState } from '../../../agent/membership/membership.ts'
import { healthOf } from '../../../agent/membership/membership.ts'
import type { HealthBeacon } from '../../../protocols/health.ts'
import { sampleBeacon } from '../../helpers/beacon.ts'

function member (peerId: string, state: MemberState = 'alive', beacon: Partial<HealthBeacon> = {}): Member {
  return { peerId, name: peerId, state, role: 'member', addrs: [], lastSeen: 0, health: healthOf(sampleBeacon(beacon)) }
}

const candidate = (m: Member): Candidate => ({
  peerId: m.peerId,
  eligible: m.health?.eligible ?? false,
  priority: m.health?.priority ?? 0,
  capability: capabilityOf(m.health ?? { accelerators: [], cpus: 1, memTotalBytes: 0 })
})

/** One node's election, with a clock, over a membership the test edits. */
function node (selfId: string, members: Member[], { term = 0, settleUntil = 0, claimGraceMs = undefined as number | undefined } = {}) {
  let now = 1_000
  const election = new Election({ selfId, term, settleUntil, claimGraceMs, now: () => now })
  const changes: string[] = []
  election.on('change', (c: ElectionChange) => { changes.push(`${c.coordinator ?? 'none'}@${c.term}`) })
  const self = () => candidate(members.find((m) => m.peerId === selfId) as Member)
  const rank = (a: string, b: string) => compareCandidates(
    candidate(members.find((m) => m.peerId === a) as Member), candidate(members.find((m) => m.peerId === b) as Member))
  return {
    election,
    changes,
    evaluate: (clash = false) => election.evaluate(members, self(), clash),
    claim: (peerId: string, claimTerm: number) => election.observeClaim(peerId, claimTerm, rank),
    advance: (ms: number) => { now += ms }
  }
}

t.test('ranking: eligible, then priority, then capability, then the lower peer id', async (t) => {
  const c = (peerId: string, eligible: boolean, priority: number, capability: number): Candidate => ({ peerId, eligible, priority, capability })
  const sorted = [c('a', false, 9, 9), c('b', true, 0, 1), c('c', true, 1, 0), c('d', true, 0, 5), c('e', true, 0, 5)].sort(compareCandidates)
  t.same(sorted.map((x) => x.peerId), ['c', 'd', 'e', 'b', 'a'])
  t.ok(capabilityOf({ accelerators: ['nvidia'], cpus: 1, memTotalBytes: 0 }) > capabilityOf({ accelerators: [], cpus: 64, memTotalBytes: 512 * 1024 ** 3 }),
    'an accelerator outweighs any number of cores and memory')
})

t.test('the best-ranked member claims term + 1 once settled; the others follow its claim', async (t) => {
  const members = [member('a'), member('b', 'alive', { priority: 5 }), member('c')]
  const b = node('b', members, { term: 3, settleUntil: 2_000 })
  const a = node('a', members, { term: 3 })
  t.equal(b.evaluate(), false, 'no claim while settling')
  b.advance(1_000)
  t.equal(b.evaluate(), true, 'claims once settled')
  t.equal(b.election.term, 4, 'one above the highest term it knows')
  t.ok(b.election.isCoordinator)
  t.equal(b.evaluate(), false, 'holding: nothing more to do')
  t.equal(a.evaluate(), false, 'a is not the best: it waits for a claim')
  t.equal(a.election.coordinator, null)
  a.claim('b', 4)
  t.equal(a.election.coordinator, 'b')
  t.equal(a.election.term, 4)
  t.same(a.changes, ['b@4'])
})

t.test('a claim above every term anyone reported, and ineligible members never claim', async (t) => {
  const members = [member('a', 'alive', { term: 9 }), member('b', 'alive', { eligible: false, priority: 100 })]
  const a = node('a', members, { term: 2 })
  t.equal(a.evaluate(), true)
  t.equal(a.election.term, 10, 'above the term 9 in a beacon')
  const b = node('b', members)
  t.equal(b.evaluate(), false, 'an ineligible member never claims, whatever its priority')
})

t.test('a higher term always wins; a lower one is ignored; the same term is settled by rank', async (t) => {
  const members = [member('a', 'alive', { priority: 2 }), member('b', 'alive', { priority: 1 }), member('c')]
  const c = node('c', members, { term: 5 })
  c.claim('b', 6)
  t.equal(c.election.coordinator, 'b')
  t.equal(c.claim('a', 5), false, 'an older term is no clash, just stale')
  t.equal(c.election.coordinator, 'b')
  t.equal(c.claim('a', 6), true, 'two claims of one term: a clash')
  t.equal(c.election.coordinator, 'a', 'the better-ranked claimant stands meanwhile')
  t.equal(c.claim('b', 6), true)
  t.equal(c.election.coordinator, 'a', 'a worse-ranked claimant does not displace it')

  c.claim('a', 7)
  t.equal(c.election.term, 7, 'the same coordinator claiming a higher term moves everyone to it')
  t.equal(c.election.coordinator, 'a')

  const a = node('a', members, { term: 5 })
  t.equal(a.evaluate(), true)
  t.equal(a.election.term, 6)
  const clash = a.claim('b', 6)
  t.equal(clash, true)
  t.ok(a.election.isCoordinator, 'the better-ranked holder keeps the term…')
  t.equal(a.evaluate(clash), true, '…and claims past the clash')
  t.equal(a.election.term, 7, 'so that one term has one coordinator')
  a.claim('b', 8)
  t.equal(a.election.coordinator, 'b', 'a stale coordinator steps down on a higher term')
  t.equal(a.evaluate(), true, 'and, ranking best, claims again above it')
  t.equal(a.election.term, 9)
})

t.test('a dead or departed coordinator loses the lease; a suspect one keeps it', async (t) => {
  const members = [member('a', 'alive', { priority: 2 }), member('b', 'alive', { priority: 1 }), member('c')]
  const b = node('b', members, { term: 1 })
  b.claim('a', 2)
  ;(members[0] as Member).state = 'suspect'
  t.equal(b.evaluate(), false, 'one missed ping is not enough to take over')
  t.equal(b.election.coordinator, 'a')
  ;(members[0] as Member).state = 'dead'
  t.equal(b.evaluate(), true, 'dead: the next best claims at once')
  t.same(b.changes, ['a@2', 'none@2', 'b@3'])
  const c = node('c', members, { term: 3 })
  c.claim('b', 3)
  c.election.observeRelease('b')
  t.equal(c.election.coordinator, null, 'a coordinator that beacons as a member holds nothing')
  c.election.observeRelease('x')
  t.equal(c.election.term, 3)
})

t.test('the term ceiling: a box goes by the lower median of the plausible terms it and its live members report', async (t) => {
  const max = Number.MAX_SAFE_INTEGER
  const now = Date.parse('2026-01-01')
  t.equal(termBasis(5, [member('self', 'alive', { term: 99 })], 'self', now), 5, 'its own beacon does not count twice')
  t.equal(termBasis(5, [member('rogue', 'alive', { term: 1e9 })], 'self', now), 5, 'one member alone cannot drag it up')
  t.equal(termBasis(5, [member('b', 'alive', { term: 60 }), member('c', 'alive', { term: 60 })], 'self', now), 60, 'a box back from a long absence catches up with the mesh')
  t.equal(termBasis(5, [member('b', 'alive', { term: 60 }), member('rogue', 'alive', { term: 1e9 })], 'self', now), 60, 'half of them cannot either')
  t.equal(termBasis(5, [member('b', 'dead', { term: 60 }), member('c', 'left', { term: 60 })], 'self', now), 5, 'dead and departed members report nothing')
  t.equal(termBasis(70, [member('b', 'alive', { term: 60 }), member('c', 'alive', { term: 60 })], 'self', now), 70, 'never below its own')
  const sybils = ['s1', 's2', 's3'].map((id) => member(id, 'alive', { term: max }))
  t.equal(termBasis(5, [member('b', 'alive', { term: 5 }), ...sybils], 'self', now), 5, 'made-up members reporting the top of the range are not counted, however many')
  t.equal(termBasis(5, [...sybils.map((m) => ({ ...m, health: { ...m.health, term: plausibleTerm(now) } }) as Member)], 'self', now), plausibleTerm(now), 'terms up to the clock (and a day) are')
  t.equal(termCeiling(5, [], 'self', 0), 5 + MAX_TERM_STEP)
  t.equal(termCeiling(5, [], 'self', now), now, 'or the clock: any honest term is below it')
  t.equal(termCeiling(5, sybils, 'self', now), now, 'whatever made-up members report')
  t.equal(termCeiling(plausibleTerm(now), [], 'self', now), plausibleTerm(now), 'and never past the clock and a day, even from a term a rogue pushed there')
  t.equal(plausibleTerm(now), now + CLOCK_SLACK_MS)
  t.ok(Number.MAX_SAFE_INTEGER - plausibleTerm(now) > 8e15, 'which leaves room for claims for ever')
})

t.test('a box far behind takes an honest claim by the clock, with nobody to vouch for it', async (t) => {
  const members = [member('a', 'alive', { term: 50_000, priority: 5 }), member('b', 'alive', { term: 3 })]
  const b = node('b', members, { term: 3 })
  t.equal(b.election.ceiling(members), 3 + MAX_TERM_STEP, 'at 1 s past 1970 the clock is no help')
  b.advance(60_000)
  t.equal(b.election.ceiling(members), 61_000, 'a minute later it is')
  b.claim('a', 50_000)
  t.same({ term: b.election.term, coordinator: b.election.coordinator }, { term: 50_000, coordinator: 'a' })
})

t.test('a member reporting a term past the ceiling is no candidate, and no claim builds on its term', async (t) => {
  const max = Number.MAX_SAFE_INTEGER
  const members = [member('rogue', 'alive', { term: max, priority: 1000 }), member('b', 'alive', { term: 3 }), member('c', 'alive', { term: 3 })]
  const b = node('b', members, { term: 3 })
  t.equal(b.evaluate(), true, 'the rogue outranks b, but b claims: waiting for the rogue would stall elections')
  t.equal(b.election.term, 4, 'one above the highest acceptable term, not above the rogue\'s')
  const honest = [member('x', 'alive', { term: 3 + MAX_TERM_STEP - 1, priority: 1000 }), member('b', 'alive', { term: 3 })]
  const b2 = node('b', honest, { term: 3 })
  t.equal(b2.evaluate(), false, 'a member within the ceiling still outranks b')
})

t.test('a member that ranks best but never claims is passed over after the grace, until it claims', async (t) => {
  const members = [member('rogue', 'alive', { priority: 1000 }), member('b', 'alive', { priority: 1 }), member('c', 'alive')]
  const b = node('b', members, { term: 3, claimGraceMs: 2_000 })
  const c = node('c', members, { term: 3, claimGraceMs: 2_000 })
  t.equal(b.evaluate(), false, 'the rogue ranks best: b waits for its claim')
  b.advance(1_999)
  t.equal(b.evaluate(), false, 'within the grace')
  b.advance(1)
  t.equal(b.evaluate(), true, 'past it, b (the next best) claims')
  t.same(b.changes, ['b@4'])
  c.evaluate()
  c.advance(2_000)
  t.equal(c.evaluate(), false, 'c passes the rogue over too, and b ranks above c')
  c.claim('b', 4)
  t.equal(c.election.coordinator, 'b', 'and follows b')
  c.claim('rogue', 5)
  t.same({ coordinator: c.election.coordinator, term: c.election.term }, { coordinator: 'rogue', term: 5 }, 'a claim from it is taken as ever (a higher term wins)')
  t.equal(c.evaluate(), false, 'and, holding the term, it is never passed over')
  t.equal(c.election.coordinator, 'rogue')
})
