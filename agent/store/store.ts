import Database from 'better-sqlite3'
import type { Database as DB } from 'better-sqlite3'
import type { Logger } from '../../common/logger.ts'
import type { Member, MemberState } from '../membership/membership.ts'

/**
 * Versioned migrations, applied in order inside one transaction each. Never edit a shipped migration: add one.
 */
const MIGRATIONS: ReadonlyArray<{ version: number, sql: string }> = [
  {
    version: 1,
    sql: `
      CREATE TABLE peers (
        peer_id    TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        state      TEXT NOT NULL,
        role       TEXT NOT NULL,
        addrs      TEXT NOT NULL,            -- JSON array of multiaddrs
        last_seen  INTEGER NOT NULL,         -- ms since the epoch
        health     TEXT,                     -- JSON: the last health beacon's figures
        updated_at INTEGER NOT NULL
      );
      CREATE TABLE events (
        id      INTEGER PRIMARY KEY,
        at      INTEGER NOT NULL,            -- ms since the epoch
        type    TEXT NOT NULL,               -- e.g. member.state
        peer_id TEXT,
        data    TEXT NOT NULL                -- JSON
      );
      CREATE INDEX events_at ON events (at);
    `
  },
  {
    version: 2,
    sql: `
      CREATE TABLE state (
        key   TEXT PRIMARY KEY,              -- e.g. election.term
        value TEXT NOT NULL                  -- JSON
      );
      CREATE TABLE decisions (
        id          TEXT PRIMARY KEY,
        term        INTEGER NOT NULL,
        coordinator TEXT NOT NULL,           -- peer id of the coordinator that decided
        target      TEXT NOT NULL,           -- peer id of the node told to act
        action      TEXT NOT NULL,           -- run | stop
        work_id     TEXT NOT NULL,
        reason      TEXT NOT NULL,
        at          INTEGER NOT NULL,        -- when it was decided (ms since the epoch)
        outcome     TEXT,                    -- applied | rejected | stale; null until the target answers
        detail      TEXT,
        outcome_at  INTEGER
      );
      CREATE INDEX decisions_at ON decisions (at);
    `
  },
  {
    version: 3,
    sql: `
      -- Raw sensor readings, in arrival order (rowid): retention prunes from the front, so no index slows ingest.
      CREATE TABLE readings (
        sensor TEXT NOT NULL,
        metric TEXT NOT NULL,
        ts     INTEGER NOT NULL,             -- when measured (ms since the epoch)
        value  REAL NOT NULL
      );
      -- Per-minute (period 60000) and per-hour (3600000) summaries, kept longer than the raw readings.
      CREATE TABLE rollups (
        period    INTEGER NOT NULL,
        sensor    TEXT NOT NULL,
        metric    TEXT NOT NULL,
        start     INTEGER NOT NULL,          -- start of the minute or hour (ms since the epoch)
        count     INTEGER NOT NULL,
        min_value REAL NOT NULL,
        max_value REAL NOT NULL,
        sum_value REAL NOT NULL,
        last      REAL NOT NULL,
        last_ts   INTEGER NOT NULL,
        PRIMARY KEY (period, sensor, metric, start)
      ) WITHOUT ROWID;
      CREATE INDEX rollups_start ON rollups (period, start);
      -- The latest reading of each sensor metric: what "noodle sensors" lists.
      CREATE TABLE sensors (
        sensor    TEXT NOT NULL,
        metric    TEXT NOT NULL,
        value     REAL NOT NULL,
        ts        INTEGER NOT NULL,
        first_seen INTEGER NOT NULL,         -- when its first message arrived (ms since the epoch)
        last_seen INTEGER NOT NULL,          -- when its last message arrived
        count     INTEGER NOT NULL,
        PRIMARY KEY (sensor, metric)
      ) WITHOUT ROWID;
      -- Messages that could not be read, with why: bounded, newest kept.
      CREATE TABLE dead_letters (
        id     INTEGER PRIMARY KEY,
        at     INTEGER NOT NULL,
        topic  TEXT NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        size   INTEGER NOT NULL,             -- the payload's full size
        bytes  BLOB NOT NULL                 -- its first bytes
      );
      -- Running totals that survive restarts (ingest.received…).
      CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
      ) WITHOUT ROWID;
    `
  },
  {
    version: 4,
    sql: `
      -- ONNX models registered on this node, by content (sha256 of the file as given).
      CREATE TABLE models (
        id             TEXT PRIMARY KEY,
        name           TEXT NOT NULL,        -- the file name it was compiled from
        file           TEXT NOT NULL,        -- our copy of it
        optimized_file TEXT,                 -- its graph optimized for this box, when that worked
        size_bytes     INTEGER NOT NULL,
        ir_version     INTEGER NOT NULL,
        opset          INTEGER NOT NULL,
        inputs         TEXT NOT NULL,        -- JSON: [{ name, dtype, shape }]
        outputs        TEXT NOT NULL,
        created_at     INTEGER NOT NULL
      );
      -- Measured latency per execution provider.
      CREATE TABLE model_benchmarks (
        model_id TEXT NOT NULL REFERENCES models (id) ON DELETE CASCADE,
        provider TEXT NOT NULL,
        runs     INTEGER NOT NULL,
        p50_ms   REAL NOT NULL,
        p99_ms   REAL NOT NULL,
        at       INTEGER NOT NULL,
        PRIMARY KEY (model_id, provider)
      ) WITHOUT ROWID;
    `
  },
  {
    version: 5,
    sql: `
      -- What the cameras' models found (results only, never frames).
      CREATE TABLE detections (
        id     INTEGER PRIMARY KEY,
        camera TEXT NOT NULL,
        at     INTEGER NOT NULL,             -- when the frame was decoded (ms since the epoch)
        label  TEXT NOT NULL,
        score  REAL NOT NULL,
        x      INTEGER NOT NULL,             -- box in the model's input pixels
        y      INTEGER NOT NULL,
        width  INTEGER NOT NULL,
        height INTEGER NOT NULL
      );
      CREATE INDEX detections_camera_at ON detections (camera, at);
    `
  },
  {
    version: 6,
    sql: `
      -- The intra-op threads a model's latency was measured with (and it runs with, on its fastest provider).
      ALTER TABLE model_benchmarks ADD COLUMN threads INTEGER NOT NULL DEFAULT 1;
    `
  },
  {
    version: 7,
    sql: `
      -- Operator accounts: who may use the API beyond the local socket.
      CREATE TABLE operators (
        user_id       TEXT PRIMARY KEY,      -- a random UUID
        username      TEXT NOT NULL UNIQUE,  -- lower case
        email         TEXT NOT NULL UNIQUE,  -- lower case
        password_hash TEXT NOT NULL,         -- scrypt$N$r$p$salt$hash, never the password
        first_name    TEXT NOT NULL,
        last_name     TEXT NOT NULL,
        phone         TEXT,
        role          TEXT NOT NULL,         -- viewer, operator or admin
        status        TEXT NOT NULL,         -- active
        created_at    INTEGER NOT NULL
      );
      -- Administrative actions: who did what to what, and when.
      CREATE TABLE audit_log (
        id     INTEGER PRIMARY KEY,
        at     INTEGER NOT NULL,
        actor  TEXT NOT NULL,                -- "local" for the Unix socket, else a username
        action TEXT NOT NULL,                -- operator.register, operator.remove…
        target TEXT NOT NULL,
        detail TEXT NOT NULL
      );
      -- API tokens for the TCP listener: only their sha256 is kept, so a copy of the store grants nothing.
      CREATE TABLE api_tokens (
        token_hash TEXT PRIMARY KEY,
        user_id    TEXT NOT NULL REFERENCES operators (user_id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      ) WITHOUT ROWID;
    `
  },
  {
    version: 8,
    sql: `
      -- Retention prunes sensor tables by time through these indexes: by arrival order alone, one reading
      -- timed far ahead stalled pruning of everything behind it.
      CREATE INDEX readings_ts ON readings (ts);
      CREATE INDEX sensors_last_seen ON sensors (last_seen);
    `
  },
  {
    version: 9,
    sql: `
      -- Where a model came from: compiled by an operator, fetched on request, or kept on standby for work that
      -- may move here (only standby copies are collected once no work names them).
      ALTER TABLE models ADD COLUMN origin TEXT NOT NULL DEFAULT 'compiled';
      -- Each file's size and modification time when registered: a file that differs is not loaded (torn).
      ALTER TABLE models ADD COLUMN file_mtime_ms INTEGER;
      ALTER TABLE models ADD COLUMN optimized_size INTEGER;
      ALTER TABLE models ADD COLUMN optimized_mtime_ms INTEGER;
      -- Retention prunes these tables by time through these indexes.
      CREATE INDEX detections_at ON detections (at);
      CREATE INDEX audit_log_at ON audit_log (at);
      CREATE INDEX api_tokens_expires_at ON api_tokens (expires_at);
    `
  }
]

