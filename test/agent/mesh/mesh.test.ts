import { join } from 'node:path'
import t from 'tap'
import { allSee, bootstrapAddr, seenStates, statesOf, stopAgents, nodes, startAgent, status, statesSeenBy, tempDir, waitFor, writeSwarmKey } from '../../helpers/agents.ts'
import { eventually } from '../../helpers/eventually.ts'
import type { AgentProcess } from '../../helpers/agents.ts'

t.test('three agents join by bootstrap; a leave and a crash are told apart; outsiders stay out', async (t) => {
  const root = tempDir(t)
  const swarmKey = writeSwarmKey(join(root, 'swarm.key'))
  const otherKey = writeSwarmKey(join(root, 'other.key'))
  const running: AgentProcess[] = []
  t.teardown(() => stopAgents(running))

  const a = await startAgent({ root, name: 'alpha', swarmKeyFile: swarmKey })
  running.push(a)
  const entry = await bootstrapAddr(a)
  const [b, c] = await Promise.all(['bravo', 'charlie'].map((name) =>
    startAgent({ root, name, swarmKeyFile: swarmKey, bootstrap: [entry] })))
  running.push(b as AgentProcess, c as AgentProcess)
  const mesh = [a, b, c] as AgentProcess[]
  // An agent with another swarm key, pointed straight at alpha: the private network must keep it out.
  const outsider = await startAgent({ root, name: 'outsider', swarmKeyFile: otherKey, bootstrap: [entry] })
  running.push(outsider)

  const joined = statesOf(mesh, mesh, 'alive')
  t.same(await eventually(() => seenStates(mesh, mesh), joined), joined, 'all three see three alive members')
  for (const agent of mesh) {
    const s = await status(agent)
    t.equal(s.members, 3, `${agent.name} counts 3 members alive`)
    t.equal(s.peerId, agent.peerId)
    t.match(s, { term: Number, loopLagMs: Number })
    const list = await nodes(agent)
    t.same(list.map((n) => n.name), ['alpha', 'bravo', 'charlie'], `${agent.name} lists exactly the mesh, by name`)
    for (const n of list) {
      t.match(n, { role: /^(member|coordinator)$/, lastSeen: /^\d{4}-\d\d-\d\dT/, health: { cpuPct: Number, memTotalBytes: Number, uptimeS: Number } })
      t.ok(n.addrs.length > 0, `${agent.name} knows an address of ${n.name}`)
    }
  }

  // A polite stop: SIGTERM → announced leave → `left`, and the process is gone well within 5 s.
  const stopAsked = Date.now()
  b?.child.kill('SIGTERM')
  const bExit = await (b as AgentProcess).exited
  t.equal(bExit.code, 0, 'SIGTERM exits 0')
  t.ok(Date.now() - stopAsked < 5_000, 'SIGTERM stops within 5 s')
  const left = statesOf([a, c as AgentProcess], [b as AgentProcess], 'left')
  t.same(await eventually(() => seenStates([a, c as AgentProcess], [b as AgentProcess]), left), left, 'bravo is left to the others')

  // A crash: SIGKILL says nothing, but its box refuses the redial: dead at once.
  c?.child.kill('SIGKILL')
  const dead = statesOf([a], [c as AgentProcess], 'dead')
  t.same(await eventually(() => seenStates([a], [c as AgentProcess]), dead), dead, 'charlie is dead to alpha')
  t.equal((await statesSeenBy(a)).get(b?.peerId ?? ''), 'left', 'the one that left stays left, not dead')

  const seenByAlpha = await statesSeenBy(a)
  t.notOk(seenByAlpha.has(outsider.peerId), 'the agent with another swarm key never appears')
  t.same((await nodes(outsider)).map((n) => n.name), ['outsider'], 'and it sees nobody')

  // Restart bravo with no bootstrap address: it must come back to the peers it knew, same identity.
  const bAgain = await startAgent({ root, name: 'bravo', swarmKeyFile: swarmKey, dataDir: b?.dataDir })
  running.push(bAgain)
  t.equal(bAgain.peerId, b?.peerId, 'the peer id survives a restart')
  const back = statesOf([a, bAgain], [a, bAgain], 'alive')
  t.same(await eventually(() => seenStates([a, bAgain], [a, bAgain]), back), back, 'bravo is back')
  const remembered = (await statesSeenBy(bAgain)).get(c?.peerId ?? '')
  t.ok(remembered === 'suspect' || remembered === 'dead', `bravo remembers charlie and does not vouch for it (${String(remembered)})`)
  const charlieDead = statesOf([bAgain], [c as AgentProcess], 'dead')
  t.same(await eventually(() => seenStates([bAgain], [c as AgentProcess]), charlieDead), charlieDead, 'bravo finds charlie dead')
})

t.test('members that joined through one agent connect to each other: the mesh outlives its bootstrap node', async (t) => {
  const root = tempDir(t)
  const swarmKey = writeSwarmKey(join(root, 'swarm.key'))
  const running: AgentProcess[] = []
  t.teardown(() => stopAgents(running))
  const entryAgent = await startAgent({ root, name: 'entry', swarmKeyFile: swarmKey })
  running.push(entryAgent)
  const entry = await bootstrapAddr(entryAgent)
  const others = await Promise.all(['one', 'two', 'three'].map((name) => startAgent({ root, name, swarmKeyFile: swarmKey, bootstrap: [entry] })))
  running.push(...others)
  await waitFor('all four alive everywhere', () => allSee([entryAgent, ...others], [entryAgent, ...others], 'alive'))
  entryAgent.child.kill('SIGKILL')
  const entryDead = statesOf(others, [entryAgent], 'dead')
  t.same(await eventually(() => seenStates(others, [entryAgent]), entryDead), entryDead, 'the entry agent is dead to the others')
  t.same(await seenStates(others, others), statesOf(others, others, 'alive'), 'the three still see each other alive: they talk directly, not through the entry')
})
