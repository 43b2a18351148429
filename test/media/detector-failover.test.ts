import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { apiGet } from '../../agent/cli/client.ts'
import type { CameraListView } from '../../agent/api/views.ts'
import { allSee, bootstrapAddr, decisions, nodes, startAgent, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'
import type { AgentProcess } from '../helpers/agents.ts'
import { eventually } from '../helpers/eventually.ts'
import { writeDetectorModel } from '../helpers/detector-models.ts'

const cameras = (a: AgentProcess) => apiGet<CameraListView[]>(a.socketPath, '/api/v1/cameras')
/** Inferences the camera has made, as its home lists it (frames in which it found the rectangle). */
const inferring = async (a: AgentProcess) => {
  const camera = (await cameras(a)).find((c) => c.camera === 'porch' && c.node === a.name)
  return camera !== undefined && camera.state === 'running' && (camera.fpsInferred ?? 0) > 0
}
const self = async (a: AgentProcess) => (await nodes(a)).find((n) => n.name === a.name)

t.test('a provider that fails at run time: the camera steps down and keeps running; a detector that cannot run at all moves', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const model = join(root, 'yolo.onnx')
  writeDetectorModel(model, { layout: 'yolov8', width: 320, height: 320 })
  const lostFile = join(root, 'lost')
  writeFileSync(lostFile, '')
  // A generator alone: another box opens only those for this home (remoteWork's default).
  const source = 'lavfi:testsrc=size=320x240:rate=5'
  const work = [{ id: 'porch', kind: 'camera', source, model, size: 320, fps: 5, cpuPct: 0, motion: { enabled: false, refreshS: 5 } }]
  // `gpu-sim` is the CPU under another name, the CPU made 20 ms slower so that gpu-sim measures fastest (as a real
  // accelerator would); the lost file pulls a provider out from under the running model.
  const faults = { simulate: ['gpu-sim'], lostFile, slowMs: { cpu: 20 } }
  const home = await startAgent({ root, name: 'porch-home', swarmKeyFile, config: { work }, env: { NOODLE_FAULTS: JSON.stringify(faults) } })
  const agents = [home]
  t.teardown(() => stopAgents(agents))
  agents.push(await startAgent({ root, name: 'porch-spare', swarmKeyFile, bootstrap: [await bootstrapAddr(home)], config: { coordinator: { maxCpuPct: 100 } } }))
  const spare = agents[1] as AgentProcess
  await waitFor('both to see each other', () => allSee(agents, agents, 'alive'), 20_000)
  await waitFor('the camera to infer at home', () => inferring(home), 60_000)
  const before = await self(home)
  t.same(before?.providers.slice().sort(), ['cpu', 'gpu-sim'], 'both providers ran the model at compile')
  t.same([before?.degraded, before?.unable], [[], []], 'nothing degraded yet')
  t.match(home.output(), /NOODLE_FAULTS: inference faults are injected/, 'the agent warns that faults are on')

  // The model runs on the provider it measured fastest: gpu-sim, which loses its device.
  t.same((await apiGet<Array<{ providers: Array<{ name: string }> }>>(home.socketPath, '/api/v1/models'))[0]?.providers.map((p) => p.name), ['gpu-sim', 'cpu'])
  const [first, other] = ['gpu-sim', 'cpu']
  writeFileSync(lostFile, `${first}: CUDA failure 999: device lost\n`)
  const degraded = async () => (await nodes(spare)).find((n) => n.name === home.name)?.degraded
  const why = [`${first}: CUDA failure 999: device lost`]
  t.same(await eventually(degraded, why, { timeoutMs: 20_000 }), why, 'the home\'s beacon says why, and another member hears it')
  t.same((await self(home))?.providers, [other], 'the lost provider is no longer offered')
  t.match(home.output(), /"provider":"[a-z-]+","why":"CUDA failure 999: device lost".*execution provider failed at run time: stepping down/, 'the log says so')
  // Still at home, on the other provider.
  t.equal(await eventually(() => inferring(home), true, { timeoutMs: 20_000 }), true, 'the camera keeps inferring at home')
  t.same((await self(home))?.unable, [], 'the camera runs: it is not reported as unable')

  // Now the other provider fails too: the camera cannot run here at all, and the coordinator moves it.
  writeFileSync(lostFile, `${first}: CUDA failure 999: device lost\n${other}: device lost\n`)
  const unable = async () => (await nodes(spare)).find((n) => n.name === home.name)?.unable
  t.same(await eventually(unable, [{ work: 'porch', why: 'cannot-run' }], { timeoutMs: 30_000 }), [{ work: 'porch', why: 'cannot-run' }], 'the home says it cannot run the camera')
  const moved = await eventually(() => inferring(spare), true, { timeoutMs: 60_000 })
  if (!moved) t.comment(JSON.stringify((await decisions(spare)).filter((d) => d.workId === 'porch')), JSON.stringify(await cameras(spare)))
  t.equal(moved, true, 'the camera runs on the spare box')
  const ranAt = async () => (await nodes(spare)).filter((n) => n.running.includes('porch')).map((n) => n.name)
  t.same(await eventually(ranAt, [spare.name], { timeoutMs: 20_000 }), [spare.name], 'and only there')
})

t.test('NOODLE_FAULTS is checked at start like configuration: a bad value stops the agent, named', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const refused = startAgent({ root, name: 'faulty', swarmKeyFile, env: { NOODLE_FAULTS: '{"lostFile":"lost","simulate":["gpu-sim"]}' } })
  await t.rejects(refused, /faulty exited early:[^]*NOODLE_FAULTS\.lostFile: must be an absolute path/)
})
