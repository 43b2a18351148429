import { spawn } from 'node:child_process'
import Database from 'better-sqlite3'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { Election } from '../../agent/coordination/election.ts'
import { ElectionService, TERM_STATE_KEY } from '../../agent/coordination/election-service.ts'
import { MemberBus } from '../../agent/membership/bus.ts'
import { createLogger } from '../../common/logger.ts'
import { Membership } from '../../agent/membership/membership.ts'
import { MetricsStore } from '../../agent/metrics/metrics.ts'
import type { CoordinationRecords } from '../../agent/coordination/coordination-records.ts'
import type { EventLog } from '../../agent/store/event-log.ts'
import { sampleBeacon } from '../../scripts/beacon.ts'
import { TOPICS } from '../../protocols/topics.ts'
import { REJECTED_METRIC } from '../../protocols/validator.ts'
import { bootstrapAddr, gossip, nodes, startAgent, status, stopAgents, tempDir, waitFor, waitForAgreement, writeSwarmKey } from '../helpers/agents.ts'
import type { AgentProcess } from '../helpers/agents.ts'

const MESH_PUBLISH = fileURLToPath(new URL('../../scripts/mesh-publish.ts', import.meta.url))
const TERM_JUMP = `term-jump/${TOPICS.nodeHealth}`

type Teardown = { teardown: (fn: () => unknown) => void }

/** Two agents in a fresh mesh, a ranking best (it coordinates first, b takes over when it dies), agreed on a. */
async function pairLedByA (t: Teardown, prefix: string) {
  const root = tempDir(t)
  const swarmKey = writeSwarmKey(join(root, 'swarm.key'))
  const agents: AgentProcess[] = []
  t.teardown(() => stopAgents(agents))
  const a = await startAgent({ root, name: `${prefix}-a`, swarmKeyFile: swarmKey, config: { coordinator: { priority: 10 } } })
  agents.push(a)
  const b = await startAgent({ root, name: `${prefix}-b`, swarmKeyFile: swarmKey, bootstrap: [await bootstrapAddr(a)] })
  agents.push(b)
  const first = await waitForAgreement('a to coordinate', agents, (x) => x.coordinator === a.peerId)
  return { swarmKey, a, b, first }
}

/** A member of the key's holder, beaconing `fields` for a minute (mesh-publish --beacon), ended with the test. */
function beaconing (t: Teardown, swarmKey: string, to: string, fields: Record<string, unknown>): void {
  const rogue = spawn(process.execPath, [MESH_PUBLISH, '--swarm-key', swarmKey, '--to', to, '--stay', '60000', '--beacon', JSON.stringify(fields)], { stdio: 'ignore' })
  t.teardown(() => { rogue.kill() })
}

/** SIGKILLs `a` and waits for `b` to coordinate: its status then. */
async function takesOver (a: AgentProcess, b: AgentProcess) {
  a.child.kill('SIGKILL')
  await a.exited
  return await waitFor('b to coordinate', async () => {
    const s = await status(b)
    return s.role === 'coordinator' ? s : undefined
  }, 20_000)
}

t.test('a member claiming the largest term the schema takes is refused and counted; elections go on after the coordinator dies', async (t) => {
  const { swarmKey, a, b, first } = await pairLedByA(t, 'e')

  // The rogue outranks everyone (priority 1000), claims Number.MAX_SAFE_INTEGER, and keeps beaconing so it stays
  // a live member throughout: were its claim taken, no term could ever follow it.
  beaconing(t, swarmKey, await bootstrapAddr(b), { name: 'rogue', role: 'coordinator', term: Number.MAX_SAFE_INTEGER, priority: 1000, eligible: true })
  const seen = await waitFor('b to list the rogue with its claim', async () => (await nodes(b)).find((n) => n.name === 'rogue' && n.state === 'alive'))
  t.equal(seen.term, Number.MAX_SAFE_INTEGER, 'b listed the claim it refused')
  const refused = await waitFor('b to count the refused claim', async () => (await gossip(b)).rejected[TERM_JUMP])
  t.ok(refused >= 1, `refused as ${TERM_JUMP}: ${refused}`)
  t.match(await status(b), { coordinator: a.peerId, term: first.term }, 'b still follows a, in the same term')

  const after = await takesOver(a, b)
  t.equal(after.coordinator, b.peerId, 'b, the best of the real agents, coordinates although the rogue outranks it')
  t.equal(after.term, first.term + 1, 'the next term after the last rightful one')
  t.equal((await nodes(b)).find((n) => n.name === 'rogue')?.state, 'alive', 'with the rogue still a live member')
  const later = await waitFor('the rogue\'s next claim to be refused', async () => {
    const n = (await gossip(b)).rejected[TERM_JUMP] as number
    return n > refused ? n : undefined
  })
  t.match(await status(b), { coordinator: b.peerId, term: after.term }, `after ${later} refused claims, b still coordinates in its term`)
})

t.test('made-up members reporting the top of the integer range cannot drag the term there: the next term is the next rightful one', async (t) => {
  const { swarmKey, a, b, first } = await pairLedByA(t, 's')
  // Three members of one holder of the key (each process a fresh signing key): plain members, no claim, but a
  // majority of b's live members, each reporting Number.MAX_SAFE_INTEGER.
  const to = await bootstrapAddr(b)
  for (const name of ['s1', 's2', 's3']) beaconing(t, swarmKey, to, { name, role: 'member', term: Number.MAX_SAFE_INTEGER, eligible: false })
  await waitFor('b to list the three', async () => (await nodes(b)).filter((n) => /^s\d$/.test(n.name) && n.state === 'alive').length === 3, 20_000)
  t.ok(((await gossip(b)).rejected[TERM_JUMP] ?? 0) >= 3, 'their terms are counted as term-jumps')

  const after = await takesOver(a, b)
  t.same({ coordinator: after.coordinator, term: after.term }, { coordinator: b.peerId, term: first.term + 1 }, 'the next rightful term, not one past the made-up ones')
})

