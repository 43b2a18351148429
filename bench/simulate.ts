#!/usr/bin/env node
/**
 * Simulated mesh of N members, each running the real `Membership` and `Election` (pure, clock passed in) on a
 * discrete-event simulation: one simulated clock, a priority queue of timed events, a seeded PRNG (same --seed,
 * same run). It models TODAY's full-mesh design, as the baseline the partial-mesh design (issue 14) is compared to:
 *   - every member sends its beacon (health.intervalMs, from the config defaults, random phase) to every other
 *     member, and one out of turn 20 ms after news (a newcomer, a coordinator change), as HealthReporter does;
 *   - per message latency 1–5 ms; a lost packet (--loss) is retransmitted by TCP 200 ms later (beacons and pings
 *     ride TCP streams), a lost SYN fails the knock (its retransmit comes after the probe's timeout);
 *   - the prober every 50 ms: `takeProbes()`, then a ping plus a TCP knock, reported with `observeProbe()`;
 *   - election as ElectionService feeds it: beacons as claims or releases, re-evaluation on membership changes
 *     and every 250 ms (only through the settle wait and claim grace: after them, in these scenarios where every
 *     member claims when it ranks best, membership changes and claims decide; per node it costs O(N) 4 times a
 *     second), settle = 2 beacon intervals, claim grace = 4;
 *   - scenarios, in one run per N, from a settled mesh (every member's first beacon seeded at time 0: a join
 *     storm of N members starting at once is not simulated): steady state (messages and bytes), members losing
 *     power (stop sending, probes time out), the coordinator losing power (its detection counts among the
 *     deaths too), a random half|half partition (5 s) then a heal.
 * Bytes: a real beacon encoded by `healthCodec` (sampleBeacon with a mid-size box's figures) plus an estimate of
 * gossipsub's signed envelope; pings 32 bytes each way; the knock as one message of no payload. Payload bytes only
 * (no TCP/IP headers, no gossipsub control traffic: IHAVE/IWANT, GRAFT/PRUNE, heartbeats).
 * Left out: gossipsub itself (forwarding, duplicates, the mesh degree: every beacon goes straight to every
 * member), connection events (a power loss closes nothing, so `observeDisconnect` never fires; a SIGKILL, refused
 * at once, is not simulated), the dialer and member sync, event-loop lag (Lifeguard scale 1, no stall), CPU
 * cost of signatures, the store. Membership changes are evaluated once per simulated instant, not once per
 * change (the same outcome, for less). `Membership.list()` sorts by name,
 * which costs N log N per call; the election is handed the table unsorted instead (it sorts its own candidates),
 * read through the private map: the class has no seam for it. ElectionService's term-jump metric is not counted,
 * and a coordinator's beacon that only renews its claim (same holder, same term) is not followed by an evaluation.
 *
 *   node bench/simulate.ts [--sizes 100,300,1000] [--seed 1] [--loss 0.005] [--deaths 5] [--coordinator-deaths 3]
 *                          [--partitions 2] [--steady-s 10]
 *
 * For N ≥ 1000 it samples less, to end in ~4 minutes on 2 cores (a simulated second costs ~7 s there, mostly
 * the real observeBeacon, N² a second, and election evaluations): half the trials (at least 1 each) and a
 * steady window of 0.3 × --steady-s.
 */
import { parseArgs } from 'node:util'
import { ConfigSchema } from '../agent/config/schema.ts'
import { Membership, healthOf, isLive } from '../agent/membership/membership.ts'
import type { Member, MemberChange, ProbeOutcome } from '../agent/membership/membership.ts'
import { PROBE_TICK_MS } from '../agent/membership/prober.ts'
import { Election, candidateOf, capabilityOf, compareCandidates } from '../agent/coordination/election.ts'
import type { Candidate, ElectionChange } from '../agent/coordination/election.ts'
import { healthCodec } from '../protocols/health.ts'
import type { HealthBeacon } from '../protocols/health.ts'
import { sampleBeacon } from '../scripts/beacon.ts'
import { percentile } from '../common/stats.ts'

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '100,300,1000' },
    seed: { type: 'string', default: '1' },
    loss: { type: 'string', default: '0.005' },
    deaths: { type: 'string', default: '5' },
    'coordinator-deaths': { type: 'string', default: '3' },
    partitions: { type: 'string', default: '2' },
    'steady-s': { type: 'string', default: '10' }
  }
})
const sizes = (values.sizes ?? '').split(',').map(Number)
const loss = Number(values.loss)

