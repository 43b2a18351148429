import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { request } from 'node:https'
import { join } from 'node:path'
import t from 'tap'
import { apiGet, apiRequest } from '../../agent/cli/client.ts'
import { freePort } from '../../scripts/mosquitto.ts'
import { startAgent, stopAgents, tempDir, writeSwarmKey } from '../helpers/agents.ts'

interface Answer { status: number, headers: Record<string, unknown>, body: any }

/** A self-signed certificate for 127.0.0.1, made for the test. */
function certificate (dir: string): { certFile: string, keyFile: string } {
  const certFile = join(dir, 'cert.pem')
  const keyFile = join(dir, 'key.pem')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', certFile,
    '-days', '1', '-subj', '/CN=noodle-test', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' })
  return { certFile, keyFile }
}

t.test('over HTTPS every request needs a token, and the token\'s role decides what it may do', async (t) => {
  const root = tempDir(t)
  const { certFile, keyFile } = certificate(root)
  const port = await freePort()
  const agent = await startAgent({ root, name: 'remote', swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')), config: { api: { tcp: { host: '127.0.0.1', port, certFile, keyFile } } } })
  t.teardown(() => stopAgents([agent]))
  const ca = readFileSync(certFile)
  const remote = (method: string, path: string, token?: string, body?: unknown): Promise<Answer> => new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const req = request({ host: '127.0.0.1', port, method, path, ca, headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...(payload === undefined ? {} : { 'content-type': 'application/json' }) } }, (res) => {
      let text = ''
      res.on('data', (d: Buffer) => { text += d.toString() })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body: String(res.headers['content-type']).startsWith('application/json') ? JSON.parse(text) : text }) })
    })
    req.on('error', reject)
    req.end(payload)
  })
  const profile = { first_name: 'A', last_name: 'B' }
  // The local socket is trusted: the first admin is made there.
  await apiRequest(agent.socketPath, 'POST', '/api/v1/identity/register', 10_000, { username: 'root1', email: 'root1@example.com', password: 'a long and quiet river', profile, role: 'admin' })
  await apiRequest(agent.socketPath, 'POST', '/api/v1/identity/register', 10_000, { username: 'vic', email: 'vic@example.com', password: 'violet skies at noon', profile })

  t.match(await remote('GET', '/api/v1/mesh/nodes'), { status: 401, body: { error: { code: 'ERR_UNAUTHENTICATED', message: /Bearer/ } } })
  t.match(await remote('GET', '/api/v1/mesh/nodes', 'nd_made-up'), { status: 401, body: { error: { message: 'the token is unknown or expired' } } })
  t.match(await remote('POST', '/api/v1/identity/login', undefined, { username: 'vic', password: 'wrong wrong wrong' }), { status: 401, body: { error: { code: 'ERR_CREDENTIALS' } } })
  t.match(await remote('POST', '/api/v1/identity/login', undefined, { username: 'nobody', password: 'wrong wrong wrong' }), { status: 401, body: { error: { code: 'ERR_CREDENTIALS', message: 'wrong username or password' } } },
    'an unknown name gets the same answer')
  const viewer = await remote('POST', '/api/v1/identity/login', undefined, { username: 'VIC', password: 'violet skies at noon' })
  t.match(viewer, { status: 200, body: { token: /^nd_[A-Za-z0-9_-]{43}$/, username: 'vic', role: 'viewer', expires_at: String } })
  const vic = viewer.body.token as string

  t.match(await remote('GET', '/api/v1/mesh/nodes', vic), { status: 200, body: [{ name: 'remote' }] }, 'a viewer reads')
  t.match(await remote('GET', '/metrics', vic), { status: 200, body: /\nnoodle_members\{state="alive"\} 1\n/ }, 'metrics too')
  t.match(await remote('POST', '/api/v1/ahr/optimize', vic, {}), { status: 403, body: { error: { code: 'ERR_FORBIDDEN', message: 'POST /api/v1/ahr/optimize needs the operator role; vic is viewer' } } })
  t.match(await remote('GET', '/api/v1/identity/users', vic), { status: 403 })

  const admin = (await remote('POST', '/api/v1/identity/login', undefined, { username: 'root1', password: 'a long and quiet river' })).body.token as string
  t.match(await remote('GET', '/api/v1/identity/users', admin), { status: 200, body: [{ username: 'root1' }, { username: 'vic' }] })
  t.match(await remote('POST', '/api/v1/identity/register', admin, { username: 'wen', email: 'wen@example.com', password: 'green tea and rain', profile }), { status: 201, body: { username: 'wen' } })
  t.match(await apiGet(agent.socketPath, '/api/v1/identity/audit'), [{ actor: 'root1', action: 'operator.register', target: 'wen' }], 'the audit log names the admin')
  t.notMatch(agent.output(), new RegExp(vic.slice(3)), 'tokens are never logged')

  for (let i = 0; i < 5; i++) await remote('POST', '/api/v1/identity/login', undefined, { username: 'vic', password: `guess number ${i}` })
  const locked = await remote('POST', '/api/v1/identity/login', undefined, { username: 'vic', password: 'violet skies at noon' })
  t.match(locked, { status: 429, body: { error: { code: 'ERR_TOO_MANY_ATTEMPTS' } } }, 'after 5 failures even the right password waits')
  t.ok(Number(locked.headers['retry-after']) > 800, `Retry-After: ${String(locked.headers['retry-after'])} s`)
  await apiRequest(agent.socketPath, 'POST', '/api/v1/identity/users/remove', 5_000, { username: 'vic' })
  t.match(await remote('GET', '/api/v1/mesh/nodes', vic), { status: 401 }, 'a removed operator\'s tokens die with the account')
})
