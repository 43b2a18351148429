import Database from 'better-sqlite3'
import type { Database as DB } from 'better-sqlite3'
import type { Logger } from '../../common/logger.ts'
import type { RetentionRule, TableSet } from '../../common/schema.ts'
import { SCHEMA } from './schema.ts'

/**
 * What the tables that grow keep, every subsystem's together (see RetentionRule). The sensor tables keep their
 * own (agent/ingest/sensor-store.ts); peers are reaped by membership; benchmarks go with their model.
 */
export const RETENTION: readonly RetentionRule[] = SCHEMA.flatMap((set) => set.retention ?? [])
const PRUNE_INTERVAL_MS = 3_600_000
/** Rows deleted per statement: each is a short write, and the event loop runs between them. */
const PRUNE_CHUNK = 1_000
/** Failed writes are logged at most this often (a full disk fails every write). */
const FAILURE_LOG_INTERVAL_MS = 10_000

export interface StoreComponents {
  path: string
  log: Logger
  disk?: { observe: (err: unknown) => boolean }
  tables?: readonly TableSet[]
  /** Retention an operator set, by table, in place of the table set's own (`events.retentionDays`). */
  retention?: Readonly<Record<string, Partial<Pick<RetentionRule, 'maxAgeMs' | 'maxRows'>>>>
}

/**
 * The agent's local SQLite database (`<dataDir>/noodle.db`, WAL). It owns no table: each subsystem hands it its
 * tables (`tables`, SCHEMA by default) and prepares its own statements against `database`. `Store.open` opens and
 * migrates it, so every part built after it finds its tables; the schema version is SQLite's `user_version`.
 * While started, it prunes the tables that grow (their sets' retention) every hour. A write a subsystem runs
 * through `write` that fails is reported to `disk` (so status says when the disk is full) and logged, never thrown.
 */
export class Store {
  private readonly db: DB
  private readonly log: Logger
  private readonly tables: readonly TableSet[]
  private readonly disk: { observe: (err: unknown) => boolean } | undefined
  private pruneTimer: NodeJS.Timeout | undefined
  private pruning: Promise<Record<string, number>> | undefined
  private pruneStatements: ReturnType<Store['preparePrune']> | undefined
  private readonly retention: NonNullable<StoreComponents['retention']>
  private failedWrites = 0
  private failureLoggedAt = -Infinity

  private constructor (db: DB, components: StoreComponents) {
    this.db = db
    this.log = components.log
    this.disk = components.disk
    this.tables = components.tables ?? SCHEMA
    this.retention = components.retention ?? {}
  }

  /** Opens the database at `path` and migrates it to the newest version; a failed migration closes it and throws. */
  static open (components: StoreComponents): Store {
    const db = new Database(components.path)
    const store = new Store(db, components)
    try {
      db.pragma('journal_mode = WAL')
      // NORMAL under WAL loses at most the last commits on power loss, never consistency; FULL costs an fsync
      // per commit, which wears the SD cards these boxes run on.
      db.pragma('synchronous = NORMAL')
      db.pragma('busy_timeout = 5000')
      db.pragma('foreign_keys = ON')
      store.migrate()
    } catch (err) {
      store.close()
      throw err
    }
    return store
  }

  start (): void {
    const prune = () => { void this.prune().catch(() => {}) }
    prune()
    this.pruneTimer = setInterval(prune, PRUNE_INTERVAL_MS).unref()
  }

  /**
   * One retention pass over every table that has a retention rule, a chunk at a time with the event loop free
   * between chunks; resolves with the rows deleted per table. A pass already under way is joined, not doubled.
   * Errors (a full disk: deleting needs room in the WAL too) are logged and reported, never thrown out of a timer.
   */
  async prune (now = Date.now()): Promise<Record<string, number>> {
    this.pruning ??= this.prunePass(now).finally(() => { this.pruning = undefined })
    return await this.pruning
  }

