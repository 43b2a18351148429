import { execFileSync } from 'node:child_process'
import { apiText } from '../../../agent/cli/client.ts'
import t from 'tap'
import { AgentBed, Testbed } from '../../../scripts/testbed.ts'
import { FAST_TIMINGS, seenStates, statesOf, waitForAgreement } from '../../helpers/agents.ts'
import { eventually } from '../../helpers/eventually.ts'
import type { AgentProcess } from '../../helpers/agents.ts'

const unavailable = Testbed.unavailableReason()
if (unavailable != null && process.env.CI === 'true') t.fail(`network namespaces are required in CI: ${unavailable}`)

// A partial mesh keeps K connections a member and never dials past K for members it lists alive. Once a
// partition has lasted long enough for TCP to give up on the connections across it, each side holds K on its own
// side: only the reconnect to members listed dead (PeerDialer, RECONNECT_INTERVAL_MS) joins the two again.

/** Peers held (distinct: two members that dialled each other at once hold two connections, which K does not count). */
const connections = async (a: AgentProcess): Promise<number> =>
  Number(/^noodle_libp2p_peers (\d+)/m.exec(await apiText(a.socketPath, '/metrics'))?.[1] ?? NaN)

t.test('partial mesh (K 1): a partition long enough to close the connections across it heals into one mesh and one coordinator', { skip: unavailable ?? false }, async (t) => {
  const bed = await AgentBed.start({ hosts: 4, env: FAST_TIMINGS, config: () => ({ mesh: { connections: 1 }, gossip: { degree: 1 } }) })
  t.teardown(() => bed.destroy())
  // A long cut, shortened: TCP gives up on a connection after 3 retransmissions instead of ~15 minutes.
  for (const ns of bed.net.hosts) execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv4.tcp_retries2=3'])
  const sideA = bed.agents.slice(0, 2)
  const sideB = bed.agents.slice(2)
  bed.partition([[0, 1], [2, 3]])
  const split = { ...statesOf(sideA, sideB, 'dead'), ...statesOf(sideB, sideA, 'dead') }
  const seenSplit = async () => ({ ...await seenStates(sideA, sideB), ...await seenStates(sideB, sideA) })
  t.same(await eventually(seenSplit, split, { timeoutMs: 60_000 }), split, 'each side lists the other dead')
  // Where a side never agrees, the failure says how its members see each other and what each holds.
  const agreed = async (what: string, side: AgentProcess[]) => await waitForAgreement(what, side, undefined, 60_000).catch(async (err: Error) => {
    throw new Error(`${err.message}; seen: ${JSON.stringify(await seenStates(side, side))}; connections: ${(await Promise.all(side.map(connections))).join(', ')}`)
  })
  await agreed('side A to agree', sideA)
  await agreed('side B to agree', sideB)
  // Let TCP give up on the connections across the cut.
  await new Promise((resolve) => setTimeout(resolve, 30_000))
  const held = await Promise.all(bed.agents.map(connections))
  t.same(held, [1, 1, 1, 1], 'each holds K = 1 peer, on its own side')
  bed.healAll()
  const healedAt = Date.now()
  const healed = await waitForAgreement('one coordinator after the heal', bed.agents, undefined, 60_000).catch((err: Error) => err)
  t.notOk(healed instanceof Error, `one coordinator after the heal: ${healed instanceof Error ? healed.message : ''}`)
  const took = Date.now() - healedAt
  t.ok(took <= 15_000, `within 15 s of the heal (${took} ms; a reconnect every 2 s)`)
  const alive = statesOf(bed.agents, bed.agents, 'alive')
  t.same(await eventually(() => seenStates(bed.agents, bed.agents), alive, { timeoutMs: 30_000 }), alive, 'every member lists every other alive')
})
