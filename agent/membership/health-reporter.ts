import type { HealthBeacon } from '../../protocols/health.ts'
import { healthCodec } from '../../protocols/health.ts'
import { TOPICS } from '../../protocols/topics.ts'
import type { HealthSample } from './health.ts'
import type { Logger } from '../../common/logger.ts'
import type { Mesh } from '../mesh/mesh.ts'

/** How long a burst of reasons to beacon early (joins, new subscribers) is gathered into one beacon. */
const EARLY_BEACON_DELAY_MS = 20

export interface HealthReporterComponents {
  mesh: Mesh
  sampler: { sample: () => HealthSample }
  log: Logger
  name: string
  version: string
  intervalMs: number
  startedAt: number
  /** What the node is and does, read afresh for each beacon: role and term, what it can run, its work. */
  describe: () => Pick<HealthBeacon, 'role' | 'term' | 'eligible' | 'priority' | 'cpus' | 'providers' | 'models' | 'work' | 'accepts' | 'running' | 'ingest'>
  /** Called with each beacon this node sends, so the membership table shows self with the same figures. */
  onBeacon: (beacon: HealthBeacon) => void
}

/**
 * Publishes this node's health beacon every `intervalMs`, and early when a peer starts listening to the topic or
 * a member joins, so that a newcomer learns of everyone in one round trip instead of one beacon interval.
 */
export class HealthReporter {
  private readonly c: HealthReporterComponents
  private seq = 0
  private timer: NodeJS.Timeout | undefined
  private early: NodeJS.Timeout | undefined
  private stopped = true

  constructor (components: HealthReporterComponents) {
    this.c = components
  }

  start (): void {
    this.stopped = false
    this.c.mesh.node.services.pubsub.addEventListener('subscription-change', this.onSubscriptionChange)
    this.publish()
    this.timer = setInterval(() => { this.publish() }, this.c.intervalMs)
  }

  stop (): void {
    this.stopped = true
    this.c.mesh.node.services.pubsub.removeEventListener('subscription-change', this.onSubscriptionChange)
    clearInterval(this.timer)
    clearTimeout(this.early)
  }

  /** Beacon soon, out of turn; calls within a few milliseconds share one beacon. */
  publishSoon (): void {
    if (this.stopped || this.early != null) return
    this.early = setTimeout(() => {
      this.early = undefined
      this.publish()
    }, EARLY_BEACON_DELAY_MS)
  }

  /** This node's multiaddrs for others to dial: without loopback ones when it has others, and without /p2p. */
  announceAddrs (): string[] {
    const addrs = this.c.mesh.node.getMultiaddrs().map((ma) => ma.decapsulateCode(421).toString())
    const external = addrs.filter((a) => !/^\/(ip4\/127\.|ip6\/::1\/)/.test(a))
    return [...new Set(external.length > 0 ? external : addrs)].slice(0, 8)
  }

  /** From timers: a failure to describe the node (a store read on a failing disk) is logged, and the next beacon tries again. */
  private publish (): void {
    if (this.stopped) return
    try {
      this.publishBeacon()
    } catch (err) {
      this.c.log.error({ err }, 'health beacon not built')
    }
  }

  private publishBeacon (): void {
    const beacon: HealthBeacon = {
      v: 1,
      name: this.c.name,
      version: this.c.version,
      startedAt: this.c.startedAt,
      seq: ++this.seq,
      uptimeS: Math.round((Date.now() - this.c.startedAt) / 100) / 10,
      ...this.c.sampler.sample(),
      addrs: this.announceAddrs(),
      ...this.c.describe()
    }
    this.c.onBeacon(beacon)
    this.c.mesh.publish(healthCodec, beacon).catch((err: unknown) => {
      this.c.log.warn({ err }, 'health beacon not published')
    })
  }

  private readonly onSubscriptionChange = (event: CustomEvent<{ subscriptions: Array<{ topic: string, subscribe: boolean }> }>): void => {
    if (event.detail.subscriptions.some((s) => s.subscribe && s.topic === TOPICS.nodeHealth)) this.publishSoon()
  }
}
