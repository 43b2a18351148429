import { writeFileSync } from 'node:fs'
import type { IncomingMessage } from 'node:http'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t from 'tap'
import { StaticFiles } from '../../../agent/api/static-files.ts'
import { apiRoutes, controlApi } from '../../../agent/api/control.ts'
import type { ApiSources } from '../../../agent/api/control.ts'
import { actorOf, routeTable } from '../../../agent/api/routes/route.ts'
import { API_FAILED_METRIC, API_REFUSED_METRIC, JsonReply, TextBody } from '../../../agent/api/server.ts'
import type { Access, Caller } from '../../../agent/api/server.ts'
import { apiGet, apiRequest } from '../../../agent/cli/client.ts'
import { createLogger } from '../../../common/logger.ts'
import type { SystemEvent } from '../../../protocols/events.ts'
import type { OperatorView, RegisterRequest } from '../../../protocols/identity.ts'
import { tempDir } from '../../helpers/agents.ts'

const LOCAL: Caller = { local: true }
const REMOTE_ADMIN: Caller = { local: false, username: 'ada', role: 'admin' }
const ANONYMOUS: Caller = { local: false, username: null, role: null }
const PROFILE = { first_name: 'Bo', last_name: 'Bell' }

/** A request whose body is `body` as JSON, from `remoteAddress`: what the handlers read of an IncomingMessage. */
function request (body: unknown, remoteAddress?: string): IncomingMessage {
  const text = JSON.stringify(body)
  return Object.assign(Readable.from([Buffer.from(text)]), {
    headers: { 'content-length': String(Buffer.byteLength(text)) },
    socket: { remoteAddress }
  }) as unknown as IncomingMessage
}

/** Sources whose parts record what the routes asked of them. */
function fakeSources (overrides: Partial<ApiSources> = {}) {
  const calls: Array<[string, ...unknown[]]> = []
  const events: SystemEvent[] = []
  const created: OperatorView = { user_id: '7d1f8a52-5f0e-4a47-9d7e-2f4d3c1b0a99', username: 'bob', email: 'bob@example.com', role: 'viewer', status: 'active', created_at: '2026-11-29T00:00:00.000Z' }
  const sources: ApiSources = {
    page: new StaticFiles({ dir: '/nonexistent/ui' }),
    listening: {},
    selfId: 'self',
    name: 'me',
    version: '1.2.3',
    startedAt: 0,
    election: { coordinator: null, isCoordinator: false, term: 0 },
    membership: { get: () => undefined, count: () => 1, list: () => [] },
    lag: { ms: 0 },
    disk: { view: () => ({ freeBytes: null, full: false, lastFullAt: null }) },
    meshConnections: 0,
    prometheus: { render: async () => '# metrics\n' },
    counters: { get: () => 0, sum: () => 0, series: () => ({}) },
    decisions: { decisions: () => [] },
    optimizer: { optimize: async () => { calls.push(['optimize']); return { decisions: [] } } },
    sensors: {
      sensors: () => [],
      forget: (sensor, metric) => { calls.push(['forget', sensor, metric]); return 3 },
      deadLetterViews: () => [],
      totals: () => ({ received: 0, stored: 0, rejected: 0 }),
      deadLetterCount: () => 0
    },
    mqtt: { ingest: null, session: null, broker: null },
    runtime: {
      list: () => [],
      compile: async (file, options) => { calls.push(['compile', file, options]); return { id: 'm1', inputs: [], outputs: [], providers: [] } },
      bench: async (id, options) => { calls.push(['bench', id, options]); return { id, provider: 'cpu', runs: 5, p50Ms: 1, p99Ms: 2, perSecond: 1000 } }
    },
    exchange: { fetch: async (id) => { calls.push(['fetch', id]); return { id, inputs: [], outputs: [], providers: [] } } },
    imports: { importDir: undefined, maxModelBytes: 1024, stagingDir: '/nonexistent/staging' },
    cameras: { list: () => [] },
    cameraEvents: { list: (query) => { calls.push(['events', query]); return [] } },
    snapshots: { eventJpeg: async (id) => { calls.push(['snapshot', id]); return new Uint8Array([0xff, 0xd8]) }, latestJpeg: async (id) => { calls.push(['latest', id]); return new Uint8Array([0xff, 0xd8]) } },
    operators: {
      login: async (username, password, address) => { calls.push(['login', username, password, address]); return { token: 't', expires_at: 'later', username, role: 'viewer' } },
      register: async (request: RegisterRequest, actor: string) => { calls.push(['register', request, actor]); return { ...created, username: request.username, role: request.role ?? 'viewer' } },
      list: () => [created],
      remove: (username, actor) => { calls.push(['remove', username, actor]) },
      auditLog: () => [{ at: 1, actor: 'local', action: 'register', target: 'bob', detail: '' }],
      authenticate: () => undefined,
      logout: (token) => { calls.push(['logout', token]); return true }
    },
    publishEvent: async (event) => { events.push(event) },
    log: createLogger('silent'),
    healthHistory: { samples: () => [] },
    series: { series: () => [] },
    views: { ask: async (peer, request) => { calls.push(['ask', peer, request]); return { json: [] } } },
    ...overrides
  }
  return { sources, calls, events, created }
}

