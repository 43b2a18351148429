import { request } from 'node:http'
import { join } from 'node:path'
import type { Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import t from 'tap'
import { apiGet } from '../../agent/cli/client.ts'
import { VIEW_BURST, VIEWS_PER_S } from '../../agent/mesh/view-exchange.ts'
import { VIEWS_PROTOCOL, viewHeaderCodec, viewRequestCodec } from '../../protocols/views.ts'
import { readSwarmKey } from '../../identity/keys.ts'
import { bareNode } from '../helpers/bare-node.ts'
import { bootstrapAddr, gossip, nodes, publishReadings, startAgent, status, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'
import { freePort } from '../../scripts/mosquitto.ts'
import type { AgentProcess } from '../helpers/agents.ts'
import { eventually } from '../helpers/eventually.ts'
import { rogueMember } from './meshwork-rogue-member.ts'

/** A GET on the agent's socket: its status, type and body as they came. */
function get (a: AgentProcess, path: string): Promise<{ status: number, type: string, body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: a.socketPath, path, method: 'GET', timeout: 15_000 }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body: Buffer.concat(chunks) }) })
    })
    req.on('error', reject)
    req.end()
  })
}
/** A GET's status and JSON body. */
const json = async (a: AgentProcess, path: string) => {
  const { status, body } = await get(a, path)
  return { status, body: JSON.parse(body.toString()) as unknown }
}
const refused = async (a: AgentProcess, reason: string) => (await gossip(a)).rejected[`${reason}/${VIEWS_PROTOCOL}`] ?? 0