/** A decision as the store keeps it: what was decided and, once the target answered, what came of it. */
export interface DecisionRecord {
  id: string
  term: number
  coordinator: string
  target: string
  action: string
  workId: string
  reason: string
  at: number
  outcome: string | null
  detail: string | null
  outcomeAt: number | null
}

export interface StoredEvent {
  id: number
  at: number
  type: string
  peerId: string | null
  data: unknown
}

interface PeerRow {
  peer_id: string
  name: string
  state: MemberState
  role: Member['role']
  addrs: string
  last_seen: number
  health: string | null
}

const DAY_MS = 86_400_000
/**
 * What the tables that grow keep: rows younger than `maxAgeMs` by `time` (through an index on it, so a row
 * timed far ahead stalls nothing behind it), and at most `maxRows`, the newest by `key` (insertion order, which
 * no sender sets). The sensor tables keep their own (agent/sensor-store.ts); peers are reaped by membership;
 * benchmarks go with their model.
 */
export const RETENTION: ReadonlyArray<{ table: string, time: string, key: string, maxAgeMs: number, maxRows: number }> = [
  { table: 'events', time: 'at', key: 'id', maxAgeMs: 30 * DAY_MS, maxRows: 100_000 },
  { table: 'decisions', time: 'at', key: 'rowid', maxAgeMs: 30 * DAY_MS, maxRows: 100_000 },
  { table: 'detections', time: 'at', key: 'id', maxAgeMs: 7 * DAY_MS, maxRows: 1_000_000 },
  { table: 'audit_log', time: 'at', key: 'id', maxAgeMs: 365 * DAY_MS, maxRows: 100_000 },
  { table: 'api_tokens', time: 'expires_at', key: 'expires_at', maxAgeMs: 0, maxRows: 10_000 }
]
const PRUNE_INTERVAL_MS = 3_600_000
/** Rows deleted per statement: each is a short write, and the event loop runs between them. */
const PRUNE_CHUNK = 1_000
/** Failed writes are logged at most this often (a full disk fails every write). */
const FAILURE_LOG_INTERVAL_MS = 10_000