async function call (sources: ApiSources, route: string, req: IncomingMessage = request({}), caller: Caller = LOCAL): Promise<unknown> {
  const found = apiRoutes(sources)[route]
  if (found === undefined) throw new Error(`no route ${route}`)
  return await found.handle(req, caller)
}

/** The rule the agent judged by before the routes declared their roles (agent.ts's accessOf). */
function formerAccessOf (route: string): Access {
  if (route === 'POST /api/v1/identity/login') return 'public'
  // The web page's files, and ending one's own session (issue 16), came after the rule.
  if (route === 'GET /' || route.startsWith('GET /ui/') || route === 'POST /api/v1/identity/logout') return 'public'
  if (route === 'GET /api/v1/identity/me') return 'viewer'
  if (route.includes(' /api/v1/identity/')) return 'admin'
  if (route.startsWith('GET ')) return 'viewer'
  return 'operator'
}

t.test('every route and the role it needs over HTTPS, pinned', async (t) => {
  const routes = apiRoutes(fakeSources().sources)
  const roles = Object.fromEntries(Object.entries(routes).map(([route, r]) => [route, r.access]))
  t.same(roles, {
    'GET /api/v1/system/status': 'viewer',
    'GET /metrics': 'viewer',
    'GET /api/v1/mesh/nodes': 'viewer',
    'GET /api/v1/mesh/gossip': 'viewer',
    'GET /api/v1/mesh/nodes/{peer}/health': 'viewer',
    'GET /api/v1/ahr/decisions': 'viewer',
    'POST /api/v1/ahr/optimize': 'operator',
    'GET /api/v1/sensors': 'viewer',
    'GET /api/v1/sensors/series': 'viewer',
    'POST /api/v1/sensors/forget': 'operator',
    'GET /api/v1/ingest': 'viewer',
    'GET /api/v1/ingest/dead-letters': 'viewer',
    'GET /api/v1/models': 'viewer',
    'POST /api/v1/models/compile': 'operator',
    'POST /api/v1/models/fetch': 'operator',
    'POST /api/v1/models/bench': 'operator',
    'GET /api/v1/cameras': 'viewer',
    'GET /api/v1/events': 'viewer',
    'GET /api/v1/events/{id}/snapshot.jpg': 'viewer',
    'GET /api/v1/cameras/{id}/latest.jpg': 'viewer',
    'POST /api/v1/identity/login': 'public',
    'POST /api/v1/identity/logout': 'public',
    'GET /api/v1/identity/me': 'viewer',
    'POST /api/v1/identity/register': 'admin',
    'GET /api/v1/identity/users': 'admin',
    'POST /api/v1/identity/users/remove': 'admin',
    'GET /api/v1/identity/audit': 'admin',
    'GET /': 'public',
    'GET /ui/{a}': 'public',
    'GET /ui/{a}/{b}': 'public',
    'GET /ui/{a}/{b}/{c}': 'public',
    'GET /api/v1/live': 'viewer',
    'GET /api/v1/ui': 'viewer'
  })
  const { access } = routeTable(routes)
  t.same(Object.keys(routes).filter((route) => access(route) !== formerAccessOf(route)), [], 'the same decisions as the rule it replaces')
})