const config = ConfigSchema.parse({ dataDir: '/nonexistent' })
const INTERVAL_MS = config.health.intervalMs
const { probeAfterMs, probeTimeoutMs, unresponsiveAfterMs, reapAfterMs, maxMembers } = config.membership
/** Not exported where they live (health-reporter.ts, election-service.ts, agent.ts): keep in step with them. */
const EARLY_BEACON_DELAY_MS = 20
const EVALUATE_INTERVAL_MS = 250
const SETTLE_BEACONS = 2
/** Linux's minimum TCP retransmission timeout: a lost segment arrives this much later. */
const RTO_MS = 200
/** gossipsub's signed message around the payload: from (38-byte peer id), seqno (8), topic, Ed25519 signature (64), framing. */
const ENVELOPE_BYTES = 38 + 8 + 2 + 20 + 2 + 64 + 8
const PING_BYTES = 32
/** The simulated clock starts at a plausible date: the election's term ceiling is anchored to the clock. */
const EPOCH = Date.UTC(2026, 10, 30)

const beaconBytes = healthCodec.encode(sampleBeacon({
  name: 'edge-box-0421', version: '0.1.0', startedAt: EPOCH, seq: 123456, uptimeS: 86400.5, cpuPct: 12.5, load1: 0.42,
  memUsedBytes: 1_234_567_890, memTotalBytes: 4_123_456_789, diskFreeBytes: 23_456_789_012, tempC: 48.5,
  addrs: ['/ip4/192.168.10.42/tcp/4001'], term: 17
})).length + ENVELOPE_BYTES

/** mulberry32: small, fast, seeded. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

interface SimEvent { t: number, seq: number, run: () => void }

/** Binary min-heap of events by time, then by insertion order (so same-time events run as scheduled). */
class EventQueue {
  private readonly heap: SimEvent[] = []
  private seq = 0
  now = EPOCH

  at (t: number, run: () => void): void {
    const heap = this.heap
    const e = { t, seq: this.seq++, run }
    let i = heap.push(e) - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!before(e, heap[p] as SimEvent)) break
      heap[i] = heap[p] as SimEvent
      i = p
    }
    heap[i] = e
  }

  after (ms: number, run: () => void): void {
    this.at(this.now + ms, run)
  }

  /** Runs every event up to `until` (simulated ms since EPOCH). */
  runUntil (until: number): void {
    const heap = this.heap
    while (heap.length > 0 && (heap[0] as SimEvent).t <= until) {
      const top = heap[0] as SimEvent
      const last = heap.pop() as SimEvent
      if (heap.length > 0) {
        let i = 0
        for (;;) {
          const l = 2 * i + 1
          if (l >= heap.length) break
          const r = l + 1
          const c = r < heap.length && before(heap[r] as SimEvent, heap[l] as SimEvent) ? r : l
          if (!before(heap[c] as SimEvent, last)) break
          heap[i] = heap[c] as SimEvent
          i = c
        }
        heap[i] = last
      }
      this.now = top.t
      top.run()
    }
    this.now = until
  }
}

function before (a: SimEvent, b: SimEvent): boolean {
  return a.t < b.t || (a.t === b.t && a.seq < b.seq)
}

interface SimNode {
  i: number
  id: string
  /** Powered: it sends, answers and is reachable. */
  up: boolean
  side: number
  membership: Membership
  election: Election
  self: Candidate
  base: HealthBeacon
  seq: number
  early: boolean
  evaluating: boolean
  /** Its table, unsorted (see the header). */
  table: Map<string, { member: Member }>
}

interface Results {
  deadFirst: number[]
  deadAll: number[]
  electionAfterDeath: number[]
  electionAfterHeal: number[]
  falseDeaths: number
  msgs: number
  bytes: number
  steadyMs: number
  simMs: number
  wallMs: number
}