t.test('two agents: each shows the other\'s data through ?node=, its links and its health history, as the other shows it', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const a = await startAgent({ root, name: 'alpha', swarmKeyFile })
  t.teardown(() => stopAgents([a]))
  // Beta ingests what is published to its embedded broker: its sensors, series and ingest are worth showing.
  const mqttPort = await freePort()
  const mqtt = { topics: ['sensors/#'], topicParsing: [{ topic: 'sensors/+/+', levels: '_/sensor/metric' }], embeddedBroker: { host: '127.0.0.1', port: mqttPort } }
  const b = await startAgent({ root, name: 'beta', swarmKeyFile, bootstrap: [await bootstrapAddr(a)], config: { mqtt } })
  t.teardown(() => stopAgents([b]))
  await publishReadings({ url: `mqtt://127.0.0.1:${mqttPort}`, topic: 'sensors/kitchen/temp', count: 5 }).done
  await waitFor('beta to store the readings', async () => (await apiGet<Array<{ count: number }>>(b.socketPath, '/api/v1/sensors'))[0]?.count === 5)
  await waitFor('alpha to list beta alive', async () => (await nodes(a)).find((n) => n.peerId === b.peerId)?.state === 'alive')

  const linksOf = async (observer: AgentProcess) => Object.fromEntries((await nodes(observer)).map((n) => [n.name, n.links]))
  t.same(await eventually(() => linksOf(a), { alpha: [b.peerId], beta: [a.peerId] }), { alpha: [b.peerId], beta: [a.peerId] },
    'each member\'s record says it is connected to the other, and alpha resolves it to the whole peer id')
  const seen = (await nodes(a)).find((n) => n.peerId === b.peerId)
  t.match(seen, { cpus: Number, accelerators: Array }, 'cores and accelerators from the record')
  t.ok(seen?.tempC === null || typeof seen?.tempC === 'number', 'the temperature, or null where the box has no thermal zone')

  // Each view of beta's, asked of alpha, is what beta's own API answers.
  for (const path of ['/api/v1/sensors', '/api/v1/ingest', '/api/v1/ingest/dead-letters', '/api/v1/models', '/api/v1/cameras',
    '/api/v1/sensors/series?sensor=kitchen&metric=temp&res=hour', `/api/v1/mesh/nodes/${a.peerId}/health`]) {
    const own = await json(b, path)
    const sep = path.includes('?') ? '&' : '?'
    t.same(await json(a, `${path}${sep}node=${b.peerId}`), own, `${path}: beta's answer, through alpha`)
  }
  t.match(await json(a, `/api/v1/sensors/series?sensor=kitchen&metric=temp&res=minute&node=${b.peerId}`),
    { status: 200, body: { sensor: 'kitchen', metric: 'temp', res: 'minute', points: [{ at: String, count: Number, min: Number, max: Number, mean: Number, last: Number }] } }, 'a series with its points')
  t.match(await json(a, `/api/v1/ingest?node=${b.peerId}`), { status: 200, body: { stored: 5, connected: true, embeddedBroker: { clients: Number } } })
  t.same(await json(a, `/api/v1/sensors?node=${a.peerId}`), await json(a, '/api/v1/sensors'), 'node naming this box: its own answer')
  // A page asks for many views of one member at once (a grid of its cameras): they take their turns, none refused.
  const many = await Promise.all(Array.from({ length: 24 }, async () => (await get(a, `/api/v1/models?node=${b.peerId}`)).status))
  t.same(many, Array(24).fill(200), '24 views at once, each answered')

  const history = await apiGet<Array<Record<string, unknown>>>(a.socketPath, `/api/v1/mesh/nodes/${b.peerId}/health`)
  t.ok(history.length >= 1, `alpha keeps beta's health: ${history.length} sample(s)`)
  t.same(Object.keys(history.at(-1) ?? {}), ['at', 'cpuPct', 'load1', 'memUsedBytes', 'memTotalBytes', 'diskFreeBytes', 'tempC'])
  t.match((history.at(-1) as { at: string }).at, /T\d\d:\d\d:00\.000Z$/, 'a sample a minute, at the minute\'s start')

  // Errors: beta's own, named by beta; and what alpha says itself.
  t.same(await json(a, `/api/v1/cameras/porch/latest.jpg?node=${b.peerId}`),
    { status: 404, body: { error: { code: 'ERR_CAMERA_NOT_HERE', message: 'beta: camera porch does not run on this box, or has no result yet (noodle cameras says where it runs)' } } })
  const stranger = '12D3KooWQwdqLaMv2dPBv1WVywHdTerao7cMJEuVyEuGUTJTz1hJ'
  t.same(await json(a, `/api/v1/sensors?node=${stranger}`), { status: 404, body: { error: { code: 'ERR_UNKNOWN_NODE', message: `${stranger} is not a live member of the mesh (see noodle nodes)` } } })
  t.same(await json(a, '/api/v1/sensors?node=beta'), { status: 400, body: { error: { code: 'ERR_BAD_REQUEST', message: 'node: is not a peer id', field: 'node' } } })
  t.same(await json(a, `/api/v1/mesh/nodes/${stranger}/health`), { status: 404, body: { error: { code: 'ERR_UNKNOWN_NODE', message: `${stranger} is not a live member of the mesh (see noodle nodes)` } } })
  t.same(await json(a, '/api/v1/mesh/nodes/..%2F..%2Fetc/health'), { status: 400, body: { error: { code: 'ERR_BAD_REQUEST', message: 'peer: is not a peer id', field: 'peer' } } })
  t.same(await json(a, '/api/v1/sensors/series?sensor=k&metric=t&res=week'), { status: 400, body: { error: { code: 'ERR_BAD_REQUEST', message: 'res: Invalid option: expected one of "minute"|"hour"|"day"|"month"', field: 'res' } } })

  b.child.kill('SIGKILL')
  await waitFor('alpha to list beta dead', async () => (await nodes(a)).find((n) => n.peerId === b.peerId)?.state === 'dead')
  t.same(await json(a, `/api/v1/sensors?node=${b.peerId}`), { status: 404, body: { error: { code: 'ERR_UNKNOWN_NODE', message: `${b.peerId} is not a live member of the mesh (see noodle nodes)` } } }, 'a dead member is asked nothing')
  t.same(await eventually(async () => (await linksOf(a)).alpha, []), [], 'alpha\'s own record drops the link')
})

