import type { TableSet } from '../../common/schema.ts'
import { DAY_MS } from '../../common/schema.ts'
import type { Store } from './store.ts'

/** The agent's event log: what membership and the election saw happen (member.state, coordinator.change…). */
export const EVENT_TABLES: TableSet = {
  name: 'events',
  migrations: [
    {
      version: 1,
      sql: `
      CREATE TABLE events (
        id      INTEGER PRIMARY KEY,
        at      INTEGER NOT NULL,            -- ms since the epoch
        type    TEXT NOT NULL,               -- e.g. member.state
        peer_id TEXT,
        data    TEXT NOT NULL                -- JSON
      );
      CREATE INDEX events_at ON events (at);
    `
    }
  ],
  retention: [{ table: 'events', time: 'at', key: 'id', maxAgeMs: 30 * DAY_MS, maxRows: 100_000 }]
}

export interface StoredEvent {
  id: number
  at: number
  type: string
  peerId: string | null
  data: unknown
}

/** Writes and reads the event log (EVENT_TABLES). Statements are prepared on first use; writes never throw (Store.write). */
export class EventLog {
  private readonly store: Store
  private prepared: ReturnType<EventLog['prepare']> | undefined

  constructor (components: { store: Store }) {
    this.store = components.store
  }

  private get statements (): ReturnType<EventLog['prepare']> {
    this.prepared ??= this.prepare()
    return this.prepared
  }

  private prepare () {
    const db = this.store.database
    return {
      insert: db.prepare('INSERT INTO events (at, type, peer_id, data) VALUES (?, ?, ?, ?)'),
      all: db.prepare<[number], EventRow>('SELECT * FROM events ORDER BY id DESC LIMIT ?'),
      ofType: db.prepare<[string, number], EventRow>('SELECT * FROM events WHERE type = ? ORDER BY id DESC LIMIT ?')
    }
  }

  record (type: string, peerId: string | null, data: unknown, at = Date.now()): void {
    this.store.write(() => this.statements.insert.run(at, type, peerId, JSON.stringify(data)))
  }

  /** Newest first. */
  list ({ type, limit = 100 }: { type?: string, limit?: number } = {}): StoredEvent[] {
    const rows = type == null ? this.statements.all.all(limit) : this.statements.ofType.all(type, limit)
    return rows.map((r) => ({ id: r.id, at: r.at, type: r.type, peerId: r.peer_id, data: JSON.parse(r.data) }))
  }
}

interface EventRow { id: number, at: number, type: string, peer_id: string | null, data: string }
