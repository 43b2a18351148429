import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { HealthSampler, detectAccelerators, readTemperature } from '../../../agent/membership/health.ts'

t.test('a sample has sane figures for this box', async (t) => {
  const sampler = new HealthSampler({ dataDir: t.testdir(), accelerators: ['dri'] })
  const s = sampler.sample()
  t.ok(s.cpuPct >= 0 && s.cpuPct <= 100, `cpu ${s.cpuPct}%`)
  t.ok(s.memTotalBytes > s.memUsedBytes && s.memUsedBytes > 0)
  t.ok(s.diskFreeBytes > 0)
  t.ok(s.load1 >= 0)
  t.same(s.accelerators, ['dri'])
  t.type(new HealthSampler({ dataDir: t.testdir() }).sample().accelerators, Array, 'detects accelerators itself when not told')
})

t.test('temperature is the hottest readable thermal zone, null without any', async (t) => {
  const dir = t.testdir()
  for (const [zone, milli] of [['thermal_zone0', '41000'], ['thermal_zone1', '57500'], ['thermal_zone2', 'n/a']]) {
    mkdirSync(join(dir, zone as string))
    writeFileSync(join(dir, zone as string, 'temp'), `${milli as string}\n`)
  }
  mkdirSync(join(dir, 'thermal_zone3'))
  mkdirSync(join(dir, 'cooling_device0'))
  t.equal(readTemperature(dir), 57.5)
  t.equal(readTemperature(join(dir, 'missing')), null)
  t.equal(readTemperature(join(dir, 'cooling_device0')), null)
})

t.test('accelerators are named from their device nodes', async (t) => {
  t.same(detectAccelerators((p) => p === '/dev/nvidia0' || p === '/dev/apex_0'), ['nvidia', 'apex'])
  t.same(detectAccelerators(() => false), [])
})
