import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { TOPICS } from '../../protocols/topics.ts'
import { bootstrapAddr, gossip, nodes, startAgent, status, stopAgents, tempDir, waitFor, waitForAgreement, writeSwarmKey } from '../helpers/agents.ts'
import type { AgentProcess } from '../helpers/agents.ts'

const MESH_PUBLISH = fileURLToPath(new URL('../../scripts/mesh-publish.ts', import.meta.url))
const TERM_JUMP = `term-jump/${TOPICS.nodeHealth}`

t.test('a member claiming the largest term the schema takes is refused and counted; elections go on after the coordinator dies', async (t) => {
  const root = tempDir(t)
  const swarmKey = writeSwarmKey(join(root, 'swarm.key'))
  const agents: AgentProcess[] = []
  t.teardown(() => stopAgents(agents))
  // a ranks best, so it coordinates first; b takes over when it dies.
  const a = await startAgent({ root, name: 'e-a', swarmKeyFile: swarmKey, config: { coordinator: { priority: 10 } } })
  agents.push(a)
  const b = await startAgent({ root, name: 'e-b', swarmKeyFile: swarmKey, bootstrap: [await bootstrapAddr(a)] })
  agents.push(b)
  const first = await waitForAgreement('a to coordinate', agents, (x) => x.coordinator === a.peerId)

  // The rogue outranks everyone (priority 1000), claims Number.MAX_SAFE_INTEGER, and keeps beaconing so it stays
  // a live member throughout: were its claim taken, no term could ever follow it.
  const rogue = spawn(process.execPath, [MESH_PUBLISH, '--swarm-key', swarmKey, '--to', await bootstrapAddr(b), '--stay', '60000',
    '--beacon', JSON.stringify({ name: 'rogue', role: 'coordinator', term: Number.MAX_SAFE_INTEGER, priority: 1000, eligible: true })], { stdio: 'ignore' })
  t.teardown(() => { rogue.kill() })
  const seen = await waitFor('b to list the rogue with its claim', async () => (await nodes(b)).find((n) => n.name === 'rogue' && n.state === 'alive'))
  t.equal(seen.term, Number.MAX_SAFE_INTEGER, 'b listed the claim it refused')
  const refused = await waitFor('b to count the refused claim', async () => (await gossip(b)).rejected[TERM_JUMP])
  t.ok(refused >= 1, `refused as ${TERM_JUMP}: ${refused}`)
  t.match(await status(b), { coordinator: a.peerId, term: first.term }, 'b still follows a, in the same term')

  a.child.kill('SIGKILL')
  await a.exited
  const after = await waitFor('b to coordinate', async () => {
    const s = await status(b)
    return s.role === 'coordinator' ? s : undefined
  }, 20_000)
  t.equal(after.coordinator, b.peerId, 'b, the best of the real agents, coordinates although the rogue outranks it')
  t.equal(after.term, first.term + 1, 'the next term after the last rightful one')
  t.equal((await nodes(b)).find((n) => n.name === 'rogue')?.state, 'alive', 'with the rogue still a live member')
  const later = await waitFor('the rogue\'s next claim to be refused', async () => {
    const n = (await gossip(b)).rejected[TERM_JUMP] as number
    return n > refused ? n : undefined
  })
  t.match(await status(b), { coordinator: b.peerId, term: after.term }, `after ${later} refused claims, b still coordinates in its term`)
})