function simulate (n: number, seed: number): Results {
  const wallStart = performance.now()
  const big = n >= 1000
  const trials = (name: 'deaths' | 'coordinator-deaths' | 'partitions') => big ? Math.max(1, Math.floor(Number(values[name]) / 2)) : Number(values[name])
  const steadyMs = (big ? 0.3 : 1) * Number(values['steady-s']) * 1000
  const random = prng(seed * 7919 + n)
  const q = new EventQueue()
  const latency = () => 1 + Math.floor(random() * 5)
  const lost = () => random() < loss
  const r: Results = { deadFirst: [], deadAll: [], electionAfterDeath: [], electionAfterHeal: [], falseDeaths: 0, msgs: 0, bytes: 0, steadyMs, simMs: 0, wallMs: 0 }
  let counting = false
  let partitioned = false
  const count = (msgs: number, bytes: number) => {
    if (counting) { r.msgs += msgs; r.bytes += bytes }
  }

  const nodes: SimNode[] = []
  const backstopUntil = EPOCH + (SETTLE_BEACONS + 3) * INTERVAL_MS
  const byId = new Map<string, SimNode>()
  const reachable = (a: SimNode, b: SimNode) => a.up && b.up && (!partitioned || a.side === b.side)

  // Agreement: how many powered members hold each coordinator; an open measurement ends when all hold one live one.
  const holders = new Map<string | null, number>()
  let upCount = n
  let agreement: { since: number, done: (ms: number) => void } | null = null
  const hold = (c: string | null, d: number) => { holders.set(c, (holders.get(c) ?? 0) + d) }
  const checkAgreement = () => {
    if (agreement == null) return
    for (const [c, k] of holders) {
      if (c != null && k === upCount && byId.get(c)?.up === true) {
        agreement.done(q.now - agreement.since)
        agreement = null
        return
      }
    }
  }
  // Deaths: of a member that lost power (detection), across the partition (expected), or else false.
  const detections = new Map<string, { since: number, times: number[] }>()

  const membersOf = (node: SimNode): Member[] => {
    const out: Member[] = []
    for (const t of node.table.values()) out.push(t.member)
    return out
  }
  const maybeCandidate = (member: Member | undefined) => member == null ? null : candidateOf(member)
  const rank = (node: SimNode) => (a: string, b: string): number => {
    const ca = a === node.id ? node.self : maybeCandidate(node.membership.get(a))
    const cb = b === node.id ? node.self : maybeCandidate(node.membership.get(b))
    if (ca == null || cb == null) return ca != null ? -1 : cb != null ? 1 : a < b ? -1 : 1
    return compareCandidates(ca, cb)
  }
  const evaluate = (node: SimNode, clash = false) => {
    if (node.up) node.election.evaluate(membersOf(node), node.self, clash)
  }
  let seeding = false
  const evaluateSoon = (node: SimNode) => {
    if (node.evaluating || seeding) return
    node.evaluating = true
    q.after(0, () => { node.evaluating = false; evaluate(node) })
  }
  const publishSoon = (node: SimNode) => {
    if (node.early || !node.up) return
    node.early = true
    q.after(EARLY_BEACON_DELAY_MS, () => { node.early = false; publish(node) })
  }

  const publish = (node: SimNode) => {
    if (!node.up) return
    const role = node.election.isCoordinator ? 'coordinator' : 'member'
    const beacon: HealthBeacon = { ...node.base, seq: ++node.seq, role, term: node.election.term, uptimeS: (q.now - EPOCH) / 1000 }
    node.membership.updateSelf({ role, health: healthOf(beacon) })
    count(n - 1, (n - 1) * beaconBytes)
    const buckets: SimNode[][] = [[], [], [], [], [], []]
    for (const to of nodes) {
      if (to === node || !reachable(node, to)) continue
      if (lost()) q.after(latency() + RTO_MS, () => { deliver(node, to, beacon) })
      else (buckets[latency()] as SimNode[]).push(to)
    }
    buckets.forEach((receivers, ms) => {
      if (receivers.length > 0) q.after(ms, () => { for (const to of receivers) deliver(node, to, beacon) })
    })
  }

  const deliver = (from: SimNode, to: SimNode, beacon: HealthBeacon) => {
    if (!reachable(from, to)) return
    if (to.membership.observeBeacon(from.id, beacon)) publishSoon(to)
    if (!to.membership.isLatest(from.id, beacon)) return
    if (beacon.role === 'coordinator') observeClaim(to, from.id, beacon.term)
    else to.election.observeRelease(from.id)
  }

  /** ElectionService.observeClaim, less its metric and log. */
  const observeClaim = (node: SimNode, peerId: string, term: number) => {
    const claimant = node.membership.get(peerId)
    if (claimant == null || !isLive(claimant.state) || candidateOf(claimant)?.eligible !== true) return
    const members = membersOf(node)
    if (term > node.election.ceiling(members)) return
    const { term: before, coordinator } = node.election
    const clash = node.election.observeClaim(peerId, term, rank(node))
    if (clash) evaluate(node, true)
    // A renewed claim (same holder, same term) changes nothing evaluate would see: skipped (N² a second otherwise).
    else if (node.election.term !== before || node.election.coordinator !== coordinator) evaluateSoon(node)
  }

  const probe = (node: SimNode, peerId: string) => {
    const target = byId.get(peerId) as SimNode
    count(3, 2 * PING_BYTES)
    let outcome: ProbeOutcome = 'timeout'
    let ms = probeTimeoutMs
    if (reachable(node, target)) {
      const rtt = latency() + latency() + (lost() ? RTO_MS : 0) + (lost() ? RTO_MS : 0)
      if (rtt <= probeTimeoutMs) {
        outcome = 'answered'
        ms = rtt
      } else if (!lost()) {
        outcome = 'knocked'
      }
    }
    q.after(ms, () => { if (node.up) node.membership.observeProbe(peerId, outcome) })
  }

  for (let i = 0; i < n; i++) {
    const id = `12D3KooW${(Math.floor(random() * 2 ** 48)).toString(36).padStart(10, '0')}${i}`
    const startedAt = EPOCH + i
    const base = sampleBeacon({ name: `box-${i}`, startedAt, addrs: [`/ip4/10.0.${i >> 8}.${i & 255}/tcp/4001`] })
    const self: Member = { peerId: id, name: base.name, state: 'alive', role: 'member', addrs: base.addrs, lastSeen: EPOCH, health: healthOf(base) }
    const membership = new Membership({ self, options: { probeAfterMs, probeTimeoutMs, unresponsiveAfterMs, reapAfterMs, maxMembers }, now: () => q.now })
    const election = new Election({ selfId: id, term: 0, settleUntil: EPOCH + SETTLE_BEACONS * INTERVAL_MS, claimGraceMs: (SETTLE_BEACONS + 2) * INTERVAL_MS, now: () => q.now })
    const candidate: Candidate = { peerId: id, eligible: true, priority: 0, capability: capabilityOf(base) }
    const table = (membership as unknown as { members: Map<string, { member: Member }> }).members
    const node: SimNode = { i, id, up: true, side: 0, membership, election, self: candidate, base, seq: 0, early: false, evaluating: false, table }
    nodes.push(node)
    byId.set(id, node)
    hold(null, 1)
    membership.on('change', (change: MemberChange) => {
      if (!node.up) return
      evaluateSoon(node)
      if (change.to !== 'dead') return
      const victim = byId.get(change.member.peerId) as SimNode
      const detection = detections.get(victim.id)
      if (!victim.up && detection != null) detection.times.push(q.now - detection.since)
      else if (!(partitioned && victim.side !== node.side)) r.falseDeaths++
    })
    election.on('change', (change: ElectionChange) => {
      if (!node.up) return
      if (change.coordinator !== change.previous) {
        hold(change.previous, -1)
        hold(change.coordinator, 1)
        checkAgreement()
      }
      node.membership.updateSelf({ role: change.coordinator === id ? 'coordinator' : 'member' })
      publishSoon(node)
    })
    // Timers with random phases, as agents started at slightly different moments.
    const every = (ms: number, phase: number, run: () => void) => {
      const tick = () => { if (node.up) { run(); q.after(ms, tick) } }
      q.at(EPOCH + phase, tick)
    }
    every(INTERVAL_MS, random() * INTERVAL_MS, () => { publish(node) })
    every(PROBE_TICK_MS, random() * PROBE_TICK_MS, () => { for (const p of membership.takeProbes(1)) probe(node, p) })
    // The backstop re-evaluation ends the settle wait and the claim grace; past them, changes and claims decide.
    every(EVALUATE_INTERVAL_MS, random() * EVALUATE_INTERVAL_MS, () => { if (q.now <= backstopUntil) evaluate(node) })
  }

  // A settled mesh from the start: every member has every other's first beacon at time 0 (the join storm of N
  // members starting at once is not a scenario here, and costs N³ evaluations).
  seeding = true
  for (const from of nodes) {
    const beacon: HealthBeacon = { ...from.base, seq: ++from.seq }
    for (const to of nodes) if (to !== from) to.membership.observeBeacon(from.id, beacon)
  }
  seeding = false

  const powerOff = (node: SimNode) => {
    node.up = false
    upCount--
    hold(node.election.coordinator, -1)
    detections.set(node.id, { since: q.now, times: [] })
  }
  const coordinator = (): SimNode | undefined => {
    for (const [c, k] of holders) if (c != null && k === upCount) return byId.get(c)
    return undefined
  }
  const measure = (into: number[]) => {
    agreement = { since: q.now, done: (ms) => into.push(ms) }
    checkAgreement()
  }
  const collect = (node: SimNode) => {
    const times = detections.get(node.id)?.times ?? []
    if (times.length > 0) {
      r.deadFirst.push(Math.min(...times))
      r.deadAll.push(times.length === upCount ? Math.max(...times) : NaN)
    }
  }
  const pickLive = (): SimNode => {
    const c = coordinator()
    for (;;) {
      const node = nodes[Math.floor(random() * n)] as SimNode
      if (node.up && node !== c) return node
    }
  }

  let t = EPOCH + 5000
  q.runUntil(t)
  counting = true
  q.runUntil(t += steadyMs)
  counting = false
  for (let k = 0; k < trials('deaths'); k++) {
    const victim = pickLive()
    powerOff(victim)
    q.runUntil(t += 4000)
    collect(victim)
  }
  for (let k = 0; k < trials('coordinator-deaths'); k++) {
    const victim = coordinator()
    if (victim == null) break
    powerOff(victim)
    measure(r.electionAfterDeath)
    q.runUntil(t += 5000)
    collect(victim)
  }
  for (let k = 0; k < trials('partitions'); k++) {
    nodes.forEach((node) => { node.side = random() < 0.5 ? 0 : 1 })
    partitioned = true
    q.runUntil(t += 5000)
    partitioned = false
    measure(r.electionAfterHeal)
    q.runUntil(t += 4000)
  }
  r.simMs = t - EPOCH
  r.wallMs = performance.now() - wallStart
  return r
}

