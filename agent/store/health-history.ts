import type { TableSet } from '../../common/schema.ts'
import { DAY_MS } from '../../common/schema.ts'
import { BoundedMap } from '../../common/bounded-map.ts'
import type { HealthBeacon } from '../../protocols/health.ts'
import { MAX_HEALTH_SAMPLES } from '../../protocols/views.ts'
import type { MemberBus } from '../membership/bus.ts'
import type { Store } from './store.ts'

/** One sample a minute: the last figures a member's beacons gave in it. */
export const SAMPLE_MS = 60_000
/** A day of them per member… */
export const HISTORY_MS = DAY_MS
/** …and at most this many rows in all: a day of 128 members, so made-up members cannot grow the table past it. */
export const MAX_HEALTH_ROWS = 128 * 1_440
/** A member's history has at most a day of minutes, and the one under way. */
export const MAX_SAMPLES = MAX_HEALTH_SAMPLES

/** Each member's health over the last day, a sample a minute (`GET /api/v1/mesh/nodes/{peer}/health`). */
export const HEALTH_TABLES: TableSet = {
  name: 'health history',
  migrations: [
    {
      version: 12,
      sql: `
      CREATE TABLE health_samples (
        id        INTEGER PRIMARY KEY,
        peer_id   TEXT NOT NULL,
        at        INTEGER NOT NULL,          -- the minute's start (ms since the epoch)
        cpu_pct   REAL NOT NULL,
        load1     REAL NOT NULL,
        mem_used  INTEGER NOT NULL,
        mem_total INTEGER NOT NULL,
        disk_free INTEGER NOT NULL,
        temp_c    REAL                       -- null where the box has no thermal zone
      );
      -- A member's minutes, in order; one row a minute, whatever a restart wrote before.
      CREATE UNIQUE INDEX health_samples_peer_at ON health_samples (peer_id, at);
      CREATE INDEX health_samples_at ON health_samples (at);
    `
    }
  ],
  retention: [{ table: 'health_samples', time: 'at', key: 'id', maxAgeMs: HISTORY_MS, maxRows: MAX_HEALTH_ROWS }]
}

export interface HealthSample {
  peerId: string
  /** The minute's start. */
  at: number
  cpuPct: number
  load1: number
  memUsedBytes: number
  memTotalBytes: number
  diskFreeBytes: number
  tempC: number | null
}

/** A sample as the API gives it. */
export interface HealthSampleView {
  at: string
  cpuPct: number
  load1: number
  memUsedBytes: number
  memTotalBytes: number
  diskFreeBytes: number
  tempC: number | null
}

export function healthSampleView ({ peerId: _peerId, at, ...figures }: HealthSample): HealthSampleView {
  return { at: new Date(at).toISOString(), ...figures }
}

interface SampleRow { at: number, cpu_pct: number, load1: number, mem_used: number, mem_total: number, disk_free: number, temp_c: number | null }

/**
 * Keeps every member's health as its beacons bring it (and ours as we send it), downsampled to the last sample
 * of each minute: a minute's sample waits in memory until the minute is over, then all finished minutes are
 * written in one transaction, so a mesh of any size costs one write a minute, not one a beacon. Reads see the
 * minute under way too. Only members' beacons come on the bus (the table admits at most `maxMembers`), so the
 * samples waiting are bounded; the rows are the store's to prune (HEALTH_TABLES' retention).
 */
export class HealthHistory {
  private readonly store: Store
  private readonly bus: MemberBus
  private readonly selfId: string
  private readonly now: () => number
  /** Each member's sample of the minute under way. */
  private readonly current: BoundedMap<string, HealthSample>
  /** Samples of finished minutes, to write at the next flush. */
  private due: HealthSample[] = []
  private readonly maxDue: number
  private timer: NodeJS.Timeout | undefined
  private prepared: ReturnType<HealthHistory['prepare']> | undefined

  constructor (components: { store: Store, bus: MemberBus, selfId: string, maxMembers: number, now?: () => number }) {
    this.store = components.store
    this.bus = components.bus
    this.selfId = components.selfId
    this.now = components.now ?? Date.now
    this.current = new BoundedMap(components.maxMembers, { refresh: true })
    this.maxDue = 4 * components.maxMembers
  }

