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
 * read through `Membership.unsorted()`. ElectionService's term-jump metric is not counted,
 * and a coordinator's beacon that only renews its claim (same holder, same term) is not followed by an evaluation.
 *
 * `--mode partial` simulates the partial mesh instead (docs/scale.md): each member keeps `--connections` K
 * connections (its dialer refills them from the members it lists alive, and reconnects now and then to one it
 * lists dead, swapping member states with it: the other side of a healed partition refutes its death), a gossip
 * mesh of `--degree` D over them (gossipsub: a member's own messages go to all its connections, forwarded ones
 * to its mesh peers but the sender; duplicates are sent and counted), beacons that slow with N (each member
 * every N / --beacons-per-s seconds; out of turn only when its own role changes or to refute), and SWIM over the
 * connections: every `--period-ms` a member pings the next of its connected members; unanswered, it asks
 * `--indirect` k other connected members to ping it (over a short-lived connection where they hold none); none
 * answering, it gossips a `suspect` verdict, and a `dead` one if the suspect has not refuted (beaconed anew)
 * within the suspicion time. Members take verdicts with `Membership.observeVerdict` (forwarded only when news).
 *
 *   node bench/simulate.ts [--sizes 100,300,1000] [--seed 1] [--loss 0.005] [--deaths 5] [--coordinator-deaths 3]
 *                          [--partitions 2] [--steady-s 10] [--beacon-bytes B]
 *                          [--mode full|partial] [--connections 6] [--degree 3] [--beacons-per-s 4] [--period-ms 1000]
 *                          [--indirect 3] [--suspicion-ms 1000×max(1, log10 N)] [--json]
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
import { beaconMessage, healthCodec } from '../protocols/health.ts'
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
    'steady-s': { type: 'string', default: '10' },
    'beacon-bytes': { type: 'string' },
    mode: { type: 'string', default: 'full' },
    connections: { type: 'string', default: '6' },
    degree: { type: 'string', default: '3' },
    'beacons-per-s': { type: 'string', default: '4' },
    'period-ms': { type: 'string', default: '1000' },
    indirect: { type: 'string', default: '3' },
    'suspicion-ms': { type: 'string' },
    json: { type: 'boolean', default: false }
  }
})
const sizes = (values.sizes ?? '').split(',').map(Number)
const loss = Number(values.loss)
if (values.mode !== 'full' && values.mode !== 'partial') throw new Error('--mode must be full or partial')
const partial = values.mode === 'partial'
const K = Number(values.connections)
const D = Number(values.degree)
const BEACONS_PER_S = Number(values['beacons-per-s'])
const PERIOD_MS = Number(values['period-ms'])
const INDIRECT = Number(values.indirect)
if (partial && !(K >= 1 && D >= 1 && D <= K)) throw new Error('--mode partial needs 1 ≤ --degree ≤ --connections')
/** Connections a member accepts past K from others' dials (the agent's connection cap is K plus this). */
const INBOUND_SLACK = 2
/** How often a member's dialer checks its connections, and how often it tries one member it lists dead. */
const DIAL_TICK_MS = 1000
const RECONNECT_MS = 2000
/** A connection set up for one probe: pnet nonces, multistream-select, Noise XX with identity payloads, yamux. */
const HANDSHAKE_BYTES = 500
/** The member states two members swap when a reconnect succeeds: id hash, run, counter, state per member. */
const DIGEST_BYTES_PER_MEMBER = 24

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
const DEAD_VERDICT = 'suspected, and did not refute in time'
/** A verdict: the signed envelope around the member's id (38 bytes), its run and counter, and the state. */
const VERDICT_BYTES = ENVELOPE_BYTES + 38 + 8 + 8 + 4
/** The simulated clock starts at a plausible date: the election's term ceiling is anchored to the clock. */
const EPOCH = Date.UTC(2026, 10, 30)

const beaconBytes = values['beacon-bytes'] != null ? Number(values['beacon-bytes']) : healthCodec.encode(beaconMessage(sampleBeacon({
  name: 'edge-box-0421', version: '0.1.0', startedAt: EPOCH, seq: 123456, uptimeS: 86400.5, cpuPct: 12.5, load1: 0.42,
  memUsedBytes: 1_234_567_890, memTotalBytes: 4_123_456_789, diskFreeBytes: 23_456_789_012, tempC: 48.5,
  addrs: ['/ip4/192.168.10.42/tcp/4001'], term: 17
}))).length + ENVELOPE_BYTES

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
  /** Partial mode: its connections, its gossip mesh (a subset, linked both ways), whom it pings next, its last beacon. */
  conns: Set<SimNode>
  mesh: Set<SimNode>
  probeOrder: SimNode[]
  last: HealthBeacon
  refuting: boolean
}