/** NaN: not everyone got there before the next step (shown as `never`, ranked slowest). */
const fmt = (ms: number) => Number.isNaN(ms) ? '    n/a' : ms === Infinity ? '  never' : `${(ms / 1000).toFixed(2)} s`.padStart(7)
const line = (n: number, label: string, raw: number[]) => {
  const xs = raw.map((x) => Number.isNaN(x) ? Infinity : x)
  return `N=${String(n).padStart(4)} ${label.padEnd(48)} p50 ${fmt(percentile(xs, 50))}  p95 ${fmt(percentile(xs, 95))}  (n=${xs.length})`
}

console.log(`# full mesh, beacon ${INTERVAL_MS} ms (${beaconBytes} B signed), probe after ${probeAfterMs} ms, timeout ${probeTimeoutMs} ms, latency 1–5 ms, loss ${(loss * 100).toFixed(1)} %, seed ${values.seed}`)
for (const n of sizes) {
  const r = simulate(n, Number(values.seed))
  const perMemberS = r.steadyMs / 1000 * n
  console.log(line(n, 'dead after power loss, first member lists it', r.deadFirst))
  console.log(line(n, 'dead after power loss, every member lists it', r.deadAll))
  console.log(line(n, 'new coordinator after it loses power (all agree)', r.electionAfterDeath))
  console.log(line(n, 'one coordinator after a half|half heal', r.electionAfterHeal))
  console.log(`N=${String(n).padStart(4)} ${'false deaths (whole run)'.padEnd(48)} ${r.falseDeaths} in ${(r.simMs / 1000).toFixed(0)} s simulated`)
  console.log(`N=${String(n).padStart(4)} ${'sent per member, steady (beacons + probes)'.padEnd(48)} ${(r.msgs / perMemberS).toFixed(0)} msg/s  ${(r.bytes / perMemberS / 1000).toFixed(1)} kB/s  (${(r.steadyMs / 1000).toFixed(0)} s; run took ${(r.wallMs / 1000).toFixed(0)} s)`)
}
