import { encode as encodeCbor } from 'cborg'
import t from 'tap'
import { z } from 'zod'
import { cborCodec } from '../../protocols/codec.ts'
import { systemEventCodec } from '../../protocols/events.ts'
import { beaconMessage, beaconOf, healthCodec, HealthWireSchema, LINK_LENGTH, linksOf, MAX_LINKS, recordOf, revOf, wireOf } from '../../protocols/health.ts'
import type { HealthBeacon, HealthRecord, HealthWire } from '../../protocols/health.ts'
import { sampleBeacon } from '../helpers/beacon.ts'

const good: HealthBeacon = sampleBeacon({
  name: 'pi-1', startedAt: 1_700_000_000_000, seq: 3, uptimeS: 12.5, cpuPct: 12.3, load1: 0.5, memUsedBytes: 100,
  memTotalBytes: 200, diskFreeBytes: 300, tempC: 48.2, accelerators: ['dri'], addrs: ['/ip4/10.0.0.2/tcp/4001'],
  work: [{ id: 'cam-door', kind: 'camera', source: 'rtsp://10.0.0.9/s', pinned: false, cpuPct: 40, memMB: 200, accelerator: 'preferred', fps: 5, size: 640, channels: 'rgb', hwaccel: 'auto' }],
  running: ['cam-door'],
  models: [{ id: 'a'.repeat(64), p50Ms: 12.3 }],
  ingest: { received: 1_000, stored: 990, rejected: 10, perS: 12.5, brokerDropped: 0, connected: true }
})
const enc = (value: unknown) => new TextEncoder().encode(JSON.stringify(value))
const full: HealthWire = beaconMessage(good)
/** The wire's fields in order, as a CBOR array: what a sender of anything at all can put there. */
const positional = (wire: Record<string, unknown>) => encodeCbor(Object.keys(HealthWireSchema.shape).map((key) => wire[key]))

t.test('a health beacon round-trips through its pulse and record, to 0.1 (CPU %, °C, uptime, p50 ms) and 0.01 (load, ingest rate)', async (t) => {
  const decoded = healthCodec.decode(healthCodec.encode(full))
  t.same(decoded, { ok: true, value: full })
  t.same(decoded.ok && beaconOf(decoded.value, recordOf(good)), good, 'the receiver rebuilds exactly the beacon that was sent')
  t.same(beaconOf(wireOf({ ...good, cpuPct: 12.34, tempC: 48.26, load1: 0.504 }, 1), recordOf(good)), { ...good, cpuPct: 12.3, tempC: 48.3, load1: 0.5 }, 'figures finer than that are rounded')
  const pulse = wireOf(good, revOf(recordOf(good)))
  t.equal(pulse.record, undefined, 'a pulse carries no record')
  t.same(healthCodec.decode(healthCodec.encode(pulse)), { ok: true, value: pulse })
  t.equal(revOf(recordOf({ ...good, seq: 9, cpuPct: 99 })), revOf(recordOf(good)), 'the figures that change leave the revision alone')
  t.not(revOf(recordOf({ ...good, priority: 5 })), revOf(recordOf(good)), 'a record change makes a new revision')
  const troubled = { ...good, degraded: ['cuda: device lost'], unable: [{ work: 'cam-door', why: 'cannot-run' as const }] }
  const decodedTrouble = healthCodec.decode(healthCodec.encode(beaconMessage(troubled)))
  t.same(decodedTrouble.ok && beaconOf(decodedTrouble.value, decodedTrouble.value.record as HealthRecord), troubled, 'a degraded box\'s trouble travels in its record')
  t.equal(recordOf(good).degraded, undefined, 'a healthy box\'s record leaves them out: its revision is what it was before they existed')
  t.not(revOf(recordOf(troubled)), revOf(recordOf(good)), 'trouble is a record change: a new revision, the record is sent')
  const extra = healthCodec.decode(encodeCbor([...Object.keys(HealthWireSchema.shape).map((key) => full[key as keyof HealthWire]), 'a field from a newer agent']))
  t.match(extra, { ok: true, value: { seq: 3 } }, 'positions past the ones this agent knows are tolerated')
})

