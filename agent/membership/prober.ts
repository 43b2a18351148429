import { isRefused, knock, tcpTargets } from '../mesh/knock.ts'
import type { KnockResult } from '../mesh/knock.ts'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { MetricsStore } from '../metrics/metrics.ts'
import type { Logger } from '../../common/logger.ts'
import type { MemberBus } from './bus.ts'
import type { LoopLag } from './loop-lag.ts'
import type { Membership, ProbeOutcome } from './membership.ts'
import type { MeshNode } from '../mesh/mesh.ts'

/** The prober's shortest sleep between looks for members to ping (and samples of the event loop's lag). */
export const PROBE_TICK_MS = 50
/**
 * Its longest: it sleeps until the next member is due (Membership.msUntilProbe), or this long when none is due
 * sooner, still sampling the loop's lag. Polling every 50 ms woke an idle agent 20 times a second for nothing.
 */
export const IDLE_TICK_MS = 250
/** A stall longer than this is forgiven: nobody's silence during it counts. */
const STALL_FORGIVE_MS = 200
/** Counter of the pings this node sent to members, by outcome (ProbeOutcome). */
export const PROBES_METRIC = 'noodle_membership_probes_total'

/** A probe whose timeout fired this much late ran on a stalled loop of ours: its failure proves nothing. */
const LATE_TIMEOUT_MS = 100

export interface ProberComponents {
  node: MeshNode
  membership: Membership
  /** Its `probe-now` (a member's last connection closed, a verdict, a dead member back) sends the due probes at once. */
  bus: MemberBus
  lag: LoopLag
  log: Logger
  metrics: Pick<MetricsStore, 'inc'>
  probeTimeoutMs: number
  /** How pings go out: over a stream kept open per member (PingStreams), or by default libp2p's `ping()`. */
  pings?: { ping: (peer: PeerId, options: { signal: AbortSignal }) => Promise<number>, stop?: () => void }
  /**
   * A partial mesh (mesh.connections > 0): a connection the ping had to open is handed here after the probe
   * (PeerDialer.release: kept where the node is short of connections, else closed).
   */
  release?: (peer: PeerId) => void
}

/**
 * Probes the members the membership table hands out (silent ones, suspects, the just-disconnected) and reports
 * each outcome back. A probe is a libp2p ping plus, alongside, a bare TCP knock on the member's port:
 * - a SIGKILLed agent's box refuses the connection at once: dead within milliseconds;
 * - a box that lost power or its link answers neither: dead after two timeouts;
 * - a starved agent (CPU, swap) misses the ping but its kernel accepts the knock: suspect, never dead for it.
 */
export class Prober {
  private readonly node: MeshNode
  private readonly membership: Membership
  private readonly bus: MemberBus
  private readonly lag: LoopLag
  private readonly log: Logger
  private readonly metrics: ProberComponents['metrics']
  private readonly probeTimeoutMs: number
  private readonly pings: NonNullable<ProberComponents['pings']>
  private readonly release: ProberComponents['release']
  private timer: NodeJS.Timeout | undefined
  /** When the pending tick is due, and when the lag was last sampled (performance.now(), as LoopLag's clock). */
  private tickAt = 0
  private sampledAt = 0
  private stopped = true

  constructor (components: ProberComponents) {
    this.node = components.node
    this.membership = components.membership
    this.bus = components.bus
    this.lag = components.lag
    this.log = components.log
    this.metrics = components.metrics
    this.probeTimeoutMs = components.probeTimeoutMs
    this.pings = components.pings ?? components.node.services.ping
    this.release = components.release
  }

  start (): void {
    this.stopped = false
    this.lag.sample()
    this.sampledAt = performance.now()
    this.bus.on('probe-now', this.probeDue)
    this.membership.on('change', this.soonerIfDue)
    this.schedule(PROBE_TICK_MS)
  }

  stop (): void {
    this.stopped = true
    this.bus.off('probe-now', this.probeDue)
    this.membership.off('change', this.soonerIfDue)
    clearTimeout(this.timer)
    this.pings.stop?.()
  }

  private schedule (delayMs: number): void {
    clearTimeout(this.timer)
    this.tickAt = performance.now() + delayMs
    this.timer = setTimeout(this.tick, delayMs)
  }

