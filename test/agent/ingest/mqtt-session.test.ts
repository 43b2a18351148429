import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'
import { join } from 'node:path'
import { once } from 'node:events'
import http from 'node:http'
import { Aedes } from 'aedes'
import t from 'tap'
import { WebSocketServer, createWebSocketStream } from 'ws'
import type { Logger } from '../../../common/logger.ts'
import { MqttSession, reasonText } from '../../../agent/ingest/mqtt-session.ts'
import type { InboundMessage, SessionOptions } from '../../../agent/ingest/mqtt-session.ts'
import { MetricsStore } from '../../../agent/metrics/metrics.ts'
import { freePort, startMosquitto } from '../../helpers/mosquitto.ts'

/** A logger that keeps what it is told, so a test can read the operator's view. */
function recordingLog (): Logger & { lines: string[] } {
  const lines: string[] = []
  const record = (level: string) => (obj: unknown, msg?: string) => { lines.push(`${level} ${msg ?? String(obj)} ${JSON.stringify(obj)}`) }
  return { lines, info: record('info'), warn: record('warn'), error: record('error'), debug: record('debug') } as unknown as Logger & { lines: string[] }
}

function session (t: { teardown: (fn: () => Promise<void>) => void }, options: Partial<SessionOptions> & { url: string }, log = recordingLog()) {
  const s = new MqttSession({
    log,
    metrics: new MetricsStore(),
    options: { clientId: `test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`, keepaliveS: 30, sessionExpiryS: 60, receiveMaximum: 100, subscriptions: [{ topic: 'in/#', qos: 1 }], backoffMinMs: 50, ...options }
  })
  t.teardown(() => s.stop())
  return { s, log }
}

const nextMessage = async (s: MqttSession) => (await once(s, 'message'))[0] as InboundMessage

t.test('mqtts:// with a CA file: connects, receives, acknowledges, publishes', async (t) => {
  const dir = t.testdir()
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' })
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=noodle-test-ca', '-keyout', 'ca.key', '-out', 'ca.pem')
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr')
  ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-out', 'server.pem')
  const tlsPort = await freePort()
  const broker = await startMosquitto({
    extra: [`listener ${tlsPort} 127.0.0.1`, `cafile ${join(dir, 'ca.pem')}`, `certfile ${join(dir, 'server.pem')}`, `keyfile ${join(dir, 'server.key')}`]
  })
  t.teardown(broker.close)
  const { readFileSync } = await import('node:fs')
  const { s } = session(t, { url: `mqtts://localhost:${tlsPort}`, tls: { ca: readFileSync(join(dir, 'ca.pem')), rejectUnauthorized: true } })
  const connected = once(s, 'connected')
  s.start()
  t.match((await connected)[0], { connection: 1 })
  await new Promise((resolve) => setTimeout(resolve, 200)) // the SUBACK
  const arriving = nextMessage(s)
  execFileSync('mosquitto_pub', ['-p', String(broker.port), '-q', '1', '-t', 'in/x', '-m', 'hi'])
  const m = await arriving
  t.match(m, { topic: 'in/x', qos: 1, connection: 1 })
  t.equal(m.payload.toString(), 'hi')
  s.ack(1, [m.messageId as number])
  s.ack(0, [1]) // an earlier connection's: dropped
  t.equal(s.broker, `mqtts://localhost:${tlsPort}`)
  t.ok(s.publish('out/state', 'on', { retain: true }))
  // Not execFileSync: the TLS socket writes only while the event loop runs.
  const { stdout } = await promisify(execFile)('mosquitto_sub', ['-p', String(broker.port), '-t', 'out/state', '-C', '1', '-W', '5'])
  t.equal(stdout.trim(), 'on')

  const strict = session(t, { url: `mqtts://localhost:${tlsPort}`, tls: { rejectUnauthorized: true } })
  strict.s.start()
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.notOk(strict.s.connected, 'without the CA the certificate is refused')
  t.match(strict.log.lines[0], /^warn mqtt: cannot connect to the broker.*(self.signed|unable to verify|certificate)/i, 'the first failure is a warning…')
  t.match(strict.log.lines[1], /^debug /, '…the retries are not')
})

t.test('ws:// to a 3.1.1-only broker (aedes): falls back from MQTT 5 and works', async (t) => {
  const aedes = await Aedes.createBroker()
  const server = http.createServer()
  const wss = new WebSocketServer({ server })
  wss.on('connection', (socket) => { aedes.handle(createWebSocketStream(socket)) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const client of wss.clients) client.terminate()
    await new Promise((resolve) => server.close(resolve))
    await new Promise<void>((resolve) => { aedes.close(() => { resolve() }) })
  })
  const port = (server.address() as { port: number }).port
  const { s, log } = session(t, { url: `ws://127.0.0.1:${port}/mqtt` })
  const connected = once(s, 'connected')
  s.start()
  await connected
  t.match(log.lines.join('\n'), /speaks MQTT 3\.1\.1, not 5/)
  await new Promise((resolve) => setTimeout(resolve, 200))
  const arriving = nextMessage(s)
  aedes.publish({ cmd: 'publish', topic: 'in/ws', payload: Buffer.from('7'), qos: 1, retain: false, dup: false }, () => {})
  const m = await arriving
  t.equal(m.payload.toString(), '7')
  s.ack(m.connection, [m.messageId as number])
})

t.test('refused credentials are logged with the reason and retried with backoff', async (t) => {
  const broker = await startMosquitto({ extra: ['allow_anonymous false'] })
  t.teardown(broker.close)
  const { s, log } = session(t, { url: broker.url, username: 'nobody', password: 'wrong' })
  s.start()
  await new Promise((resolve) => setTimeout(resolve, 800))
  t.notOk(s.connected)
  const refusals = log.lines.filter((l) => l.includes('refused the connection'))
  t.ok(refusals.length >= 2, `tried again (${refusals.length} attempts in 0.8 s)`)
  t.ok(refusals.length < 10, 'with backoff, not in a tight loop')
  t.match(refusals[0], /not authorized|bad user name or password/)
  t.equal(reasonText(0x99), 'reason code 0x99')
})

t.test('a broker that stops answering is noticed by the keepalive, and the session comes back', async (t) => {
  const broker = await startMosquitto()
  t.teardown(broker.close)
  const { s } = session(t, { url: broker.url, keepaliveS: 1 })
  s.start()
  await once(s, 'connected')
  const pid = broker.pid() as number
  process.kill(pid, 'SIGSTOP')
  const [{ reason }] = await once(s, 'disconnected') as [{ reason: string }]
  t.ok(typeof reason === 'string', `disconnected: ${reason}`)
  process.kill(pid, 'SIGCONT')
  const [again] = await once(s, 'connected') as [{ connection: number, sessionPresent: boolean }]
  t.equal(again.connection, 2, 'a new connection')
  t.equal(again.sessionPresent, true, 'the broker kept our session')
})
