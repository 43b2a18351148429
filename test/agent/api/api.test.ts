import { statSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { ControlApi } from '../../../agent/api/server.ts'
import { apiGet } from '../../../agent/cli/client.ts'
import { AgentUnreachableError, ApiError, NoodleError } from '../../../common/errors.ts'
import { createLogger } from '../../../common/logger.ts'
import { tempDir } from '../../helpers/agents.ts'

const log = createLogger('silent')

t.test('serves JSON on a 0660 Unix socket with one error shape', async (t) => {
  const socketPath = join(tempDir(t), 'agent.sock')
  const api = new ControlApi({
    socketPath,
    log,
    routes: {
      'GET /api/v1/ok': () => ({ hello: 'world' }),
      'GET /api/v1/async': async () => [1, 2],
      'GET /api/v1/broken': () => { throw new NoodleError('ERR_BROKEN', 'it broke') },
      'GET /api/v1/bug': () => { throw new TypeError('oops') }
    }
  })
  await api.start()
  t.teardown(() => api.stop())
  t.equal(statSync(socketPath).mode & 0o777, 0o660)
  t.same(await apiGet(socketPath, '/api/v1/ok'), { hello: 'world' })
  t.same(await apiGet(socketPath, '/api/v1/async'), [1, 2])
  await t.rejects(apiGet(socketPath, '/api/v1/async?x=1'), { status: 400, code: 'ERR_BAD_TARGET', message: '/api/v1/async takes no query parameters' })
  await t.rejects(apiGet(socketPath, '/api/v1/nope'), { status: 404, code: 'ERR_NOT_FOUND' })
  await t.rejects(apiGet(socketPath, '/api/v1/broken'), { status: 500, code: 'ERR_BROKEN', message: 'it broke' })
  await t.rejects(apiGet(socketPath, '/api/v1/bug'), { status: 500, code: 'ERR_INTERNAL' })
  const post = await fetchOverSocket(socketPath, 'POST', '/api/v1/ok')
  t.equal(post.status, 405)
  t.same(JSON.parse(post.body), { error: { code: 'ERR_METHOD', message: 'POST is not allowed on /api/v1/ok' } })

  const second = new ControlApi({ socketPath, log, routes: {} })
  await t.rejects(second.start(), { code: 'ERR_AGENT_RUNNING' }, 'a second agent on the same socket is refused')
  await api.stop()
  await api.stop()
})

t.test('a stale socket file left by a crash is replaced', async (t) => {
  const socketPath = join(tempDir(t), 'agent.sock')
  const dead = createServer()
  await new Promise<void>((resolve) => dead.listen(socketPath, resolve))
  // Closing a server with the file kept mimics a crash: the file stays, nothing answers.
  dead.close()
  const api = new ControlApi({ socketPath, log, routes: { 'GET /x': () => 1 } })
  await api.start()
  t.teardown(() => api.stop())
  t.equal(await apiGet(socketPath, '/x'), 1)
})

t.test('the client tells "no agent" apart from other failures', async (t) => {
  const dir = tempDir(t)
  await t.rejects(apiGet(join(dir, 'none.sock'), '/'), AgentUnreachableError)
  const socketPath = join(dir, 'raw.sock')
  const raw = createServer((s) => { s.end('HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc') })
  await new Promise<void>((resolve) => raw.listen(socketPath, resolve))
  t.teardown(() => { raw.close() })
  await t.rejects(apiGet(socketPath, '/'), ApiError, 'a non-JSON answer is an API error')
  const silent = join(dir, 'silent.sock')
  const hang = createServer(() => {})
  await new Promise<void>((resolve) => hang.listen(silent, resolve))
  t.teardown(() => { hang.close() })
  const rude = join(dir, 'rude.sock')
  const hangup = createServer((s) => { s.once('data', () => { s.destroy() }) })
  await new Promise<void>((resolve) => hangup.listen(rude, resolve))
  t.teardown(() => { hangup.close() })
  await t.rejects(apiGet(rude, '/x'), { name: 'AgentHangupError', code: 'ERR_AGENT_HANGUP', message: 'the agent closed the connection without answering GET /x' })
  await t.rejects(apiGet(silent, '/', 200), { name: 'AgentTimeoutError', code: 'ERR_AGENT_TIMEOUT', message: 'the agent did not answer GET / within 0.2 s' }, 'an agent that never answers timed out: it is not "no agent"')
})

function fetchOverSocket (socketPath: string, method: string, path: string): Promise<{ status: number, body: string }> {
  return import('node:http').then(({ request }) => new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => { body += c.toString() })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
    })
    req.on('error', reject)
    req.end()
  }))
}