t.test('a route table gives ControlApi its handlers and the access rule', async (t) => {
  const handle = () => 1
  const { handlers, access } = routeTable({ 'GET /a': { access: 'viewer', handle }, 'POST /b': { access: 'public', handle } })
  t.same(Object.keys(handlers), ['GET /a', 'POST /b'])
  t.equal(handlers['GET /a'], handle)
  t.equal(access('GET /a'), 'viewer')
  t.equal(access('POST /b'), 'public')
  t.equal(access('GET /elsewhere'), 'admin', 'a route not in the table needs the strictest role')
  t.equal(access('GET toString'), 'admin')
})

t.test('the audit log names the caller', async (t) => {
  t.equal(actorOf(LOCAL), 'local')
  t.equal(actorOf(REMOTE_ADMIN), 'ada')
  t.equal(actorOf(ANONYMOUS), 'anonymous')
})

t.test('register: over HTTPS only viewers are made; the mesh is told', async (t) => {
  const { sources, calls, events, created } = fakeSources()
  await t.rejects(call(sources, 'POST /api/v1/identity/register', request({ username: 'eve', email: 'eve@example.com', password: 'a long enough password', profile: PROFILE, role: 'operator' }), REMOTE_ADMIN),
    { code: 'ERR_FORBIDDEN', httpStatus: 403, field: 'role' })
  t.same(calls, [], 'nothing registered')
  t.same(events, [])

  const reply = await call(sources, 'POST /api/v1/identity/register', request({ username: 'bob', email: 'bob@example.com', password: 'a long enough password', profile: PROFILE, role: 'viewer' }), REMOTE_ADMIN)
  t.ok(reply instanceof JsonReply)
  t.same(reply, new JsonReply(201, { user_id: created.user_id, username: 'bob', email: created.email, created_at: created.created_at, status: 'active' }), 'the role is not in the answer')
  t.match(calls, [['register', { username: 'bob', role: 'viewer' }, 'ada']])
  t.equal(events.length, 1)
  t.match(events[0], { v: 1, type: 'operator.registered', userId: created.user_id, username: 'bob', at: Number })

  const local = await call(sources, 'POST /api/v1/identity/register', request({ username: 'root', email: 'root@example.com', password: 'a long enough password', profile: PROFILE, role: 'admin' }), LOCAL)
  t.match(local, { status: 201, body: { username: 'root' } }, 'the trusted socket gives any role')
  t.match(calls[1], ['register', { username: 'root', role: 'admin' }, 'local'])
})

t.test('register: an event that cannot be published is logged, the account stands', async (t) => {
  const debug: unknown[] = []
  const log = Object.assign(createLogger('silent'), { debug: (...args: unknown[]) => { debug.push(args) } })
  const { sources } = fakeSources({ publishEvent: async () => { throw new Error('no peers') }, log })
  const reply = await call(sources, 'POST /api/v1/identity/register', request({ username: 'bob', email: 'bob@example.com', password: 'a long enough password', profile: PROFILE }))
  t.match(reply, { status: 201 })
  await new Promise((resolve) => setImmediate(resolve))
  t.match(debug, [[{ err: { message: 'no peers' } }, 'registration event not published']])
})

t.test('login, users, remove and audit reach the operator store', async (t) => {
  const { sources, calls, created } = fakeSources()
  t.same(await call(sources, 'POST /api/v1/identity/login', request({ username: 'bob', password: 'secret' }, '192.0.2.7'), ANONYMOUS),
    { token: 't', expires_at: 'later', username: 'bob', role: 'viewer' })
  await call(sources, 'POST /api/v1/identity/login', request({ username: 'bob', password: 'secret' }))
  t.same(calls, [['login', 'bob', 'secret', '192.0.2.7'], ['login', 'bob', 'secret', 'local']], 'the address is the socket\'s, "local" on the Unix socket')
  t.same(await call(sources, 'GET /api/v1/identity/users'), [created])
  t.same(await call(sources, 'POST /api/v1/identity/users/remove', request({ username: 'bob' }), REMOTE_ADMIN), { removed: true })
  t.same(calls[2], ['remove', 'bob', 'ada'])
  t.same(await call(sources, 'GET /api/v1/identity/audit'), [{ at: 1, actor: 'local', action: 'register', target: 'bob', detail: '' }])
  await t.rejects(call(sources, 'POST /api/v1/identity/users/remove', request({ user: 'bob' })), { code: 'ERR_BAD_REQUEST' })
})

