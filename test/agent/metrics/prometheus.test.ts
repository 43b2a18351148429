import t from 'tap'
import { MetricsStore } from '../../../agent/metrics/metrics.ts'
import { EVENT_LOOP_SAMPLE_MS, PrometheusMetrics } from '../../../agent/metrics/prometheus.ts'
import { LatencyMetrics } from '../../../agent/metrics/latencies.ts'
import type { MetricsSources } from '../../../agent/metrics/prometheus.ts'
import { families, mistyped, untyped } from './families.ts'

function setup (overrides: Partial<MetricsSources> = {}) {
  const store = new MetricsStore()
  const sources: MetricsSources = {
    members: () => [{ state: 'alive' }, { state: 'alive' }, { state: 'dead' }],
    election: () => ({ term: 7, isCoordinator: true }),
    connections: () => 2,
    peers: () => 1,
    workRunning: () => 1,
    ingest: () => ({ received: 10, stored: 8, rejected: 2, perS: 1, brokerDropped: 0, connected: true, deadLetter: 2 }),
    cameras: () => [{ camera: 'door', fpsIn: 5, fpsInferred: 4.5, skipped: 12 }],
    loopLagMs: () => 3,
    ...overrides
  }
  const metrics = new PrometheusMetrics({ store, sources })
  const latencies = new LatencyMetrics({ registry: store.registry })
  metrics.start()
  latencies.start()
  return { store, metrics, latencies, sources }
}