interface Results {
  deadFirst: number[]
  deadAll: number[]
  electionAfterDeath: number[]
  electionAfterHeal: number[]
  falseDeaths: number
  /** Partial mode: deaths taken after a heal from a verdict made during the partition (see partitionVerdicts). */
  healDeaths: number
  msgs: number
  bytes: number
  steadyMs: number
  simMs: number
  wallMs: number
  /** Partial mode: the beacon interval, the suspicion time, and the most connections any member held at the end. */
  beaconMs: number
  suspicionMs: number
  maxConnections: number
}

function simulate (n: number, seed: number): Results {
  const wallStart = performance.now()
  const big = n >= 1000
  const trials = (name: 'deaths' | 'coordinator-deaths' | 'partitions') => big ? Math.max(1, Math.floor(Number(values[name]) / 2)) : Number(values[name])
  const steadyMs = (big ? 0.3 : 1) * Number(values['steady-s']) * 1000
  // Partial mode: beacons slow with N (the mesh as a whole sends BEACONS_PER_S), liveness comes from SWIM.
  const beaconMs = partial ? Math.max(INTERVAL_MS, Math.round(n * 1000 / BEACONS_PER_S)) : INTERVAL_MS
  const suspicionMs = values['suspicion-ms'] != null ? Number(values['suspicion-ms']) : Math.round(1000 * Math.max(1, Math.log10(n)))
  const random = prng(seed * 7919 + n)
  const q = new EventQueue()
  const latency = () => 1 + Math.floor(random() * 5)
  const lost = () => random() < loss
  const r: Results = { deadFirst: [], deadAll: [], electionAfterDeath: [], electionAfterHeal: [], falseDeaths: 0, healDeaths: 0, msgs: 0, bytes: 0, steadyMs, simMs: 0, wallMs: 0, beaconMs, suspicionMs, maxConnections: 0 }
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
  // Partial mode: members a `dead` verdict was made on during the partition. Spreading on past the heal, it
  // reaches members on the victim's side too, until the victim's refutation overtakes it (counted apart).
  const partitionVerdicts = new Set<string>()

  const membersOf = (node: SimNode): Member[] => node.membership.unsorted()
  const maybeCandidate = (member: Member | undefined) => member == null ? null : candidateOf(member)
  const rank = (node: SimNode) => (a: string, b: string): number => {
    const ca = a === node.id ? node.self : maybeCandidate(node.membership.get(a))
    const cb = b === node.id ? node.self : maybeCandidate(node.membership.get(b))
    if (ca == null || cb == null) return ca != null ? -1 : cb != null ? 1 : a < b ? -1 : 1
    return compareCandidates(ca, cb)
  }
  /**
   * Partial mode: whether a change of `member` can change what evaluate decides at `node`: only the holder and
   * members ranked above it (or above us, with no holder) can. A verdict storm (a partition: every member hears
   * of half the others, one at a time) would cost N evaluations of O(N) per member otherwise.
   */
  const mayMatter = (node: SimNode, member: Member): boolean => {
    const holder = node.election.coordinator
    if (member.peerId === holder || (member.health?.term ?? 0) > node.election.term) return true
    const candidate = candidateOf(member)
    const bar = holder == null ? node.self : maybeCandidate(node.membership.get(holder)) ?? node.self
    return candidate == null || compareCandidates(candidate, bar) < 0
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
    node.last = beacon
    if (partial) {
      gossip(node, beaconBytes, (to) => { deliver(node, to, beacon); return true })
      return
    }
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
    // News (a newcomer, a member back) draws an early beacon in the full mesh; in the partial one it would draw N
    // of them, each to all: a newcomer learns the table from member sync instead.
    if (to.membership.observeBeacon(from.id, beacon) && !partial) publishSoon(to)
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

  // ---- Partial mode ----

  /**
   * gossipsub over the connections: the origin sends to every connection (flood publish), each member that
   * takes the message in (`handle` returns true: valid and news) forwards it to its mesh peers but the sender.
   * A message crosses a link once per direction at most; what arrives twice was still sent (and counted).
   */
  const gossip = (origin: SimNode, bytes: number, handle: (to: SimNode) => boolean) => {
    const seen = new Uint8Array(n)
    seen[origin.i] = 1
    const send = (from: SimNode, to: SimNode) => {
      count(1, bytes)
      if (!reachable(from, to)) return
      q.after(latency() + (lost() ? RTO_MS : 0), () => {
        if (!reachable(from, to) || seen[to.i] === 1) return
        seen[to.i] = 1
        if (!handle(to)) return
        for (const next of to.mesh) if (next !== from) send(to, next)
      })
    }
    for (const to of origin.conns) send(origin, to)
  }

  const connect = (a: SimNode, b: SimNode) => {
    a.conns.add(b)
    b.conns.add(a)
  }
  const disconnect = (a: SimNode, b: SimNode) => {
    a.conns.delete(b)
    b.conns.delete(a)
    a.mesh.delete(b)
    b.mesh.delete(a)
  }
  /** gossipsub's GRAFT: up to D mesh peers among the connections; a peer takes grafts up to D + 1 (Dhi, as mesh.ts sets it). */
  const graft = (node: SimNode) => {
    if (node.mesh.size >= D) return
    for (const peer of shuffled([...node.conns])) {
      if (node.mesh.size >= D) break
      if (!node.mesh.has(peer) && peer.mesh.size < D + 1 && reachable(node, peer)) {
        node.mesh.add(peer)
        peer.mesh.add(node)
        count(2, 2 * PING_BYTES)
      }
    }
  }
  const shuffled = <T>(xs: T[]): T[] => {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1))
      const x = xs[i] as T
      xs[i] = xs[j] as T
      xs[j] = x
    }
    return xs
  }
  /** A random member that `node` lists in `state`, not itself (a few tries: none found is fine, it tries again). */
  const pickListed = (node: SimNode, state: 'alive' | 'dead', except?: Set<SimNode>): SimNode | undefined => {
    for (let tries = 0; tries < 16; tries++) {
      const peer = nodes[Math.floor(random() * n)] as SimNode
      if (peer !== node && except?.has(peer) !== true && node.membership.get(peer.id)?.state === state) return peer
    }
    return undefined
  }

  /** A new beacon, out of turn: the member heard it is suspected or dead (SWIM's refutation). */
  const refute = (node: SimNode) => {
    if (node.refuting || !node.up) return
    node.refuting = true
    q.after(0, () => { node.refuting = false; publish(node) })
  }

  /** A verdict reaches a member: the one it is about refutes it, others take it if news (and then forward it). */
  const takeVerdict = (at: SimNode, about: SimNode, to: 'suspect' | 'dead', beacon: { startedAt: number, seq: number }): boolean => {
    if (!at.up) return false
    if (at === about) {
      refute(at)
      return false
    }
    return at.membership.observeVerdict(about.id, to, beacon, to === 'dead' ? DEAD_VERDICT : 'unanswered, directly and through others')
  }
  const spreadVerdict = (from: SimNode, about: SimNode, to: 'suspect' | 'dead', beacon: { startedAt: number, seq: number }) => {
    if (!takeVerdict(from, about, to, beacon)) return
    gossip(from, VERDICT_BYTES, (at) => takeVerdict(at, about, to, beacon))
  }
  const suspect = (node: SimNode, target: SimNode, beacon: { startedAt: number, seq: number }) => {
    if (node.membership.get(target.id)?.state !== 'alive') return
    spreadVerdict(node, target, 'suspect', beacon)
    // When the time is up, one last ping: a member cut off while the verdict spread (a partition that healed
    // since) answers it, learns it is suspected, and refutes; only an unanswered one makes the verdict `dead`.
    q.after(suspicionMs, () => {
      const now = node.membership.beaconOf(target.id)
      if (!node.up || node.membership.get(target.id)?.state !== 'suspect' || now?.startedAt !== beacon.startedAt || now.seq !== beacon.seq) return
      const rtt = ping(node, target)
      if (rtt <= probeTimeoutMs) q.after(rtt / 2, () => { refute(target) })
      else {
        const cut = partitioned
        q.after(probeTimeoutMs, () => {
          if (!node.up) return
          if (cut) partitionVerdicts.add(target.id)
          spreadVerdict(node, target, 'dead', beacon)
        })
      }
    })
  }

  /** One ping from `from` to `to`: its round trip, or Infinity when it cannot come back. Counts both messages. */
  const ping = (from: SimNode, to: SimNode): number => {
    count(1, PING_BYTES)
    if (!reachable(from, to)) return Infinity
    count(1, PING_BYTES)
    return latency() + latency() + (lost() ? RTO_MS : 0) + (lost() ? RTO_MS : 0)
  }
  /** A relay pings the target for us: over its connection, or one set up for the probe (a handshake first). */
  const relayPing = (node: SimNode, relay: SimNode, target: SimNode): number => {
    const there = ping(node, relay) / 2
    if (!Number.isFinite(there)) return Infinity
    let handshake = 0
    if (!relay.conns.has(target)) {
      count(3, HANDSHAKE_BYTES)
      if (!reachable(relay, target)) return Infinity
      count(3, HANDSHAKE_BYTES)
      handshake = latency() * 3
    }
    return there * 2 + handshake + ping(relay, target)
  }

  /** SWIM, every PERIOD_MS: ping the next connected member; unanswered, through `INDIRECT` others; then suspect. */
  const swimTick = (node: SimNode) => {
    let target: SimNode | undefined
    for (let refilled = false; target == null;) {
      if (node.probeOrder.length === 0) {
        if (refilled) return
        node.probeOrder = shuffled([...node.conns])
        refilled = true
        continue
      }
      const next = node.probeOrder.pop() as SimNode
      if (node.conns.has(next) && isLive(node.membership.get(next.id)?.state ?? 'dead')) target = next
    }
    const beacon = node.membership.beaconOf(target.id) as { startedAt: number, seq: number }
    if (ping(node, target) <= probeTimeoutMs) return
    q.after(probeTimeoutMs, () => {
      if (!node.up) return
      const relays = shuffled([...node.conns].filter((c) => c !== target)).slice(0, INDIRECT)
      const answered = relays.some((relay) => relayPing(node, relay, target) <= 2 * probeTimeoutMs)
      q.after(2 * probeTimeoutMs, () => { if (node.up && !answered) suspect(node, target, beacon) })
    })
  }

  /**
   * The dialer, every DIAL_TICK_MS: closes connections to members it lists dead, keeps its gossip mesh at D,
   * dials a member it lists alive while under K connections (refused by one at K + INBOUND_SLACK), and every
   * RECONNECT_MS tries one member it lists dead (as Serf does): if it answers, they swap member states, and each
   * refutes the death the other had recorded for it.
   */
  const dialTick = (node: SimNode, reconnect: boolean) => {
    for (const peer of node.conns) {
      const state = node.membership.get(peer.id)?.state
      if (state == null || !isLive(state)) disconnect(node, peer)
    }
    graft(node)
    if (node.conns.size < K) {
      const peer = pickListed(node, 'alive', node.conns)
      if (peer != null) dial(node, peer)
    }
    if (reconnect) {
      const peer = pickListed(node, 'dead')
      if (peer != null) dial(node, peer)
    }
  }
  /** A connection is kept while both ends are under their caps (K + INBOUND_SLACK); else it only swaps states. */
  const dial = (node: SimNode, peer: SimNode) => {
    count(3, HANDSHAKE_BYTES)
    if (!reachable(node, peer)) return
    count(3, HANDSHAKE_BYTES)
    q.after(latency() * 3, () => {
      if (!reachable(node, peer)) return
      if (node.conns.size < K + INBOUND_SLACK && peer.conns.size < K + INBOUND_SLACK) connect(node, peer)
      if (node.membership.get(peer.id)?.state === 'dead' || peer.membership.get(node.id)?.state === 'dead') swap(node, peer)
    })
  }
  /** Member sync after a reconnect: each takes the other's beacon, and refutes the other's verdict on itself. */
  const swap = (a: SimNode, b: SimNode) => {
    count(2, 2 * n * DIGEST_BYTES_PER_MEMBER)
    for (const [x, y] of [[a, b], [b, a]] as const) {
      if (y.membership.get(x.id)?.state !== 'alive') refute(x)
      deliver(x, y, x.last)
    }
  }

  for (let i = 0; i < n; i++) {
    const id = `12D3KooW${(Math.floor(random() * 2 ** 48)).toString(36).padStart(10, '0')}${i}`
    const startedAt = EPOCH + i
    const base = sampleBeacon({ name: `box-${i}`, startedAt, addrs: [`/ip4/10.0.${i >> 8}.${i & 255}/tcp/4001`] })
    const self: Member = { peerId: id, name: base.name, state: 'alive', role: 'member', addrs: base.addrs, lastSeen: EPOCH, health: healthOf(base) }
    const membership = new Membership({ self, options: { probeAfterMs, probeTimeoutMs, unresponsiveAfterMs, reapAfterMs, maxMembers }, now: () => q.now })
    const election = new Election({ selfId: id, term: 0, settleUntil: EPOCH + SETTLE_BEACONS * INTERVAL_MS, claimGraceMs: (SETTLE_BEACONS + 2) * INTERVAL_MS, now: () => q.now })
    const candidate: Candidate = { peerId: id, eligible: true, priority: 0, capability: capabilityOf(base) }
    const node: SimNode = { i, id, up: true, side: 0, membership, election, self: candidate, base, seq: 0, early: false, evaluating: false, conns: new Set(), mesh: new Set(), probeOrder: [], last: base, refuting: false }
    nodes.push(node)
    byId.set(id, node)
    hold(null, 1)
    membership.on('change', (change: MemberChange) => {
      if (!node.up) return
      if (!partial || mayMatter(node, change.member)) evaluateSoon(node)
      if (change.to !== 'dead') return
      const victim = byId.get(change.member.peerId) as SimNode
      const detection = detections.get(victim.id)
      if (!victim.up && detection != null) detection.times.push(q.now - detection.since)
      else if (partitioned && victim.side !== node.side) return
      else if (change.reason === DEAD_VERDICT && partitionVerdicts.has(victim.id)) r.healDeaths++
      else r.falseDeaths++
    })
    election.on('change', (change: ElectionChange) => {
      if (!node.up) return
      if (change.coordinator !== change.previous) {
        hold(change.previous, -1)
        hold(change.coordinator, 1)
        checkAgreement()
      }
      node.membership.updateSelf({ role: change.coordinator === id ? 'coordinator' : 'member' })
      // Partial mesh: only a change of our own role (a claim, or giving one up) is worth a beacon to everyone.
      if (!partial || change.coordinator === id || change.previous === id) publishSoon(node)
    })
    // Timers with random phases, as agents started at slightly different moments.
    const every = (ms: number, phase: number, run: () => void) => {
      const tick = () => { if (node.up) { run(); q.after(ms, tick) } }
      q.at(EPOCH + phase, tick)
    }
    every(beaconMs, random() * beaconMs, () => { publish(node) })
    if (partial) {
      every(PERIOD_MS, random() * PERIOD_MS, () => { swimTick(node) })
      let ticks = Math.floor(random() * (RECONNECT_MS / DIAL_TICK_MS))
      every(DIAL_TICK_MS, random() * DIAL_TICK_MS, () => { dialTick(node, ++ticks % (RECONNECT_MS / DIAL_TICK_MS) === 0) })
    } else {
      every(PROBE_TICK_MS, random() * PROBE_TICK_MS, () => { for (const p of membership.takeProbes(1)) probe(node, p) })
    }
    // The backstop re-evaluation ends the settle wait and the claim grace; past them, changes and claims decide.
    every(EVALUATE_INTERVAL_MS, random() * EVALUATE_INTERVAL_MS, () => { if (q.now <= backstopUntil) evaluate(node) })
  }

  // A settled mesh from the start: every member has every other's first beacon at time 0 (the join storm of N
  // members starting at once is not a scenario here, and costs N³ evaluations).
  seeding = true
  for (const from of nodes) {
    const beacon: HealthBeacon = { ...from.base, seq: ++from.seq }
    from.last = beacon
    for (const to of nodes) if (to !== from) to.membership.observeBeacon(from.id, beacon)
  }
  seeding = false
  // Partial mode: each member has dialled random members up to K (each accepting up to K + INBOUND_SLACK), and
  // grafted its gossip mesh.
  if (partial) {
    for (const node of nodes) {
      for (let tries = 0; node.conns.size < K && tries < 8 * K; tries++) {
        const peer = nodes[Math.floor(random() * n)] as SimNode
        if (peer !== node && peer.conns.size < K + INBOUND_SLACK) connect(node, peer)
      }
    }
    for (const node of nodes) graft(node)
  }

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

  // Partial mode detects later (a probe period, the indirect probes, the suspicion time), and heals later (a
  // reconnect, then refutations): its steps are longer, so each is measured to its end.
  const deathStepMs = partial ? Math.max(4000, suspicionMs + 3 * PERIOD_MS + 2000) : 4000
  const healStepMs = partial ? Math.max(4000, suspicionMs + RECONNECT_MS + 3000) : 4000
  // A partition long enough for each side to find the other dead and elect its own coordinator.
  const partitionMs = partial ? Math.max(5000, deathStepMs) : 5000
  let t = EPOCH + 5000
  q.runUntil(t)
  counting = true
  q.runUntil(t += steadyMs)
  counting = false
  for (let k = 0; k < trials('deaths'); k++) {
    const victim = pickLive()
    powerOff(victim)
    q.runUntil(t += deathStepMs)
    collect(victim)
  }
  for (let k = 0; k < trials('coordinator-deaths'); k++) {
    const victim = coordinator()
    if (victim == null) break
    powerOff(victim)
    measure(r.electionAfterDeath)
    q.runUntil(t += deathStepMs + 1000)
    collect(victim)
  }
  for (let k = 0; k < trials('partitions'); k++) {
    nodes.forEach((node) => { node.side = random() < 0.5 ? 0 : 1 })
    partitionVerdicts.clear()
    partitioned = true
    q.runUntil(t += partitionMs)
    partitioned = false
    measure(r.electionAfterHeal)
    q.runUntil(t += healStepMs)
  }
  r.simMs = t - EPOCH
  r.maxConnections = Math.max(...nodes.map((node) => node.conns.size))
  r.wallMs = performance.now() - wallStart
  return r
}

