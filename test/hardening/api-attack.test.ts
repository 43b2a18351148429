import { createConnection } from 'node:net'
import type { Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { join } from 'node:path'
import t from 'tap'
import { apiGet, apiText } from '../../agent/cli/client.ts'
import { freePort } from '../../scripts/mosquitto.ts'
import { startAgent, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'
import { certificate } from './api-tls.ts'

interface RawAnswer { status: number, body: any, closedAfterMs: number }

/**
 * Sends bytes as they are (no client library to tidy them up) and reads until the server closes the
 * connection: the status, the JSON body if any, and how long the server took to close.
 */
function raw (open: () => Socket, chunks: Array<string | Buffer>, { keepOpen = false } = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const socket = open()
    let text = ''
    socket.on('data', (d: Buffer) => { text += d.toString('latin1') })
    socket.on('error', (err: NodeJS.ErrnoException) => { if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') reject(err) })
    socket.on('close', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)
      const bodyText = text.slice(text.indexOf('\r\n\r\n') + 4)
      let body: unknown = bodyText
      try { body = JSON.parse(bodyText) } catch { /* not JSON: kept as text */ }
      resolve({ status, body, closedAfterMs: Date.now() - started })
    })
    for (const chunk of chunks) socket.write(chunk)
    if (!keepOpen) socket.end()
  })
}

const request = (line: string, headers: string[] = [], body = ''): string =>
  [line, 'Host: agent', 'Connection: close', ...headers, '', body].join('\r\n')
const json = (line: string, body: string): string =>
  request(line, ['Content-Type: application/json', `Content-Length: ${Buffer.byteLength(body)}`], body)

