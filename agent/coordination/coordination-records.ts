import type { TableSet } from '../../common/schema.ts'
import { DAY_MS } from '../../common/schema.ts'
import type { Store } from '../store/store.ts'

/** The coordinator's records: the decisions it issued (or that were addressed to us) and the election term. */
export const COORDINATION_TABLES: TableSet = {
  name: 'coordination',
  migrations: [
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
    }
  ],
  retention: [{ table: 'decisions', time: 'at', key: 'rowid', maxAgeMs: 30 * DAY_MS, maxRows: 100_000 }]
}

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

interface DecisionRow {
  id: string
  term: number
  coordinator: string
  target: string
  action: string
  work_id: string
  reason: string
  at: number
  outcome: string | null
  detail: string | null
  outcome_at: number | null
}

/**
 * Writes and reads COORDINATION_TABLES: decisions with their outcomes, and small state that must survive restarts
 * (the election term). Statements are prepared on first use; writes never throw (Store.write).
 */
export class CoordinationRecords {
  private readonly store: Store
  private prepared: ReturnType<CoordinationRecords['prepare']> | undefined

  constructor (components: { store: Store }) {
    this.store = components.store
  }

  private get statements (): ReturnType<CoordinationRecords['prepare']> {
    this.prepared ??= this.prepare()
    return this.prepared
  }

  private prepare () {
    const db = this.store.database
    return {
      putState: db.prepare('INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
      getState: db.prepare<[string], { value: string }>('SELECT value FROM state WHERE key = ?'),
      insertDecision: db.prepare(`
        INSERT OR IGNORE INTO decisions (id, term, coordinator, target, action, work_id, reason, at)
        VALUES (@id, @term, @coordinator, @target, @action, @workId, @reason, @at)`),
      setOutcome: db.prepare('UPDATE decisions SET outcome = ?, detail = ?, outcome_at = ? WHERE id = ?'),
      decisions: db.prepare<[number], DecisionRow>('SELECT * FROM decisions ORDER BY at DESC, id DESC LIMIT ?')
    }
  }

  /** A small piece of agent state that must survive restarts (the election term). */
  putState (key: string, value: unknown): void {
    this.store.write(() => this.statements.putState.run(key, JSON.stringify(value)))
  }

  getState<T> (key: string): T | undefined {
    const row = this.statements.getState.get(key)
    return row == null ? undefined : JSON.parse(row.value) as T
  }

  /** Records a decision (issued by us, or addressed to us); a repeat of a known id is ignored. */
  recordDecision (d: Omit<DecisionRecord, 'outcome' | 'detail' | 'outcomeAt'>): void {
    this.store.write(() => this.statements.insertDecision.run(d))
  }

  recordOutcome (id: string, outcome: string, detail: string, at = Date.now()): void {
    this.store.write(() => this.statements.setOutcome.run(outcome, detail, at, id))
  }

  /** Newest first. */
  decisions (limit = 100): DecisionRecord[] {
    return this.statements.decisions.all(limit).map((r) => ({
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
}
