import { join } from 'node:path'
import t from 'tap'
import type { Decision } from '../../protocols/decisions.ts'
import { TOPICS } from '../../protocols/topics.ts'
import { WorkItemSchema } from '../../protocols/work.ts'
import { decisions, gossip, startAgent, status, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'
import { rogueMember } from './meshwork-rogue-member.ts'

const STALE = `stale-term/${TOPICS.optimizationDecisions}`

t.test('a member flooding decisions it may not make gets a few listed and answered a minute; the rest are only counted', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const victim = await startAgent({ root, name: 'victim', swarmKeyFile })
  t.teardown(() => stopAgents([victim]))
  const rogue = await rogueMember(swarmKeyFile, [victim], { name: 'flooder', eligible: false })
  t.teardown(() => rogue.stop())
  const { term } = await waitFor('the victim to coordinate', async () => { const s = await status(victim); return s.role === 'coordinator' && s })
  const work = WorkItemSchema.parse({ id: 'job', kind: 'model', cpuPct: 0 })
  for (let n = 1; n <= 60; n++) {
    const d: Decision = { v: 1, type: 'decision', id: `${term}-flood-${n}`, term, target: victim.peerId, action: 'stop', work, home: rogue.peerId, reason: 'x'.repeat(200), at: Date.now(), seq: n }
    await rogue.decide(d)
  }
  const counted = await waitFor('all sixty to be counted', async () => { const n = (await gossip(victim)).rejected[STALE] ?? 0; return n >= 60 && n })
  t.equal(counted, 60, 'every one is counted as stale')
  const listed = (await decisions(victim)).filter((d) => d.id.includes('-flood-'))
  t.same({ listed: listed.length, outcomes: [...new Set(listed.map((d) => d.outcome))] }, { listed: 20, outcomes: ['stale'] }, 'twenty are listed, as stale')
  t.equal(rogue.heard.results.filter((r) => r.id.includes('-flood-')).length, 20, 'and only those are answered over the mesh')
})

t.test('a decision its target never carries out is made again less and less often, not every few seconds', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const boss = await startAgent({
    root,
    name: 'boss',
    swarmKeyFile,
    env: { NOODLE_COORDINATOR_EVALUATE_INTERVAL_MS: '1000' },
    // Never too busy to keep its own job, however loaded the test machine is: placement stays put.
    config: { coordinator: { maxCpuPct: 100 }, work: [{ id: 'job', kind: 'model', cpuPct: 0, accelerator: 'none' }] }
  })
  t.teardown(() => stopAgents([boss]))
  // A member that says it runs the boss's job too, and never stops: the coordinator tells it to, again and again.
  const rogue = await rogueMember(swarmKeyFile, [boss], { name: 'squatter', eligible: false, running: ['job'] })
  t.teardown(() => rogue.stop())
  const stops = async () => (await decisions(boss)).filter((d) => d.workId === 'job' && d.action === 'stop').reverse()
  const first = await waitFor('the first stop', async () => (await stops())[0], 20_000)
  // Repeats after 5 s, then 10 s, then 20 s (doubling): 3 decisions in the first 25 s; at a fixed 5 s, 6.
  await new Promise((resolve) => setTimeout(resolve, Date.parse(first.at) + 25_000 - Date.now()))
  const made = await stops()
  t.same(made.map((d) => d.targetName), ['squatter', 'squatter', 'squatter'], 'the squatter is told to stop three times in 25 s; the home, which runs it, never is')
  const [a, b, c] = made.map((d) => Date.parse(d.at))
  t.ok((b as number) - (a as number) >= 4_500 && (c as number) - (b as number) >= 9_500, `the wait doubles: after ${(b as number) - (a as number)} ms, then ${(c as number) - (b as number)} ms`)
})
