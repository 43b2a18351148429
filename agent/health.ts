import { existsSync, readdirSync, readFileSync, statfsSync } from 'node:fs'
import { cpus, freemem, loadavg, totalmem } from 'node:os'
import { join } from 'node:path'

/** The figures a health beacon carries about the box. */
export interface HealthSample {
  cpuPct: number
  load1: number
  memUsedBytes: number
  memTotalBytes: number
  diskFreeBytes: number
  tempC: number | null
  accelerators: string[]
}

/** Device nodes that tell which accelerators a box has. */
const ACCELERATOR_DEVICES: ReadonlyArray<[string, string]> = [
  ['nvidia', '/dev/nvidia0'],
  ['nvidia-tegra', '/dev/nvhost-ctrl-gpu'],
  ['dri', '/dev/dri/renderD128'],
  ['apex', '/dev/apex_0'],
  ['hailo', '/dev/hailo0'],
  ['rknpu', '/dev/rknpu']
]

export function detectAccelerators (exists: (path: string) => boolean = existsSync): string[] {
  return ACCELERATOR_DEVICES.filter(([, device]) => exists(device)).map(([name]) => name)
}

/** The hottest thermal zone in °C, or null where the box exposes none. */
export function readTemperature (thermalDir = '/sys/class/thermal'): number | null {
  let zones: string[]
  try {
    zones = readdirSync(thermalDir).filter((z) => z.startsWith('thermal_zone'))
  } catch {
    return null
  }
  let hottest: number | null = null
  for (const zone of zones) {
    try {
      const milli = Number(readFileSync(join(thermalDir, zone, 'temp'), 'utf8').trim())
      if (Number.isFinite(milli) && (hottest == null || milli / 1000 > hottest)) hottest = milli / 1000
    } catch {
      // Some zones refuse reads (no sensor behind them); the others still count.
    }
  }
  return hottest
}

function cpuTimes (): { idle: number, total: number } {
  let idle = 0
  let total = 0
  for (const cpu of cpus()) {
    const t = cpu.times
    idle += t.idle
    total += t.user + t.nice + t.sys + t.irq + t.idle
  }
  return { idle, total }
}

/** Samples the box: CPU busy % since the previous sample, load, memory, free disk under the data dir. */
export class HealthSampler {
  private readonly dataDir: string
  private readonly accelerators: string[]
  private last = cpuTimes()

  constructor (components: { dataDir: string, accelerators?: string[] }) {
    this.dataDir = components.dataDir
    // Devices do not come and go while the agent runs; look once.
    this.accelerators = components.accelerators ?? detectAccelerators()
  }

  sample (): HealthSample {
    const now = cpuTimes()
    const total = now.total - this.last.total
    const busy = total - (now.idle - this.last.idle)
    this.last = now
    const fs = statfsSync(this.dataDir)
    const memTotalBytes = totalmem()
    return {
      cpuPct: total > 0 ? Math.round(Math.min(100, Math.max(0, (busy / total) * 100)) * 10) / 10 : 0,
      load1: Math.round((loadavg()[0] ?? 0) * 100) / 100,
      memUsedBytes: memTotalBytes - freemem(),
      memTotalBytes,
      diskFreeBytes: fs.bavail * fs.bsize,
      tempC: readTemperature(),
      accelerators: this.accelerators
    }
  }
}