/** What a stream's other side sent before it ended: the frames read, or why reading stopped; then ours is closed, as an asker's is. */
async function whatCame (stream: Stream, timeoutMs = 5_000): Promise<{ frames: number, ended: string }> {
  const lp = lpStream(stream)
  let frames = 0
  try {
    for (;;) {
      await lp.read({ signal: AbortSignal.timeout(timeoutMs) })
      frames++
    }
  } catch (err) {
    await stream.close().catch(() => {})
    return { frames, ended: (err as Error).name }
  }
}

t.test('a hostile member asking for views: garbage, huge, slow and flooding requests get nothing and cost little, counted; a stranger gets nothing', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const victim = await startAgent({ root, name: 'victim', swarmKeyFile })
  t.teardown(() => stopAgents([victim]))
  const rogue = await rogueMember(swarmKeyFile, [victim], {})
  t.teardown(() => rogue.stop())
  await waitFor('the victim to list the rogue alive', async () => (await nodes(victim)).find((n) => n.peerId === rogue.peerId)?.state === 'alive')
  const addr = multiaddr(await bootstrapAddr(victim))
  const open = async () => await rogue.node.dialProtocol(addr, VIEWS_PROTOCOL)

  // A good request is answered: the header, then the body.
  const good = await open()
  const lp = lpStream(good)
  await lp.write(viewRequestCodec.encode({ v: 1, view: 'models' }))
  t.same(viewHeaderCodec.decode((await lp.read()).subarray()), { ok: true, value: { v: 1, ok: true } })
  t.same(JSON.parse(Buffer.from((await lp.read()).subarray()).toString()), [], 'its models')

  const cases: Array<[string, (s: Stream) => Promise<void>, string]> = [
    ['not JSON', async (s) => { await lpStream(s).write(new TextEncoder().encode('\u0000garbage{')) }, 'malformed'],
    ['another version', async (s) => { await lpStream(s).write(new TextEncoder().encode('{"v":2,"view":"models"}')) }, 'unknown-version'],
    ['a view that is none', async (s) => { await lpStream(s).write(new TextEncoder().encode('{"v":1,"view":"../../etc/passwd"}')) }, 'invalid'],
    ['a peer that is not a peer id', async (s) => { await lpStream(s).write(viewRequestCodec.encode({ v: 1, view: 'health', peer: '<img src=x>' } as never)) }, 'invalid'],
    // A length prefix of 100 MB: refused at the prefix, nothing of it read.
    ['a 100 MB request', async (s) => { s.send(Uint8Array.from([0x80, 0xc2, 0xd7, 0x2f])) }, 'oversized'],
    ['a request sent slowly', async () => {}, 'too-slow']
  ]
  for (const [label, send, reason] of cases) {
    const before = await refused(victim, reason)
    const stream = await open()
    await send(stream)
    const came = await whatCame(stream)
    t.equal(came.frames, 0, `${label}: nothing comes back (${came.ended})`)
    t.equal(await eventually(() => refused(victim, reason), before + 1), before + 1, `${label}: counted as ${reason}`)
  }

  // A flood: the member's burst is served, the rest cut at once, unread.
  const before = await refused(victim, 'rate-limited')
  const answers = await Promise.all(Array.from({ length: 3 * VIEW_BURST }, async () => {
    try {
      const s = await open()
      const l = lpStream(s)
      await l.write(viewRequestCodec.encode({ v: 1, view: 'ingest' }))
      return (await whatCame(s, 3_000)).frames === 2
    } catch {
      return false
    }
  }))
  const served = answers.filter(Boolean).length
  t.ok(served <= VIEW_BURST + 10, `of ${answers.length} views asked at once, ${served} served`)
  t.ok(await refused(victim, 'rate-limited') + await refused(victim, 'busy') > before, 'the rest refused, counted')

  // One after another: the burst, then VIEWS_PER_S a second; the rest cut unread, counted as rate-limited.
  await new Promise((resolve) => setTimeout(resolve, 1_000 * VIEW_BURST / VIEWS_PER_S + 500))
  const limitedBefore = await refused(victim, 'rate-limited')
  const started = performance.now()
  let inTurn = 0
  for (let i = 0; i < 2 * VIEW_BURST; i++) {
    try {
      const s = await open()
      await lpStream(s).write(viewRequestCodec.encode({ v: 1, view: 'ingest' }))
      if ((await whatCame(s, 3_000)).frames === 2) inTurn++
    } catch {
      // Cut before the request went out.
    }
  }
  const allowed = VIEW_BURST + Math.ceil((performance.now() - started) / 1000 * VIEWS_PER_S)
  t.ok(inTurn >= VIEW_BURST && inTurn <= allowed, `of ${2 * VIEW_BURST} views asked in turn, ${inTurn} served (the burst, and at most ${allowed})`)
  t.equal(await refused(victim, 'rate-limited') - limitedBefore, 2 * VIEW_BURST - inTurn, 'each of the rest counted')

  // A series of days sums years of hourly rollups: it costs ten views' worth, so a burst holds four of them.
  await new Promise((resolve) => setTimeout(resolve, 1_000 * VIEW_BURST / VIEWS_PER_S + 500))
  const costly = performance.now()
  let daysServed = 0
  for (let i = 0; i < 12; i++) {
    try {
      const s = await open()
      await lpStream(s).write(viewRequestCodec.encode({ v: 1, view: 'series', sensor: 'kitchen', metric: 'temp', res: 'day' }))
      if ((await whatCame(s, 3_000)).frames >= 1) daysServed++
    } catch {
      // Cut before the request went out.
    }
  }
  const daysAllowed = Math.floor((VIEW_BURST + (performance.now() - costly) / 1000 * VIEWS_PER_S) / 10)
  t.ok(daysServed >= 4 && daysServed <= daysAllowed, `of 12 day series asked in turn, ${daysServed} answered (4, and at most ${daysAllowed})`)

  // A peer holding the swarm key that is no member: nothing read, nothing answered.
  const stranger = await bareNode(readSwarmKey(swarmKeyFile))
  t.teardown(() => stranger.stop())
  const strange = await stranger.dialProtocol(addr, VIEWS_PROTOCOL)
  // Its stream may be cut before its request goes out.
  await lpStream(strange).write(viewRequestCodec.encode({ v: 1, view: 'models' })).catch(() => {})
  t.equal((await whatCame(strange)).frames, 0, 'a stranger gets nothing')
  t.equal(await eventually(() => refused(victim, 'not-member'), 1), 1, 'counted as not-member')

  t.equal((await status(victim)).name, 'victim', 'the victim is up')
  t.same((await nodes(victim)).find((n) => n.peerId === rogue.peerId)?.state, 'alive', 'and keeps the member it refused')
})

