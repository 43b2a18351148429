import { join } from 'node:path'
import t from 'tap'
import { apiText } from '../../../agent/cli/client.ts'
import { CONNECTION_SLACK } from '../../../agent/mesh/dialer.ts'
import { allSee, bootstrapAddr, decisions, startAgent, stopAgents, tempDir, waitFor, waitForAgreement, writeSwarmKey } from '../../helpers/agents.ts'
import type { AgentProcess } from '../../helpers/agents.ts'

// Real agent processes in a partial mesh (mesh.connections 2, gossip.degree 2): six members, each dialling at
// most two, all joining through the first; what one says reaches all through the others.

const K = 2

/** Peers held: what mesh.connections caps (two members that dialled each other at once hold two connections). */
const connections = async (a: AgentProcess): Promise<number> =>
  Number(/^noodle_libp2p_peers (\d+)/m.exec(await apiText(a.socketPath, '/metrics'))?.[1] ?? NaN)

t.test('mesh.connections 2: every member sees every other alive, one coordinator; a death is found and its work moved by a decision; few connections each', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const config = { mesh: { connections: K }, gossip: { degree: 2 } }
  const first = await startAgent({ root, name: 'p0', swarmKeyFile, config: { ...config, coordinator: { priority: 5, maxCpuPct: 10 } } })
  const agents = [first]
  t.teardown(() => stopAgents(agents))
  const bootstrap = [await bootstrapAddr(first)]
  for (let i = 1; i < 6; i++) {
    // The last one runs a camera: when it dies, the coordinator moves it by a decision.
    const work = i === 5 ? { work: [{ id: 'cam-door', kind: 'camera', source: 'rtsp://192.0.2.10/door', cpuPct: 30 }] } : {}
    agents.push(await startAgent({ root, name: `p${i}`, swarmKeyFile, bootstrap, config: { ...config, ...work } }))
  }

  t.equal(await waitFor('every member to see every other alive', () => allSee(agents, agents, 'alive'), 60_000), true)
  const agreed = await waitForAgreement('p0 to coordinate', agents, (a) => a.coordinator === first.peerId, 60_000)
  t.equal(agreed.coordinator, first.peerId, 'everyone follows p0 (highest priority)')
  // Past the cap, the newest connections (joiners through p0) are closed after their grace (member sync).
  let held: number[] = []
  await waitFor(`each to hold at most ${K + CONNECTION_SLACK} connections`, async () => {
    held = await Promise.all(agents.map(connections))
    return held.every((c) => c <= K + CONNECTION_SLACK)
  }, 30_000).catch(() => undefined)
  t.same(held.filter((c) => !(c <= K + CONNECTION_SLACK)), [], `each holds at most ${K + CONNECTION_SLACK} connections: ${held.join(', ')}`)
  t.ok(held.some((c) => c < agents.length - 1), 'not a full mesh')
  // A member may be suspect for a moment (a beacon late on this loaded machine, a probe out); none drops out.
  t.equal(await waitFor('all alive once connections were closed', () => allSee(agents, agents, 'alive'), 15_000), true, 'still all alive')

  const home = agents.pop() as AgentProcess
  home.child.kill('SIGKILL')
  t.equal(await waitFor('every member to list p5 dead', () => allSee(agents, [home], 'dead'), 30_000), true)
  // The coordinator places the camera elsewhere and hears the outcome back (over the mesh, unless it is the target).
  const issued = await waitFor('the run decision and its outcome', async () =>
    (await decisions(first)).find((d) => d.workId === 'cam-door' && d.action === 'run' && d.outcome != null), 60_000)
  t.equal(issued.outcome, 'applied', `run cam-door on ${issued.targetName ?? '?'}`)
  const target = agents.find((a) => a.name === issued.targetName) as AgentProcess
  t.ok((await decisions(target)).some((d) => d.id === issued.id && d.outcome === 'applied'), 'the target recorded it too')
})
