import { getMetrics } from '@libp2p/gossipsub/metrics'
import t from 'tap'
import { API_FAILED_METRIC, API_REFUSED_METRIC } from '../../../agent/api/server.ts'
import { DECISIONS_METRIC, EVALUATIONS_METRIC } from '../../../agent/coordination/orchestrator.ts'
import { BROKER_REFUSED_METRIC } from '../../../agent/ingest/mqtt-broker.ts'
import { REDELIVERED_METRIC } from '../../../agent/ingest/mqtt-session.ts'
import { DIAL_DROPPED_METRIC } from '../../../agent/mesh/dialer.ts'
import { PROBES_METRIC } from '../../../agent/membership/prober.ts'
import { COUNTERS } from '../../../agent/metrics/counters.ts'
import { MetricsStore } from '../../../agent/metrics/metrics.ts'
import { REJECTED_METRIC } from '../../../protocols/validator.ts'
import { LIVE_DROPPED_METRIC } from '../../../agent/api/live.ts'
import { MODEL_REFUSED_METRIC, WORKER_LOST_METRIC } from '../../../runtime/pool.ts'
import { families, mistyped, untyped } from './families.ts'

t.test('every counter the agent counts is declared, with its help', async (t) => {
  const names = [REJECTED_METRIC, DECISIONS_METRIC, EVALUATIONS_METRIC, DIAL_DROPPED_METRIC, WORKER_LOST_METRIC,
    MODEL_REFUSED_METRIC, API_REFUSED_METRIC, API_FAILED_METRIC, BROKER_REFUSED_METRIC, REDELIVERED_METRIC, PROBES_METRIC, LIVE_DROPPED_METRIC]
  t.same(names.filter((name) => COUNTERS[name] === undefined), [], 'each is in agent/metrics/counters.ts')
  t.same(Object.keys(COUNTERS).sort(), [...names].sort(), 'and nothing else is')
  t.same(Object.keys(COUNTERS).filter((name) => !name.endsWith('_total')), [], 'each is named as a counter')
})

t.test('our counters: read at once here, rendered by prom-client with HELP and TYPE', async (t) => {
  const m = new MetricsStore()
  m.inc(REJECTED_METRIC, { topic: 'noodle/1/node.health', reason: 'malformed' })
  m.inc(REJECTED_METRIC, { reason: 'malformed', topic: 'noodle/1/node.health' }, 2)
  m.inc(REJECTED_METRIC, { topic: 'noodle/1/node.health', reason: 'bad "json"\n' })
  m.inc(EVALUATIONS_METRIC)
  t.same({
    one: m.get(REJECTED_METRIC, { reason: 'malformed', topic: 'noodle/1/node.health' }),
    sum: m.sum(REJECTED_METRIC),
    series: m.series(REJECTED_METRIC),
    plain: m.get(EVALUATIONS_METRIC),
    plainSeries: m.series(EVALUATIONS_METRIC),
    never: m.get(DECISIONS_METRIC, { outcome: 'applied' })
  }, {
    one: 3,
    sum: 4,
    series: { 'malformed/noodle/1/node.health': 3, 'bad "json"\n/noodle/1/node.health': 1 },
    plain: 1,
    plainSeries: {},
    never: 0
  }, 'whatever order the labels came in')
  m.inc(EVALUATIONS_METRIC, undefined, -1)
  m.inc(EVALUATIONS_METRIC, undefined, Number.NaN)
  t.equal(m.get(EVALUATIONS_METRIC), 1, 'a counter never goes down, nor turns into NaN')
  const text = await m.registry.metrics()
  t.same(families(text)[REJECTED_METRIC], { help: COUNTERS[REJECTED_METRIC]?.help, type: 'counter' })
  t.match(text, `\n${REJECTED_METRIC}{reason="malformed",topic="noodle/1/node.health"} 3\n`)
  t.match(text, `\n${REJECTED_METRIC}{reason="bad \\"json\\"\\n",topic="noodle/1/node.health"} 1\n`, 'label values escaped')
  t.match(text, `\n${EVALUATIONS_METRIC} 1\n`)
  t.notMatch(text, DECISIONS_METRIC, 'a counter appears once it has counted something')
  m.inc(EVALUATIONS_METRIC)
  t.match(await m.registry.metrics(), `\n${EVALUATIONS_METRIC} 2\n`, 'each scrape shows the counts as they are')
})

