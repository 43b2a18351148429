import { existsSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import type { Database as DB } from 'better-sqlite3'
import t from 'tap'
import { createLogger } from '../../../common/logger.ts'
import { SCHEMA } from '../../../agent/store/schema.ts'
import { Store } from '../../../agent/store/store.ts'
import { MemberRecords } from '../../../agent/membership/member-records.ts'
import { CoordinationRecords } from '../../../agent/coordination/coordination-records.ts'
import { ModelRegistry } from '../../../runtime/registry.ts'
import { PREVIOUS_MIGRATIONS } from './previous-schema.ts'

const log = createLogger('silent')
const LATEST = 12
/** The last version previous-schema.ts has: the store's own steps take it from there. */
const FROZEN = 9

/** A database made the way the store made it before the split, up to `version`. */
function previousDatabase (path: string, version: number): DB {
  const db = new Database(path)
  db.pragma('journal_mode = WAL')
  db.pragma('foreign_keys = ON')
  for (const m of PREVIOUS_MIGRATIONS.filter((m) => m.version <= version)) {
    db.transaction(() => {
      db.exec(m.sql)
      db.pragma(`user_version = ${m.version}`)
    })()
  }
  return db
}

/** Every table, index and its SQL as SQLite keeps it. */
function schemaOf (db: DB): unknown[] {
  return db.prepare("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name").all()
}

/** Every row of every table, by table. */
function rowsOf (db: DB): Record<string, unknown[]> {
  const tables = db.prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all()
  return Object.fromEntries(tables.map(({ name }) => [name, db.prepare(`SELECT * FROM ${name} ORDER BY 1`).all()]))
}

/** One row in each table of migrations 1 to 5 (the rest come at 7). */
function fillUpToV5 (db: DB): void {
  db.prepare("INSERT INTO peers VALUES ('p1', 'n1', 'alive', 'member', '[\"/ip4/10.0.0.1/tcp/4001\"]', 1000, NULL, 1000)").run()
  db.prepare("INSERT INTO events (at, type, peer_id, data) VALUES (1000, 'member.state', 'p1', '{\"to\":\"alive\"}')").run()
  db.prepare("INSERT INTO state VALUES ('election.term', '7')").run()
  db.prepare("INSERT INTO decisions (id, term, coordinator, target, action, work_id, reason, at) VALUES ('d1', 7, 'p1', 'p1', 'run', 'cam', 'r', 1000)").run()
  db.prepare("INSERT INTO readings VALUES ('s', 'temp', 1000, 21.5)").run()
  db.prepare("INSERT INTO rollups VALUES (60000, 's', 'temp', 960000, 1, 21.5, 21.5, 21.5, 21.5, 1000)").run()
  db.prepare("INSERT INTO sensors VALUES ('s', 'temp', 21.5, 1000, 1000, 1000, 1)").run()
  db.prepare("INSERT INTO dead_letters (at, topic, reason, detail, size, bytes) VALUES (1000, 't', 'json', 'd', 3, x'616263')").run()
  db.prepare("INSERT INTO counters VALUES ('ingest.received', 2)").run()
  db.prepare(`INSERT INTO models (id, name, file, optimized_file, size_bytes, ir_version, opset, inputs, outputs, created_at)
    VALUES ('m1', 'a.onnx', '/m/a', NULL, 10, 8, 17, '[]', '[]', 1000)`).run()
  db.prepare("INSERT INTO model_benchmarks (model_id, provider, runs, p50_ms, p99_ms, at) VALUES ('m1', 'cpu', 5, 1.25, 2.5, 1000)").run()
  const columns = db.prepare('SELECT name FROM pragma_table_info(\'detections\')').all().map((c) => (c as { name: string }).name)
  const box = columns.includes('x1') ? 'x1, y1, x2, y2' : 'x, y, width, height'
  db.prepare(`INSERT INTO detections (camera, at, label, score, ${box}) VALUES ('cam', 1000, 'text', 0.9, 1, 2, 3, 4)`).run()
}

/** A database the previous migrations made up to FROZEN, then the store's own steps to LATEST. */
function migratedDatabase (path: string, fill?: (db: DB) => void): void {
  const before = previousDatabase(path, FROZEN)
  fill?.(before)
  before.close()
  Store.open({ path, log }).close()
}

t.test('a fresh store has exactly the schema the previous migrations made, at the same version', async (t) => {
  const dir = t.testdir()
  migratedDatabase(join(dir, 'before.db'))
  const before = new Database(join(dir, 'before.db'), { readonly: true })
  const store = Store.open({ path: join(dir, 'after.db'), log })
  t.teardown(() => { before.close(); store.close() })
  t.equal(store.schemaVersion, LATEST)
  t.same(schemaOf(store.database), schemaOf(before), 'every table, column, comment and index as before')
})

t.test('version 10: detection boxes become corners in the frame\'s pixels; the rows in model pixels are dropped', async (t) => {
  const path = join(t.testdir(), 'noodle.db')
  migratedDatabase(path, fillUpToV5)
  const db = new Database(path, { readonly: true })
  t.teardown(() => { db.close() })
  t.same(db.prepare('SELECT * FROM detections').all(), [])
  t.same(db.prepare('SELECT name FROM pragma_table_info(\'detections\') ORDER BY cid').all().map((c) => (c as { name: string }).name),
    ['id', 'camera', 'at', 'label', 'score', 'x1', 'y1', 'x2', 'y2'])
  t.same(db.prepare('SELECT count(*) AS n FROM readings').get(), { n: 1 }, 'nothing else is touched')
})

t.test('a database of the previous version opens unchanged: data and version survive, nothing migrates', async (t) => {
  const path = join(t.testdir(), 'noodle.db')
  migratedDatabase(path)
  const before = new Database(path)
  fillUpToV5(before)
  before.prepare("UPDATE models SET origin = 'standby', file_mtime_ms = 5 WHERE id = 'm1'").run()
  before.prepare("INSERT INTO operators VALUES ('u1', 'ana', 'ana@example.com', 'scrypt$x', 'Ana', 'B', NULL, 'admin', 'active', 1000)").run()
  before.prepare("INSERT INTO audit_log (at, actor, action, target, detail) VALUES (1000, 'local', 'operator.register', 'ana', 'role admin')").run()
  before.prepare(`INSERT INTO api_tokens VALUES ('h', 'u1', 1000, ${Date.now() + 3_600_000})`).run()
  const rows = rowsOf(before)
  const schema = schemaOf(before)
  before.close()

  const messages: string[] = []
  const watched = createLogger('info', { write: (line: string) => { messages.push(JSON.parse(line).msg) } })
  const store = Store.open({ path, log: watched })
  t.teardown(() => { store.close() })
  t.equal(store.schemaVersion, LATEST)
  t.same(messages, [], 'no migration ran')
  t.same(schemaOf(store.database), schema)
  t.same(rowsOf(store.database), rows, 'every row of every table as it was')
  t.same(new MemberRecords({ store }).load().map((m) => [m.peerId, m.state, m.addrs]), [['p1', 'alive', ['/ip4/10.0.0.1/tcp/4001']]])
  t.equal(new CoordinationRecords({ store }).getState('election.term'), 7)
  t.match(new ModelRegistry({ db: store.database }).list(), [{ id: 'm1', origin: 'standby', fileMtimeMs: 5, providers: [{ name: 'cpu', threads: 1, runs: 5, p50Ms: 1.25 }] }])
})

t.test('a database of an older version migrates step by step to the latest, its data kept', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'noodle.db')
  const before = previousDatabase(path, 5)
  fillUpToV5(before)
  const rows = rowsOf(before)
  before.close()

  const messages: Array<{ version: number, tables: string[] }> = []
  const watched = createLogger('info', { write: (line: string) => { messages.push(JSON.parse(line)) } })
  const store = Store.open({ path, log: watched })
  migratedDatabase(join(dir, 'fresh.db'))
  const fresh = new Database(join(dir, 'fresh.db'), { readonly: true })
  t.teardown(() => { store.close(); fresh.close() })
  t.equal(store.schemaVersion, LATEST)
  t.same(messages.map((m) => [m.version, m.tables]), [[6, ['models']], [7, ['operators']], [8, ['sensors']], [9, ['models', 'detections', 'operators']], [10, ['detections']], [11, ['camera events']], [12, ['health history']]],
    'the versions above 5, each once, with the subsystems that took part')
  t.same(schemaOf(store.database), schemaOf(fresh), 'the schema a fresh database has')
  const after = rowsOf(store.database)
  t.same(after.models, [{ ...rows.models?.[0] as object, origin: 'compiled', file_mtime_ms: null, optimized_size: null, optimized_mtime_ms: null }], 'new columns take their defaults')
  t.same(after.model_benchmarks, [{ ...rows.model_benchmarks?.[0] as object, threads: 1 }])
  for (const table of ['peers', 'events', 'state', 'decisions', 'readings', 'rollups', 'sensors', 'dead_letters', 'counters']) {
    t.same(after[table], rows[table], `${table} as it was`)
  }
  t.same(after.detections, [], 'detections in the model\'s pixels dropped (version 10)')
})

