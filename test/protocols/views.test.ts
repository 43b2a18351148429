import t from 'tap'
import type { IngestView, SeriesView } from '../../agent/api/routes/sensors.ts'
import type { CameraListView, ModelView, SensorReadingView } from '../../agent/api/views.ts'
import type { DeadLetterView } from '../../agent/ingest/sensor-store.ts'
import type { HealthSampleView } from '../../agent/store/health-history.ts'
import { MAX_JPEG_BYTES, MAX_VIEW_JSON_BYTES, decodeViewBody, viewHeaderCodec, viewRequestCodec } from '../../protocols/views.ts'
import type { ViewBody } from '../../protocols/views.ts'

// What the API gives is what a member's answer is checked against: each view's body type must take the API's own
// (a field the API adds and the schema lacks would be dropped on the way; one it renames, refused).
const shapes: [
  SensorReadingView[] extends ViewBody<'sensors'> ? true : false,
  SeriesView extends ViewBody<'series'> ? true : false,
  IngestView extends ViewBody<'ingest'> ? true : false,
  DeadLetterView[] extends ViewBody<'dead-letters'> ? true : false,
  ModelView[] extends ViewBody<'models'> ? true : false,
  CameraListView[] extends ViewBody<'cameras'> ? true : false,
  HealthSampleView[] extends ViewBody<'health'> ? true : false
] = [true, true, true, true, true, true, true]

const enc = (value: unknown) => new TextEncoder().encode(JSON.stringify(value))

t.test('each view body type is the API\'s own', async (t) => {
  t.same(shapes, [true, true, true, true, true, true, true])
})

t.test('requests: each view with its names, checked', async (t) => {
  const series = { v: 1, view: 'series', sensor: 'kitchen', metric: 'temp', res: 'day', since: 0 } as const
  t.same(viewRequestCodec.decode(viewRequestCodec.encode(series)), { ok: true, value: series })
  t.match(viewRequestCodec.decode(enc({ v: 1, view: 'latest-jpeg', camera: '../etc' })), { ok: false, reason: 'invalid', detail: /^camera:/ })
  t.match(viewRequestCodec.decode(enc({ v: 1, view: 'snapshot-jpeg', event: 'x'.repeat(40) })), { ok: false, reason: 'invalid', detail: /^event:/ })
  t.match(viewRequestCodec.decode(enc({ v: 1, view: 'health', peer: 'me' })), { ok: false, reason: 'invalid', detail: /^peer: is not a peer id/ })
  t.match(viewRequestCodec.decode(enc({ v: 1, view: 'series', sensor: 's', metric: 'm', res: 'week' })), { ok: false, reason: 'invalid', detail: /^res:/ })
  t.match(viewRequestCodec.decode(enc({ v: 1, view: 'write' })), { ok: false, reason: 'invalid' }, 'no view writes: there is none to ask')
  t.match(viewRequestCodec.decode(enc({ v: 1, view: 'series', sensor: 's'.repeat(1_100), metric: 'm', res: 'hour' })), { ok: false, reason: 'oversized' })
})

t.test('headers: ok, or an error of the fixed statuses and codes', async (t) => {
  const error = { v: 1, ok: false, status: 404, code: 'ERR_CAMERA_NOT_HERE', message: 'not here' } as const
  t.same(viewHeaderCodec.decode(viewHeaderCodec.encode(error)), { ok: true, value: error })
  t.match(viewHeaderCodec.decode(enc({ ...error, code: 'ERR_MADE_UP' })), { ok: false, reason: 'invalid', detail: /^code:/ }, 'a code not on the list: the asker\'s metric labels stay few')
  t.match(viewHeaderCodec.decode(enc({ ...error, status: 200 })), { ok: false, reason: 'invalid', detail: /^status:/ })
  t.match(viewHeaderCodec.decode(enc({ ...error, message: 'm'.repeat(301) })), { ok: false, reason: 'invalid', detail: /^message:/ })
})

t.test('bodies: a JPEG by its start and size, JSON by its view\'s schema; what the schema does not name is dropped', async (t) => {
  const jpeg = Uint8Array.from([0xff, 0xd8, 0xff, 0xdb, 0])
  t.same(decodeViewBody('latest-jpeg', jpeg), { ok: true, value: { jpeg } })
  t.match(decodeViewBody('snapshot-jpeg', enc('<svg onload=alert(1)>')), { ok: false, reason: 'malformed', detail: 'not a JPEG' })
  t.match(decodeViewBody('latest-jpeg', new Uint8Array(MAX_JPEG_BYTES + 1).fill(0xff)), { ok: false, reason: 'oversized' })
  t.match(decodeViewBody('sensors', new Uint8Array(MAX_VIEW_JSON_BYTES + 1)), { ok: false, reason: 'oversized' })
  t.match(decodeViewBody('sensors', Uint8Array.from([0x5b, 0xff, 0x5d])), { ok: false, reason: 'malformed' }, 'not UTF-8')
  const sample = { at: '2026-11-30T10:00:00.000Z', cpuPct: 12, load1: 0.5, memUsedBytes: 1, memTotalBytes: 2, diskFreeBytes: 3, tempC: null }
  t.same(decodeViewBody('health', enc([{ ...sample, extra: '<script>' }])), { ok: true, value: { json: [sample] } })
  t.match(decodeViewBody('health', enc([{ ...sample, cpuPct: 400 }])), { ok: false, reason: 'invalid', detail: /^0.cpuPct:/ })
  t.match(decodeViewBody('cameras', enc([{ camera: '<img src=x onerror=alert(1)>' }])), { ok: false, reason: 'invalid', detail: /^0.camera:/ })
  t.match(decodeViewBody('health', enc(Array(1_442).fill(sample))), { ok: false, reason: 'invalid' }, 'more than a day of minutes')
})
