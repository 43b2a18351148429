import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import type { IncomingHttpHeaders } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { WebSocket } from 'ws'
import { apiRequest } from '../../agent/cli/client.ts'
import { freePort } from '../../scripts/mosquitto.ts'
import { startAgent, stopAgents, tempDir, writeSwarmKey } from '../helpers/agents.ts'
import { certificate } from './api-tls.ts'

const BIN = new URL('../../bin/noodle', import.meta.url).pathname

interface Answer { status: number, headers: IncomingHttpHeaders, body: Buffer }
interface Where { port: number, ca?: Buffer }

/** One request over HTTPS (with `ca`) or plain HTTP on loopback, with the headers given. */
function send (where: Where, method: string, path: string, headers: Record<string, string> = {}, body?: unknown): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? '' : JSON.stringify(body)
    const options = { host: '127.0.0.1', port: where.port, method, path, headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers } }
    const done = (res: import('node:http').IncomingMessage): void => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }) })
    }
    const req = where.ca === undefined ? httpRequest(options, done) : httpsRequest({ ...options, ca: where.ca }, done)
    req.on('error', reject)
    req.end(payload)
  })
}

const json = (a: Answer): any => JSON.parse(a.body.toString())
const errorOf = (a: Answer): unknown => ({ status: a.status, code: json(a).error?.code })
/** The cookie a login set, as a browser sends it back. */
const cookieOf = (a: Answer): string => (a.headers['set-cookie']?.[0] ?? '').split(';')[0] as string

/** A live-feed client: what the server did with its upgrade, and then what it sent and how it closed. */
function connect (where: Where, headers: Record<string, string>): Promise<{ status: number, ws?: WebSocket, messages: any[], closed: Promise<{ code: number, reason: string }> }> {
  return new Promise((resolve) => {
    const url = `${where.ca === undefined ? 'ws' : 'wss'}://127.0.0.1:${where.port}/api/v1/live`
    const ws = new WebSocket(url, { ca: where.ca, headers })
    const messages: any[] = []
    const closed = new Promise<{ code: number, reason: string }>((resolve) => { ws.on('close', (code, reason) => { resolve({ code, reason: reason.toString() }) }) })
    ws.on('message', (data) => { messages.push(JSON.parse(data.toString())) })
    ws.on('unexpected-response', (_req, res) => {
      let text = ''
      res.on('data', (d: Buffer) => { text += d.toString() })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, messages: [JSON.parse(text)], closed }) })
    })
    ws.on('open', () => { resolve({ status: 101, ws, messages, closed }) })
    ws.on('error', () => {})
  })
}

/** Waits until `check` holds (polled), returning what it last returned. */
async function until<T> (check: () => T, ok: (v: T) => boolean, ms = 5_000): Promise<T> {
  const end = Date.now() + ms
  let value = check()
  while (!ok(value) && Date.now() < end) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    value = check()
  }
  return value
}

