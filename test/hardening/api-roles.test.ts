import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { apiGet, apiRequest, apiText } from '../../agent/cli/client.ts'
import type { ApiError } from '../../common/errors.ts'
import type { OperatorView } from '../../protocols/identity.ts'
import { freePort } from '../../scripts/mosquitto.ts'
import { startAgent, status, stopAgents, tempDir, writeSwarmKey } from '../helpers/agents.ts'
import { certificate, httpsJson } from './api-tls.ts'

t.test('a real agent: over HTTPS an admin makes only viewers, and no one removes the last admin', async (t) => {
  const root = tempDir(t)
  const { certFile, keyFile } = certificate(root)
  const port = await freePort()
  const agent = await startAgent({ root, name: 'ruled', swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')), config: { api: { tcp: { host: '127.0.0.1', port, certFile, keyFile } } } })
  t.teardown(() => stopAgents([agent]))
  const ca = readFileSync(certFile)
  const profile = { first_name: 'A', last_name: 'B' }
  const account = (username: string, role?: string) => ({ username, email: `${username}@example.com`, password: 'a long and quiet river', profile, ...(role === undefined ? {} : { role }) })
  const local = async (path: string, body: unknown) => await apiRequest(agent.socketPath, 'POST', path, 10_000, body)
    .then(() => 'ok', (err: ApiError) => ({ status: err.status, code: err.code, message: err.message }))
  t.equal(await local('/api/v1/identity/register', account('root1', 'admin')), 'ok', 'the socket makes the first admin')
  const token = (await httpsJson(port, ca, 'POST', '/api/v1/identity/login', undefined, { username: 'root1', password: 'a long and quiet river' })).body.token as string
  const remote = async (path: string, body: unknown) => await httpsJson(port, ca, 'POST', path, token, body)

  for (const role of ['admin', 'operator']) {
    t.same(await remote('/api/v1/identity/register', account(`made-${role}`, role)), {
      status: 403,
      body: { error: { code: 'ERR_FORBIDDEN', field: 'role', message: `role: over HTTPS a new account is a viewer; only the local socket (noodle user add --role) makes ${role}s` } }
    }, `https: an admin cannot make an ${role}`)
  }
  t.match(await remote('/api/v1/identity/register', account('plain')), { status: 201, body: { username: 'plain' } }, 'https: a viewer, without a role')
  t.match(await remote('/api/v1/identity/register', account('said-viewer', 'viewer')), { status: 201 }, 'https: or with role viewer')

  const lastAdmin = { status: 409, body: { error: { code: 'ERR_LAST_ADMIN', message: 'root1 is the last admin: make another admin before removing it' } } }
  t.same(await remote('/api/v1/identity/users/remove', { username: 'root1' }), lastAdmin, 'https: the last admin cannot remove itself')
  t.same(await local('/api/v1/identity/users/remove', { username: 'ROOT1' }), { status: 409, code: 'ERR_LAST_ADMIN', message: lastAdmin.body.error.message }, 'nor can the socket remove it')
  t.equal(await local('/api/v1/identity/register', account('root2', 'admin')), 'ok', 'the socket makes a second admin')
  t.match(await remote('/api/v1/identity/users/remove', { username: 'root2' }), { status: 200, body: { removed: true } }, 'with two, one may go')
  t.same(await remote('/api/v1/identity/users/remove', { username: 'root1' }), lastAdmin, 'then not the last')
  t.match(await remote('/api/v1/identity/users/remove', { username: 'plain' }), { status: 200 }, 'other accounts are removed as before')

  t.same((await apiGet<OperatorView[]>(agent.socketPath, '/api/v1/identity/users')).map((o) => [o.username, o.role]), [['root1', 'admin'], ['said-viewer', 'viewer']])
  const metrics = await apiText(agent.socketPath, '/metrics')
  t.match(metrics, /^noodle_api_refused_total\{reason="forbidden"\} 2$/m, 'the role refusals are counted')
  t.match(metrics, /^noodle_api_refused_total\{reason="last_admin"\} 3$/m, 'and the last-admin ones')
  t.equal((await status(agent)).name, 'ruled')
})
