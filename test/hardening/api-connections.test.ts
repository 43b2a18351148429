import { readFileSync } from 'node:fs'
import { createConnection } from 'node:net'
import type { Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import type { TLSSocket } from 'node:tls'
import { join } from 'node:path'
import t from 'tap'
import { apiRequest, apiText } from '../../agent/cli/client.ts'
import { freePort } from '../../scripts/mosquitto.ts'
import { startAgent, status, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'
import { certificate, httpsJson } from './api-tls.ts'

/** A TLS connection from `localAddress`, once its handshake is done (or the reason it closed first). */
function openTls (port: number, localAddress: string): Promise<TLSSocket | 'closed'> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ socket: createConnection({ host: '127.0.0.1', port, localAddress }), rejectUnauthorized: false })
    socket.on('error', () => {})
    socket.once('secureConnect', () => { resolve(socket) })
    socket.once('close', () => { resolve('closed') })
  })
}

/** Sends one request on an open connection: the answer's head, and whether the server then closed it (in 1 s). */
function ask (socket: Socket, head: string): Promise<{ statusLine: string, connection: string | undefined, closed: boolean }> {
  return new Promise((resolve) => {
    let text = ''
    let settle: NodeJS.Timeout | undefined
    const done = (closed: boolean): void => {
      clearTimeout(settle)
      socket.off('data', onData)
      socket.off('close', onClose)
      resolve({ statusLine: text.split('\r\n')[0] ?? '', connection: /\r\nconnection: ([^\r]+)/i.exec(text)?.[1]?.toLowerCase(), closed })
    }
    const onData = (d: Buffer): void => {
      text += d.toString('latin1')
      if (text.includes('\r\n\r\n') && settle === undefined) settle = setTimeout(() => { done(false) }, 1_000)
    }
    const onClose = (): void => { done(true) }
    socket.on('data', onData)
    socket.once('close', onClose)
    socket.write(head)
  })
}

/** How long until the server closes an idle connection. */
function closedAfter (socket: Socket): Promise<number> {
  const started = Date.now()
  return new Promise((resolve) => { socket.once('close', () => { resolve(Date.now() - started) }) })
}

t.test('one address cannot hold the HTTPS listener: its connections are capped, strangers\' refusals close theirs, idle ones are closed', async (t) => {
  const root = tempDir(t)
  const { certFile, keyFile } = certificate(root)
  const ca = readFileSync(certFile)
  const port = await freePort()
  const agent = await startAgent({
    root,
    name: 'shared',
    swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')),
    config: { api: { tcp: { host: '127.0.0.1', port, certFile, keyFile, maxConnectionsPerAddress: 4 } } }
  })
  t.teardown(() => stopAgents([agent]))
  const held: Socket[] = []
  t.teardown(() => { for (const s of held) s.destroy() })

  // A stranger's refused request (no token, a path that does not exist) ends its connection.
  const stranger = await openTls(port, '127.0.0.2')
  if (stranger === 'closed') throw new Error('the first connection was refused')
  held.push(stranger)
  t.same(await ask(stranger, 'GET /nope HTTP/1.1\r\nHost: x\r\n\r\n'), { statusLine: 'HTTP/1.1 404 Not Found', connection: 'close', closed: true },
    'a 404 without a token closes the connection')

  // Four connections from one address are let in; a fifth is closed before its handshake, and counted.
  for (let i = 0; i < 4; i++) {
    const socket = await openTls(port, '127.0.0.2')
    t.not(socket, 'closed', `connection ${i + 1} of 4 from 127.0.0.2 is let in`)
    if (socket !== 'closed') held.push(socket)
  }
  t.equal(await openTls(port, '127.0.0.2'), 'closed', 'a fifth from the same address is closed')
  t.match(await apiText(agent.socketPath, '/metrics'), /^noodle_api_refused_total\{reason="address_connections"\} 1$/m, 'and counted')

  // Another address is still served: an operator logs in and keeps its connection between requests.
  await apiRequest(agent.socketPath, 'POST', '/api/v1/identity/register', 10_000,
    { username: 'ops', email: 'ops@example.com', password: 'a long and quiet river 5', profile: { first_name: 'O', last_name: 'P' } })
  const login = await httpsJson(port, ca, 'POST', '/api/v1/identity/login', undefined, { username: 'ops', password: 'a long and quiet river 5' })
  t.equal(login.status, 200, 'another address logs in while 127.0.0.2 has its share')
  const operator = await openTls(port, '127.0.0.3')
  if (operator === 'closed') throw new Error('the operator\'s connection was refused')
  held.push(operator)
  const withToken = `Host: x\r\nAuthorization: Bearer ${login.body.token as string}\r\n\r\n`
  t.same(await ask(operator, `GET /nope HTTP/1.1\r\n${withToken}`), { statusLine: 'HTTP/1.1 404 Not Found', connection: 'keep-alive', closed: false },
    'an operator\'s 404 keeps the connection')
  t.match(await ask(operator, `GET /api/v1/system/status HTTP/1.1\r\n${withToken}`), { statusLine: 'HTTP/1.1 200 OK', closed: false }, 'and the next request is served on it')
  const idleFor = await closedAfter(operator)
  t.ok(idleFor < 4_000, `an idle connection is closed after ${idleFor} ms (keep-alive 2 s)`)

  // Once the address's connections close, it is served again.
  for (const s of held) s.destroy()
  // The agent sees them close a moment later: until then a new one may still be turned away.
  const again = await waitFor('127.0.0.2 to be let in again', async () => { const s = await openTls(port, '127.0.0.2'); return s === 'closed' ? undefined : s }, 10_000)
  t.ok(again.writable, '127.0.0.2 is let in again once its connections closed')
  again.destroy()
  t.equal((await status(agent)).name, 'shared', 'the agent is up')
})

t.test('a connection carries at most 100 requests, then is closed', async (t) => {
  const root = tempDir(t)
  const { certFile, keyFile } = certificate(root)
  const port = await freePort()
  const agent = await startAgent({ root, name: 'counted', swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')), config: { api: { tcp: { host: '127.0.0.1', port, certFile, keyFile } } } })
  t.teardown(() => stopAgents([agent]))
  await apiRequest(agent.socketPath, 'POST', '/api/v1/identity/register', 10_000,
    { username: 'ops', email: 'ops@example.com', password: 'a long and quiet river 5', profile: { first_name: 'O', last_name: 'P' } })
  const { body } = await httpsJson(port, readFileSync(certFile), 'POST', '/api/v1/identity/login', undefined, { username: 'ops', password: 'a long and quiet river 5' })
  const socket = await openTls(port, '127.0.0.1')
  if (socket === 'closed') throw new Error('refused')
  t.teardown(() => socket.destroy())
  const closed = closedAfter(socket)
  // Pipelined: 101 requests written at once; the server answers 100 and closes.
  const one = `GET /api/v1/system/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${body.token as string}\r\n\r\n`
  let text = ''
  socket.on('data', (d: Buffer) => { text += d.toString('latin1') })
  socket.write(one.repeat(101))
  await closed
  t.same(text.match(/HTTP\/1\.1 \d{3}/g)?.filter((s) => s.endsWith('200')).length, 100, '100 answered, then the connection closed')
  t.equal((await status(agent)).name, 'counted')
})
