import t from 'tap'
import { EARLIEST_TIME_MS, MAX_ABS_VALUE, PayloadParser } from '../../protocols/sensor-payload.ts'
import type { Rejection } from '../../protocols/sensor-payload.ts'

const NOW = Date.parse('2026-11-28T12:00:00Z')
const SKEW = 600_000
const parser = new PayloadParser({ valueFields: ['value', 'temperature'], maxPayloadBytes: 1024, topicRules: [], maxClockSkewMs: SKEW })
const parse = (payload: string) => parser.parse('t', Buffer.from(payload), NOW)
const reason = (payload: string) => (parse(payload) as Rejection).reason

t.test('non-finite numbers are refused wherever they are, after any arithmetic', async (t) => {
  for (const payload of ['1e400', '-1e400', '{"value":1e400}', '{"temperature":-1e400}', '{"value":1,"ts":1e400}',
    '[{"v":1e400}]', '[{"v":1,"t":1e400}]', '[{"v":1,"bt":-1e400}]', '[{"v":1,"bt":1e308}]', '[{"v":1,"bt":1.7e308,"t":1.7e308}]']) {
    t.equal(reason(payload), 'non-finite', payload)
  }
  t.match(parse('[{"v":1,"bt":1e308}]'), { detail: 'record 0: bt + t overflows to Infinity' })
})

t.test('values beyond ±1e100 are refused, so no rollup sum can overflow', async (t) => {
  for (const payload of ['1e101', '{"value":-1.7e308}', '[{"v":1e300}]']) t.equal(reason(payload), 'out-of-range', payload)
  t.same(parse(String(MAX_ABS_VALUE)), [{ sensor: 't', metric: 'value', ts: NOW, value: MAX_ABS_VALUE }], 'the bound itself is a value')
})

t.test('times must lie between 2000-01-01 and the arrival plus the allowed skew', async (t) => {
  t.same(parse(`{"value":1,"ts":${NOW + SKEW}}`), [{ sensor: 't', metric: 'value', ts: NOW + SKEW, value: 1 }], 'exactly the skew ahead')
  t.equal(reason(`{"value":1,"ts":${NOW + SKEW + 1}}`), 'time-in-future')
  t.equal(reason('{"value":1,"ts":"+275760-09-13T00:00:00Z"}'), 'time-in-future', 'the last date there is')
  t.equal(reason('[{"v":1,"t":200000000}]'), 'time-in-future', 'a relative SenML time')
  t.equal(reason('[{"v":1,"bt":1e300}]'), 'time-in-future', 'beyond any date: no ISO text in the detail')
  t.match(parse('[{"v":1,"bt":1e300}]'), { detail: /^time 1e\+303 ms is more than 600000 ms after its arrival/ })
  t.same(parse(`{"value":1,"ts":${EARLIEST_TIME_MS}}`), [{ sensor: 't', metric: 'value', ts: EARLIEST_TIME_MS, value: 1 }], '2000-01-01 itself')
  t.equal(reason(`{"value":1,"ts":${EARLIEST_TIME_MS - 1}}`), 'time-too-old')
  t.equal(reason('{"value":1,"ts":1}'), 'time-too-old', '1 s after the epoch')
  t.equal(reason('[{"v":1,"t":-300000000}]'), 'time-too-old', 'an absolute SenML time in 1960')
  t.equal(reason('[{"v":1},{"v":2,"t":-300000000}]'), 'time-too-old', 'one bad record refuses the message')
  const clockAhead = new PayloadParser({ valueFields: ['value'], maxPayloadBytes: 64, topicRules: [], maxClockSkewMs: 86_400_000 })
  t.same(clockAhead.parse('t', Buffer.from(`{"value":1,"ts":${NOW + 3_600_000}}`), NOW), [{ sensor: 't', metric: 'value', ts: NOW + 3_600_000, value: 1 }], 'mqtt.maxClockSkewMs widens it')
})