t.test('a member that ranks best but never claims cannot leave the mesh without a coordinator', async (t) => {
  const root = tempDir(t)
  const swarmKey = writeSwarmKey(join(root, 'swarm.key'))
  const agents: AgentProcess[] = []
  t.teardown(() => stopAgents(agents))
  const a = await startAgent({ root, name: 'q-a', swarmKeyFile: swarmKey })
  agents.push(a)
  // Beacons the top priority as a plain member from the start, for ever: every box waits for its claim.
  beaconing(t, swarmKey, await bootstrapAddr(a), { name: 'idle-best', role: 'member', priority: 1000, eligible: true })
  await waitFor('a to list the rogue', async () => (await nodes(a)).some((n) => n.name === 'idle-best' && n.state === 'alive'))
  const b = await startAgent({ root, name: 'q-b', swarmKeyFile: swarmKey, bootstrap: [await bootstrapAddr(a)] })
  agents.push(b)
  const agreed = await waitForAgreement('a and b to agree on a coordinator of their own', agents, (x) => x.coordinator === a.peerId || x.coordinator === b.peerId, 20_000)
  t.ok([a.peerId, b.peerId].includes(agreed.coordinator as string), 'one of the real agents coordinates, passing the idle rogue over')
  t.equal((await nodes(a)).find((n) => n.name === 'idle-best')?.state, 'alive', 'while the rogue is still a live member')
})

t.test('a claim carried in a decision meets the same ceiling, counted under the decisions topic', async (t) => {
  const membership = new Membership({
    self: { peerId: 'self', name: 'self', state: 'alive', role: 'member', addrs: [], lastSeen: 0, health: null },
    options: { probeAfterMs: 1_000, probeTimeoutMs: 250, unresponsiveAfterMs: 30_000, reapAfterMs: 60_000 }
  })
  // The clock at 0, so the ceiling is the step above the term (a real clock allows up to its milliseconds).
  const election = new Election({ selfId: 'self', term: 7, settleUntil: Infinity, now: () => 0 })
  const metrics = new MetricsStore()
  const saved: unknown[] = []
  const records = { putState: (_: string, term: unknown) => { saved.push(term) } } as unknown as CoordinationRecords
  const events = { record: () => {} } as unknown as EventLog
  const service = new ElectionService({ election, membership, records, events, metrics, log: createLogger('silent'), self: () => ({ peerId: 'self', eligible: true, priority: 0, capability: 0 }), bus: new MemberBus() })
  service.start()
  t.teardown(() => { service.stop() })
  membership.observeBeacon('rogue', sampleBeacon({ name: 'rogue', eligible: true }))

  service.observeClaim('rogue', Number.MAX_SAFE_INTEGER, TOPICS.optimizationDecisions)
  service.observeClaim('rogue', 7 + 1001)
  t.same(metrics.series(REJECTED_METRIC), { [`term-jump/${TOPICS.optimizationDecisions}`]: 1, [`term-jump/${TOPICS.nodeHealth}`]: 1 })
  t.same({ term: election.term, coordinator: election.coordinator, saved }, { term: 7, coordinator: null, saved: [] }, 'nothing taken, nothing saved')
  service.observeClaim('rogue', 7 + 1000)
  t.same({ term: election.term, coordinator: election.coordinator, saved }, { term: 1007, coordinator: 'rogue', saved: [1007] }, 'a claim at the ceiling is taken')
})

t.test('a box that saved a rogue term before the ceiling existed starts from term 0 and elections go on', async (t) => {
  const root = tempDir(t)
  const swarmKey = writeSwarmKey(join(root, 'swarm.key'))
  const agents: AgentProcess[] = []
  t.teardown(() => stopAgents(agents))
  const first = await startAgent({ root, name: 'p-a', swarmKeyFile: swarmKey })
  await waitFor('a to coordinate alone', async () => (await status(first)).role === 'coordinator')
  await stopAgents([first])
  const db = new Database(join(first.dataDir, 'noodle.db'))
  db.prepare('UPDATE state SET value = ? WHERE key = ?').run(JSON.stringify(Number.MAX_SAFE_INTEGER), TERM_STATE_KEY)
  db.close()

  const a = await startAgent({ root, name: 'p-a', swarmKeyFile: swarmKey, dataDir: first.dataDir, config: { coordinator: { priority: 10 } } })
  agents.push(a)
  const b = await startAgent({ root, name: 'p-b', swarmKeyFile: swarmKey, bootstrap: [await bootstrapAddr(a)] })
  agents.push(b)
  const agreed = await waitForAgreement('both to follow a', agents, (x) => x.coordinator === a.peerId)
  // Term 1, or a few more where a busy machine made a's first lease lapse before b followed: never the saved one.
  t.same({ coordinator: agreed.coordinator, termFromZero: agreed.term >= 1 && agreed.term <= 3 }, { coordinator: a.peerId, termFromZero: true },
    `a claimed a term counted from 0 (${agreed.term}), and b took it`)
  t.match(a.output(), /the saved election term is unusable/, 'said in the log')
})
