import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { AgentBed, Testbed } from '../../../scripts/testbed.ts'
import { TOPICS } from '../../../protocols/topics.ts'
import { FAST_TIMINGS, decisions, nodes, seenStates, statesOf, status, waitFor, waitForAgreement } from '../../helpers/agents.ts'
import { eventually } from '../../helpers/eventually.ts'
import type { AgentProcess, Agreement } from '../../helpers/agents.ts'

const unavailable = Testbed.unavailableReason()
if (unavailable != null && process.env.CI === 'true') t.fail(`network namespaces are required in CI: ${unavailable}`)

const ROGUE = fileURLToPath(new URL('../../../scripts/mesh-publish.ts', import.meta.url))

const agreement = (what: string, agents: AgentProcess[], accept?: (a: Agreement) => boolean) => waitForAgreement(what, agents, accept)

t.test('5 hosts: the coordinator dies, the network splits 2|3 and heals, an old term is fenced off', { skip: unavailable ?? false }, async (t) => {
  // host-4 has the highest priority, so the rightful coordinator is known in advance.
  const bed = await AgentBed.start({ hosts: 5, env: FAST_TIMINGS, config: (i) => i === 4 ? { coordinator: { priority: 10 } } : undefined })
  t.teardown(() => bed.destroy())
  const [h0, h1, h2, h3, h4] = bed.agents as [AgentProcess, AgentProcess, AgentProcess, AgentProcess, AgentProcess]
  const lowest = (agents: AgentProcess[]) => agents.map((a) => a.peerId).sort()[0]

  const first = await agreement('agreement on the priority host', bed.agents, (a) => a.coordinator === h4.peerId)
  t.equal(first.coordinator, h4.peerId, `all five follow host-4 (priority 10), term ${first.term}`)
  t.equal((await nodes(h0)).find((n) => n.peerId === h4.peerId)?.role, 'coordinator', 'nodes marks the coordinator')

  // Kill the coordinator: the survivors agree on one new one, ranked by peer id (all else is equal here).
  await bed.kill(4)
  const survivors = [h0, h1, h2, h3]
  const second = await agreement('a new coordinator among the survivors', survivors, (a) => a.coordinator !== h4.peerId)
  t.equal(second.coordinator, lowest(survivors), 'the best-ranked survivor took over')
  t.ok(second.term > first.term, 'with a higher term')
  const h4Dead = statesOf(survivors, [h4], 'dead')
  t.same(await eventually(() => seenStates(survivors, [h4]), h4Dead), h4Dead, 'every survivor lists host-4 dead')

  // It comes back: same identity and priority, so it takes over again, with a higher term still.
  const back = await bed.restart(4)
  const third = await agreement('host-4 coordinating again', [h0, h1, h2, h3, back], (a) => a.coordinator === back.peerId)
  t.ok(third.term > second.term, `back in charge at term ${third.term}`)

  // Partition 2|3: each side has exactly one coordinator. host-4's side keeps it; the other elects its own.
  bed.partition([[3, 4], [0, 1, 2]])
  const sideA = [h3, back]
  const sideB = [h0, h1, h2]
  const b = await agreement('side 0-1-2 to agree on its own coordinator', sideB, (a) => a.coordinator !== back.peerId)
  t.equal(b.coordinator, lowest(sideB), 'side 0-1-2 elected its best-ranked member')
  const a = await agreement('side 3-4 to keep host-4', sideA, (x) => x.coordinator === back.peerId)
  t.equal(a.term, third.term, 'side 3-4 had no reason to change term')
  const split = { ...statesOf(sideA, sideB, 'dead'), ...statesOf(sideB, sideA, 'dead') }
  const seenSplit = async () => ({ ...await seenStates(sideA, sideB), ...await seenStates(sideB, sideA) })
  t.same(await eventually(seenSplit, split), split, 'each side lists the other dead')

  // Heal: one coordinator again (the rightful one), with a term above both sides'.
  bed.healAll()
  const healed = await agreement('one coordinator after the heal', bed.live, (x) => x.term > Math.max(a.term, b.term))
  t.equal(healed.coordinator, back.peerId, 'the partitions converged on host-4')
  t.ok(healed.term > Math.max(a.term, b.term), `term ${healed.term} > ${Math.max(a.term, b.term)}`)

  // A decision from the old side's term (and one from a peer that is not the coordinator) is not applied.
  const stale = (term: number, id: string) => JSON.stringify({
    v: 1, type: 'decision', id, term, target: h1.peerId, action: 'run',
    work: { id: 'rogue-cam', kind: 'camera', source: 'rtsp://10.77.0.9/x', pinned: false, cpuPct: 10, memMB: 10, accelerator: 'none' },
    home: h1.peerId, reason: 'replayed', at: Date.now()
  })
  const target = `/ip4/${bed.net.address(1)}/tcp/4001/p2p/${h1.peerId}`
  const rogue = spawnSync('ip', ['netns', 'exec', bed.net.hosts[2] as string, process.execPath, ROGUE, '--swarm-key', `${bed.root}/swarm.key`, '--to', target,
    '--topic', TOPICS.optimizationDecisions, stale(b.term, 'old-term'), stale(healed.term, 'not-the-coordinator')], { encoding: 'utf8', timeout: 30_000 })
  t.equal(rogue.status, 0, `the rogue published: ${rogue.stdout}${rogue.stderr}`)
  const seen = await waitFor('host-1 to record both decisions', async () => {
    const list = await decisions(h1)
    return list.filter((d) => d.id === 'old-term' || d.id === 'not-the-coordinator').length === 2 ? list : undefined
  })
  for (const d of seen.filter((x) => x.workId === 'rogue-cam')) t.equal(d.outcome, 'stale', `${d.id}: recorded as stale`)
  t.notOk((await nodes(h0)).find((n) => n.peerId === h1.peerId)?.running.includes('rogue-cam'), 'host-1 does not run the work')
  t.equal((await status(h1)).term, healed.term, 'and its term is unmoved')
})
