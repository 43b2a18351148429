import { existsSync, readdirSync, readFileSync, statfsSync } from 'node:fs'
import { cpus, freemem, loadavg, totalmem } from 'node:os'
import { join } from 'node:path'
import type { Logger } from '../../common/logger.ts'

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

/** Error codes that mean a write failed for want of space (SQLite's, and the system's). */
const FULL_CODES = new Set(['SQLITE_FULL', 'ENOSPC', 'EDQUOT'])
/** A write that failed for want of space makes the disk count as full this long, whatever statfs says after. */
const FULL_RECENTLY_MS = 30_000
/** The disk counts as full below 1 % of its size free, or 64 MiB, whichever is less. */
const MIN_FREE_FRACTION = 0.01
const MIN_FREE_BYTES = 64 * 1024 ** 2

/** What `noodle status` says about the data dir's disk. */
export interface DiskView {
  freeBytes: number | null
  full: boolean
  /** When a write last failed for want of space (ISO 8601), or null. */
  lastFullAt: string | null
}

/**
 * Whether the data dir's disk is full: little space left (statfs), or a write failed for want of space in the
 * last 30 s (components report those through `observe`). The log says so when it becomes full and when it
 * has room again; nothing here throws, so a full or vanished disk never stops the caller.
 */
export class DiskStatus {
  private readonly dataDir: string
  private readonly log: Logger
  private lastFullAt: number | null = null
  private wasFull = false

  constructor (components: { dataDir: string, log: Logger }) {
    this.dataDir = components.dataDir
    this.log = components.log
  }

  /** Notes a failed write; true when it failed for want of space. */
  observe (err: unknown): boolean {
    const code = (err as { code?: unknown } | null)?.code
    if (typeof code !== 'string' || !FULL_CODES.has(code)) return false
    this.lastFullAt = Date.now()
    this.view()
    return true
  }

  view (now = Date.now()): DiskView {
    let freeBytes: number | null = null
    let lowSpace = false
    try {
      const fs = statfsSync(this.dataDir)
      freeBytes = fs.bavail * fs.bsize
      lowSpace = freeBytes < Math.min(MIN_FREE_BYTES, fs.blocks * fs.bsize * MIN_FREE_FRACTION)
    } catch {
      // The data dir is gone or unreadable: the failed writes will say the rest.
    }
    const full = lowSpace || (this.lastFullAt !== null && now - this.lastFullAt < FULL_RECENTLY_MS)
    if (full !== this.wasFull) {
      this.wasFull = full
      if (full) this.log.error({ dataDir: this.dataDir, freeBytes }, 'the disk is full: writes to the store fail until space is freed')
      else this.log.info({ dataDir: this.dataDir, freeBytes }, 'the disk has room again')
    }
    return { freeBytes, full, lastFullAt: this.lastFullAt === null ? null : new Date(this.lastFullAt).toISOString() }
  }
}

/** Samples the box: CPU busy % since the previous sample, load, memory, free disk under the data dir. */
export class HealthSampler {
  private readonly dataDir: string
  private readonly accelerators: string[]
  private readonly disk: DiskStatus | undefined
  private last = cpuTimes()

  constructor (components: { dataDir: string, accelerators?: string[], disk?: DiskStatus }) {
    this.dataDir = components.dataDir
    this.disk = components.disk
    // Devices do not come and go while the agent runs; look once.
    this.accelerators = components.accelerators ?? detectAccelerators()
  }

  sample (): HealthSample {
    const now = cpuTimes()
    const total = now.total - this.last.total
    const busy = total - (now.idle - this.last.idle)
    this.last = now
    // Through DiskStatus where there is one: each beacon also notices the disk filling up or freed.
    const diskFreeBytes = this.disk === undefined ? freeBytesUnder(this.dataDir) : this.disk.view().freeBytes ?? 0
    const memTotalBytes = totalmem()
    return {
      cpuPct: total > 0 ? Math.round(Math.min(100, Math.max(0, (busy / total) * 100)) * 10) / 10 : 0,
      load1: Math.round((loadavg()[0] ?? 0) * 100) / 100,
      memUsedBytes: memTotalBytes - freemem(),
      memTotalBytes,
      diskFreeBytes,
      tempC: readTemperature(),
      accelerators: this.accelerators
    }
  }
}

function freeBytesUnder (dir: string): number {
  try {
    const fs = statfsSync(dir)
    return fs.bavail * fs.bsize
  } catch {
    return 0
  }
}