t.test('a SenML base name never names a sensor outside the topic: bn + n is the metric of the topic\'s sensor', async (t) => {
  const senml = new PayloadParser({ valueFields: ['value'], maxPayloadBytes: 1024, topicRules: [], maxClockSkewMs: SKEW })
  t.same(senml.parse('sensors/garage', Buffer.from('[{"bn":"sensors/kitchen","n":"","v":99}]'), NOW),
    [{ sensor: 'sensors/garage', metric: 'sensors/kitchen', ts: NOW, value: 99 }], 'bn alone is the metric')
  t.same(senml.parse('sensors/garage', Buffer.from('[{"bn":"dev-1:","n":"temp","v":1},{"n":"rh","v":2}]'), NOW), [
    { sensor: 'sensors/garage', metric: 'dev-1:temp', ts: NOW, value: 1 },
    { sensor: 'sensors/garage', metric: 'dev-1:rh', ts: NOW, value: 2 }
  ], 'bn + n, as RFC 8428 joins them')
  t.match(senml.parse('t', Buffer.from('[{"n":5,"v":1}]'), NOW), { reason: 'bad-senml', detail: 'record 0: n must be a string' })
  t.match(senml.parse('t', Buffer.from(`[{"bn":"${'b'.repeat(200)}","n":"${'n'.repeat(100)}","v":1}]`), NOW),
    { reason: 'bad-senml', detail: 'record 0: bn + n is over 256 characters' })
})

t.test('control characters in sensor and metric names are refused, so no two names can be taken for one', async (t) => {
  const rules = new PayloadParser({ valueFields: ['value'], maxPayloadBytes: 1024, topicRules: [{ topic: 'r/+/+', levels: '_/sensor/metric' }], maxClockSkewMs: SKEW })
  for (const name of ['b\u0000c', 'a\u001fb', 'a\u007fb', 'a\u0085b']) {
    t.match(rules.parse('t', Buffer.from(JSON.stringify([{ bn: 'a', n: name, v: 1 }])), NOW),
      { reason: 'bad-senml', detail: 'record 0: bn + n holds a control character' }, `SenML name ${JSON.stringify(name)}`)
    t.match(rules.parse(`x/${name}`, Buffer.from('1'), NOW), { reason: 'bad-topic', detail: /control character/ }, `topic ${JSON.stringify(name)}`)
    t.match(rules.parse(`r/s/${name}`, Buffer.from('1'), NOW), { reason: 'bad-topic' }, `metric level ${JSON.stringify(name)}`)
  }
  t.same(rules.parse('r/s/m', Buffer.from('1'), NOW), [{ sensor: 's', metric: 'm', ts: NOW, value: 1 }], 'clean names pass')
  t.same(rules.parse('t', Buffer.from('[{"n":"é ü","v":1}]'), NOW), [{ sensor: 't', metric: 'é ü', ts: NOW, value: 1 }], 'other Unicode passes')
})

t.test('ts strings are strict ISO-8601 with a zone; anything else is bad-time, never a made-up date', async (t) => {
  for (const ts of ['5', '2026', '2026-11-28', '2026-11-28T11:00:00', 'Nov 28 2026', '2026-11-28 11:00:00Z', '2026-11-28T11:00:00+1', ' 2026-11-28T11:00:00Z', '2026-13-28T11:00:00Z']) {
    t.match(parse(`{"value":1,"ts":${JSON.stringify(ts)}}`), { reason: 'bad-time' }, JSON.stringify(ts))
  }
  for (const [ts, ms] of [['2026-11-28T11:00:00Z', Date.UTC(2026, 10, 28, 11)], ['2026-11-28T11:00Z', Date.UTC(2026, 10, 28, 11)],
    ['2026-11-28T12:00:00.250+01:00', Date.UTC(2026, 10, 28, 11, 0, 0, 250)], ['2026-11-28T12:00:00+0100', Date.UTC(2026, 10, 28, 11)]] as const) {
    t.same(parse(`{"value":1,"ts":"${ts}"}`), [{ sensor: 't', metric: 'value', ts: ms, value: 1 }], ts)
  }
})