t.test('the page and its session on a real agent: HTTPS and loopback HTTP, cookies, origin, logout, the live feed\'s bounds', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const { certFile, keyFile } = certificate(root)
  const ca = readFileSync(certFile)
  const [tlsPort, httpPort] = [await freePort(), await freePort()]
  const agent = await startAgent({ root, name: 'paged', swarmKeyFile, config: { api: { tcp: { host: '127.0.0.1', port: tlsPort, certFile, keyFile } }, ui: { http: { port: httpPort } } } })
  t.teardown(() => stopAgents([agent]))
  for (const [username, role] of [['olga', 'operator'], ['vic', 'viewer']]) {
    await apiRequest(agent.socketPath, 'POST', '/api/v1/identity/register', 10_000, { username, email: `${username}@example.com`, password: 'violet skies at noon', profile: { first_name: 'A', last_name: 'B' }, role })
  }
  const tls: Where = { port: tlsPort, ca }
  const loop: Where = { port: httpPort }
  const origin = { tls: `https://127.0.0.1:${tlsPort}`, loop: `http://127.0.0.1:${httpPort}` }

  // The page is public, and says what it may run.
  const page = await send(tls, 'GET', '/', { 'accept-encoding': 'gzip' })
  t.same([page.status, page.headers['content-type'], page.headers['content-encoding']], [200, 'text/html; charset=utf-8', 'gzip'], 'the page, gzipped for a browser that takes it')
  t.match(page.headers['content-security-policy'], /^default-src 'self'; script-src 'self'( 'sha256-[A-Za-z0-9+/=]+')?; style-src 'self';.* frame-ancestors 'none'/)
  const again = await send(tls, 'GET', '/', { 'if-none-match': page.headers.etag as string })
  t.same([again.status, again.body.length], [304, 0], 'the browser\'s copy is still good: 304, no body')
  const vendor = await send(tls, 'GET', '/ui/vendor/preact.mjs')
  t.same([vendor.status, vendor.headers['content-type']], [200, 'text/javascript; charset=utf-8'], 'the libraries come from the installed packages')
  for (const path of ['/ui/..%2F..%2Fpackage.json', '/ui/%2e%2e/noodle.db', '/ui/vendor/..%2F..%2F..%2Fetc%2Fpasswd', '/ui/.git/config', '/ui/a/b/c/d.js']) {
    t.same(errorOf(await send(tls, 'GET', path)), { status: 404, code: 'ERR_NOT_FOUND' }, `${path}: only the files read at start exist`)
  }

  // Logging in for the page: the token is in an HttpOnly cookie, not the body.
  t.same(errorOf(await send(tls, 'POST', '/api/v1/identity/login', {}, { username: 'vic', password: 'wrong password here', session: true })), { status: 401, code: 'ERR_CREDENTIALS' })
  const login = await send(tls, 'POST', '/api/v1/identity/login', {}, { username: 'vic', password: 'violet skies at noon', session: true })
  t.same([login.status, Object.keys(json(login)).sort()], [200, ['expires_at', 'role', 'username']], 'no token in the answer')
  t.match(login.headers['set-cookie']?.[0], /^noodle_session=nd_[A-Za-z0-9_-]+; Path=\/; Max-Age=(?:431[89]\d|43200); HttpOnly; SameSite=Strict; Secure$/)
  const viewerCookie = cookieOf(login)
  t.same(json(await send(tls, 'GET', '/api/v1/identity/me', { cookie: viewerCookie })), { username: 'vic', role: 'viewer', local: false }, 'the cookie is a session')
  t.same(errorOf(await send(tls, 'GET', '/api/v1/identity/me', { cookie: 'noodle_session=nd_forged_but_well_shaped_token_value' })), { status: 401, code: 'ERR_UNAUTHENTICATED' })
  t.same(json(await send(tls, 'GET', '/api/v1/identity/me', { cookie: `noodle_session=planted-by-a-sibling-host; ${viewerCookie}` })).username, 'vic', 'a cookie of the name that is no token is passed over')

  // An operator's cookie acts only from the page itself.
  const olga = cookieOf(await send(tls, 'POST', '/api/v1/identity/login', {}, { username: 'olga', password: 'violet skies at noon', session: true }))
  const forget = { sensor: 'nobody', metric: 'x' }
  t.same(errorOf(await send(tls, 'POST', '/api/v1/sensors/forget', { cookie: olga }, forget)), { status: 403, code: 'ERR_ORIGIN' }, 'no Origin: refused')
  t.same(errorOf(await send(tls, 'POST', '/api/v1/sensors/forget', { cookie: olga, origin: 'https://evil.example' }, forget)), { status: 403, code: 'ERR_ORIGIN' }, 'another site\'s page: refused')
  t.same(json(await send(tls, 'POST', '/api/v1/sensors/forget', { cookie: olga, origin: origin.tls }, forget)), { forgotten: 0 }, 'from the page: done')

  // The live feed: a session, from the page.
  t.same((await connect(tls, {})).status, 401, 'no session: refused before the upgrade')
  t.same((await connect(tls, { cookie: viewerCookie, origin: 'https://evil.example' })).status, 403, 'another site\'s page: refused')
  const feed = await connect(tls, { cookie: viewerCookie, origin: origin.tls })
  t.equal(feed.status, 101)
  const first = await until(() => feed.messages.map((m) => m.type), (types) => types.length >= 3)
  t.same(first, ['hello', 'nodes', 'cameras'], 'hello, then the mesh and the cameras at once')
  t.same(feed.messages[0], { type: 'hello', username: 'vic', role: 'viewer' })
  t.same(feed.messages[1].nodes.map((n: { name: string }) => n.name), ['paged'])

  // Bounds: a frame over 1 KiB, and a flood, end their clients; a ninth feed of one operator is refused.
  const big = await connect(tls, { cookie: olga, origin: origin.tls })
  big.ws?.send('x'.repeat(2048))
  t.equal((await big.closed).code, 1009, 'an oversized frame closes it')
  const flood = await connect(tls, { cookie: olga, origin: origin.tls })
  for (let i = 0; i < 25; i++) flood.ws?.send('{}')
  t.same(await flood.closed, { code: 1008, reason: 'flood' })
  const feeds = await Promise.all(Array.from({ length: 8 }, async () => await connect(tls, { cookie: olga, origin: origin.tls })))
  t.same(feeds.map((f) => f.status), Array(8).fill(101))
  const ninth = await connect(tls, { cookie: olga, origin: origin.tls })
  t.same([ninth.status, ninth.messages[0]?.error?.code], [429, 'ERR_LIVE_FULL'])
  for (const f of feeds) f.ws?.close()

  // Logout ends the session at once, and its live feed within a tick.
  const out = await send(tls, 'POST', '/api/v1/identity/logout', { cookie: viewerCookie, origin: origin.tls }, {})
  t.same(json(out), { loggedOut: true })
  t.match(out.headers['set-cookie']?.[0], /^noodle_session=; Path=\/; Max-Age=0; HttpOnly; SameSite=Strict; Secure$/, 'the cookie is cleared')
  t.same(errorOf(await send(tls, 'GET', '/api/v1/identity/me', { cookie: viewerCookie })), { status: 401, code: 'ERR_UNAUTHENTICATED' })
  t.same(await feed.closed, { code: 4001, reason: 'session' })

  // The loopback listener: the same page and rules over plain HTTP, its cookie without Secure; only by a loopback
  // name (DNS rebinding: another site's page resolving to 127.0.0.1 sends its own name).
  t.equal((await send(loop, 'GET', '/')).status, 200)
  t.equal((await send(loop, 'GET', '/', { host: `localhost:${httpPort + 1}` })).status, 200, 'through a tunnel whose local port differs')
  t.equal((await send(loop, 'GET', '/', { host: `127.0.0.2:${httpPort}` })).status, 200, 'or a loopback address of its own')
  t.same(errorOf(await send(loop, 'GET', '/', { host: `evil.example:${httpPort}` })), { status: 421, code: 'ERR_HOST' })
  t.same(errorOf(await send(loop, 'POST', '/api/v1/identity/login', { host: 'rebound.example' }, { username: 'vic', password: 'violet skies at noon', session: true })), { status: 421, code: 'ERR_HOST' }, 'not even a login')
  t.equal((await connect(loop, { host: `evil.example:${httpPort}`, origin: `http://evil.example:${httpPort}` })).status, 421, 'nor the live feed')
  t.same(errorOf(await send(loop, 'GET', '/api/v1/mesh/nodes')), { status: 401, code: 'ERR_UNAUTHENTICATED' }, 'a session is still required')
  const plain = await send(loop, 'POST', '/api/v1/identity/login', {}, { username: 'vic', password: 'violet skies at noon', session: true })
  t.match(plain.headers['set-cookie']?.[0], /^noodle_session=nd_[A-Za-z0-9_-]+; Path=\/; Max-Age=\d+; HttpOnly; SameSite=Strict$/)
  t.equal((await send(loop, 'GET', '/api/v1/mesh/nodes', { cookie: cookieOf(plain) })).status, 200)
  const loopFeed = await connect(loop, { cookie: cookieOf(plain), origin: origin.loop })
  t.equal(loopFeed.status, 101)
  loopFeed.ws?.close()

  // What was dropped is counted.
  const metrics = (await send(tls, 'GET', '/metrics', { cookie: olga })).body.toString()
  for (const reason of ['oversized', 'flood', 'session']) t.match(metrics, new RegExp(`noodle_live_dropped_total\\{reason="${reason}"\\} [1-9]`), `counted: ${reason}`)

  // `noodle ui` says where to open it.
  const ui = await promisify(execFile)(BIN, ['ui', '--data-dir', agent.dataDir])
  t.same(ui.stdout.trim().split('\n').map((line) => line.split(' ')[0]), [`https://127.0.0.1:${tlsPort}/`, `http://127.0.0.1:${httpPort}/`])
  t.same(errorOf(await send(tls, 'GET', '/api/v1/live', { cookie: olga, origin: origin.tls })), { status: 426, code: 'ERR_UPGRADE_REQUIRED' }, 'a plain GET of the feed is told to upgrade')

  // A page left open does not hold the agent's stop: its feed is closed first.
  const open = await connect(tls, { cookie: olga, origin: origin.tls })
  t.equal(open.status, 101)
  const stopping = Date.now()
  agent.child.kill('SIGTERM')
  t.same(await agent.exited, { code: 0, signal: null }, 'a clean exit')
  t.ok(Date.now() - stopping < 4_000, `in ${Date.now() - stopping} ms, well before the 5 s that forces an exit`)
})

t.test('`noodle ui` on a box with neither listener says so and exits 1', async (t) => {
  const root = tempDir(t)
  const agent = await startAgent({ root, name: 'headless', swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')) })
  t.teardown(() => stopAgents([agent]))
  const failed = await promisify(execFile)(BIN, ['ui', '--data-dir', agent.dataDir]).then(() => ({ code: 0, stderr: '' }), (err: { code: number, stderr: string }) => ({ code: err.code, stderr: err.stderr }))
  t.same(failed, { code: 1, stderr: 'noodle: the web page is not served: set api.tcp (HTTPS) or ui.http (loopback HTTP) and restart the agent\n' })
})
