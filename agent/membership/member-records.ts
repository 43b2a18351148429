import type { TableSet } from '../../common/schema.ts'
import type { Store } from '../store/store.ts'
import type { Member, MemberState } from './membership.ts'

/** The members seen, as last known: restored into the membership table on start. Reaped by membership, not by age. */
export const MEMBER_TABLES: TableSet = {
  name: 'members',
  migrations: [
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
    `
    }
  ]
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

/** Saves and loads the members (MEMBER_TABLES). Statements are prepared on first use; writes never throw (Store.write). */
export class MemberRecords {
  private readonly store: Store
  private prepared: ReturnType<MemberRecords['prepare']> | undefined

  constructor (components: { store: Store }) {
    this.store = components.store
  }

  private get statements (): ReturnType<MemberRecords['prepare']> {
    this.prepared ??= this.prepare()
    return this.prepared
  }

  private prepare () {
    const db = this.store.database
    const upsert = db.prepare(`
      INSERT INTO peers (peer_id, name, state, role, addrs, last_seen, health, updated_at)
      VALUES (@peerId, @name, @state, @role, @addrs, @lastSeen, @health, @now)
      ON CONFLICT (peer_id) DO UPDATE SET name = excluded.name, state = excluded.state, role = excluded.role,
        addrs = excluded.addrs, last_seen = excluded.last_seen, health = excluded.health, updated_at = excluded.updated_at`)
    const remove = db.prepare('DELETE FROM peers WHERE peer_id = ?')
    return {
      save: db.transaction((members: Iterable<Member>, now: number) => {
        for (const m of members) {
          upsert.run({
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
      }),
      remove: db.transaction((peerIds: Iterable<string>) => { for (const id of peerIds) remove.run(id) }),
      all: db.prepare<[], PeerRow>('SELECT * FROM peers')
    }
  }

  /** Writes the given members in one transaction. */
  save (members: Iterable<Member>): void {
    this.store.write(() => { this.statements.save(members, Date.now()) })
  }

  remove (peerIds: Iterable<string>): void {
    this.store.write(() => { this.statements.remove(peerIds) })
  }

  load (): Member[] {
    return this.statements.all.all().map((r) => ({
      peerId: r.peer_id,
      name: r.name,
      state: r.state,
      role: r.role,
      addrs: JSON.parse(r.addrs) as string[],
      lastSeen: r.last_seen,
      health: r.health == null ? null : JSON.parse(r.health) as Member['health']
    }))
  }
}
