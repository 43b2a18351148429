import { join } from 'node:path'
import t from 'tap'
import { Testbed, loopbackHost } from '../../../scripts/testbed.ts'
import { allSee, seenStates, statesOf, stopAgents, nodes, startAgent, tempDir, waitFor, writeSwarmKey } from '../../helpers/agents.ts'
import { eventually } from '../../helpers/eventually.ts'
import type { AgentProcess } from '../../helpers/agents.ts'

const unavailable = Testbed.unavailableReason()
if (unavailable != null && process.env.CI === 'true') {
  // CI runs as root on a machine that has namespaces: a skip there would hide a broken test.
  t.fail(`network namespaces are required in CI: ${unavailable}`)
}

t.test('three agents on loopback find each other by mDNS alone', { skip: unavailable ?? false }, async (t) => {
  const root = tempDir(t)
  const swarmKey = writeSwarmKey(join(root, 'swarm.key'))
  // A namespace of our own whose only interface is loopback: mDNS multicast stays inside it.
  const host = loopbackHost()
  t.teardown(host.destroy)
  const agents: AgentProcess[] = []
  t.teardown(() => stopAgents(agents))
  for (const name of ['lo-a', 'lo-b', 'lo-c']) {
    agents.push(await startAgent({ root, name, swarmKeyFile: swarmKey, mdns: true, netns: host.ns }))
  }
  const alive = statesOf(agents, agents, 'alive')
  t.same(await eventually(() => seenStates(agents, agents), alive), alive, 'found by mDNS with no bootstrap address')
})

t.test('three hosts on a bridge find each other by mDNS; an outsider with another key does not get in', { skip: unavailable ?? false }, async (t) => {
  const root = tempDir(t)
  const swarmKey = writeSwarmKey(join(root, 'swarm.key'))
  const otherKey = writeSwarmKey(join(root, 'other.key'))
  const bed = new Testbed().create(4)
  t.teardown(bed.destroy)
  const agents: AgentProcess[] = []
  t.teardown(() => stopAgents(agents))
  for (let i = 0; i < 3; i++) {
    agents.push(await startAgent({
      root, name: `host-${i}`, swarmKeyFile: swarmKey, mdns: true, netns: bed.hosts[i], listen: ['/ip4/0.0.0.0/tcp/4001']
    }))
  }
  const outsider = await startAgent({ root, name: 'outsider', swarmKeyFile: otherKey, mdns: true, netns: bed.hosts[3], listen: ['/ip4/0.0.0.0/tcp/4001'] })
  await waitFor('all three hosts to see each other alive', () => allSee(agents, agents, 'alive'))
  for (const agent of agents) {
    const list = await nodes(agent)
    t.same(list.map((n) => n.name), ['host-0', 'host-1', 'host-2'], `${agent.name} sees the three hosts and not the outsider`)
    for (const n of list) t.match(n.addrs[0], /^\/ip4\/10\.77\.0\.\d\/tcp\/4001$/, `${n.name} is known by its address on the bridge`)
  }
  t.same((await nodes(outsider)).map((n) => n.name), ['outsider'], 'the outsider sees nobody')
  await stopAgents([outsider])
})