/**
 * The agent's local SQLite database (`<dataDir>/noodle.db`, WAL): peers seen and the event log. Opened and
 * migrated on construction; while started, it prunes the tables that grow (RETENTION) every hour. A write that
 * fails is reported to `disk` (so status says when the disk is full) and logged, never thrown (see `write`).
 */
export class Store {
  private readonly db: DB
  private readonly log: Logger
  private readonly statements: ReturnType<Store['prepare']>
  private readonly disk: { observe: (err: unknown) => boolean } | undefined
  private pruneTimer: NodeJS.Timeout | undefined
  private pruning: Promise<Record<string, number>> | undefined
  private failedWrites = 0
  private failureLoggedAt = -Infinity

  constructor (components: { path: string, log: Logger, disk?: { observe: (err: unknown) => boolean } }) {
    this.log = components.log
    this.disk = components.disk
    this.db = new Database(components.path)
    this.db.pragma('journal_mode = WAL')
    // NORMAL under WAL loses at most the last commits on power loss, never consistency; FULL costs an fsync
    // per commit, which wears the SD cards these boxes run on.
    this.db.pragma('synchronous = NORMAL')
    this.db.pragma('busy_timeout = 5000')
    this.db.pragma('foreign_keys = ON')
    this.migrate()
    this.statements = this.prepare()
  }

