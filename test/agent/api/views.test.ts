import t from 'tap'
import { cameraViews } from '../../../agent/api/routes/cameras.ts'
import { decisionsView } from '../../../agent/api/routes/coordination.ts'
import { gossipView, meshRoutes, nodesView } from '../../../agent/api/routes/mesh.ts'
import { ingestView, sensorRoutes } from '../../../agent/api/routes/sensors.ts'
import type { SensorSources } from '../../../agent/api/routes/sensors.ts'
import { statusLine, statusView } from '../../../agent/api/routes/system.ts'
import type { StatusSources } from '../../../agent/api/routes/system.ts'
import { modelRoutes } from '../../../agent/api/routes/models.ts'
import type { ModelSources } from '../../../agent/api/routes/models.ts'
import type { Caller } from '../../../agent/api/server.ts'
import { healthOf } from '../../../agent/membership/membership.ts'
import type { Member } from '../../../agent/membership/membership.ts'
import { REJECTED_METRIC } from '../../../protocols/validator.ts'
import { WorkItemWireSchema } from '../../../protocols/work.ts'
import type { IncomingMessage } from 'node:http'
import { sampleBeacon } from '../../helpers/beacon.ts'

const LOCAL: Caller = { local: true }
const NO_REQUEST = {} as IncomingMessage
const NO_VIEWS = { ask: async () => { throw new Error('no member is asked here') } }

function member (peerId: string, name: string, overrides: Partial<Member> = {}): Member {
  return { peerId, name, state: 'alive', role: 'member', addrs: [], lastSeen: Date.UTC(2026, 10, 29), health: null, ...overrides }
}

t.test('status: who this node is and who coordinates, and its one line for systemd', async (t) => {
  const sources: StatusSources = {
    selfId: 'peer-a',
    name: 'alpha',
    version: '1.2.3',
    startedAt: 10_000,
    election: { coordinator: 'peer-b', isCoordinator: false, term: 4 },
    membership: { get: (id) => id === 'peer-b' ? { name: 'beta' } : undefined, count: () => 3 },
    lag: { ms: 7 },
    disk: { view: () => ({ freeBytes: 5, full: false, lastFullAt: null }) },
    meshConnections: 6
  }
  const view = statusView(sources, 22_345)
  t.same(view, {
    peerId: 'peer-a',
    name: 'alpha',
    version: '1.2.3',
    uptimeS: 12.3,
    role: 'member',
    coordinator: 'peer-b',
    coordinatorName: 'beta',
    term: 4,
    members: 3,
    loopLagMs: 7,
    meshConnections: 6,
    disk: { freeBytes: 5, full: false, lastFullAt: null }
  })
  t.equal(statusLine(view), '3 member(s) alive; member; coordinator beta, term 4')

  const unnamed = statusView({ ...sources, election: { coordinator: 'peer-x', isCoordinator: false, term: 5 } })
  t.equal(unnamed.coordinatorName, null, 'a coordinator not (yet) in the table has no name')
  t.equal(statusLine(unnamed), '3 member(s) alive; member; coordinator peer-x, term 5')
  const alone = statusView({ ...sources, election: { coordinator: null, isCoordinator: false, term: 0 } })
  t.same([alone.coordinator, alone.coordinatorName], [null, null])
  t.equal(statusLine(alone), '3 member(s) alive; member; coordinator none yet, term 0')
  const leading = statusView({ ...sources, election: { coordinator: 'peer-a', isCoordinator: true, term: 6 } })
  t.equal(leading.role, 'coordinator')
})

t.test('nodes: the members, the coordinator marked', async (t) => {
  const members = [member('peer-a', 'alpha'), member('peer-b', 'beta', { health: healthOf(sampleBeacon({ term: 2, running: ['cam1'] })) })]
  const nodes = nodesView({ membership: { list: () => members }, election: { coordinator: 'peer-b' } })
  t.match(nodes, [
    { peerId: 'peer-a', name: 'alpha', role: 'member', term: 0, running: [], health: null, lastSeen: '2026-11-29T00:00:00.000Z' },
    { peerId: 'peer-b', name: 'beta', role: 'coordinator', term: 2, running: ['cam1'], health: { cpuPct: 1, memTotalBytes: 2 } }
  ])
  const routes = meshRoutes({ membership: { list: () => members }, election: { coordinator: null }, counters: { get: () => 0, sum: () => 0, series: () => ({}) }, healthHistory: { samples: () => [] }, selfId: 'peer-a', views: NO_VIEWS })
  t.match(await routes['GET /api/v1/mesh/nodes']?.handle(NO_REQUEST, LOCAL), [{ role: 'member' }, { role: 'member' }])
  t.same(await routes['GET /api/v1/mesh/gossip']?.handle(NO_REQUEST, LOCAL), { sentBytes: 0, receivedBytes: 0, published: 0, rejected: {} })
})

