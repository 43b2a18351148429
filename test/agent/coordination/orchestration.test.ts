import { join } from 'node:path'
import t from 'tap'
import { ApiError } from '../../../common/errors.ts'
import {
  allSee, bootstrapAddr, decisions, nodes, optimize, startAgent, stopAgents, tempDir, waitFor, waitForAgreement, writeSwarmKey
} from '../../helpers/agents.ts'
import type { AgentProcess } from '../../helpers/agents.ts'
import { eventually } from '../../helpers/eventually.ts'

/** Who runs `workId`, as `observer` sees the mesh (from every member's beacon). */
async function runners (observer: AgentProcess, workId: string): Promise<string[]> {
  return (await nodes(observer)).filter((n) => n.state === 'alive' && n.running.includes(workId)).map((n) => n.name).sort()
}

t.test('work moves off a dead node, back home when it returns, and every step is a recorded decision', async (t) => {
  const root = tempDir(t)
  const swarmKey = writeSwarmKey(join(root, 'swarm.key'))
  const agents: AgentProcess[] = []
  t.teardown(() => stopAgents(agents))
  // Estimated at 0% CPU: the test boxes share one busy machine, and this test is about where work goes, not load.
  const homeConfig = { work: [{ id: 'cam-door', kind: 'camera', source: 'rtsp://192.0.2.10/door', cpuPct: 0 }, { id: 'usb-cam', kind: 'camera', source: '/dev/video0', pinned: true, cpuPct: 0 }] }
  const home = await startAgent({ root, name: 'home', swarmKeyFile: swarmKey, config: homeConfig })
  agents.push(home)
  const boot = await bootstrapAddr(home)
  const boss = await startAgent({ root, name: 'boss', swarmKeyFile: swarmKey, bootstrap: [boot], config: { coordinator: { priority: 5, maxCpuPct: 100 } } })
  const spare = await startAgent({ root, name: 'spare', swarmKeyFile: swarmKey, bootstrap: [boot] })
  agents.push(boss, spare)
  await waitForAgreement('boss to coordinate', agents, (a) => a.coordinator === boss.peerId)
  t.same(await runners(boss, 'cam-door'), ['home'], 'work runs at home to begin with')
  const answer = await optimize(spare)
  t.match(answer, { coordinator: boss.peerId, decisions: [] }, 'optimize from a member is answered by the coordinator: nothing to move')

  home.child.kill('SIGKILL')
  const placed = await eventually(() => runners(boss, 'cam-door'), (r) => r.length === 1 && r[0] !== 'home')
  t.matchOnly(placed, [/^(boss|spare)$/], 'the coordinator moved cam-door to one other node')
  const moved = placed[0]
  t.same(await runners(boss, 'usb-cam'), [], 'pinned work is not moved off its (dead) home')
  const issued = await waitFor('the run decision and its outcome', async () =>
    (await decisions(boss)).find((d) => d.workId === 'cam-door' && d.action === 'run' && d.outcome != null))
  t.match(issued, { action: 'run', targetName: moved, outcome: 'applied', term: Number, reason: /headroom|least loaded/ }, 'recorded with its reason and outcome')
  const target = moved === 'boss' ? boss : spare
  t.ok((await decisions(target)).some((d) => d.id === issued.id && d.outcome === 'applied'), 'the target recorded it too')

  // Home returns and runs its own work again: the copy elsewhere is stopped (work stays where its data is).
  const back = await startAgent({ root, name: 'home', swarmKeyFile: swarmKey, dataDir: home.dataDir, config: homeConfig })
  agents.push(back)
  await waitFor('everyone alive', () => allSee([boss, spare, back], [boss, spare, back], 'alive'))
  t.same(await eventually(() => runners(boss, 'cam-door'), ['home']), ['home'], 'cam-door runs at home only')
  t.ok((await decisions(boss)).some((d) => d.workId === 'cam-door' && d.action === 'stop' && d.targetName === moved), 'the stop was a decision too')
})

t.test('optimize with no coordinator is a 503 that says so', async (t) => {
  const root = tempDir(t)
  const agent = await startAgent({ root, name: 'shy', swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')), config: { coordinator: { eligible: false } } })
  t.teardown(() => stopAgents([agent]))
  const err = await optimize(agent).then(() => null, (e: unknown) => e)
  t.ok(err instanceof ApiError)
  t.match(err, { status: 503, code: 'ERR_NO_COORDINATOR', message: /no coordinator in term 0/ })
})