/** NaN: not everyone got there before the next step (shown as `never`, ranked slowest). */
const fmt = (ms: number) => Number.isNaN(ms) ? '    n/a' : ms === Infinity ? '  never' : `${(ms / 1000).toFixed(2)} s`.padStart(7)
const line = (n: number, label: string, raw: number[]) => {
  const xs = raw.map((x) => Number.isNaN(x) ? Infinity : x)
  return `N=${String(n).padStart(4)} ${label.padEnd(48)} p50 ${fmt(percentile(xs, 50))}  p95 ${fmt(percentile(xs, 95))}  (n=${xs.length})`
}

if (partial) console.log(`# partial mesh: ${K} connections, gossip degree ${D}, beacons ${BEACONS_PER_S}/s mesh-wide (${beaconBytes} B signed), SWIM every ${PERIOD_MS} ms (timeout ${probeTimeoutMs} ms, ${INDIRECT} indirect), latency 1–5 ms, loss ${(loss * 100).toFixed(1)} %, seed ${values.seed}`)
else console.log(`# full mesh, beacon ${INTERVAL_MS} ms (${beaconBytes} B signed), probe after ${probeAfterMs} ms, timeout ${probeTimeoutMs} ms, latency 1–5 ms, loss ${(loss * 100).toFixed(1)} %, seed ${values.seed}`)
for (const n of sizes) {
  const r = simulate(n, Number(values.seed))
  if (values.json) {
    console.log(JSON.stringify({ n, mode: values.mode, ...r, msgsPerMemberS: r.msgs / (r.steadyMs / 1000 * n), bytesPerMemberS: r.bytes / (r.steadyMs / 1000 * n) }, (_k, v: unknown) => typeof v === 'number' && !Number.isFinite(v) ? null : v))
    continue
  }
  const perMemberS = r.steadyMs / 1000 * n
  console.log(line(n, 'dead after power loss, first member lists it', r.deadFirst))
  console.log(line(n, 'dead after power loss, every member lists it', r.deadAll))
  console.log(line(n, 'new coordinator after it loses power (all agree)', r.electionAfterDeath))
  console.log(line(n, 'one coordinator after a half|half heal', r.electionAfterHeal))
  console.log(`N=${String(n).padStart(4)} ${'false deaths (whole run)'.padEnd(48)} ${r.falseDeaths} in ${(r.simMs / 1000).toFixed(0)} s simulated`)
  if (partial) console.log(`N=${String(n).padStart(4)} ${'deaths after a heal, from verdicts made in it'.padEnd(48)} ${r.healDeaths} (refuted at once by the member)`)
  if (partial) console.log(`N=${String(n).padStart(4)} ${'beacon interval, suspicion time, most connections'.padEnd(48)} ${(r.beaconMs / 1000).toFixed(0)} s, ${(r.suspicionMs / 1000).toFixed(1)} s, ${r.maxConnections}`)
  console.log(`N=${String(n).padStart(4)} ${'sent per member, steady (beacons + probes)'.padEnd(48)} ${(r.msgs / perMemberS).toFixed(0)} msg/s  ${(r.bytes / perMemberS / 1000).toFixed(1)} kB/s  (${(r.steadyMs / 1000).toFixed(0)} s; run took ${(r.wallMs / 1000).toFixed(0)} s)`)
}