t.test('no request, on the socket or over HTTPS, stops the agent; each gets a JSON 4xx and is counted', async (t) => {
  const root = tempDir(t)
  const { certFile, keyFile } = certificate(root)
  const port = await freePort()
  const agent = await startAgent({
    root,
    name: 'attacked',
    swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')),
    config: { api: { tcp: { host: '127.0.0.1', port, certFile, keyFile }, headersTimeoutMs: 1_000, requestTimeoutMs: 2_000 } }
  })
  t.teardown(() => stopAgents([agent]))
  const transports: Array<[string, () => Socket]> = [
    ['socket', () => createConnection(agent.socketPath)],
    ['https', () => tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false })]
  ]
  const deep = `{"username":${'['.repeat(1000)}${']'.repeat(1000)}}`
  const attacks: Array<[string, Array<string | Buffer>, number, string]> = [
    ['GET // (curl --path-as-is)', [request('GET // HTTP/1.1')], 404, 'ERR_NOT_FOUND'],
    ['bad percent-encoding', [request('GET /api/v1/%zz HTTP/1.1')], 400, 'ERR_BAD_TARGET'],
    ['absolute-form target', [request('GET http://x/api/v1/system/status HTTP/1.1')], 400, 'ERR_BAD_TARGET'],
    ['asterisk-form target', [request('OPTIONS * HTTP/1.1')], 400, 'ERR_BAD_TARGET'],
    ['a query', [request('GET /api/v1/system/status?x=1 HTTP/1.1')], 400, 'ERR_BAD_TARGET'],
    ['a 3 KB target', [request(`GET /${'a'.repeat(3_000)} HTTP/1.1`)], 414, 'ERR_TARGET_TOO_LONG'],
    ['a 20 KB target', [request(`GET /${'a'.repeat(20_000)} HTTP/1.1`)], 431, 'ERR_HEADERS_TOO_LARGE'],
    ['100 KB of headers', [request('GET /api/v1/system/status HTTP/1.1', [`X-Big: ${'b'.repeat(100_000)}`])], 431, 'ERR_HEADERS_TOO_LARGE'],
    ['not HTTP', ['HELLO THERE\r\n\r\n'], 400, 'ERR_MALFORMED'],
    ['a form post (cross-site)', [request('POST /api/v1/identity/login HTTP/1.1', ['Content-Type: application/x-www-form-urlencoded', 'Content-Length: 25'], 'username=ana&password=xyz')], 415, 'ERR_CONTENT_TYPE'],
    ['a post without a type', [request('POST /api/v1/identity/login HTTP/1.1', ['Content-Length: 2'], '{}')], 415, 'ERR_CONTENT_TYPE'],
    ['a JSON array', [json('POST /api/v1/identity/login HTTP/1.1', '[1,2]')], 400, 'ERR_BAD_REQUEST'],
    ['JSON null', [json('POST /api/v1/identity/login HTTP/1.1', 'null')], 400, 'ERR_BAD_REQUEST'],
    ['not JSON', [json('POST /api/v1/identity/login HTTP/1.1', '{"username":')], 400, 'ERR_BAD_REQUEST'],
    ['1000-deep JSON', [json('POST /api/v1/identity/login HTTP/1.1', deep)], 400, 'ERR_BAD_REQUEST'],
    ['a body said to be 1 MB', [request('POST /api/v1/identity/login HTTP/1.1', ['Content-Type: application/json', 'Content-Length: 1000000'], '{')], 413, 'ERR_BODY_TOO_LARGE'],
    ['an unknown method', [request('DELETE /api/v1/system/status HTTP/1.1')], 405, 'ERR_METHOD']
  ]
  for (const [transport, open] of transports) {
    for (const [what, chunks, status, code] of attacks) {
      const answer = await raw(open, chunks)
      t.match(answer, { status, body: { error: { code } } }, `${transport}: ${what} → ${status} ${code}`)
    }
    t.match(await raw(open, [json('POST /api/v1/identity/login HTTP/1.1', deep)]), { body: { error: { message: 'the request body nests more than 32 levels' } } },
      `${transport}: the nesting refusal says why`)
    t.equal(agent.child.exitCode, null, `${transport}: the agent is still running`)
  }

  // Slow clients: one that never finishes its headers, one that never finishes its body; both cut off.
  for (const [transport, open] of transports) {
    const slowHeaders = await raw(open, ['GET /api/v1/system/status HTTP/1.1\r\nHost: agent\r\n'], { keepOpen: true })
    t.match(slowHeaders, { status: 408, body: { error: { code: 'ERR_REQUEST_TIMEOUT' } } }, `${transport}: unfinished headers are cut off`)
    t.ok(slowHeaders.closedAfterMs < 5_000, `${transport}: after ${slowHeaders.closedAfterMs} ms (headersTimeoutMs 1000)`)
    const slowBody = await raw(open, [request('POST /api/v1/identity/login HTTP/1.1', ['Content-Type: application/json', 'Content-Length: 100'], '{"user')], { keepOpen: true })
    t.match(slowBody, { status: 408, body: { error: { code: 'ERR_REQUEST_TIMEOUT' } } }, `${transport}: an unfinished body is cut off`)
    t.ok(slowBody.closedAfterMs < 6_000, `${transport}: an unfinished body is cut off after ${slowBody.closedAfterMs} ms (requestTimeoutMs 2000)`)
  }

  const silent = await raw(() => createConnection(port, '127.0.0.1'), [], { keepOpen: true })
  t.ok(silent.closedAfterMs < 5_000, `https: a client that never starts its TLS handshake is cut off after ${silent.closedAfterMs} ms`)

  t.equal(agent.child.exitCode, null, 'the agent is still running after all of it')
  t.notMatch(agent.output(), /API (handler|answer) failed/, 'no refusal was a failure of the agent\'s own')
  t.match(await apiGet(agent.socketPath, '/api/v1/system/status'), { name: 'attacked' }, 'and answers on its socket')
  const overHttps = await raw(transports[1]![1], [request('GET /api/v1/system/status HTTP/1.1')])
  t.match(overHttps, { status: 401, body: { error: { code: 'ERR_UNAUTHENTICATED' } } }, 'and over HTTPS (which wants a token)')
  const metrics = await apiText(agent.socketPath, '/metrics')
  const counted = (reason: string): number => Number(new RegExp(`^noodle_api_refused_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? 0)
  t.same({
    bad_target: counted('bad_target'),
    target_too_long: counted('target_too_long'),
    headers_too_large: counted('headers_too_large'),
    malformed: counted('malformed'),
    content_type: counted('content_type'),
    bad_request: counted('bad_request'),
    body_too_large: counted('body_too_large'),
    not_found: counted('not_found'),
    method: counted('method'),
    request_timeout: counted('request_timeout'),
    unauthenticated: counted('unauthenticated'),
    tls: counted('tls')
  }, {
    bad_target: 8,
    target_too_long: 2,
    headers_too_large: 4,
    malformed: 2,
    content_type: 4,
    bad_request: 10,
    body_too_large: 2,
    not_found: 2,
    method: 2,
    request_timeout: 4,
    unauthenticated: 1,
    tls: 1
  }, 'every refusal is counted by its reason (noodle_api_refused_total)')
})

t.test('connections over api.tcp.maxConnections are closed and counted; the socket and later ones still work', async (t) => {
  const root = tempDir(t)
  const { certFile, keyFile } = certificate(root)
  const port = await freePort()
  const agent = await startAgent({
    root,
    name: 'crowded',
    swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')),
    config: { api: { tcp: { host: '127.0.0.1', port, certFile, keyFile, maxConnections: 3 }, headersTimeoutMs: 10_000, requestTimeoutMs: 20_000 } }
  })
  t.teardown(() => stopAgents([agent]))
  // Three clients hold their connections open without a word (each could until headersTimeoutMs).
  const held: Socket[] = []
  t.teardown(() => { for (const s of held) s.destroy() })
  for (let i = 0; i < 3; i++) {
    const socket = createConnection(port, '127.0.0.1')
    held.push(socket)
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  }
  await waitFor('the agent to count the three', async () => {
    const one = await raw(() => createConnection(port, '127.0.0.1'), [], { keepOpen: true })
    return one.closedAfterMs < 5_000 && one
  })
  const metrics = await apiText(agent.socketPath, '/metrics')
  t.match(metrics, /^noodle_api_refused_total\{reason="connections"\} [1-9]\d*$/m, 'a fourth is closed at once, and counted')
  t.match(await apiGet(agent.socketPath, '/api/v1/system/status'), { name: 'crowded' }, 'the socket is not held up')
  for (const s of held) s.destroy()
  const after = await waitFor('a connection to be served again', async () => {
    const answer = await raw(() => tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }), [request('GET /api/v1/system/status HTTP/1.1')])
    return answer.status !== 0 && answer
  })
  t.match(after, { status: 401, body: { error: { code: 'ERR_UNAUTHENTICATED' } } }, 'once they left, HTTPS answers again')
})
