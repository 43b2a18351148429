import { join } from 'node:path'
import t from 'tap'
import { AUTO_PARTIAL, meshForSize } from '../../../agent/config/config.ts'
import { allSee, bootstrapAddr, startAgent, status, stopAgents, tempDir, waitFor, writeSwarmKey } from '../../helpers/agents.ts'
import { eventually } from '../../helpers/eventually.ts'

const settings = (connections: number, degree: number, partialAbove: number) => ({ mesh: { connections, partialAbove }, gossip: { degree } })

t.test('mesh.partialAbove: a full mesh unless more members are remembered; the operator\'s own settings win', async (t) => {
  t.same(meshForSize(settings(0, 0, 32), 32), settings(0, 0, 32), '32 remembered: still a full mesh')
  t.same(meshForSize(settings(0, 0, 32), 33), settings(AUTO_PARTIAL.connections, AUTO_PARTIAL.degree, 32), '33: a partial mesh of 6 connections, gossip degree 3')
  t.same(meshForSize(settings(0, 2, 32), 100), settings(AUTO_PARTIAL.connections, 2, 32), 'a gossip degree that fits 6 connections is kept')
  t.same(meshForSize(settings(0, 12, 32), 100), settings(AUTO_PARTIAL.connections, AUTO_PARTIAL.degree, 32), 'one that does not is replaced')
  t.same(meshForSize(settings(4, 2, 32), 1000), settings(4, 2, 32), 'connections set by the operator: as set')
  t.same(meshForSize(settings(0, 0, 0), 1000), settings(0, 0, 0), 'partialAbove 0: always a full mesh')
})

t.test('an agent restarted knowing more members than mesh.partialAbove runs as a partial mesh, and still sees all', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const config = { mesh: { partialAbove: 2 } }
  const first = await startAgent({ root, name: 's0', swarmKeyFile, config })
  const agents = [first]
  t.teardown(() => stopAgents(agents))
  const bootstrap = [await bootstrapAddr(first)]
  for (let i = 1; i < 4; i++) agents.push(await startAgent({ root, name: `s${i}`, swarmKeyFile, bootstrap, config }))
  t.equal(await waitFor('every member to see every other alive', () => allSee(agents, agents, 'alive'), 60_000), true)
  t.same((await Promise.all(agents.map(status))).map((s) => s.meshConnections), [0, 0, 0, 0], 'fresh stores remember nobody: a full mesh')
  const last = agents.pop()
  await stopAgents(last === undefined ? [] : [last])
  const restarted = await startAgent({ root, name: 's3', swarmKeyFile, bootstrap, config, dataDir: last?.dataDir })
  agents.push(restarted)
  t.equal((await status(restarted)).meshConnections, AUTO_PARTIAL.connections, 'restarted remembering 3 members (> 2): partial')
  t.equal(await eventually(() => allSee(agents, agents, 'alive'), true, { timeoutMs: 30_000 }), true, 'and all see all alive, the other three still a full mesh')
})