t.test('the steps of one version run in one transaction: one failing leaves that version undone', async (t) => {
  const path = join(t.testdir(), 'noodle.db')
  const tables = [
    { name: 'a', migrations: [{ version: 1, sql: 'CREATE TABLE a (x)' }, { version: 2, sql: 'CREATE TABLE a2 (x)' }] },
    { name: 'b', migrations: [{ version: 2, sql: 'CREATE TABLE b (x' }] }
  ]
  t.throws(() => Store.open({ path, log, tables }), /syntax error|incomplete input/)
  t.equal(existsSync(`${path}-wal`), false, 'the failed open closed the database (SQLite removes the WAL at the last close)')
  const db = new Database(path)
  t.teardown(() => { db.close() })
  t.equal(db.pragma('user_version', { simple: true }), 1, 'version 1 done, version 2 not')
  t.same(db.prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'").all().map((r) => r.name), ['a'], 'nothing of version 2 stays')
})

t.test('every version is in the schema list, and every table set keeps its steps in order', async (t) => {
  const versions = new Set(SCHEMA.flatMap((set) => set.migrations.map((m) => m.version)))
  t.same([...versions].sort((a, b) => a - b), [...PREVIOUS_MIGRATIONS.map((m) => m.version), ...Array.from({ length: LATEST - FROZEN }, (_, i) => FROZEN + 1 + i)])
  for (const set of SCHEMA) {
    const own = set.migrations.map((m) => m.version)
    t.same(own, [...own].sort((a, b) => a - b), `${set.name}: steps in version order`)
    t.equal(new Set(own).size, own.length, `${set.name}: one step per version`)
  }
})
