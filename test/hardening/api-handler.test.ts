import { join } from 'node:path'
import t from 'tap'
import { ControlApi, jsonDepth, requestTarget } from '../../agent/api/server.ts'
import { apiGet, apiRequest } from '../../agent/cli/client.ts'
import { createLogger } from '../../common/logger.ts'
import { tempDir } from '../helpers/agents.ts'

t.test('whatever a handler throws or returns, the answer is a JSON error and the failure is counted', async (t) => {
  const socketPath = join(tempDir(t), 'agent.sock')
  const refused: string[] = []
  const failed: string[] = []
  const api = new ControlApi({
    socketPath,
    log: createLogger('silent'),
    onRefused: (reason) => { refused.push(reason) },
    onFailed: (reason) => { failed.push(reason) },
    routes: {
      'GET /null': () => { throw null }, // eslint-disable-line no-throw-literal
      'GET /string': async () => { throw 'a string' }, // eslint-disable-line no-throw-literal
      'GET /bigint': () => ({ n: 1n }),
      'GET /ok': () => ({ ok: true })
    }
  })
  await api.start()
  t.teardown(() => api.stop())
  const answers = []
  for (const path of ['/null', '/string', '/bigint']) {
    answers.push(await apiGet(socketPath, path).then(() => 'served', (err: { status: number, code: string, message: string }) => ({ status: err.status, code: err.code, message: err.message })))
  }
  t.same(answers, [
    { status: 500, code: 'ERR_INTERNAL', message: 'internal error' },
    { status: 500, code: 'ERR_INTERNAL', message: 'internal error' },
    { status: 500, code: 'ERR_INTERNAL', message: 'Do not know how to serialize a BigInt' }
  ])
  t.same({ refused, failed }, { refused: [], failed: ['internal', 'internal', 'internal'] }, 'counted as failures of the agent, not refusals')
  t.same(await apiGet(socketPath, '/ok'), { ok: true }, 'and the next request is served')
})

t.test('request targets: origin-form paths only, decoded once', async (t) => {
  t.same(requestTarget('/api/v1/%73tatus'), { path: '/api/v1/status', rawPath: '/api/v1/%73tatus', query: null }, 'good percent-encoding is decoded (routes with {name} segments match the path as sent)')
  t.throws(() => requestTarget('/%E0%A4%A'), { httpStatus: 400, code: 'ERR_BAD_TARGET', message: 'the request target has bad percent-encoding' })
  t.throws(() => requestTarget('/a?label=%E0%A4%A'), { httpStatus: 400, code: 'ERR_BAD_TARGET', message: 'the request target has bad percent-encoding' }, 'in the query too')
  t.same([...(requestTarget('/a?label=traffic+light&zone=%79ard&x').query ?? [])], [['label', 'traffic light'], ['zone', 'yard'], ['x', '']], 'a query, decoded')
  t.same(requestTarget('/?').query?.size, 0, 'an empty query is a query (refused by routes that take none)')
  t.throws(() => requestTarget(`/${'é'.repeat(1_100)}`), { httpStatus: 414, code: 'ERR_TARGET_TOO_LONG' }, 'the cap is in bytes')
})

t.test('JSON nesting is measured outside strings', async (t) => {
  t.equal(jsonDepth('{"a":[{"b":"[[[[{{{{"}]}'), 3)
  t.equal(jsonDepth('{"a":"\\"[[[["}'), 1, 'an escaped quote does not end the string')
  t.equal(jsonDepth('17'), 0)
})

t.test('the request timeouts time the client sending, not the agent answering (a long compile is fine)', async (t) => {
  const socketPath = join(tempDir(t), 'agent.sock')
  const api = new ControlApi({
    socketPath,
    log: createLogger('silent'),
    timeouts: { headersMs: 1_000, requestMs: 1_000 },
    routes: { 'POST /slow': async () => { await new Promise((resolve) => setTimeout(resolve, 2_500)); return { done: true } } }
  })
  await api.start()
  t.teardown(() => api.stop())
  t.same(await apiRequest(socketPath, 'POST', '/slow', 10_000, {}), { done: true })
})