t.test('a counter must be declared, and counted with the labels it declares', async (t) => {
  const m = new MetricsStore()
  t.throws(() => { m.inc('noodle_nonsense_total') }, { code: 'ERR_METRIC_DECLARATION', message: /noodle_nonsense_total is not declared/ })
  t.throws(() => { m.inc(REJECTED_METRIC, { topic: 'x' }) }, { code: 'ERR_METRIC_DECLARATION', message: /counted with labels \{topic\}, declared \{reason,topic\}/ })
  t.throws(() => { m.inc(EVALUATIONS_METRIC, { topic: 'x' }) }, { code: 'ERR_METRIC_DECLARATION' })
  t.equal(m.sum(REJECTED_METRIC), 0, 'nothing was counted')
  t.match(await m.registry.metrics(), `# TYPE ${REJECTED_METRIC} counter\n`, 'and the scrape still renders')
})

t.test('gossipsub\'s register: _total gauges are counters; gauges, histograms and avg/min/max are prom-client\'s', async (t) => {
  const m = new MetricsStore()
  const sent = m.gauge({ name: 'gossipsub_rpc_sent_bytes_total', help: 'bytes sent' })
  sent.inc()
  sent.inc(41)
  const invalid = m.gauge<{ error: string }>({ name: 'gossipsub_msg_received_invalid_total', help: 'invalid', labelNames: ['error'] })
  invalid.inc({ error: 'reject' })
  invalid.inc({ error: 'bad signature' }, 2)
  invalid.set({ error: 'reject' }, 5)
  let counted = 0
  invalid.addCollect(() => { counted++ })
  sent.set(50)
  t.same({ sent: m.get('gossipsub_rpc_sent_bytes_total'), invalid: m.series('gossipsub_msg_received_invalid_total') },
    { sent: 50, invalid: { reject: 5, 'bad signature': 2 } }, 'read like ours (the gossip view reads them)')

  const peers = m.gauge<{ topicStr: string }>({ name: 'gossipsub_topic_peer_count', help: 'peers by topic', labelNames: ['topicStr'] })
  peers.addCollect((g) => { g.set({ topicStr: 'a' }, 3) })
  peers.inc({ topicStr: 'b' })
  const plain = m.gauge({ name: 'gossipsub_mcache_size', help: 'cache' })
  plain.set(4)
  plain.inc()
  plain.inc(2)
  const publish = m.histogram<{ topic: string }>({ name: 'gossipsub_msg_publish_seconds', help: 'publish time', labelNames: ['topic'], buckets: [0.1, 1] })
  publish.observe({ topic: 'a' }, 0.5)
  const heartbeat = m.histogram({ name: 'gossipsub_heartbeat_duration_seconds', help: 'heartbeat' })
  heartbeat.observe(0.003)
  heartbeat.startTimer()()
  const cleared = m.histogram({ name: 'gossipsub_cleared_seconds', help: 'cleared' })
  cleared.observe(1)
  cleared.reset()
  const score = m.avgMinMax({ name: 'gossipsub_score', help: 'scores' })
  score.set([1, 2, 6])
  const perMesh = m.avgMinMax<{ topic: string }>({ name: 'gossipsub_score_per_mesh', help: 'mesh scores', labelNames: ['topic'] })
  perMesh.set({ topic: 'a' }, [])

  t.equal(counted, 0, 'collectors wait for a scrape')
  m.collect()
  const text = await m.registry.metrics()
  t.equal(counted, 1, 'and run when the store collects, before the registry is rendered')
  const value = (series: string) => Number(text.split('\n').find((l) => l.startsWith(series + ' '))?.slice(series.length + 1))
  t.same({
    sent: value('gossipsub_rpc_sent_bytes_total'),
    invalid: value('gossipsub_msg_received_invalid_total{error="bad signature"}'),
    peersA: value('gossipsub_topic_peer_count{topicStr="a"}'),
    peersB: value('gossipsub_topic_peer_count{topicStr="b"}'),
    plain: value('gossipsub_mcache_size'),
    publishBucket: value('gossipsub_msg_publish_seconds_bucket{le="1",topic="a"}'),
    publishBelow: value('gossipsub_msg_publish_seconds_bucket{le="0.1",topic="a"}'),
    heartbeats: value('gossipsub_heartbeat_duration_seconds_count'),
    defaultBuckets: value('gossipsub_heartbeat_duration_seconds_bucket{le="10"}'),
    cleared: text.includes('\ngossipsub_cleared_seconds_count'),
    avg: value('gossipsub_score_avg'),
    min: value('gossipsub_score_min'),
    max: value('gossipsub_score_max'),
    emptyMax: value('gossipsub_score_per_mesh_max{topic="a"}')
  }, {
    sent: 50,
    invalid: 2,
    peersA: 3,
    peersB: 1,
    plain: 7,
    publishBucket: 1,
    publishBelow: 0,
    heartbeats: 2,
    defaultBuckets: 2,
    cleared: false,
    avg: 3,
    min: 1,
    max: 6,
    emptyMax: 0
  })
  t.same(Object.fromEntries(Object.entries(families(text)).map(([name, f]) => [name, f.type])), {
    gossipsub_rpc_sent_bytes_total: 'counter',
    gossipsub_msg_received_invalid_total: 'counter',
    gossipsub_topic_peer_count: 'gauge',
    gossipsub_mcache_size: 'gauge',
    gossipsub_msg_publish_seconds: 'histogram',
    gossipsub_heartbeat_duration_seconds: 'histogram',
    gossipsub_cleared_seconds: 'histogram',
    gossipsub_score_avg: 'gauge',
    gossipsub_score_min: 'gauge',
    gossipsub_score_max: 'gauge',
    gossipsub_score_per_mesh_avg: 'gauge',
    gossipsub_score_per_mesh_min: 'gauge',
    gossipsub_score_per_mesh_max: 'gauge'
  })
  t.equal(families(text).gossipsub_score_min?.help, 'scores (minimum)')
})

