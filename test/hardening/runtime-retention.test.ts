import { join } from 'node:path'
import t from 'tap'
import { createLogger } from '../../common/logger.ts'
import { CoordinationRecords } from '../../agent/coordination/coordination-records.ts'
import { EventLog } from '../../agent/store/event-log.ts'
import { RETENTION, Store } from '../../agent/store/store.ts'

const log = createLogger('silent')
const DAY = 86_400_000

t.test('every table that grows is pruned by an index on time and capped in rows; a far-future row stalls nothing', async (t) => {
  const store = Store.open({ path: join(t.testdir(), 'noodle.db'), log })
  t.teardown(() => { store.close() })
  const db = store.database
  const events = new EventLog({ store })
  const records = new CoordinationRecords({ store })
  const now = Date.now()
  const far = now + 1000 * 365 * DAY
  db.prepare("INSERT INTO operators (user_id, username, email, password_hash, first_name, last_name, role, status, created_at) VALUES ('u', 'ana', 'a@b.c', 'x', 'A', 'B', 'admin', 'active', 0)").run()
  // In each table: a row timed far ahead first (as a clock gone wrong, or a peer, would write it), then old ones, then a fresh one.
  for (const at of [far, now - 400 * DAY, now - 40 * DAY, now - 8 * DAY, now]) {
    events.record('e', null, {}, at)
    records.recordDecision({ id: `d${at}`, term: 1, coordinator: 'c', target: 't', action: 'run', workId: 'w', reason: 'r', at })
    db.prepare("INSERT INTO detections (camera, at, label, score, x1, y1, x2, y2) VALUES ('cam', ?, 'text', 1, 0, 0, 1, 1)").run(at)
    db.prepare("INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?, 'local', 'a', 't', '')").run(at)
    db.prepare("INSERT INTO api_tokens (token_hash, user_id, created_at, expires_at) VALUES (?, 'u', 0, ?)").run(`h${at}`, at)
    db.prepare("INSERT INTO camera_events (id, camera, node, peer, label, score, x1, y1, x2, y2, zones, start, end, updated) VALUES (?, 'cam', 'n', 'p', 'car', 1, 0, 0, 1, 1, '[]', ?, NULL, ?)").run(`${at.toString(36)}-00000000`, at, at)
    db.prepare("INSERT INTO health_samples (peer_id, at, cpu_pct, load1, mem_used, mem_total, disk_free, temp_c) VALUES ('p', ?, 1, 0, 1, 2, 3, NULL)").run(at)
  }
  const deleted = await store.prune(now)
  t.same(deleted, { events: 2, decisions: 2, detections: 3, audit_log: 1, api_tokens: 3, camera_events: 2, health_samples: 3 }, 'each table to its retention')
  const times = (table: string, column = 'at') => db.prepare(`SELECT ${column} AS at FROM ${table} ORDER BY ${column}`).all().map((r) => (r as { at: number }).at)
  t.same(times('events'), [now - 8 * DAY, now, far], 'the old rows behind the far-future one went')
  t.same(times('detections'), [now, far])
  t.same(times('audit_log'), [now - 40 * DAY, now - 8 * DAY, now, far])
  t.same(times('api_tokens', 'expires_at'), [now, far], 'expired tokens go')

  for (const r of RETENTION) {
    const plan = db.prepare(`EXPLAIN QUERY PLAN SELECT ${r.key} FROM ${r.table} WHERE ${r.time} < ? LIMIT 1000`).all(now).map((p) => (p as { detail: string }).detail).join('; ')
    t.match(plan, /USING (COVERING )?INDEX/, `${r.table}: pruning by time uses an index (${plan})`)
    const order = db.prepare(`EXPLAIN QUERY PLAN SELECT ${r.key} FROM ${r.table} ORDER BY ${r.key} DESC LIMIT 1 OFFSET 10`).all().map((p) => (p as { detail: string }).detail).join('; ')
    t.notMatch(order, /TEMP B-TREE/, `${r.table}: the cap reads its key in order (${order})`)
  }
})

t.test('a table over its cap keeps only its newest rows, whatever their times', async (t) => {
  const store = Store.open({ path: join(t.testdir(), 'noodle.db'), log })
  t.teardown(() => { store.close() })
  const cap = (RETENTION.find((r) => r.table === 'events') as { maxRows: number }).maxRows
  const now = Date.now()
  const insert = store.database.prepare("INSERT INTO events (at, type, peer_id, data) VALUES (?, 'e', NULL, '{}')")
  // All timed far ahead: time alone would never prune them.
  store.database.transaction(() => { for (let i = 0; i < cap + 2500; i++) insert.run(now + 1000 * DAY + i) })()
  const deleted = await store.prune(now)
  t.equal(deleted.events, 2500)
  t.same(store.database.prepare('SELECT count(*) AS n, min(id) AS first FROM events').get(), { n: cap, first: 2501 }, 'the newest kept')
})

t.test('a prune on a closed store stops quietly', async (t) => {
  const store = Store.open({ path: join(t.testdir(), 'noodle.db'), log })
  store.close()
  t.same(await store.prune(), {})
})

t.test('an operator\'s retention for a table (events.retentionDays) replaces the table set\'s own', async (t) => {
  const store = Store.open({ path: join(t.testdir(), 'noodle.db'), log, retention: { camera_events: { maxAgeMs: 7 * DAY } } })
  t.teardown(() => { store.close() })
  const now = Date.now()
  for (const at of [now - 8 * DAY, now - 6 * DAY]) {
    store.database.prepare("INSERT INTO camera_events (id, camera, node, peer, label, score, x1, y1, x2, y2, zones, start, end, updated) VALUES (?, 'cam', 'n', 'p', 'car', 1, 0, 0, 1, 1, '[]', ?, NULL, ?)").run(`${at.toString(36)}-00000000`, at, at)
  }
  t.same((await store.prune(now)).camera_events, 1, 'kept 7 days, not 30')
})