  /** Per rule: the rows older than its age, the newest row past its cap, and the rows up to that one. */
  private preparePrune () {
    return this.tables.flatMap((set) => set.retention ?? []).map((own) => ({ ...own, ...this.retention[own.table] })).map((r) => ({
      rule: r,
      old: this.db.prepare<[number]>(`DELETE FROM ${r.table} WHERE ${r.key} IN (SELECT ${r.key} FROM ${r.table} WHERE ${r.time} < ? LIMIT ${PRUNE_CHUNK})`),
      newestKept: this.db.prepare<[number], { key: number }>(`SELECT ${r.key} AS key FROM ${r.table} ORDER BY ${r.key} DESC LIMIT 1 OFFSET ?`),
      excess: this.db.prepare<[number]>(`DELETE FROM ${r.table} WHERE ${r.key} IN (SELECT ${r.key} FROM ${r.table} WHERE ${r.key} <= ? ORDER BY ${r.key} LIMIT ${PRUNE_CHUNK})`)
    }))
  }

  private async prunePass (now: number): Promise<Record<string, number>> {
    const deleted: Record<string, number> = {}
    if (!this.db.open) return deleted
    this.pruneStatements ??= this.preparePrune()
    for (const { rule: r, old, newestKept, excess } of this.pruneStatements) {
      let count = 0
      try {
        count += await this.inChunks(() => old.run(now - r.maxAgeMs).changes)
        const newest = newestKept.get(r.maxRows)
        if (newest !== undefined) count += await this.inChunks(() => excess.run(newest.key).changes)
      } catch (err) {
        if (!this.db.open) break
        this.disk?.observe(err)
        this.log.error({ err, table: r.table }, 'pruning a table failed; trying again at the next pass')
      }
      deleted[r.table] = count
    }
    return deleted
  }

  /** Runs `step` until it deletes less than a chunk, yielding to the event loop between steps. */
  private async inChunks (step: () => number): Promise<number> {
    let total = 0
    for (;;) {
      if (!this.db.open) return total
      const n = step()
      total += n
      if (n < PRUNE_CHUNK) return total
      await new Promise((resolve) => setImmediate(resolve))
    }
  }

  /**
   * Runs a write of history or cached state (events, decisions, members, the term). A failure (a full disk, a
   * read-only one) is reported to `disk` and logged, at most every few seconds, never thrown: these writes come
   * from timers and in the middle of membership and election changes, which must go on while the disk is full.
   */
  write (fn: () => unknown): void {
    try {
      fn()
    } catch (err) {
      this.disk?.observe(err)
      this.failedWrites++
      const now = Date.now()
      if (now - this.failureLoggedAt < FAILURE_LOG_INTERVAL_MS) return
      this.log.error({ err, failedWrites: this.failedWrites }, 'a write to the store failed; the agent goes on without it')
      this.failureLoggedAt = now
      this.failedWrites = 0
    }
  }

  stop (): void {
    clearInterval(this.pruneTimer)
    this.close()
  }

  /** The open database, for the subsystems that keep their tables in it. */
  get database (): DB {
    return this.db
  }

  get schemaVersion (): number {
    return this.db.pragma('user_version', { simple: true }) as number
  }

  /**
   * Applies, version by version, the steps of every table set above the database's version: the steps of one
   * version (of one or several subsystems, in the order of `tables`) run in one transaction with the version bump.
   */
  private migrate (): void {
    const steps = new Map<number, Array<{ table: string, sql: string }>>()
    for (const set of this.tables) {
      for (const { version, sql } of set.migrations) steps.set(version, [...steps.get(version) ?? [], { table: set.name, sql }])
    }
    for (const [version, due] of [...steps].sort(([a], [b]) => a - b)) {
      if (version <= this.schemaVersion) continue
      this.db.transaction(() => {
        for (const { sql } of due) this.db.exec(sql)
        this.db.pragma(`user_version = ${version}`)
      })()
      this.log.info({ version, tables: due.map((s) => s.table) }, 'store migrated')
    }
  }

  close (): void {
    if (this.db.open) this.db.close()
  }
}
