import { join } from 'node:path'
import t from 'tap'
import { allSee, bootstrapAddr, nodes, seenStates, startAgent, statesOf, stopAgents, tempDir, waitFor, writeSwarmKey } from '../../helpers/agents.ts'
import { eventually } from '../../helpers/eventually.ts'
import type { AgentProcess } from '../../helpers/agents.ts'

t.test('a frozen agent (SIGSTOP) is suspect but never dead, and alive once it runs again; a killed one is dead', async (t) => {
  const root = tempDir(t)
  const swarmKey = writeSwarmKey(join(root, 'swarm.key'))
  const agents: AgentProcess[] = []
  t.teardown(async () => {
    for (const a of agents) a.child.kill('SIGCONT')
    await stopAgents(agents)
  })
  agents.push(await startAgent({ root, name: 'f-0', swarmKeyFile: swarmKey }))
  const boot = await bootstrapAddr(agents[0] as AgentProcess)
  for (const name of ['f-1', 'f-2']) agents.push(await startAgent({ root, name, swarmKeyFile: swarmKey, bootstrap: [boot] }))
  const [a, b, frozen] = agents as [AgentProcess, AgentProcess, AgentProcess]
  await waitFor('all alive', () => allSee(agents, agents, 'alive'))

  // Frozen for 4 s: it sends nothing and answers no ping, like a box starved of CPU or swapping hard, yet its
  // kernel still accepts connections on its port. Two missed pings alone would call it dead in under 2 s.
  frozen.child.kill('SIGSTOP')
  const states = new Set<string>()
  const until = Date.now() + 4_000
  while (Date.now() < until) {
    for (const observer of [a, b]) states.add((await nodes(observer)).find((n) => n.peerId === frozen.peerId)?.state ?? 'missing')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  frozen.child.kill('SIGCONT')
  t.ok(states.has('suspect'), 'it was suspected')
  t.notOk(states.has('dead'), `it was never declared dead (seen: ${[...states].join(', ')})`)
  const resumed = Date.now()
  const alive = statesOf([a, b], [frozen], 'alive')
  t.same(await eventually(() => seenStates([a, b], [frozen]), alive, { timeoutMs: 15_000 }), alive, 'alive again once it runs')
  t.comment(`alive again ${Date.now() - resumed} ms after SIGCONT`)

  frozen.child.kill('SIGKILL')
  const dead = statesOf([a, b], [frozen], 'dead')
  t.same(await eventually(() => seenStates([a, b], [frozen]), dead, { timeoutMs: 5_000, intervalMs: 20 }), dead,
    'a killed agent is dead: its box refuses the connection')
})
