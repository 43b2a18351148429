import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { sampleBeacon } from '../../scripts/beacon.ts'
import { beaconMessage } from '../../protocols/health.ts'
import type { HealthBeacon } from '../../protocols/health.ts'
import { TOPICS } from '../../protocols/topics.ts'
import { bootstrapAddr, gossip, nodes, startAgent, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'

const MESH_PUBLISH = fileURLToPath(new URL('../../scripts/mesh-publish.ts', import.meta.url))

/** Runs mesh-publish to its end: its exit code and what it printed. */
function meshPublish (args: string[]): Promise<{ code: number | null, out: string, err: string }> {
  const child = spawn(process.execPath, [MESH_PUBLISH, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { err += d.toString() })
  return new Promise((resolve) => { child.on('close', (code) => { resolve({ code, out, err }) }) })
}

/** A whole v2 beacon as mesh-publish takes it for the health topic: the JSON of its CBOR fields. */
const beacon = (overrides: Partial<HealthBeacon>): string => JSON.stringify(beaconMessage(sampleBeacon({ startedAt: Date.now(), ...overrides })))

t.test('a member whose names carry newlines, escape sequences or paths is refused and counted; a good beacon after is accepted', async (t) => {
  const root = tempDir(t)
  const swarmKey = writeSwarmKey(join(root, 'swarm.key'))
  const agent = await startAgent({ root, name: 'target', swarmKeyFile: swarmKey })
  t.teardown(() => stopAgents([agent]))
  const to = await bootstrapAddr(agent)
  const work = (id: string) => ({ id, kind: 'camera', source: 'rtsp://10.0.0.9/x' })

  const hostile = await meshPublish(['--swarm-key', swarmKey, '--to', to, '--topic', TOPICS.nodeHealth,
    beacon({ name: 'evil\nWATCHDOG_USEC=1' }),
    beacon({ name: 'evil\u001b[2J' }),
    beacon({ name: 'rogue', running: ['../../etc/passwd'] }),
    beacon({ name: 'rogue', work: [work('cam/../../x')] as never }),
    beacon({ name: 'rogue', accelerators: ['nvidia\u202e'] })])
  t.same({ code: hostile.code, out: hostile.out }, { code: 0, out: 'published 5\n' }, hostile.err)
  t.match(hostile.err, /note: MESSAGE 1 should be refused \(invalid: record\.name: /, 'the tool says the mesh should refuse it')

  const decision = JSON.stringify({
    v: 1, type: 'decision', id: 'd\n1', term: 1, target: agent.peerId, action: 'run', work: work('cam-1'), home: agent.peerId, reason: 'x', at: Date.now()
  })
  const result = JSON.stringify({ v: 1, type: 'result', id: 'ok-id', term: 1, outcome: 'applied', detail: '', at: Date.now() })
  const media = JSON.stringify({ v: 2, camera: 'cam\u0007', at: Date.now(), latencyMs: 1, detections: [] })
  // A box whose corners are the wrong way round, one past any frame, and a message of the version before boxes moved.
  const inverted = JSON.stringify({ v: 2, camera: 'cam-1', at: Date.now(), latencyMs: 1, detections: [{ label: 'car', score: 0.9, box: [10, 10, 5, 20] }] })
  const huge = JSON.stringify({ v: 2, camera: 'cam-1', at: Date.now(), latencyMs: 1, detections: [{ label: 'car', score: 0.9, box: [0, 0, 1e9, 1] }] })
  const old = JSON.stringify({ v: 1, camera: 'cam-1', at: Date.now(), latencyMs: 1, detections: [{ label: 'car', score: 0.9, box: { x: 0, y: 0, width: 1, height: 1 } }] })
  const more = await Promise.all([
    meshPublish(['--swarm-key', swarmKey, '--to', to, '--topic', TOPICS.optimizationDecisions, decision, result.replace('ok-id', 'a/b')]),
    meshPublish(['--swarm-key', swarmKey, '--to', to, '--topic', TOPICS.cameraResults, media, inverted, huge, old]),
    meshPublish(['--swarm-key', swarmKey, '--to', to, '--topic', TOPICS.nodeHealth, '--raw', '{"v":1,"name":"cut'])
  ])
  t.same(more.map((r) => r.out), ['published 2\n', 'published 4\n', 'published 1\n'])

  const expected = {
    [`invalid/${TOPICS.nodeHealth}`]: 5,
    [`invalid/${TOPICS.optimizationDecisions}`]: 2,
    [`invalid/${TOPICS.cameraResults}`]: 3,
    [`unknown-version/${TOPICS.cameraResults}`]: 1,
    [`malformed/${TOPICS.nodeHealth}`]: 1
  }
  const counted = await waitFor('every hostile message to be counted', async () => {
    const { rejected } = await gossip(agent)
    return Object.keys(expected).every((k) => rejected[k] === expected[k]) ? rejected : undefined
  })
  t.same(Object.fromEntries(Object.keys(expected).map((k) => [k, counted[k]])), expected, 'refused, by reason and topic')
  t.same((await nodes(agent)).map((n) => n.name), ['target'], 'no hostile beacon reached the membership table')

  // The same tool and channel with a good beacon: the agent stays up and takes it.
  const good = await meshPublish(['--swarm-key', swarmKey, '--to', to, '--beacon', JSON.stringify({ name: 'good-rogue', running: ['cam-1'] })])
  t.equal(good.out, 'published 1\n', good.err)
  const listed = await waitFor('the good beacon to be accepted', async () => (await nodes(agent)).find((n) => n.name === 'good-rogue'))
  t.match(listed, { name: 'good-rogue', state: /alive|suspect|dead/ })
})

t.test('mesh-publish says what is wrong with its command line', async (t) => {
  const root = tempDir(t)
  const swarmKey = writeSwarmKey(join(root, 'swarm.key'))
  const to = '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
  const cases: Array<[string[], RegExp]> = [
    [[], /--swarm-key FILE is required/],
    [['--swarm-key', swarmKey], /--to MULTIADDR is required/],
    [['--swarm-key', swarmKey, '--to', 'nonsense'], /--to: /],
    [['--swarm-key', swarmKey, '--to', '/ip4/127.0.0.1/tcp/1'], /--to must end in \/p2p\//],
    [['--swarm-key', swarmKey, '--to', to, '--stay=-1', '--beacon', '{}'], /--stay must be/],
    [['--swarm-key', join(root, 'missing.key'), '--to', to, '--beacon', '{}'], /--swarm-key: /],
    [['--swarm-key', swarmKey, '--to', to], /--topic TOPIC \(or --beacon FIELDS\) is required/],
    [['--swarm-key', swarmKey, '--to', to, '--topic', 'noodle/9/x', '{}'], /unknown topic noodle\/9\/x/],
    [['--swarm-key', swarmKey, '--to', to, '--topic', TOPICS.nodeHealth], /no MESSAGE to publish/],
    [['--swarm-key', swarmKey, '--to', to, '--topic', TOPICS.nodeHealth, '{"v":'], /MESSAGE 1 is not JSON/],
    [['--swarm-key', swarmKey, '--to', to, '--beacon', '[1]'], /--beacon must be a JSON object/],
    [['--swarm-key', swarmKey, '--to', to, '--beacon', '{}', 'extra'], /--beacon takes no MESSAGE/],
    [['--swarm-key', swarmKey, '--to', to, '--beacon', '{}', '--topic', TOPICS.cameraResults], /--beacon publishes on noodle\/2\/node.health/],
    [['--swarm-key', swarmKey, '--to', to, '--bogus'], /Unknown option '--bogus'/]
  ]
  for (const [args, message] of cases) {
    const r = await meshPublish(args)
    t.match({ code: r.code, err: r.err }, { code: 2, err: message }, args.join(' '))
    t.match(r.err, /usage: node scripts\/mesh-publish.ts/)
  }
  const unreachable = await meshPublish(['--swarm-key', swarmKey, '--to', to, '--stay', '0', '--beacon', '{}'])
  t.match({ code: unreachable.code, err: unreachable.err }, { code: 1, err: /^mesh-publish: / }, 'nobody there: exit 1 with the reason')
})
