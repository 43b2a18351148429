import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { IngestStats } from '../ingest/ingest.ts'
import type { MetricsStore } from './metrics.ts'

export const PROMETHEUS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE

/** Where the figures come from, read when Prometheus scrapes (nothing is sampled between scrapes). */
export interface MetricsSources {
  members: () => ReadonlyArray<{ state: string }>
  election: () => { term: number, isCoordinator: boolean }
  connections: () => number
  /** Distinct peers connected: what `mesh.connections` caps (two peers that dialled each other at once hold two connections). */
  peers: () => number
  workRunning: () => number
  ingest: () => (IngestStats & { deadLetter: number }) | null
  cameras: () => ReadonlyArray<{ camera: string, fpsIn?: number, fpsInferred?: number, skipped?: number }>
  loopLagMs: () => number
}

const MEMBER_STATES = ['alive', 'suspect', 'dead', 'left']

/**
 * How often prom-client's event-loop delay histogram (`nodejs_eventloop_lag_{min,…,p99}_seconds`) samples: each
 * sample is a wakeup, and its default of 10 ms, 100 a second, cost an idle process 0.25 % of a core here, a
 * quarter of an agent's idle budget. Its figures are the time between samples, so they read 0.1 s on a loop that
 * keeps time; `noodle_event_loop_lag_seconds` is the lateness alone.
 */
export const EVENT_LOOP_SAMPLE_MS = 100

/**
 * The agent's figures in Prometheus's text format (`GET /metrics`): the mesh, the election, gossip, MQTT ingest,
 * inference and cameras, and Node's own (RSS, event-loop delay, GC). Most are read from their components at
 * scrape time; latencies are observed as they happen (LatencyMetrics). They join the MetricsStore's registry, where our counters
 * and gossipsub's metrics already are: one registry, rendered by prom-client.
 */
export class PrometheusMetrics {
  readonly registry: Registry
  private readonly store: MetricsStore
  private readonly sources: MetricsSources
  /** Read once per scrape (ingest totals are SQLite queries), then shared by the metrics that show them. */
  private readonly scrape: { ingest: ReturnType<MetricsSources['ingest']> } = { ingest: null }

  /** The metrics start() added to the registry, which stop() takes out again. */
  private registered: string[] = []

  constructor (components: { store: MetricsStore, sources: MetricsSources }) {
    this.store = components.store
    this.registry = components.store.registry
    this.sources = components.sources
  }

  /** Adds our figures and prom-client's defaults to the registry; a scrape before it shows only the store's. */
  start (): void {
    const before = new Set(this.registry.getMetricsAsArray().map((m) => m.name))
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS })
    this.registerOwn()
    this.registered = this.registry.getMetricsAsArray().map((m) => m.name).filter((name) => !before.has(name))
  }

  /**
   * Takes out of the registry what start() added, so a later start() registers them afresh. prom-client has no way to
   * stop the event-loop delay monitor and GC observer its defaults start (both unref'd, and cheap): once out of the
   * registry nothing reads them.
   */
  stop (): void {
    for (const name of this.registered) this.registry.removeSingleMetric(name)
    this.registered = []
  }

  /** The figures read from the sources at scrape time (each gauge's collect). */
  private registerOwn (): void {
    const s = this.sources
    const scrape = this.scrape
    const registers = [this.registry]
    new Gauge({
      name: 'noodle_members',
      help: 'Mesh members by state, as this node sees them (itself included).',
      labelNames: ['state'],
      registers,
      collect () {
        const counts = new Map(MEMBER_STATES.map((state) => [state, 0]))
        for (const m of s.members()) counts.set(m.state, (counts.get(m.state) ?? 0) + 1)
        for (const [state, n] of counts) this.set({ state }, n)
      }
    })
    new Gauge({ name: 'noodle_election_term', help: 'The highest election term this node knows.', registers, collect () { this.set(s.election().term) } })
    new Gauge({ name: 'noodle_coordinator', help: '1 while this node is the coordinator.', registers, collect () { this.set(s.election().isCoordinator ? 1 : 0) } })
    new Gauge({ name: 'noodle_libp2p_connections', help: 'Open libp2p connections.', registers, collect () { this.set(s.connections()) } })
    new Gauge({ name: 'noodle_libp2p_peers', help: 'Peers with at least one open libp2p connection.', registers, collect () { this.set(s.peers()) } })
    new Gauge({ name: 'noodle_work_running', help: 'Pieces of work this node runs now.', registers, collect () { this.set(s.workRunning()) } })
    new Gauge({ name: 'noodle_event_loop_lag_seconds', help: 'How late the agent\'s own timers ran lately.', registers, collect () { this.set(s.loopLagMs() / 1000) } })
    // Ingest totals live in the store and survive restarts: mirrored as counters at each scrape.
    for (const [field, help] of [['received', 'MQTT messages received'], ['stored', 'readings stored'], ['rejected', 'messages refused (to the dead letter)'], ['brokerDropped', 'messages the broker reports it dropped']] as const) {
      new Counter({
        name: `noodle_ingest_${field === 'brokerDropped' ? 'broker_dropped' : field}_total`,
        help: `MQTT ingest: ${help}.`,
        registers,
        collect () {
          const stats = scrape.ingest
          this.reset()
          if (stats !== null) this.inc(stats[field])
        }
      })
    }
    new Gauge({ name: 'noodle_ingest_dead_letter', help: 'Refused messages kept in the dead letter now.', registers, collect () { this.set(scrape.ingest?.deadLetter ?? 0) } })
    new Gauge({ name: 'noodle_ingest_connected', help: '1 while the MQTT session is connected.', registers, collect () { this.set(scrape.ingest?.connected === true ? 1 : 0) } })
    new Gauge({
      name: 'noodle_camera_fps',
      help: 'Frames per second of each camera this node runs: decoded (in) and inferred.',
      labelNames: ['camera', 'stage'],
      registers,
      collect () {
        this.reset()
        for (const c of s.cameras()) {
          this.set({ camera: c.camera, stage: 'in' }, c.fpsIn ?? 0)
          this.set({ camera: c.camera, stage: 'inferred' }, c.fpsInferred ?? 0)
        }
      }
    })
    new Counter({
      name: 'noodle_camera_skipped_frames_total',
      help: 'Frames each camera dropped because its model was busy (since the camera started here).',
      labelNames: ['camera'],
      registers,
      collect () {
        this.reset()
        for (const c of s.cameras()) this.inc({ camera: c.camera }, c.skipped ?? 0)
      }
    })
  }

  async render (): Promise<string> {
    this.scrape.ingest = this.sources.ingest()
    this.store.collect()
    return await this.registry.metrics()
  }
}

