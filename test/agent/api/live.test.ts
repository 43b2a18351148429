import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { WebSocket } from 'ws'
import { createLogger } from '../../../common/logger.ts'
import { LiveFeed } from '../../../agent/api/live.ts'
import type { LiveLimits, LiveSources } from '../../../agent/api/live.ts'

const TOKEN = 'nd_a_token_of_the_right_shape_000000'

/** A live feed behind a plain HTTP server that takes every upgrade with a bearer token as a viewer's. */
async function feed (t: { teardown: (fn: () => Promise<void> | void) => void }, sources: Partial<LiveSources>, limits: Partial<LiveLimits>) {
  const dropped: string[] = []
  const valid = new Set([TOKEN])
  const live = new LiveFeed({
    sources: { nodes: () => [], cameras: () => [], events: () => [], decisions: () => [], ...sources },
    authenticate: (token) => valid.has(token) ? { username: 'vic', role: 'viewer' } : undefined,
    log: createLogger('silent'),
    limits,
    onDropped: (reason) => dropped.push(reason)
  })
  live.start()
  const server = createServer()
  server.on('upgrade', (req, socket, head) => { live.accept(req, socket, head, { username: 'vic', role: 'viewer' }) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    await live.stop()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })
  const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1/live`
  return { live, dropped, valid, connect: (options: { autoPong?: boolean } = {}) => new WebSocket(url, { headers: { authorization: `Bearer ${TOKEN}` }, ...options }) }
}

const closed = (ws: WebSocket) => new Promise<number>((resolve) => { ws.on('close', (code) => { resolve(code) }) })
const opened = (ws: WebSocket) => new Promise<void>((resolve) => { ws.on('open', () => { resolve() }) })

t.test('a client that stops reading is dropped once it leaves maxBufferedBytes unread, counted as slow', async (t) => {
  let tick = 0
  // A large, ever-changing member list: each look sends it again.
  const big = 'x'.repeat(32 * 1024)
  const { live, dropped, connect } = await feed(t, { nodes: () => [{ tick: tick++, big }] }, { tickMs: 10, maxBufferedBytes: 64 * 1024 })
  const ws = connect()
  await opened(ws)
  // The browser's tab hangs: nothing more is read from the socket.
  ;(ws as unknown as { _socket: { pause: () => void } })._socket.pause()
  const end = Date.now() + 30_000
  while (!dropped.includes('slow') && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 50))
  t.same(dropped, ['slow'], 'dropped, once')
  t.equal(live.size, 0, 'and forgotten: what it left unread is no longer held')
})

t.test('a client that answers no ping is dropped at the next, counted as unresponsive', async (t) => {
  const { live, dropped, connect } = await feed(t, {}, { pingMs: 100 })
  const ws = connect({ autoPong: false })
  await opened(ws)
  const code = await closed(ws)
  t.same([dropped, live.size], [['unresponsive'], 0])
  t.equal(code, 1006, 'cut off, as a dead connection would be')
})

t.test('a client whose session ended is closed with 4001 at the next look; the others stay', async (t) => {
  const { live, dropped, valid, connect } = await feed(t, {}, { tickMs: 20 })
  const ws = connect()
  const messages: string[] = []
  ws.on('message', (data) => { messages.push(JSON.parse(data.toString()).type as string) })
  await opened(ws)
  valid.delete(TOKEN)
  t.equal(await closed(ws), 4001)
  t.same([dropped, live.size, messages], [['session'], 0, ['hello', 'nodes', 'cameras']])
})

t.test('events and decisions: each new or changed one once, oldest first; what was there at the first look is not sent', async (t) => {
  const events = [{ id: 'e1', end: null as string | null }]
  const decisions = [{ id: 'd1' }]
  const { connect } = await feed(t, { events: () => [...events].reverse(), decisions: () => [...decisions].reverse() }, { tickMs: 20 })
  const ws = connect()
  const got: unknown[] = []
  ws.on('message', (data) => { got.push(JSON.parse(data.toString())) })
  await opened(ws)
  await new Promise((resolve) => setTimeout(resolve, 100))
  events.push({ id: 'e2', end: null }, { id: 'e3', end: null })
  decisions.push({ id: 'd2' })
  await new Promise((resolve) => setTimeout(resolve, 100))
  ;(events[0] as { end: string | null }).end = '2026-11-30T12:00:00.000Z'
  await new Promise((resolve) => setTimeout(resolve, 100))
  ws.close()
  t.same(got.slice(3), [
    { type: 'event', event: { id: 'e2', end: null } },
    { type: 'event', event: { id: 'e3', end: null } },
    { type: 'decision', decision: { id: 'd2' } },
    { type: 'event', event: { id: 'e1', end: '2026-11-30T12:00:00.000Z' } }
  ])
})
