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