/** The value of one series in Prometheus text, or undefined. */
function value (text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

t.test('the event-loop delay histogram samples every 100 ms: its figures are the time between samples', async (t) => {
  const { metrics } = setup()
  await new Promise((resolve) => setTimeout(resolve, 600))
  const min = value(await metrics.render(), 'nodejs_eventloop_lag_min_seconds') ?? NaN
  // Sampled at prom-client's default (10 ms), the shortest time between samples would be about 0.01 s.
  t.ok(min >= EVENT_LOOP_SAMPLE_MS / 1000 * 0.95 && min < 5, `shortest time between samples: ${min} s`)
})

t.test('the mesh, ingest, cameras and the process, read at scrape time', async (t) => {
  const { metrics } = setup()
  const text = await metrics.render()
  t.equal(value(text, 'noodle_members{state="alive"}'), 2)
  t.equal(value(text, 'noodle_members{state="dead"}'), 1)
  t.equal(value(text, 'noodle_members{state="suspect"}'), 0, 'every state is listed, at 0 too')
  t.equal(value(text, 'noodle_election_term'), 7)
  t.equal(value(text, 'noodle_coordinator'), 1)
  t.equal(value(text, 'noodle_libp2p_connections'), 2)
  t.equal(value(text, 'noodle_libp2p_peers'), 1)
  t.equal(value(text, 'noodle_ingest_received_total'), 10)
  t.equal(value(text, 'noodle_ingest_rejected_total'), 2)
  t.equal(value(text, 'noodle_ingest_dead_letter'), 2)
  t.equal(value(text, 'noodle_camera_fps{camera="door",stage="inferred"}'), 4.5)
  t.equal(value(text, 'noodle_camera_skipped_frames_total{camera="door"}'), 12)
  t.equal(value(text, 'noodle_event_loop_lag_seconds'), 0.003)
  t.ok((value(text, 'process_resident_memory_bytes') ?? 0) > 0, 'RSS, from prom-client\'s defaults')
  t.match(text, /# TYPE noodle_ingest_stored_total counter/)
  // A second scrape reads afresh: totals are mirrored, not added up again.
  t.equal(value(await metrics.render(), 'noodle_ingest_received_total'), 10)
})

t.test('latencies are histograms, observed as they happen', async (t) => {
  const { metrics, latencies } = setup()
  latencies.observeInference('abcdef0123456789'.repeat(4), 20)
  latencies.observeInference('abcdef0123456789'.repeat(4), 200)
  latencies.observeCameraResult('door', 95)
  const text = await metrics.render()
  t.equal(value(text, 'noodle_inference_seconds_count{model="abcdef012345"}'), 2, 'by the id\'s first 12 characters')
  t.equal(value(text, 'noodle_inference_seconds_bucket{le="0.025",model="abcdef012345"}'), 1)
  t.equal(value(text, 'noodle_inference_seconds_sum{model="abcdef012345"}'), 0.22)
  t.equal(value(text, 'noodle_camera_latency_seconds_count{camera="door"}'), 1)
})

t.test('a box that ingests nothing and runs no camera still answers; our counters and gossipsub\'s are in the same registry', async (t) => {
  const { store, metrics } = setup({ ingest: () => null, cameras: () => [] })
  store.inc('noodle_gossip_rejected_total', { topic: 'noodle/1/node.health', reason: 'bad "json"\n' }, 3)
  store.gauge({ name: 'gossipsub_rpc_sent_bytes_total', help: 'Number of bytes sent.' }).inc(1234)
  // gossipsub sets several metrics from one collector, hung on a metric registered after some of them.
  const caches = store.gauge<{ cache: string }>({ name: 'gossipsub_cache_size', help: 'Cache sizes.', labelNames: ['cache'] })
  store.gauge({ name: 'gossipsub_mcache_size', help: 'mcache size.' }).addCollect(() => { caches.set({ cache: 'peers' }, 2) })
  const text = await metrics.render()
  t.equal(value(text, 'gossipsub_cache_size{cache="peers"}'), 2, 'gossipsub\'s collectors ran before the first render')
  t.equal(value(text, 'noodle_ingest_received_total'), 0)
  t.equal(value(text, 'noodle_ingest_connected'), 0)
  t.notMatch(text, /noodle_camera_fps\{/)
  t.equal(value(text, 'noodle_gossip_rejected_total{reason="bad \\"json\\"\\n",topic="noodle/1/node.health"}'), 3, 'label values escaped')
  t.equal(value(text, 'gossipsub_rpc_sent_bytes_total'), 1234)
  t.match(text, /# HELP gossipsub_rpc_sent_bytes_total Number of bytes sent.\n# TYPE gossipsub_rpc_sent_bytes_total counter\n/)
  t.equal(metrics.registry, store.registry, 'one registry')
})

t.test('every family has HELP and TYPE, and every _total family is a counter', async (t) => {
  const { store, metrics, latencies } = setup()
  store.inc('noodle_gossip_rejected_total', { topic: 'noodle/1/node.health', reason: 'malformed' })
  store.gauge({ name: 'gossipsub_rpc_recv_bytes_total', help: 'Number of bytes received.' }).inc(5)
  latencies.observeInference('abc', 3)
  const found = families(await metrics.render())
  t.same(untyped(found), [])
  t.same(mistyped(found), [])
})

t.test('construction registers nothing: the figures join the registry at start and leave it at stop', async (t) => {
  const store = new MetricsStore()
  const { sources } = setup()
  const metrics = new PrometheusMetrics({ store, sources })
  const latencies = new LatencyMetrics({ registry: store.registry })
  const names = () => store.registry.getMetricsAsArray().map((m) => m.name).sort()
  const empty = names()
  t.same(empty, [], 'nothing registered by the constructors')
  latencies.observeInference('abc', 3)
  metrics.start()
  latencies.start()
  const started = names()
  t.same(started.filter((n) => n.startsWith('noodle_')), [
    'noodle_camera_fps', 'noodle_camera_latency_seconds', 'noodle_camera_skipped_frames_total', 'noodle_coordinator', 'noodle_election_term',
    'noodle_event_loop_lag_seconds', 'noodle_inference_seconds', 'noodle_ingest_broker_dropped_total', 'noodle_ingest_connected',
    'noodle_ingest_dead_letter', 'noodle_ingest_received_total', 'noodle_ingest_rejected_total', 'noodle_ingest_stored_total',
    'noodle_libp2p_connections', 'noodle_libp2p_peers', 'noodle_members', 'noodle_work_running'
  ])
  t.equal(started.includes('nodejs_eventloop_lag_seconds') && started.includes('process_resident_memory_bytes'), true, 'prom-client\'s defaults')
  t.equal(value(await metrics.render(), 'noodle_inference_seconds_count{model="abc"}'), undefined, 'an observation before start is not counted')
  store.inc('noodle_gossip_rejected_total', { topic: 'noodle/1/node.health', reason: 'malformed' })
  metrics.stop()
  latencies.stop()
  t.same(names(), ['noodle_gossip_rejected_total'], 'stop leaves only what others registered')
  latencies.observeCameraResult('door', 10)
  metrics.start()
  latencies.start()
  t.same(names(), [...started, 'noodle_gossip_rejected_total'].sort(), 'a second start registers the same again')
  t.equal(value(await metrics.render(), 'noodle_election_term'), 7)
})
