import t from 'tap'
import { PayloadParser, topicMatches, topicRuleProblem } from '../../protocols/sensor-payload.ts'
import type { Reading, Rejection } from '../../protocols/sensor-payload.ts'

const NOW = Date.parse('2026-11-28T12:00:00Z')
const parser = (o: Partial<ConstructorParameters<typeof PayloadParser>[0]> = {}) =>
  new PayloadParser({ valueFields: ['value'], maxPayloadBytes: 64, topicRules: [], maxClockSkewMs: 600_000, ...o })
const parse = (p: PayloadParser, topic: string, payload: string | Buffer) => p.parse(topic, Buffer.from(payload), NOW)

t.test('numbers, plain or JSON, are one reading stamped with the arrival time', async (t) => {
  const p = parser()
  t.same(parse(p, 'home/t1', '21.5'), [{ sensor: 'home/t1', metric: 'value', ts: NOW, value: 21.5 }])
  t.same(parse(p, 'home/t1', ' -3e2\n'), [{ sensor: 'home/t1', metric: 'value', ts: NOW, value: -300 }])
  t.same(parse(p, 'home/t1', '.5'), [{ sensor: 'home/t1', metric: 'value', ts: NOW, value: 0.5 }])
})

t.test('objects: value and ts, or configured fields each naming a metric', async (t) => {
  const p = parser({ valueFields: ['value', 'temperature', 'humidity'] })
  t.same(parse(p, 'a', '{"value": 2, "ts": 1764331200}'), [{ sensor: 'a', metric: 'value', ts: 1764331200000, value: 2 }], 'ts in seconds')
  t.same(parse(p, 'a', '{"value": 2, "ts": 1764331200123}'), [{ sensor: 'a', metric: 'value', ts: 1764331200123, value: 2 }], 'ts in ms')
  t.same(parse(p, 'a', '{"value": 2, "ts": "2026-11-28T11:00:00Z"}'), [{ sensor: 'a', metric: 'value', ts: Date.parse('2026-11-28T11:00:00Z'), value: 2 }], 'ISO ts')
  t.same(parse(p, 'gh', '{"temperature": 26, "humidity": 70}'), [
    { sensor: 'gh', metric: 'temperature', ts: NOW, value: 26 },
    { sensor: 'gh', metric: 'humidity', ts: NOW, value: 70 }
  ])
})

t.test('SenML: the topic is the sensor, base name + name the metric, times in seconds (small ones relative)', async (t) => {
  const p = parser({ maxPayloadBytes: 1024 })
  const readings = parse(p, 'senml/in', JSON.stringify([
    { bn: 'urn:dev:mac:0024be:', bt: 1764331200, n: 'temp', u: 'Cel', v: 21.5 },
    { n: 'temp', t: 60, v: 22 },
    { n: 'door', vb: true },
    { n: 'label', vs: 'kitchen' }
  ])) as Reading[]
  t.same(readings, [
    { sensor: 'senml/in', metric: 'urn:dev:mac:0024be:temp', ts: 1764331200000, value: 21.5 },
    { sensor: 'senml/in', metric: 'urn:dev:mac:0024be:temp', ts: 1764331260000, value: 22 },
    { sensor: 'senml/in', metric: 'urn:dev:mac:0024be:door', ts: 1764331200000, value: 1 }
  ], 'string values are skipped, booleans are 1/0')
  t.same(parse(p, 'senml/in', '[{"n": "x", "v": 1, "t": -5}]'), [{ sensor: 'senml/in', metric: 'x', ts: NOW - 5000, value: 1 }], 'relative time, topic as sensor')
})