t.test('sizes: a pulse is tens of bytes, a whole beacon a few hundred, against ~870 B of v1 JSON', async (t) => {
  const pulse = healthCodec.encode(wireOf(good, revOf(recordOf(good))))
  const whole = healthCodec.encode(full)
  const small = healthCodec.encode(wireOf(sampleBeacon({ startedAt: 1_700_000_000_000 }), 1))
  t.comment(`pulse ${pulse.byteLength} B (small box ${small.byteLength} B), with record ${whole.byteLength} B, v1 JSON ${enc({ ...good, v: 1 }).byteLength} B`)
  t.ok(pulse.byteLength <= 80, `pulse ${pulse.byteLength} B`)
  t.ok(small.byteLength <= 40, `a small box's pulse ${small.byteLength} B`)
  t.ok(whole.byteLength < enc(good).byteLength * 0.75, `whole ${whole.byteLength} B`)
})

t.test('links: the members a box is connected to ride in its record, as the ends of their peer ids, and only change it when they change', async (t) => {
  const peers = Array.from({ length: 15 }, (_, i) => `12D3KooW${String(i).padStart(2, '0')}${'x'.repeat(42)}`.slice(0, 44) + `end${String(i).padStart(5, '0')}`.replace(/0/g, 'a'))
  const links = linksOf([...peers, peers[0] as string, 'not-a-member-peer-id-1234567890'], (p) => peers.includes(p))
  t.same(links, peers.map((p) => p.slice(-LINK_LENGTH)).sort(), 'each member once, by its end, sorted; a connection to a non-member is no link')
  t.equal(linksOf(Array.from({ length: 300 }, (_, i) => `12D3KooW${'Q'.repeat(40)}${String(i).padStart(8, 'z')}`), () => true).length, MAX_LINKS, 'at most MAX_LINKS')
  const linked = { ...good, links }
  const decoded = healthCodec.decode(healthCodec.encode(beaconMessage(linked)))
  t.same(decoded.ok && beaconOf(decoded.value, decoded.value.record as HealthRecord), linked, 'links travel in the record')
  t.equal(recordOf(good).links, undefined, 'a box without links leaves them out: its revision is what it was before they existed')
  t.not(revOf(recordOf(linked)), revOf(recordOf(good)), 'a link made or lost is a record change')
  t.equal(revOf(recordOf({ ...linked, links: [...links] })), revOf(recordOf(linked)), 'the same links, the same revision')
  const pulse = healthCodec.encode(wireOf(linked, revOf(recordOf(linked))))
  t.equal(pulse.byteLength, healthCodec.encode(wireOf(good, revOf(recordOf(good)))).byteLength, 'the pulse does not grow')
  const whole = healthCodec.encode(beaconMessage(linked)).byteLength
  const without = healthCodec.encode(full).byteLength
  t.comment(`record with links to 15 members: ${whole} B, ${whole - without} B for the links`)
  t.ok(whole - without <= 15 * 9 + 8, `links to 15 members add ${whole - without} B`)
  const bad = (l: unknown) => healthCodec.decode(positional({ ...full, record: { ...full.record, links: l } }))
  t.match(bad(['../etc/p']), { ok: false, reason: 'invalid', detail: /^record.links.0: is not the end of a peer id/ })
  t.match(bad([peers[0]]), { ok: false, reason: 'invalid', detail: /^record.links.0:/ }, 'a whole peer id is not what a link is')
  t.match(bad(Array(MAX_LINKS + 1).fill('abcdefgh')), { ok: false, reason: 'invalid', detail: /^record.links:/ })
})