t.test('every metric gossipsub declares gets a HELP, and its right TYPE, once it is used', async (t) => {
  const m = new MetricsStore()
  // Each metric is used with every label it declares: the store notes them as gossipsub creates its metrics.
  const labelsOf = new Map<unknown, Record<string, string>>()
  const noting = new Proxy(m, {
    get (target, prop) {
      const member: unknown = Reflect.get(target, prop)
      if (typeof member !== 'function') return member
      return (config: { labelNames?: string[] }) => {
        const made: unknown = member.call(target, config)
        labelsOf.set(made, Object.fromEntries((config.labelNames ?? []).map((name) => [name, 'x'])))
        return made
      }
    }
  })
  const declared = getMetrics(noting, new Map(), { gossipPromiseExpireSec: 3, behaviourPenaltyThreshold: 6, maxMeshMessageDeliveriesWindowSec: 2 })
  t.same(families(await m.registry.metrics()), {}, 'a metric nothing used is not rendered')
  let used = 0
  for (const metric of Object.values(declared) as unknown[]) {
    const labels = labelsOf.get(metric)
    if (labels === undefined) continue
    const { inc, observe, set } = metric as { inc?: unknown, observe?: unknown, set?: unknown }
    used++
    if (typeof inc === 'function') inc(labels, 1)
    else if (typeof observe === 'function') observe(labels, 0.1)
    else if (typeof set === 'function') set(labels, [1, 2])
  }
  const found = families(await m.registry.metrics())
  t.equal(used, labelsOf.size, `every metric gossipsub made was used (${used})`)
  t.equal(Object.keys(found).length, used + 2 * 3, 'each is a family; an avg/min/max is three (gossipsub has three)')
  t.same(untyped(found), [], 'each has HELP and TYPE')
  t.same(mistyped(found), [], '_total families are counters, and only they are')
})