t.test('compile: remote callers only from models.importDir, from a private copy', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'tiny.onnx')
  writeFileSync(file, 'not really a model')
  const { sources, calls } = fakeSources({ imports: { importDir: undefined, maxModelBytes: 1024, stagingDir: join(dir, 'staging') } })
  await t.rejects(call(sources, 'POST /api/v1/models/compile', request({ file }), REMOTE_ADMIN), { code: 'ERR_IMPORT_FORBIDDEN', httpStatus: 403 })
  t.same(calls, [], 'over HTTPS with no importDir, nothing is compiled')

  t.same(await call(sources, 'POST /api/v1/models/compile', request({ file }), LOCAL), { id: 'm1', inputs: [], outputs: [], providers: [] })
  t.equal(calls.length, 1)
  const [what, staged, options] = calls[0] as [string, string, unknown]
  t.equal(what, 'compile')
  t.not(staged, file, 'the runtime reads the copy, not the named file')
  t.ok(staged.startsWith(join(dir, 'staging')))
  t.same(options, { name: 'tiny.onnx' })

  const { sources: allowed, calls: allowedCalls } = fakeSources({ imports: { importDir: dir, maxModelBytes: 1024, stagingDir: join(dir, 'staging') } })
  await call(allowed, 'POST /api/v1/models/compile', request({ file: 'tiny.onnx' }), REMOTE_ADMIN)
  t.match(allowedCalls, [['compile', String, { name: 'tiny.onnx' }]], 'a remote path is taken inside importDir')
})

t.test('models, optimize and sensors pass the checked request on', async (t) => {
  const { sources, calls } = fakeSources()
  t.same(await call(sources, 'POST /api/v1/models/fetch', request({ id: 'a'.repeat(64) })), { id: 'a'.repeat(64), inputs: [], outputs: [], providers: [] })
  t.match(await call(sources, 'POST /api/v1/models/bench', request({ id: 'beef01', runs: 5 })), { id: 'beef01', runs: 5 })
  t.same(await call(sources, 'POST /api/v1/ahr/optimize'), { decisions: [] })
  t.same(await call(sources, 'POST /api/v1/sensors/forget', request({ sensor: 'kitchen' })), { forgotten: 3 })
  t.same(calls, [['fetch', 'a'.repeat(64)], ['bench', 'beef01', { runs: 5, shape: undefined }], ['optimize'], ['forget', 'kitchen', undefined]])
  await t.rejects(call(sources, 'POST /api/v1/models/bench', request({ id: 'beef01', runs: -1 })), { code: 'ERR_BAD_REQUEST', field: 'runs' })
})

t.test('/metrics answers in Prometheus text format', async (t) => {
  const body = await call(fakeSources().sources, 'GET /metrics')
  t.ok(body instanceof TextBody)
  t.match(body, { text: '# metrics\n', contentType: /^text\/plain/ })
})

t.test('controlApi serves the assembled table on the socket and counts refusals and failures', async (t) => {
  const socketPath = join(tempDir(t), 'agent.sock')
  const counted: Array<[string, Record<string, string>]> = []
  const { sources } = fakeSources({ optimizer: { optimize: async () => { throw new TypeError('a bug') } } })
  const api = controlApi({
    config: { socketPath, headersTimeoutMs: 10_000, requestTimeoutMs: 30_000 },
    ui: { shareViews: true },
    routes: apiRoutes(sources),
    authenticate: () => undefined,
    log: createLogger('silent'),
    counters: { inc: (name, labels) => { counted.push([name, labels]) } }
  })
  await api.start()
  t.teardown(() => api.stop())
  t.match(await apiGet(socketPath, '/api/v1/system/status'), { peerId: 'self', name: 'me', version: '1.2.3', members: 1 })
  await t.rejects(apiGet(socketPath, '/api/v1/nope'), { status: 404, code: 'ERR_NOT_FOUND' })
  await t.rejects(apiRequest(socketPath, 'POST', '/api/v1/ahr/optimize', 5_000, {}), { status: 500, code: 'ERR_INTERNAL' })
  t.same(counted, [[API_REFUSED_METRIC, { reason: 'not_found' }], [API_FAILED_METRIC, { reason: 'internal' }]])
  t.equal(api.tcpAddress, undefined, 'no HTTPS listener without api.tcp')
})