t.test('a hostile member answering views: garbage, another shape, a fake JPEG, silence: a named error each, counted', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const victim = await startAgent({ root, name: 'victim', swarmKeyFile })
  t.teardown(() => stopAgents([victim]))
  const rogue = await rogueMember(swarmKeyFile, [victim], {})
  t.teardown(() => rogue.stop())
  await waitFor('the victim to list the rogue alive', async () => (await nodes(victim)).find((n) => n.peerId === rogue.peerId)?.state === 'alive')
  let answer: (lp: ReturnType<typeof lpStream>) => Promise<void> = async () => {}
  await rogue.node.handle(VIEWS_PROTOCOL, async (stream) => {
    const lp = lpStream(stream)
    await lp.read()
    await answer(lp).catch(() => {})
  })
  const ok = viewHeaderCodec.encode({ v: 1, ok: true })
  const text = (s: string) => new TextEncoder().encode(s)
  const cases: Array<[string, string, (lp: ReturnType<typeof lpStream>) => Promise<void>, number, string]> = [
    ['a header that is not JSON', '/api/v1/sensors', async (lp) => { await lp.write(text('nope')) }, 502, 'ERR_BAD_ANSWER'],
    ['a made-up error code', '/api/v1/sensors', async (lp) => { await lp.write(text('{"v":1,"ok":false,"status":404,"code":"ERR_X9","message":"m"}')) }, 502, 'ERR_BAD_ANSWER'],
    ['a body of another shape', '/api/v1/sensors', async (lp) => { await lp.write(ok); await lp.write(text('[{"sensor":"<img src=x onerror=alert(1)>"}]')) }, 502, 'ERR_BAD_ANSWER'],
    ['HTML as a JPEG', '/api/v1/cameras/porch/latest.jpg', async (lp) => { await lp.write(ok); await lp.write(text('<html><script>alert(1)</script></html>')) }, 502, 'ERR_BAD_ANSWER'],
    ['a body over 4 MiB', '/api/v1/sensors', async (lp) => { await lp.write(ok); await lp.write(new Uint8Array(4 * 1024 * 1024 + 1)) }, 502, 'ERR_BAD_ANSWER'],
    ['its own error, passed on', '/api/v1/cameras/porch/latest.jpg', async (lp) => { await lp.write(text('{"v":1,"ok":false,"status":503,"code":"ERR_SNAPSHOT_UNAVAILABLE","message":"later"}')) }, 503, 'ERR_SNAPSHOT_UNAVAILABLE'],
    ['silence', '/api/v1/models', async () => { await new Promise((resolve) => setTimeout(resolve, 8_000)) }, 504, 'ERR_NODE_TIMEOUT']
  ]
  for (const [label, path, send, status, code] of cases) {
    answer = send
    const got = await json(victim, `${path}?node=${rogue.peerId}`)
    t.match(got, { status, body: { error: { code } } }, `${label}: ${status} ${code}`)
  }
  // A real JPEG's start is passed on as image/jpeg.
  answer = async (lp) => { await lp.write(ok); await lp.write(Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3])) }
  const jpeg = await get(victim, `/api/v1/cameras/porch/latest.jpg?node=${rogue.peerId}`)
  t.same([jpeg.status, jpeg.type, [...jpeg.body]], [200, 'image/jpeg', [0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]])
  t.equal(await refused(victim, 'bad-answer'), 5, 'each bad answer counted')
  t.equal((await status(victim)).name, 'victim', 'the victim is up')
})

t.test('a box with ui.shareViews off answers no member\'s view, named, and still asks theirs', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const a = await startAgent({ root, name: 'open', swarmKeyFile })
  t.teardown(() => stopAgents([a]))
  const b = await startAgent({ root, name: 'private', swarmKeyFile, bootstrap: [await bootstrapAddr(a)], config: { ui: { shareViews: false } } })
  t.teardown(() => stopAgents([b]))
  await waitFor('each to list the other alive', async () => (await nodes(a)).find((n) => n.peerId === b.peerId)?.state === 'alive' &&
    (await nodes(b)).find((n) => n.peerId === a.peerId)?.state === 'alive')
  const refusal = await json(a, `/api/v1/sensors?node=${b.peerId}`)
  t.match(refusal, { status: 403, body: { error: { code: 'ERR_VIEWS_NOT_SHARED', message: /^private: this box shares no views \(ui\.shareViews is off\)/ } } })
  t.same(await json(b, `/api/v1/models?node=${a.peerId}`), { status: 200, body: [] }, 'it asks others\' as before')
  t.equal(await refused(b, 'not-shared'), 1, 'counted')
})
