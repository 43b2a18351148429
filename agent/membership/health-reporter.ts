import type { HealthBeacon } from '../../protocols/health.ts'
import { healthCodec } from '../../protocols/health.ts'
import { TOPICS } from '../../protocols/topics.ts'
import type { EventEmitter } from 'node:events'
import type { MemberBus } from './bus.ts'
import type { HealthSample } from './health.ts'
import type { Logger } from '../../common/logger.ts'
import type { Mesh } from '../mesh/mesh.ts'

/** How long a burst of reasons to beacon early (joins, new subscribers) is gathered into one beacon. */
const EARLY_BEACON_DELAY_MS = 20

export interface HealthReporterComponents {
  mesh: Pick<Mesh, 'node' | 'publish'>
  /** Its `news` asks for a beacon soon; each beacon sent goes out on it as `own-beacon`. */
  bus: MemberBus
  /** The work registry: the beacon lists the work, so a change to it is news too. */
  work: EventEmitter<{ change: [], advertised: [] }>
  sampler: { sample: () => HealthSample }
  log: Logger
  name: string
  version: string
  intervalMs: number
  startedAt: number
  /** What the node is and does, read afresh for each beacon: role and term, what it can run, its work. */
  describe: () => Pick<HealthBeacon, 'role' | 'term' | 'eligible' | 'priority' | 'cpus' | 'providers' | 'models' | 'work' | 'accepts' | 'running' | 'ingest'>
}

/**
 * Publishes this node's health beacon every `intervalMs`, and early when a peer starts listening to the topic or
 * there is news (a member joined, the coordinator or our work changed), so that a newcomer learns of everyone in
 * one round trip instead of one beacon interval, and a change is heard within one.
 */
export class HealthReporter {
  private readonly mesh: HealthReporterComponents['mesh']
  private readonly bus: MemberBus
  private readonly work: HealthReporterComponents['work']
  private readonly sampler: HealthReporterComponents['sampler']
  private readonly log: Logger
  private readonly name: string
  private readonly version: string
  private readonly intervalMs: number
  private readonly startedAt: number
  private readonly describe: HealthReporterComponents['describe']
  private seq = 0
  private timer: NodeJS.Timeout | undefined
  private early: NodeJS.Timeout | undefined
  private stopped = true

  constructor (components: HealthReporterComponents) {
    this.mesh = components.mesh
    this.bus = components.bus
    this.work = components.work
    this.sampler = components.sampler
    this.log = components.log
    this.name = components.name
    this.version = components.version
    this.intervalMs = components.intervalMs
    this.startedAt = components.startedAt
    this.describe = components.describe
  }

  start (): void {
    this.stopped = false
    this.mesh.node.services.pubsub.addEventListener('subscription-change', this.onSubscriptionChange)
    this.bus.on('news', this.publishSoon)
    this.work.on('change', this.publishSoon)
    this.work.on('advertised', this.publishSoon)
    this.publish()
    this.timer = setInterval(() => { this.publish() }, this.intervalMs)
  }

  stop (): void {
    this.stopped = true
    this.mesh.node.services.pubsub.removeEventListener('subscription-change', this.onSubscriptionChange)
    this.bus.off('news', this.publishSoon)
    this.work.off('change', this.publishSoon)
    this.work.off('advertised', this.publishSoon)
    clearInterval(this.timer)
    clearTimeout(this.early)
  }

  /** Beacon soon, out of turn; calls within a few milliseconds share one beacon. */
  private readonly publishSoon = (): void => {
    if (this.stopped || this.early != null) return
    this.early = setTimeout(() => {
      this.early = undefined
      this.publish()
    }, EARLY_BEACON_DELAY_MS)
  }

  /** This node's multiaddrs for others to dial: without loopback ones when it has others, and without /p2p. */
  announceAddrs (): string[] {
    const addrs = this.mesh.node.getMultiaddrs().map((ma) => ma.decapsulateCode(421).toString())
    const external = addrs.filter((a) => !/^\/(ip4\/127\.|ip6\/::1\/)/.test(a))
    return [...new Set(external.length > 0 ? external : addrs)].slice(0, 8)
  }

  /** From timers: a failure to describe the node (a store read on a failing disk) is logged, and the next beacon tries again. */
  private publish (): void {
    if (this.stopped) return
    try {
      this.publishBeacon()
    } catch (err) {
      this.log.error({ err }, 'health beacon not built')
    }
  }

  private publishBeacon (): void {
    const beacon: HealthBeacon = {
      v: 1,
      name: this.name,
      version: this.version,
      startedAt: this.startedAt,
      seq: ++this.seq,
      uptimeS: Math.round((Date.now() - this.startedAt) / 100) / 10,
      ...this.sampler.sample(),
      addrs: this.announceAddrs(),
      ...this.describe()
    }
    this.bus.emit('own-beacon', beacon)
    this.mesh.publish(healthCodec, beacon).catch((err: unknown) => {
      this.log.warn({ err }, 'health beacon not published')
    })
  }

  private readonly onSubscriptionChange = (event: CustomEvent<{ subscriptions: Array<{ topic: string, subscribe: boolean }> }>): void => {
    if (event.detail.subscriptions.some((s) => s.subscribe && s.topic === TOPICS.nodeHealth)) this.publishSoon()
  }
}