t.test('topic rules name the sensor and the metric, Telegraf style', async (t) => {
  const p = parser({ topicRules: [{ topic: 'sensors/+/+', levels: '_/sensor/metric' }, { topic: 'site/+/#', levels: '_/sensor/metric' }] })
  t.same(parse(p, 'sensors/kitchen/temperature', '21'), [{ sensor: 'kitchen', metric: 'temperature', ts: NOW, value: 21 }])
  t.same(parse(p, 'site/north/a/b', '1'), [{ sensor: 'north', metric: 'a/b', ts: NOW, value: 1 }], '# takes the rest')
  t.same(parse(p, 'other/x', '1'), [{ sensor: 'other/x', metric: 'value', ts: NOW, value: 1 }], 'no rule: the topic is the sensor')
  t.same(parse(p, 'sensors/kitchen/temperature', '22'), [{ sensor: 'kitchen', metric: 'temperature', ts: NOW, value: 22 }], 'cached')
  t.equal(topicRuleProblem({ topic: 'a/+', levels: 'sensor' }), 'levels has 1 entries but topic has 2 levels')
  t.equal(topicRuleProblem({ topic: 'a/+', levels: 'x/sensor' }), 'levels entry "x" must be sensor, metric or _')
  t.equal(topicRuleProblem({ topic: 'a/+', levels: '_/metric' }), 'levels must name at least one sensor level')
  t.equal(topicRuleProblem({ topic: 'a/+/+', levels: 'sensor/metric/metric' }), 'levels may name at most one metric level')
  t.equal(topicRuleProblem({ topic: 'a/+', levels: '_/sensor' }), null)
  t.ok(topicMatches('a/#', 'a'), '# matches the parent level too')
  t.notOk(topicMatches('a/+', 'a/b/c'))
  t.notOk(topicMatches('a/b', 'a'))
})

t.test('every bad input is refused with its reason, never thrown', async (t) => {
  const p = parser({ valueFields: ['value', 'temperature'] })
  const reason = (payload: string | Buffer, topic = 't') => (parse(p, topic, payload) as Rejection).reason
  t.equal(reason('x'.repeat(65)), 'oversize')
  t.equal(reason(Buffer.from([0x32, 0xff, 0xfe])), 'invalid-utf8')
  t.equal(reason('{"value": 1'), 'bad-json')
  t.equal(reason('NaN'), 'non-finite')
  t.equal(reason('-Infinity'), 'non-finite')
  t.equal(reason('1e999'), 'non-finite')
  t.equal(reason('{"value": 1, "ts": "yesterday"}'), 'bad-time')
  t.equal(reason('{"value": 1, "ts": -1}'), 'bad-time')
  t.equal(reason('{"value": 1, "ts": true}'), 'bad-time')
  t.equal(reason('hello'), 'unknown-shape')
  t.equal(reason('"21"'), 'unknown-shape')
  t.equal(reason('{"temp": 1}'), 'unknown-shape')
  t.equal(reason('{"value": "1"}'), 'unknown-shape')
  t.equal(reason('[1]'), 'bad-senml')
  t.equal(reason('[{"bn": 3, "v": 1}]'), 'bad-senml')
  t.equal(reason('[{"bt": "x", "v": 1}]'), 'bad-senml')
  t.equal(reason('[{"n": "x", "v": "1"}]'), 'bad-senml')
  t.equal(reason('[{"n": "x", "v": 1, "t": "now"}]'), 'bad-senml')
  t.equal(reason('[{"n": "x", "vs": "on"}]'), 'bad-senml')
  t.equal(reason('[{"n": "' + 'x'.repeat(300) + '", "v": 1}]', 'a'), 'oversize')
  t.equal(reason('1', 'x'.repeat(300)), 'bad-topic')
  const wide = new PayloadParser({ valueFields: ['value'], maxPayloadBytes: 1024, topicRules: [], maxClockSkewMs: 600_000 })
  t.equal((parse(wide, 'a', '[{"n": "' + 'x'.repeat(300) + '", "v": 1}]') as Rejection).reason, 'bad-senml')
  t.match((parse(p, 't', '{"temp": 1}') as Rejection).detail, /none of the value fields \(value, temperature\)/)
})