t.test('each class of bad health message is refused with its reason', async (t) => {
  const bytes = healthCodec.encode(full)
  const cases: Array<[string, Uint8Array, string, RegExp?]> = [
    ['truncated CBOR', bytes.subarray(0, bytes.byteLength - 3), 'malformed'],
    ['trailing bytes', new Uint8Array([...bytes, 0x01]), 'malformed'],
    ['v1 JSON', enc(good), 'malformed'],
    ['not an array', encodeCbor({ v: 2 }), 'malformed', /not an array/],
    ['an empty array', encodeCbor([]), 'malformed'],
    ['arrays nested past the decoder\'s stack', new Uint8Array(16_000).fill(0x81), 'malformed'],
    ['future version', positional({ ...full, v: 3 }), 'unknown-version', /v=3/],
    ['string version', positional({ ...full, v: '2' }), 'unknown-version'],
    ['oversized', healthCodec.encode(beaconMessage({ ...good, name: 'n'.repeat(17_000) })), 'oversized', /exceeds 16384/],
    ['cpu over 100 %', positional({ ...full, cpuPm: 1001 }), 'invalid', /^cpuPm:/],
    ['negative memory', positional({ ...full, memUsedBytes: -1 }), 'invalid', /^memUsedBytes:/],
    ['fractional bytes', positional({ ...full, diskFreeBytes: 1.5 }), 'invalid', /^diskFreeBytes:/],
    ['unknown role', positional({ ...full, role: 2 }), 'invalid', /^role:/],
    ['revision past 32 bits', positional({ ...full, rev: 2 ** 32 }), 'invalid', /^rev:/],
    ['missing seq', positional({ ...full, seq: undefined }), 'invalid', /^seq:/],
    ['empty name', positional({ ...full, record: { ...full.record, name: '' } }), 'invalid', /^record.name:/],
    ['too many addrs', positional({ ...full, record: { ...full.record, addrs: Array(9).fill('/ip4/1.2.3.4/tcp/1') } }), 'invalid', /^record.addrs:/],
    ['non-numeric temperature', positional({ ...full, tempDc: 'hot' }), 'invalid', /^tempDc:/],
    ['an ask that is not a peer id', positional({ ...full, ask: ['me'] }), 'invalid', /^ask.0:/],
    ['degraded with a newline', positional({ ...full, record: { ...full.record, degraded: ['cuda: lost\n\u001b[2J'] } }), 'invalid', /^record.degraded.0: must be printable ASCII/],
    ['degraded too long', positional({ ...full, record: { ...full.record, degraded: ['x'.repeat(121)] } }), 'invalid', /^record.degraded.0:/],
    ['unable for a work id that is not a name', positional({ ...full, record: { ...full.record, unable: [{ work: '../x', why: 'cannot-run' }] } }), 'invalid', /^record.unable.0.work:/],
    ['unable for an unknown reason', positional({ ...full, record: { ...full.record, unable: [{ work: 'cam', why: 'bored' }] } }), 'invalid', /^record.unable.0.why:/]
  ]
  for (const [label, data, reason, detail] of cases) {
    const result = healthCodec.decode(data)
    t.equal(result.ok, false, `${label} is refused`)
    if (!result.ok) {
      t.equal(result.reason, reason, `${label}: ${reason}`)
      if (detail != null) t.match(result.detail, detail, `${label}: the detail names the field`)
    }
  }
})

t.test('cborCodec: a schema\'s fields by position, the version first; absent ones travel as undefined', async (t) => {
  const codec = cborCodec('test/1/x', 64, 1, z.object({ v: z.literal(1), a: z.int().optional(), b: z.string().default('b') }))
  t.same([...codec.encode({ v: 1, a: undefined, b: 'x' })], [...encodeCbor([1, undefined, 'x'])])
  t.same([...codec.encode({ v: 1, a: 5, b: undefined as never })], [...encodeCbor([1, 5])], 'nothing at the end')
  t.same(codec.decode(encodeCbor([1])), { ok: true, value: { v: 1, b: 'b' } })
  t.match(codec.decode(new Uint8Array(65)), { ok: false, reason: 'oversized' })
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