t.test('nodes: temperature, accelerators and cores from the beacon, links resolved to whole peer ids', async (t) => {
  const [a, b, c] = ['12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAalpha111', '12D3KooWBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBbeta2222', '12D3KooWCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCgamma333']
  const health = healthOf(sampleBeacon({ tempC: 48.5, accelerators: ['nvidia', 'dri'], cpus: 8, links: [c.slice(-8), b.slice(-8), 'zzzzzzzz'] }))
  const members = [member(a, 'alpha', { health }), member(b, 'beta'), member(c, 'gamma')]
  const nodes = nodesView({ membership: { list: () => members }, election: { coordinator: null } })
  t.same(nodes.map((n) => ({ name: n.name, tempC: n.tempC, accelerators: n.accelerators, cpus: n.cpus, links: n.links })), [
    { name: 'alpha', tempC: 48.5, accelerators: ['nvidia', 'dri'], cpus: 8, links: [b, c] },
    { name: 'beta', tempC: null, accelerators: [], cpus: 0, links: [] },
    { name: 'gamma', tempC: null, accelerators: [], cpus: 0, links: [] }
  ], 'a link to a member this node does not know (zzzzzzzz) is left out')
})

t.test('gossip: traffic, and refusals ours by topic and gossipsub\'s as envelope errors', async (t) => {
  const series: Record<string, Record<string, number>> = {
    [REJECTED_METRIC]: { 'oversize//noodle/health/1.0.0': 2 },
    gossipsub_msg_received_invalid_total: { reject: 2, invalid_signature: 1 }
  }
  const counters = {
    get: (name: string) => ({ gossipsub_rpc_sent_bytes_total: 100, gossipsub_rpc_recv_bytes_total: 200 })[name] ?? 0,
    sum: (name: string) => name === 'gossipsub_msg_publish_count_total' ? 9 : 0,
    series: (name: string) => series[name] ?? {}
  }
  t.same(gossipView(counters), {
    sentBytes: 100,
    receivedBytes: 200,
    published: 9,
    rejected: { 'oversize//noodle/health/1.0.0': 2, 'envelope/invalid_signature': 1 }
  })
})

t.test('decisions: with their target\'s name where it is known', async (t) => {
  const decision = { id: 'd1', term: 3, coordinator: 'peer-b', target: 'peer-a', action: 'start', workId: 'cam1', reason: 'r', at: Date.UTC(2026, 0, 1), outcome: null, detail: null, outcomeAt: null }
  const views = decisionsView({ decisions: { decisions: () => [decision, { ...decision, id: 'd2', target: 'peer-z' }] }, membership: { list: () => [member('peer-a', 'alpha')] } })
  t.match(views, [{ id: 'd1', target: 'peer-a', targetName: 'alpha', at: '2026-01-01T00:00:00.000Z' }, { id: 'd2', targetName: null }])
})

t.test('ingest: the running ingest\'s figures, or the stored totals when none runs', async (t) => {
  const embedded = { clients: 2, refused: { auth: 1 } } as unknown as ReturnType<NonNullable<SensorSources['mqtt']['broker']>['stats']>
  const sensors: SensorSources['sensors'] = {
    sensors: () => [{ sensor: 's1', metric: 'temp', value: 21.5, ts: Date.UTC(2026, 0, 1), lastSeen: Date.UTC(2026, 0, 2), count: 4, ratePerS: 0.5 }],
    forget: () => 0,
    deadLetterViews: () => [{ at: '2026-01-01T00:00:00.000Z', topic: 't', reason: 'not-json', detail: 'd', size: 1, payload: 'x' }],
    totals: () => ({ received: 5, stored: 4, rejected: 1 }),
    deadLetterCount: () => 1
  }
  const running = { ingest: { status: () => ({ received: 9, stored: 8, rejected: 1, deadLetter: 1, connected: true, broker: 'mqtt://b' }) }, session: { broker: 'mqtt://b' }, broker: { stats: () => embedded } }
  t.same(ingestView({ sensors, mqtt: running }), { received: 9, stored: 8, rejected: 1, deadLetter: 1, connected: true, broker: 'mqtt://b', embeddedBroker: embedded })
  t.same(ingestView({ sensors, mqtt: { ingest: null, session: null, broker: null } }),
    { received: 5, stored: 4, rejected: 1, deadLetter: 1, connected: false, broker: null, embeddedBroker: null })
  t.same(ingestView({ sensors, mqtt: { ingest: null, session: { broker: 'mqtt://c' }, broker: null } }).broker, 'mqtt://c')

  const routes = sensorRoutes({ sensors, mqtt: { ingest: null, session: null, broker: null }, series: { series: () => [] }, selfId: 'self', views: NO_VIEWS })
  t.same(await routes['GET /api/v1/sensors']?.handle(NO_REQUEST, LOCAL),
    [{ sensor: 's1', metric: 'temp', value: 21.5, ts: '2026-01-01T00:00:00.000Z', lastSeen: '2026-01-02T00:00:00.000Z', count: 4, ratePerS: 0.5 }])
  t.match(await routes['GET /api/v1/ingest']?.handle(NO_REQUEST, LOCAL), { received: 5, connected: false })
  t.match(await routes['GET /api/v1/ingest/dead-letters']?.handle(NO_REQUEST, LOCAL), [{ reason: 'not-json', payload: 'x' }])
})

