import { execFile } from 'node:child_process'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import t from 'tap'
import { apiGet, apiRequest } from '../../agent/cli/client.ts'
import type { OperatorView } from '../../protocols/identity.ts'
import { BIN, allSee, bootstrapAddr, startAgent, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'
import { eventually } from '../helpers/eventually.ts'

const ana = {
  username: 'Ana',
  email: 'Ana.Lopez@example.com',
  password: 'correct horse battery staple',
  profile: { first_name: 'Ana', last_name: 'López', phone: '+34 600 123 456' }
}

t.test('operators register with field-level errors, unique names and emails, a hashed password, an audit entry and an event', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const agent = await startAgent({ root, name: 'reg-1', swarmKeyFile, logLevel: 'info' })
  const other = await startAgent({ root, name: 'reg-2', swarmKeyFile, logLevel: 'info', bootstrap: [await bootstrapAddr(agent)] })
  t.teardown(() => stopAgents([agent, other]))
  await waitFor('the two to see each other', () => allSee([agent, other], [agent, other], 'alive'), 20_000)
  const register = (body: unknown) => apiRequest<Record<string, unknown>>(agent.socketPath, 'POST', '/api/v1/identity/register', 10_000, body)

  const created = await register(ana)
  t.same(Object.keys(created), ['user_id', 'username', 'email', 'created_at', 'status'])
  t.match(created, { user_id: /^[0-9a-f-]{36}$/, username: 'ana', email: 'ana.lopez@example.com', status: 'active' }, 'names kept in lower case')
  t.ok(Math.abs(Date.parse(created.created_at as string) - Date.now()) < 60_000)

  await t.rejects(register({ ...ana, email: 'other@example.com' }), { status: 409, code: 'ERR_TAKEN', message: /^username: / })
  await t.rejects(register({ ...ana, username: 'ana2' }), { status: 409, code: 'ERR_TAKEN', message: /^email: / }, 'emails are unique too, whatever their case')
  const bad: Array<[unknown, RegExp]> = [
    [{ ...ana, username: '1x' }, /^username: must be 3–32 letters/],
    [{ ...ana, email: 'not-an-email' }, /^email: must be an email address/],
    [{ ...ana, username: 'bo', email: 'bo@example.com' }, /^username: /],
    [{ ...ana, username: 'carla', email: 'carla@example.com', password: 'short' }, /^password: must be at least 12 characters/],
    [{ ...ana, username: 'carla', email: 'carla@example.com', password: 'carla-is-my-name' }, /^password: must not contain the username/],
    [{ ...ana, username: 'carla', email: 'carla@example.com', profile: { last_name: 'X' } }, /^profile\.first_name: /],
    [{ ...ana, username: 'carla', email: 'carla@example.com', profile: { ...ana.profile, phone: 'call me' } }, /^profile\.phone: must be a phone number/],
    [{ ...ana, username: 'carla', email: 'carla@example.com', admin: true }, /^admin: is not a known field/]
  ]
  for (const [body, message] of bad) await t.rejects(register(body), { status: 400, code: 'ERR_BAD_REQUEST', message })

  await register({ ...ana, username: 'bob', email: 'bob@example.com', password: 'a long and quiet river', role: 'admin' })
  t.match(await apiGet<OperatorView[]>(agent.socketPath, '/api/v1/identity/users'), [{ username: 'ana', role: 'viewer' }, { username: 'bob', role: 'admin' }])
  const db = new Database(join(agent.dataDir, 'noodle.db'), { readonly: true })
  const stored = db.prepare('SELECT password_hash FROM operators').all() as Array<{ password_hash: string }>
  db.close()
  t.ok(stored.every((r) => r.password_hash.startsWith('scrypt$') && !r.password_hash.includes('horse')), 'only scrypt hashes are stored')
  t.notMatch(agent.output(), /correct horse|a long and quiet/, 'and no password is ever logged')

  // bob is the only admin: another is made first (the last admin is never removed).
  await register({ ...ana, username: 'cleo', email: 'cleo@example.com', password: 'a long and quiet river', role: 'admin' })
  await apiRequest(agent.socketPath, 'POST', '/api/v1/identity/users/remove', 5_000, { username: 'BOB' })
  await t.rejects(apiRequest(agent.socketPath, 'POST', '/api/v1/identity/users/remove', 5_000, { username: 'bob' }), { status: 404, code: 'ERR_UNKNOWN_OPERATOR' })
  t.match(await apiGet(agent.socketPath, '/api/v1/identity/audit'), [
    { actor: 'local', action: 'operator.remove', target: 'bob' },
    { actor: 'local', action: 'operator.register', target: 'cleo', detail: 'role admin' },
    { actor: 'local', action: 'operator.register', target: 'bob', detail: 'role admin' },
    { actor: 'local', action: 'operator.register', target: 'ana', detail: 'role viewer' }
  ], 'every change is audited, newest first')
  const heard = '"username":"ana","msg":"an operator registered on a member"'
  t.equal(await eventually(() => other.output().includes(heard) ? heard : undefined, heard, { timeoutMs: 10_000 }), heard,
    'the other node heard of the registration on noodle/1/system.events')
})

/** Runs the noodle CLI with `input` on its stdin. */
function noodle (args: string[], input = ''): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(BIN, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : (typeof err.code === 'number' ? err.code : 1), stdout, stderr })
    })
    child.stdin?.end(input)
  })
}

t.test('noodle user add, list and remove, the password on stdin', async (t) => {
  const root = tempDir(t)
  const agent = await startAgent({ root, name: 'users', swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')) })
  t.teardown(() => stopAgents([agent]))
  const dir = ['--data-dir', agent.dataDir]
  const add = await noodle(['user', 'add', 'dora', '--email', 'dora@example.com', '--first-name', 'Dora', '--last-name', 'Ng', '--role', 'operator', ...dir], 'a long and quiet river\n')
  t.equal(add.code, 0, add.stderr)
  t.match(add.stdout, /^created dora \([0-9a-f-]{36}\)\n$/)
  const weak = await noodle(['user', 'add', 'eve', '--email', 'eve@example.com', '--first-name', 'Eve', '--last-name', 'K', ...dir], 'short\n')
  t.equal(weak.code, 1)
  t.match(weak.stderr, /password: must be at least 12 characters/, 'the field and the rule')
  t.match((await noodle(['user', 'list', ...dir])).stdout, /^USERNAME\s+EMAIL\s+ROLE\s+STATUS\s+CREATED\ndora\s+dora@example\.com\s+operator\s+active\s+20/)
  t.match(JSON.parse((await noodle(['user', 'list', '--json', ...dir])).stdout), [{ username: 'dora', role: 'operator' }])
  t.equal((await noodle(['user', 'remove', 'dora', ...dir])).stdout, 'removed dora\n')
  t.equal((await noodle(['user', 'list', ...dir])).stdout, 'no operators (noodle user add NAME --email …)\n')
  t.equal((await noodle(['user', 'frobnicate', ...dir])).code, 2, 'a usage error')
})