  /** The next tick: when the next member is due, within PROBE_TICK_MS..IDLE_TICK_MS from now. */
  private scheduleNext (): void {
    this.schedule(Math.min(IDLE_TICK_MS, Math.max(PROBE_TICK_MS, this.membership.msUntilProbe(this.lag.scale, this.near()))))
  }

  /**
   * A member changed state (a verdict made it suspect, say) or a probe came back: it may be due before the
   * pending tick, which then comes sooner.
   */
  private readonly soonerIfDue = (): void => {
    if (this.stopped) return
    const delay = Math.max(PROBE_TICK_MS, this.membership.msUntilProbe(this.lag.scale, this.near()))
    if (performance.now() + delay < this.tickAt) this.schedule(delay)
  }

  /** Probe what is due now rather than at the next tick (a member just disconnected). */
  readonly probeDue = (): void => {
    if (this.stopped) return
    const { lag, membership } = this
    for (const peerId of membership.takeProbes(lag.scale, this.near())) this.probe(peerId, Math.round(this.probeTimeoutMs * lag.scale))
  }

  private readonly tick = (): void => {
    const stall = this.lag.sample(this.tickAt - this.sampledAt)
    this.sampledAt = performance.now()
    if (stall > STALL_FORGIVE_MS) {
      // We were not running: beacons may be waiting unread. Forgive the time and let I/O catch up first.
      this.membership.forgiveStall(stall)
      this.log.warn({ stallMs: Math.round(stall) }, 'event loop stalled; member silence during it forgiven')
      this.schedule(PROBE_TICK_MS)
      return
    }
    this.probeDue()
    this.scheduleNext()
  }

  /** Partial mesh: the members we hold a connection to (the others are probed later for silence, see Membership.takeProbes). */
  private near (): ReadonlySet<string> | undefined {
    if (this.release === undefined) return undefined
    return new Set(this.node.getConnections().map((c) => c.remotePeer.toString()))
  }

  private probe (peerIdText: string, timeoutMs: number): void {
    let peerId: PeerId
    try {
      peerId = peerIdFromString(peerIdText)
    } catch {
      this.membership.observeProbe(peerIdText, 'timeout')
      return
    }
    const startedAt = performance.now()
    // Never knock on our own port: a member's loopback address, seen from another box (or namespace), is ours.
    // Worked out only for a knock: libp2p assembles our addresses afresh on each call.
    let targets: Array<{ host: string, port: number }> = []
    const aim = () => {
      const own = new Set(tcpTargets(this.node.getMultiaddrs().map(String)).map(({ host, port }) => `${host}:${port}`))
      targets = tcpTargets(this.membership.get(peerIdText)?.addrs ?? []).filter(({ host, port }) => !own.has(`${host}:${port}`))
      return targets
    }
    // The knock only matters when the ping goes unanswered, and most pings are answered within milliseconds,
    // while each knock costs both boxes a TCP connection and the member's libp2p an inbound upgrade (a sixth of
    // an idle agent's CPU at N=16, probing between pulses). It starts halfway through the timeout, or as soon as
    // the ping fails, and is given what is left of the timeout: its answer is in by the time the ping's would be.
    let knocked: Promise<KnockResult> | undefined
    const knockNow = () => { knocked ??= knock(aim(), Math.max(1, timeoutMs - (performance.now() - startedAt))); return knocked }
    const halfway = setTimeout(knockNow, timeoutMs / 2).unref()
    const opened = this.release !== undefined && this.node.getConnections(peerId).length === 0
    this.pings.ping(peerId, { signal: AbortSignal.timeout(timeoutMs) }).finally(() => { clearTimeout(halfway) }).then(
      () => 'answered' as const,
      async (err: unknown): Promise<ProbeOutcome> => {
        if (isRefused(err)) return 'refused'
        if (performance.now() - startedAt > timeoutMs + LATE_TIMEOUT_MS) return 'inconclusive'
        const knock = await knockNow()
        this.log.debug({ peer: peerIdText, err: (err as Error).message, knock, targets }, 'ping failed')
        return knock === 'connected' ? 'knocked' : knock === 'refused' ? 'refused' : 'timeout'
      }
    ).then((outcome) => {
      this.metrics.inc(PROBES_METRIC, { outcome })
      if (!this.stopped) {
        this.membership.observeProbe(peerIdText, outcome)
        this.soonerIfDue()
      }
      if (opened) this.release?.(peerId)
    }, () => {})
  }
}
