import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import t from 'tap'
import { MEMBER_PING_PROTOCOL } from '../../../agent/mesh/mesh.ts'
import { PING_PROTOCOL, PingStreams, MAX_STREAM_AGE_MS_BY_PROTOCOL } from '../../../agent/membership/ping-streams.ts'
import { readSwarmKey } from '../../../identity/keys.ts'
import { bareNode } from '../../../scripts/bare-node.ts'
import { tempDir, writeSwarmKey } from '../../helpers/agents.ts'

async function pair (t: { teardown: (fn: () => unknown) => void }) {
  const psk = readSwarmKey(writeSwarmKey(join(tempDir(t), 'swarm.key')))
  const [a, b] = [await bareNode(psk), await bareNode(psk)]
  t.teardown(async () => { await a.stop(); await b.stop() })
  await a.dial(b.getMultiaddrs()[0] as never)
  return { a, b }
}

t.test('pings go over one stream per member, kept open, and answer with the round trip', async (t) => {
  const { a, b } = await pair(t)
  let now = 0
  const pings = new PingStreams({ node: a, now: () => now })
  const rtts = []
  for (let i = 0; i < 5; i++) rtts.push(await pings.ping(b.peerId, { signal: AbortSignal.timeout(2_000) }))
  t.same(rtts.map((ms) => ms >= 0), [true, true, true, true, true])
  const streams = () => a.getConnections(b.peerId).flatMap((c) => c.streams).filter((s) => s.direction === 'outbound' && s.protocol?.endsWith('/ping/1.0.0')).map((s) => s.protocol)
  t.same(streams(), [MEMBER_PING_PROTOCOL], 'five pings, one stream, of our protocol')
  now += (MAX_STREAM_AGE_MS_BY_PROTOCOL[MEMBER_PING_PROTOCOL] ?? 0) - 1
  await pings.ping(b.peerId, { signal: AbortSignal.timeout(2_000) })
  const first = a.getConnections(b.peerId).flatMap((c) => c.streams).find((s) => s.protocol === MEMBER_PING_PROTOCOL)
  now += 1
  await pings.ping(b.peerId, { signal: AbortSignal.timeout(2_000) })
  t.same(streams(), [MEMBER_PING_PROTOCOL], 'an old stream is replaced before the responder would cut it')
  t.equal(first?.status, 'aborted', 'and the one replaced is closed')
  t.equal(MAX_STREAM_AGE_MS_BY_PROTOCOL[MEMBER_PING_PROTOCOL], 590_000, 'kept for minutes, not libp2p ping\'s 8 s')
  pings.stop()
  t.equal(pings.size, 0)
})

t.test('a member without our ping protocol (an older agent) is pinged with libp2p\'s, over a stream kept 8 s', async (t) => {
  const { a, b } = await pair(t)
  await b.unhandle(MEMBER_PING_PROTOCOL)
  let now = 0
  const pings = new PingStreams({ node: a, now: () => now })
  for (let i = 0; i < 3; i++) await pings.ping(b.peerId, { signal: AbortSignal.timeout(2_000) })
  const streams = () => a.getConnections(b.peerId).flatMap((c) => c.streams).filter((s) => s.direction === 'outbound' && s.status === 'open' && s.protocol?.endsWith('/ping/1.0.0'))
  t.same(streams().map((s) => s.protocol), [PING_PROTOCOL])
  const first = streams()[0]
  now += 8_000
  await pings.ping(b.peerId, { signal: AbortSignal.timeout(2_000) })
  t.not(streams()[0], first, 'replaced at 8 s, before libp2p\'s responder cuts it at 10 s')
  t.same(streams().map((s) => s.protocol), [PING_PROTOCOL])
})

t.test('a ping that times out drops its stream, and the next opens a new one', async (t) => {
  const { a, b } = await pair(t)
  const pings = new PingStreams({ node: a })
  await pings.ping(b.peerId, { signal: AbortSignal.timeout(2_000) })
  await t.rejects(pings.ping(b.peerId, { signal: AbortSignal.abort(new Error('timed out')) }), /timed out/)
  t.equal(pings.size, 0, 'dropped')
  t.ok(await pings.ping(b.peerId, { signal: AbortSignal.timeout(2_000) }) >= 0, 'the next ping answers over a new stream')
})

t.test('a member whose process is gone: the ping fails as libp2p\'s does (refused, or the stream closed)', async (t) => {
  const { a, b } = await pair(t)
  const pings = new PingStreams({ node: a })
  await pings.ping(b.peerId, { signal: AbortSignal.timeout(2_000) })
  await b.stop()
  await t.rejects(pings.ping(b.peerId, { signal: AbortSignal.timeout(2_000) }))
  await t.rejects(pings.ping(b.peerId, { signal: AbortSignal.timeout(2_000) }), 'and again, dialling anew')
})

t.test('wire cost: a ping on an open stream against one on a new stream (network namespace, root only)', { skip: process.getuid?.() !== 0 && 'needs root' }, async (t) => {
  const script = join(import.meta.dirname, '../../../bench/ping-cost.ts')
  const ns = `pingcost${process.pid}`
  execFileSync('ip', ['netns', 'add', ns])
  t.teardown(() => { execFileSync('ip', ['netns', 'del', ns]) })
  const out = JSON.parse(execFileSync('ip', ['netns', 'exec', ns, process.execPath, script, '--json'], { encoding: 'utf8' })) as { newStream: number, openStream: number }
  t.comment(`bytes on the wire per ping, both ways: new stream ${out.newStream}, open stream ${out.openStream}`)
  t.ok(out.openStream * 2 < out.newStream, 'an open stream costs less than half')
})

t.test('a member that echoes other bytes fails the ping, and its stream is not reused', async (t) => {
  const { a, b } = await pair(t)
  await b.unhandle(MEMBER_PING_PROTOCOL)
  await b.handle(MEMBER_PING_PROTOCOL, (stream) => {
    stream.addEventListener('message', () => { stream.send(new Uint8Array(32)) })
  })
  const pings = new PingStreams({ node: a })
  await t.rejects(pings.ping(b.peerId, { signal: AbortSignal.timeout(2_000) }), /ping answered with other bytes/)
  t.equal(pings.size, 0, 'dropped')
})
