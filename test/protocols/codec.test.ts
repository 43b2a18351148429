import t from 'tap'
import { systemEventCodec } from '../../protocols/events.ts'
import { healthCodec } from '../../protocols/health.ts'
import type { HealthBeacon } from '../../protocols/health.ts'
import { sampleBeacon } from '../helpers/beacon.ts'

const good: HealthBeacon = sampleBeacon({
  name: 'pi-1', startedAt: 1_700_000_000_000, seq: 3, uptimeS: 12.5, cpuPct: 12.3, load1: 0.5, memUsedBytes: 100,
  memTotalBytes: 200, diskFreeBytes: 300, tempC: 48.2, accelerators: ['dri'], addrs: ['/ip4/10.0.0.2/tcp/4001'],
  work: [{ id: 'cam-door', kind: 'camera', source: 'rtsp://10.0.0.9/s', pinned: false, cpuPct: 40, memMB: 200, accelerator: 'preferred', fps: 5, size: 640, channels: 'rgb', hwaccel: 'auto' }],
  running: ['cam-door']
})
const enc = (value: unknown) => new TextEncoder().encode(JSON.stringify(value))

t.test('a health beacon round-trips', async (t) => {
  t.same(healthCodec.decode(healthCodec.encode(good)), { ok: true, value: good })
  const extra = healthCodec.decode(enc({ ...good, futureField: 1 }))
  t.ok(extra.ok, 'fields a newer agent adds within v1 are tolerated')
  t.notOk(extra.ok && 'futureField' in extra.value, 'and dropped')
  const { cpus: _c, providers: _p, term: _t, eligible: _e, priority: _pr, work: _w, running: _r, ...older } = good
  t.match(healthCodec.decode(enc(older)), { ok: true, value: { eligible: false, term: 0, work: [], running: [], cpus: 1 } },
    'a beacon from an agent that predates elections reads, and that agent may not coordinate')
})

t.test('each class of bad beacon is refused with its reason', async (t) => {
  const cases: Array<[string, Uint8Array, string, RegExp?]> = [
    ['truncated JSON', new TextEncoder().encode('{"v":1,"name"'), 'malformed'],
    ['invalid UTF-8', new Uint8Array([0x7b, 0xc3, 0x28, 0x7d]), 'malformed'],
    ['not an object', enc([good]), 'malformed'],
    ['no version', enc({ ...good, v: undefined }), 'malformed'],
    ['null', enc(null), 'malformed'],
    ['future version', enc({ ...good, v: 2 }), 'unknown-version', /v=2/],
    ['string version', enc({ ...good, v: '1' }), 'unknown-version'],
    ['oversized', enc({ ...good, name: 'n'.repeat(17_000) }), 'oversized', /exceeds 16384/],
    ['cpu over 100', enc({ ...good, cpuPct: 101 }), 'invalid', /^cpuPct:/],
    ['negative memory', enc({ ...good, memUsedBytes: -1 }), 'invalid', /^memUsedBytes:/],
    ['fractional bytes', enc({ ...good, diskFreeBytes: 1.5 }), 'invalid', /^diskFreeBytes:/],
    ['bad role', enc({ ...good, role: 'king' }), 'invalid', /^role:/],
    ['missing name', enc({ ...good, name: undefined }), 'invalid', /^name:/],
    ['empty name', enc({ ...good, name: '' }), 'invalid', /^name:/],
    ['too many addrs', enc({ ...good, addrs: Array(9).fill('/ip4/1.2.3.4/tcp/1') }), 'invalid', /^addrs:/],
    ['non-numeric temperature', enc({ ...good, tempC: 'hot' }), 'invalid', /^tempC:/]
  ]
  for (const [label, bytes, reason, detail] of cases) {
    const result = healthCodec.decode(bytes)
    t.equal(result.ok, false, `${label} is refused`)
    if (!result.ok) {
      t.equal(result.reason, reason, `${label}: ${reason}`)
      if (detail != null) t.match(result.detail, detail, `${label}: the detail names the field`)
    }
  }
})

t.test('system events: leave is read, unknown types and bad fields are refused', async (t) => {
  const leave = { v: 1, type: 'member.leave', at: 5, startedAt: 4 } as const
  t.same(systemEventCodec.decode(systemEventCodec.encode(leave)), { ok: true, value: leave })
  const unknown = systemEventCodec.decode(enc({ v: 1, type: 'member.explode', at: 1, startedAt: 1 }))
  t.match(unknown, { ok: false, reason: 'invalid' })
  t.match(systemEventCodec.decode(enc({ ...leave, at: -1 })), { ok: false, reason: 'invalid', detail: /^at:/ })
  t.match(systemEventCodec.decode(enc({ ...leave, v: 7 })), { ok: false, reason: 'unknown-version' })
  t.match(systemEventCodec.decode(new Uint8Array(16 * 1024 + 1).fill(32)), { ok: false, reason: 'oversized' })
})