  start (): void {
    this.bus.on('beacon', this.onBeacon)
    this.bus.on('own-beacon', this.onOwnBeacon)
    this.timer = setInterval(() => { this.flush() }, SAMPLE_MS).unref()
  }

  stop (): void {
    clearInterval(this.timer)
    this.bus.off('beacon', this.onBeacon)
    this.bus.off('own-beacon', this.onOwnBeacon)
    // The minute under way too: what a restart finds is as recent as it can be (a later sample of it replaces it).
    this.flush(Infinity)
  }

  private get statements (): ReturnType<HealthHistory['prepare']> {
    this.prepared ??= this.prepare()
    return this.prepared
  }

  private prepare () {
    const db = this.store.database
    const upsert = db.prepare<[string, number, number, number, number, number, number, number | null]>(`
      INSERT INTO health_samples (peer_id, at, cpu_pct, load1, mem_used, mem_total, disk_free, temp_c) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (peer_id, at) DO UPDATE SET cpu_pct = excluded.cpu_pct, load1 = excluded.load1, mem_used = excluded.mem_used,
        mem_total = excluded.mem_total, disk_free = excluded.disk_free, temp_c = excluded.temp_c`)
    return {
      write: db.transaction((samples: HealthSample[]) => {
        for (const s of samples) upsert.run(s.peerId, s.at, s.cpuPct, s.load1, s.memUsedBytes, s.memTotalBytes, s.diskFreeBytes, s.tempC)
      }),
      since: db.prepare<[string, number, number], SampleRow>(`
        SELECT at, cpu_pct, load1, mem_used, mem_total, disk_free, temp_c FROM health_samples
        WHERE peer_id = ? AND at >= ? ORDER BY at LIMIT ?`)
    }
  }

  private readonly onBeacon = (peerId: string, beacon: HealthBeacon): void => {
    this.observe(peerId, beacon)
  }

  private readonly onOwnBeacon = (beacon: HealthBeacon): void => {
    this.observe(this.selfId, beacon)
  }

  /** A member's figures, heard now: its sample for this minute, the last one heard in it standing. */
  observe (peerId: string, figures: Pick<HealthBeacon, 'cpuPct' | 'load1' | 'memUsedBytes' | 'memTotalBytes' | 'diskFreeBytes' | 'tempC'>): void {
    const at = Math.floor(this.now() / SAMPLE_MS) * SAMPLE_MS
    const before = this.current.get(peerId)
    if (before !== undefined && before.at !== at && this.due.length < this.maxDue) this.due.push(before)
    const { cpuPct, load1, memUsedBytes, memTotalBytes, diskFreeBytes, tempC } = figures
    this.current.set(peerId, { peerId, at, cpuPct, load1, memUsedBytes, memTotalBytes, diskFreeBytes, tempC })
  }

  /** Writes the samples of the minutes finished before `until` (the current minute's start), in one transaction. */
  flush (until = Math.floor(this.now() / SAMPLE_MS) * SAMPLE_MS): void {
    const finished = [...this.current.values()].filter((s) => s.at < until)
    for (const s of finished) this.current.delete(s.peerId)
    const samples = [...this.due, ...finished]
    this.due = []
    if (samples.length > 0) this.store.write(() => this.statements.write(samples))
  }

  /** A member's samples of the last day, oldest first, the minute under way included. */
  samples (peerId: string): HealthSample[] {
    const since = this.now() - HISTORY_MS
    const stored = this.statements.since.all(peerId, since, MAX_SAMPLES).map((r) => ({
      peerId, at: r.at, cpuPct: r.cpu_pct, load1: r.load1, memUsedBytes: r.mem_used, memTotalBytes: r.mem_total, diskFreeBytes: r.disk_free, tempC: r.temp_c
    }))
    const waiting = [...this.due, this.current.get(peerId)].filter((s): s is HealthSample => s?.peerId === peerId && s.at >= since)
    const byMinute = new Map(stored.map((s) => [s.at, s]))
    for (const s of waiting) byMinute.set(s.at, s)
    return [...byMinute.values()].sort((a, b) => a.at - b.at).slice(-MAX_SAMPLES)
  }
}