  /** The statements the agent runs often, compiled once. */
  private prepare () {
    return {
      upsertPeer: this.db.prepare(`
        INSERT INTO peers (peer_id, name, state, role, addrs, last_seen, health, updated_at)
        VALUES (@peerId, @name, @state, @role, @addrs, @lastSeen, @health, @now)
        ON CONFLICT (peer_id) DO UPDATE SET name = excluded.name, state = excluded.state, role = excluded.role,
          addrs = excluded.addrs, last_seen = excluded.last_seen, health = excluded.health, updated_at = excluded.updated_at`),
      deletePeer: this.db.prepare('DELETE FROM peers WHERE peer_id = ?'),
      insertEvent: this.db.prepare('INSERT INTO events (at, type, peer_id, data) VALUES (?, ?, ?, ?)'),
      putState: this.db.prepare('INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
      getState: this.db.prepare<[string], { value: string }>('SELECT value FROM state WHERE key = ?'),
      insertDecision: this.db.prepare(`
        INSERT OR IGNORE INTO decisions (id, term, coordinator, target, action, work_id, reason, at)
        VALUES (@id, @term, @coordinator, @target, @action, @workId, @reason, @at)`),
      setOutcome: this.db.prepare('UPDATE decisions SET outcome = ?, detail = ?, outcome_at = ? WHERE id = ?')
    }
  }

  start (): void {
    const prune = () => { void this.prune().catch(() => {}) }
    prune()
    this.pruneTimer = setInterval(prune, PRUNE_INTERVAL_MS).unref()
  }

  /**
   * One retention pass over every table of RETENTION, a chunk at a time with the event loop free between
   * chunks; resolves with the rows deleted per table. A pass already under way is joined, not doubled. Errors
   * (a full disk: deleting needs room in the WAL too) are logged and reported, never thrown out of a timer.
   */
  async prune (now = Date.now()): Promise<Record<string, number>> {
    this.pruning ??= this.prunePass(now).finally(() => { this.pruning = undefined })
    return await this.pruning
  }

  private async prunePass (now: number): Promise<Record<string, number>> {
    const deleted: Record<string, number> = {}
    for (const r of RETENTION) {
      let count = 0
      try {
        const old = this.db.prepare(`DELETE FROM ${r.table} WHERE ${r.key} IN (SELECT ${r.key} FROM ${r.table} WHERE ${r.time} < ? LIMIT ${PRUNE_CHUNK})`)
        count += await this.inChunks(() => old.run(now - r.maxAgeMs).changes)
        const newestKept = this.db.prepare<[number], { key: number }>(`SELECT ${r.key} AS key FROM ${r.table} ORDER BY ${r.key} DESC LIMIT 1 OFFSET ?`).get(r.maxRows)
        if (newestKept !== undefined) {
          const excess = this.db.prepare(`DELETE FROM ${r.table} WHERE ${r.key} IN (SELECT ${r.key} FROM ${r.table} WHERE ${r.key} <= ? ORDER BY ${r.key} LIMIT ${PRUNE_CHUNK})`)
          count += await this.inChunks(() => excess.run(newestKept.key).changes)
        }
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
  private write (fn: () => unknown): void {
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

  /** The open database, for components that keep their own tables in it (the sensor store). */
  get database (): DB {
    return this.db
  }

  get schemaVersion (): number {
    return this.db.pragma('user_version', { simple: true }) as number
  }

  private migrate (): void {
    for (const { version, sql } of MIGRATIONS) {
      if (version <= this.schemaVersion) continue
      this.db.transaction(() => {
        this.db.exec(sql)
        this.db.pragma(`user_version = ${version}`)
      })()
      this.log.info({ version }, 'store migrated')
    }
  }

  /** Writes the given members in one transaction. */
  saveMembers (members: Iterable<Member>): void {
    const { upsertPeer } = this.statements
    const now = Date.now()
    this.write(() => this.db.transaction(() => {
      for (const m of members) {
        upsertPeer.run({
          peerId: m.peerId,
          name: m.name,
          state: m.state,
          role: m.role,
          addrs: JSON.stringify(m.addrs),
          lastSeen: m.lastSeen,
          health: m.health == null ? null : JSON.stringify(m.health),
          now
        })
      }
    })())
  }

  deleteMembers (peerIds: Iterable<string>): void {
    const { deletePeer } = this.statements
    this.write(() => { this.db.transaction(() => { for (const id of peerIds) deletePeer.run(id) })() })
  }

  loadMembers (): Member[] {
    const rows = this.db.prepare('SELECT * FROM peers').all() as PeerRow[]
    return rows.map((r) => ({
      peerId: r.peer_id,
      name: r.name,
      state: r.state,
      role: r.role,
      addrs: JSON.parse(r.addrs) as string[],
      lastSeen: r.last_seen,
      health: r.health == null ? null : JSON.parse(r.health) as Member['health']
    }))
  }

  recordEvent (type: string, peerId: string | null, data: unknown, at = Date.now()): void {
    this.write(() => this.statements.insertEvent.run(at, type, peerId, JSON.stringify(data)))
  }

  /** A small piece of agent state that must survive restarts (the election term). */
  putState (key: string, value: unknown): void {
    this.write(() => this.statements.putState.run(key, JSON.stringify(value)))
  }

  getState<T> (key: string): T | undefined {
    const row = this.statements.getState.get(key)
    return row == null ? undefined : JSON.parse(row.value) as T
  }

  /** Records a decision (issued by us, or addressed to us); a repeat of a known id is ignored. */
  recordDecision (d: Omit<DecisionRecord, 'outcome' | 'detail' | 'outcomeAt'>): void {
    this.write(() => this.statements.insertDecision.run(d))
  }

  recordOutcome (id: string, outcome: string, detail: string, at = Date.now()): void {
    this.write(() => this.statements.setOutcome.run(outcome, detail, at, id))
  }

  /** Newest first. */
  decisions (limit = 100): DecisionRecord[] {
    const rows = this.db.prepare('SELECT * FROM decisions ORDER BY at DESC, id DESC LIMIT ?').all(limit) as Array<{
      id: string, term: number, coordinator: string, target: string, action: string, work_id: string, reason: string,
      at: number, outcome: string | null, detail: string | null, outcome_at: number | null
    }>
    return rows.map((r) => ({
      id: r.id,
      term: r.term,
      coordinator: r.coordinator,
      target: r.target,
      action: r.action,
      workId: r.work_id,
      reason: r.reason,
      at: r.at,
      outcome: r.outcome,
      detail: r.detail,
      outcomeAt: r.outcome_at
    }))
  }

  /** Newest first. */
  events ({ type, limit = 100 }: { type?: string, limit?: number } = {}): StoredEvent[] {
    const rows = (type == null
      ? this.db.prepare('SELECT * FROM events ORDER BY id DESC LIMIT ?').all(limit)
      : this.db.prepare('SELECT * FROM events WHERE type = ? ORDER BY id DESC LIMIT ?').all(type, limit)) as
      Array<{ id: number, at: number, type: string, peer_id: string | null, data: string }>
    return rows.map((r) => ({ id: r.id, at: r.at, type: r.type, peerId: r.peer_id, data: JSON.parse(r.data) }))
  }

  /** Drops events older than `before` (ms since the epoch), at most `limit` rows a call, so a prune never stalls the agent. */
  pruneEvents (before: number, limit = 1000): number {
    return this.db.prepare('DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < ? LIMIT ?)')
      .run(before, limit).changes
  }

  close (): void {
    if (this.db.open) this.db.close()
  }
}