t.test('models: listed as the API shows them', async (t) => {
  const record = { id: 'ab12', name: 'tiny', file: '/m/tiny.onnx', optimizedFile: null, sizeBytes: 10, irVersion: 8, opset: 13, inputs: [], outputs: [], createdAt: Date.UTC(2026, 0, 1), origin: 'compiled', fileMtimeMs: null, optimizedSize: null, providers: [] }
  const sources = { runtime: { list: () => [record] } } as unknown as ModelSources
  t.same(await modelRoutes(sources)['GET /api/v1/models']?.handle(NO_REQUEST, LOCAL),
    [{ id: 'ab12', name: 'tiny', sizeBytes: 10, opset: 13, inputs: [], outputs: [], providers: [], createdAt: '2026-01-01T00:00:00.000Z', origin: 'compiled' }])
})

t.test('cameras: those run here with figures, those run elsewhere by where, credentials hidden', async (t) => {
  const camera = (id: string, source?: string, model: string | null = 'm') => WorkItemWireSchema.parse({ id, kind: 'camera', source, model: model ?? undefined })
  const beta = member('peer-b', 'beta', {
    health: healthOf(sampleBeacon({ work: [camera('cam-b', 'rtsp://u:p@cam-b/stream'), camera('cam-a', 'rtsp://cam-a'), camera('cam-c', 'rtsp://cam-c'), camera('cam-f', undefined, null)], running: ['cam-b', 'cam-a', 'model-x'] }))
  })
  const gamma = member('peer-c', 'gamma', { health: healthOf(sampleBeacon({ work: [], running: ['cam-c', 'cam-f'] })) })
  const dead = member('peer-d', 'delta', { state: 'dead', health: healthOf(sampleBeacon({ work: [camera('cam-d', 'rtsp://cam-d')], running: ['cam-d'] })) })
  const self = member('peer-a', 'alpha', { health: healthOf(sampleBeacon({ running: ['cam-a'] })) })
  const views = cameraViews({
    selfId: 'peer-a',
    name: 'alpha',
    cameras: {
      list: () => [
        { camera: 'cam-a', state: 'running', error: null, source: 'rtsp://admin:secret@cam-a/live', model: 'm', fpsIn: 5, fpsInferred: 4, skipped: 1, latencyMs: 30, detections: 2, decoder: 'software', detector: 'yolov8', outputErrors: 0, motionFrames: 7, stillFrames: 2 },
        { camera: 'cam-e', state: 'failed', error: 'no such model' }
      ]
    },
    membership: { list: () => [self, beta, gamma, dead, member('peer-e', 'epsilon')] }
  })
  t.same(views, [
    { camera: 'cam-a', node: 'alpha', peerId: 'peer-a', source: 'rtsp://***@cam-a/live', model: 'm', state: 'running', fpsIn: 5, fpsInferred: 4, skipped: 1, latencyMs: 30, detections: 2, decoder: 'software', detector: 'yolov8', outputErrors: 0, motionFrames: 7, stillFrames: 2, error: null },
    { camera: 'cam-e', node: 'alpha', peerId: 'peer-a', source: null, model: null, state: 'failed', fpsIn: 0, fpsInferred: 0, skipped: 0, latencyMs: null, detections: null, decoder: null, detector: null, outputErrors: null, motionFrames: null, stillFrames: null, error: 'no such model' },
    { camera: 'cam-b', node: 'beta', peerId: 'peer-b', source: 'rtsp://***@cam-b/stream', model: 'm', state: 'remote', fpsIn: null, fpsInferred: null, skipped: null, latencyMs: null, detections: null, decoder: null, detector: null, outputErrors: null, motionFrames: null, stillFrames: null, error: null },
    { camera: 'cam-c', node: 'gamma', peerId: 'peer-c', source: 'rtsp://cam-c', model: 'm', state: 'remote', fpsIn: null, fpsInferred: null, skipped: null, latencyMs: null, detections: null, decoder: null, detector: null, outputErrors: null, motionFrames: null, stillFrames: null, error: null },
    { camera: 'cam-f', node: 'gamma', peerId: 'peer-c', source: null, model: null, state: 'remote', fpsIn: null, fpsInferred: null, skipped: null, latencyMs: null, detections: null, decoder: null, detector: null, outputErrors: null, motionFrames: null, stillFrames: null, error: null }
  ], 'cam-a is listed once (here); cam-c where it runs, not at home; the dead member\'s camera is not listed')
})
