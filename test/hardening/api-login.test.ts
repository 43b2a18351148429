import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { join } from 'node:path'
import t from 'tap'
import { apiRequest, apiText } from '../../agent/cli/client.ts'
import { LoginLimiter } from '../../identity/login-limiter.ts'
import { freePort } from '../../scripts/mosquitto.ts'
import { BIN, startAgent, status, stopAgents, tempDir, writeSwarmKey } from '../helpers/agents.ts'
import { certificate, httpsJson } from './api-tls.ts'

const wrong = async (): Promise<{ ok: boolean, value: null }> => {
  await new Promise((resolve) => setTimeout(resolve, 20)) // as scrypt does: the check takes a while
  return { ok: false, value: null }
}

t.test('concurrent failures for one account all count, and a check under way holds its place', async (t) => {
  const limiter = new LoginLimiter()
  for (let round = 0; round < 2; round++) await Promise.all([limiter.attempt('ana', wrong), limiter.attempt('ana', wrong)])
  const fifth = limiter.attempt('ana', wrong)
  await t.rejects(limiter.attempt('ana', wrong), { code: 'ERR_TOO_MANY_ATTEMPTS', retryAfterS: 900 }, 'four failed and one under way: a sixth guess is not let in beside it')
  await fifth
  await t.rejects(limiter.attempt('ana', async () => ({ ok: true, value: null })), { code: 'ERR_TOO_MANY_ATTEMPTS', retryAfterS: 900 }, 'all five counted')
})

t.test('a check that throws counts as a failure', async (t) => {
  const limiter = new LoginLimiter()
  for (let i = 0; i < 5; i++) await t.rejects(limiter.attempt('bo', async () => { throw new Error('broken') }), { message: 'broken' })
  await t.rejects(limiter.attempt('bo', async () => ({ ok: true, value: null })), { code: 'ERR_TOO_MANY_ATTEMPTS' })
})

t.test('a flood of unknown names does not grow the map past its cap; the oldest are forgotten first', async (t) => {
  let now = 1_000_000
  const limiter = new LoginLimiter({ now: () => now, maxAccounts: 100 })
  const fail = async (name: string) => await limiter.attempt(name, async () => ({ ok: false, value: null }))
  for (let i = 0; i < 4; i++) await fail('target')
  for (let i = 0; i < 99; i++) { now += 1; await fail(`nobody-${i}`) }
  t.equal(limiter.size, 100)
  await fail('target')
  t.equal(limiter.size, 100, 'the failing account moves to the back')
  for (let i = 99; i < 1_000; i++) { now += 1; await fail(`nobody-${i}`) }
  t.equal(limiter.size, 100, '1000 distinct names later, still 100 accounts')
  t.same(await limiter.attempt('target', async () => ({ ok: true, value: 'in' })), { ok: true, value: 'in' }, 'the oldest (target) was forgotten')
  t.equal(LoginLimiter.MAX_ACCOUNTS, 50_000, 'the agent keeps at most 50 000')
})

t.test('a real agent: concurrent failed logins over HTTPS both count, then the account is locked', async (t) => {
  const root = tempDir(t)
  const { certFile, keyFile } = certificate(root)
  const port = await freePort()
  const agent = await startAgent({ root, name: 'guarded', swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')), config: { api: { tcp: { host: '127.0.0.1', port, certFile, keyFile } } } })
  t.teardown(() => stopAgents([agent]))
  const ca = readFileSync(certFile)
  await apiRequest(agent.socketPath, 'POST', '/api/v1/identity/register', 10_000, { username: 'vic', email: 'vic@example.com', password: 'violet skies at noon', profile: { first_name: 'V', last_name: 'C' } })
  const login = async (password: string) => await httpsJson(port, ca, 'POST', '/api/v1/identity/login', undefined, { username: 'vic', password })
  for (let round = 0; round < 2; round++) {
    const pair = await Promise.all([login(`guess ${round}a`), login(`guess ${round}b`)])
    t.same(pair.map((a) => a.status), [401, 401], `round ${round}: two wrong passwords at once`)
  }
  t.equal((await login('guess 5')).status, 401)
  t.match(await login('violet skies at noon'), { status: 429, body: { error: { code: 'ERR_TOO_MANY_ATTEMPTS' } } }, 'five failures counted: even the right password waits')
  t.equal((await status(agent)).name, 'guarded')
})

t.test('the CLI says a request timed out (a stopped agent), not that no agent runs', async (t) => {
  const root = tempDir(t)
  const agent = await startAgent({ root, name: 'frozen', swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')) })
  t.teardown(() => stopAgents([agent]))
  agent.child.kill('SIGSTOP')
  t.teardown(() => { agent.child.kill('SIGCONT') })
  const cli = spawn(BIN, ['status', '--data-dir', agent.dataDir], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  cli.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const code = await new Promise<number | null>((resolve) => cli.once('exit', resolve))
  agent.child.kill('SIGCONT')
  t.same({ code, stderr }, { code: 1, stderr: 'noodle: the agent did not answer GET /api/v1/system/status within 5 s\n' })
  t.equal((await status(agent)).name, 'frozen', 'the agent answers once it runs again')
})

/** A login over HTTPS from `localAddress` (a loopback address of its own): the status. */
function loginFrom (port: number, ca: Buffer, localAddress: string, username: string, password: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, localAddress, method: 'POST', path: '/api/v1/identity/login', ca, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume()
      res.on('end', () => { resolve(res.statusCode ?? 0) })
    })
    req.on('error', reject)
    req.end(JSON.stringify({ username, password }))
  })
}

t.test('a real agent: a client flooding bogus logins from one address does not stop another\'s login', async (t) => {
  const root = tempDir(t)
  const { certFile, keyFile } = certificate(root)
  const port = await freePort()
  const agent = await startAgent({ root, name: 'flooded', swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')), config: { api: { tcp: { host: '127.0.0.1', port, certFile, keyFile } } } })
  t.teardown(() => stopAgents([agent]))
  const ca = readFileSync(certFile)
  await apiRequest(agent.socketPath, 'POST', '/api/v1/identity/register', 10_000, { username: 'ana', email: 'ana@example.com', password: 'violet skies at noon', profile: { first_name: 'A', last_name: 'N' } })
  // Four loops of logins at once from 127.0.0.2, each a made-up name (so no account lock stops them first).
  let flooding = true
  const floodAnswers: number[] = []
  const flood = Array.from({ length: 4 }, async (_, loop) => {
    for (let i = 0; flooding; i++) floodAnswers.push(await loginFrom(port, ca, '127.0.0.2', `nobody-${loop}-${i}`, 'not the password'))
  })
  await new Promise((resolve) => setTimeout(resolve, 500))
  const mine: number[] = []
  for (let i = 0; i < 3; i++) mine.push(await loginFrom(port, ca, '127.0.0.3', 'ana', 'violet skies at noon'))
  flooding = false
  await Promise.all(flood)
  t.same(mine, [200, 200, 200], 'ana logs in from another address, three times, while the flood runs')
  t.same([...new Set(floodAnswers)].sort(), [401, 429], 'the flood gets 401s, and 429 past its share (one check, two waiting)')
  t.match(await apiText(agent.socketPath, '/metrics'), /^noodle_api_refused_total\{reason="too_many_attempts"\} [1-9]\d*$/m, 'its 429s are counted')
  t.equal((await status(agent)).name, 'flooded')
})
