import { readFileSync } from 'node:fs'
import t from 'tap'
import { BROKER_REFUSALS } from '../../../agent/ingest/mqtt-broker.ts'
import { COUNTERS } from '../../../agent/metrics/counters.ts'
import { LatencyMetrics } from '../../../agent/metrics/latencies.ts'
import { MetricsStore } from '../../../agent/metrics/metrics.ts'
import { PrometheusMetrics } from '../../../agent/metrics/prometheus.ts'
import { families } from './families.ts'

const DOC = readFileSync(new URL('../../../docs/metrics.md', import.meta.url), 'utf8')

/** The metric names docs/metrics.md writes in backticks: `a_{b,c}_total` is two names; `a{label}` is `a`. */
function documented (): Set<string> {
  const names = new Set<string>()
  for (const [, token] of DOC.matchAll(/`([a-z_]+[^`]*)`/g)) {
    const name = (token ?? '').replace(/\s+/g, '').replace(/([a-z])\{[^}]*\}$/, '$1')
    const group = /^([a-z_]*)\{([a-z_,]+)\}([a-z_]*)$/.exec(name)
    if (group === null) names.add(name)
    else for (const part of (group[2] ?? '').split(',')) names.add(`${group[1] ?? ''}${part}${group[3] ?? ''}`)
  }
  return names
}

t.test('docs/metrics.md names every noodle_ metric the agent exposes', async (t) => {
  const store = new MetricsStore()
  const metrics = new PrometheusMetrics({
    store,
    sources: { members: () => [], election: () => ({ term: 1, isCoordinator: false }), connections: () => 0, peers: () => 0, workRunning: () => 0, ingest: () => null, cameras: () => [], loopLagMs: () => 0 }
  })
  metrics.start()
  new LatencyMetrics({ registry: store.registry }).start()
  const exposed = [...Object.keys(families(await metrics.render())).filter((name) => name.startsWith('noodle_')), ...Object.keys(COUNTERS)]
  const names = documented()
  t.same(exposed.filter((name) => !names.has(name)), [], 'each is in the reference')
  t.same([...names].filter((name) => name.startsWith('noodle_') && !exposed.includes(name)), [], 'and the reference names no other')
})

t.test('docs/metrics.md lists every reason the embedded broker refuses for', async (t) => {
  const bullet = DOC.slice(DOC.indexOf('noodle_mqtt_broker_refused_total'), DOC.indexOf(';', DOC.indexOf('noodle_mqtt_broker_refused_total')))
  t.same(BROKER_REFUSALS.filter((reason) => !bullet.includes(`\`${reason}\``)), [])
})
