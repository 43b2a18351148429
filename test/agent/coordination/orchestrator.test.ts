import { EventEmitter } from 'node:events'
import t from 'tap'
import { createLogger } from '../../../common/logger.ts'
import { DECISIONS_METRIC, EVALUATIONS_METRIC, Orchestrator } from '../../../agent/coordination/orchestrator.ts'
import { WorkRegistry } from '../../../agent/coordination/work.ts'
import { MemberBus } from '../../../agent/membership/bus.ts'
import { Membership } from '../../../agent/membership/membership.ts'
import { MetricsStore } from '../../../agent/metrics/metrics.ts'
import { decisionCodec } from '../../../protocols/decisions.ts'
import type { Decision, DecisionMessage } from '../../../protocols/decisions.ts'
import { OPTIMIZE_PROTOCOL } from '../../../protocols/optimize.ts'
import { TOPICS } from '../../../protocols/topics.ts'
import { REJECTED_METRIC } from '../../../protocols/validator.ts'
import { WorkItemSchema } from '../../../protocols/work.ts'
import type { WorkItem } from '../../../protocols/work.ts'
import { eventually } from '../../helpers/eventually.ts'
import { sampleBeacon } from '../../helpers/beacon.ts'

const OPTIONS = { probeAfterMs: 1_000, probeTimeoutMs: 250, unresponsiveAfterMs: 30_000, reapAfterMs: 60_000 }
const GiB = 1024 ** 3
const item = (id: string): WorkItem => WorkItemSchema.parse({ id, kind: 'model', cpuPct: 10, memMB: 64 })

/** The election as the orchestrator reads it: who coordinates which term. */
class FakeElection extends EventEmitter<{ change: [] }> {
  term = 3
  coordinator: string | null = null
  get isCoordinator (): boolean {
    return this.coordinator === 'self'
  }
}

type Handler = (value: DecisionMessage, from: { toString: () => string }) => void

/** An orchestrator on node `self`, over a real table and work registry, with fakes that remember what they were asked. */
function orchestrator (t: { teardown: (fn: () => unknown) => void }, configured: WorkItem[] = []) {
  const membership = new Membership({
    self: { peerId: 'self', name: 'self', state: 'alive', role: 'member', addrs: [], lastSeen: 0, health: null },
    options: OPTIONS
  })
  const election = new FakeElection()
  const work = new WorkRegistry({ selfId: 'self', configured, accepts: { sources: [], maxModelBytes: 0, credentials: [] } })
  const handlers = new Map<string, Handler>()
  const published: Array<{ topic: string, value: DecisionMessage }> = []
  const protocols: string[] = []
  const mesh = {
    peerId: { toString: () => 'self' },
    node: {
      handle: async (protocol: string) => { protocols.push(protocol) },
      unhandle: async (protocol: string) => { protocols.splice(protocols.indexOf(protocol), 1) }
    },
    subscribe: (codec: { topic: string }, handler: Handler) => { handlers.set(codec.topic, handler) },
    unsubscribe: (codec: { topic: string }, handler: Handler) => { if (handlers.get(codec.topic) === handler) handlers.delete(codec.topic) },
    publish: async (codec: { topic: string }, value: DecisionMessage) => { published.push({ topic: codec.topic, value }) }
  }
  const decided: Array<{ id: string, target: string, action: string, workId: string, coordinator: string }> = []
  const outcomes: Array<[string, string, string]> = []
  const records = {
    recordDecision: (d: { id: string, target: string, action: string, workId: string, coordinator: string }) => { decided.push({ id: d.id, target: d.target, action: d.action, workId: d.workId, coordinator: d.coordinator }) },
    recordOutcome: (id: string, outcome: string, detail: string) => { outcomes.push([id, outcome, detail]) }
  }
  const bus = new MemberBus()
  const claims: Array<[string, number, string]> = []
  bus.on('claim', (peer, term, topic) => { claims.push([peer, term, topic]) })
  const metrics = new MetricsStore()
  const orchestrator = new Orchestrator({
    mesh: mesh as never,
    election: election as never,
    bus,
    membership,
    work,
    records: records as never,
    metrics,
    log: createLogger('silent'),
    evaluateIntervalMs: 60_000,
    maxCpuPct: 80,
    orphanAfterMs: 60_000,
    modelBytes: () => undefined
  })
  let started = false
  t.teardown(async () => { if (started) await orchestrator.stop() })
  return {
    orchestrator,
    start: async () => { started = true; await orchestrator.start() },
    membership,
    election,
    work,
    handlers,
    published,
    protocols,
    decided,
    outcomes,
    claims,
    metrics,
    /** A decision message from `from`, as the mesh hands it over. */
    receive: (message: DecisionMessage, from: string) => { handlers.get(decisionCodec.topic)?.(message, { toString: () => from }) }
  }
}

const decision = (fields: Partial<Decision>): Decision => ({
  v: 1, type: 'decision', id: '3-aaaa', term: 3, target: 'self', action: 'stop', work: item('w1'), home: 'self', reason: 'a test', at: 1, seq: 1, ...fields
})

t.test('the coordinator places a member\'s work at its home, publishes the decision once, and takes the result from its target only', async (t) => {
  const o = orchestrator(t)
  o.election.coordinator = 'self'
  o.membership.observeBeacon('home', sampleBeacon({ name: 'home', work: [item('w1')], running: [], cpus: 4, cpuPct: 5, memTotalBytes: 8 * GiB, memUsedBytes: GiB }))
  const response = await o.orchestrator.evaluate()
  t.match(response, { v: 1, term: 3, coordinator: 'self', decisions: [{ target: 'home', action: 'run', workId: 'w1' }] })
  const id = response.decisions[0]?.id
  t.match(o.published, [{ topic: TOPICS.optimizationDecisions, value: { type: 'decision', id, term: 3, target: 'home', action: 'run', home: 'home', seq: 1, work: item('w1') } }])
  t.same(o.decided, [{ id, target: 'home', action: 'run', workId: 'w1', coordinator: 'self' }])
  t.same((await o.orchestrator.evaluate()).decisions, [], 'decided again at once: not repeated (its backoff)')
  t.equal(o.published.length, 1)
  t.equal(o.metrics.get(EVALUATIONS_METRIC), 2)

  await o.start()
  o.receive({ v: 1, type: 'result', id: id as string, term: 3, outcome: 'applied', detail: 'started', at: 5 }, 'elsewhere')
  t.same(o.metrics.series(REJECTED_METRIC), { [`not-target/${TOPICS.optimizationDecisions}`]: 1 }, 'a result from another member is refused')
  o.receive({ v: 1, type: 'result', id: id as string, term: 3, outcome: 'applied', detail: 'started', at: 5 }, 'home')
  t.same(o.outcomes, [[id, 'applied', 'started']])
})

t.test('a membership change has the coordinator place work within moments; a member does not', async (t) => {
  const o = orchestrator(t)
  await o.start()
  o.membership.observeBeacon('home', sampleBeacon({ name: 'home' }))
  await new Promise((resolve) => setTimeout(resolve, 250))
  t.equal(o.metrics.get(EVALUATIONS_METRIC), 0, 'not the coordinator: no placement')
  o.election.coordinator = 'self'
  o.membership.observeBeacon('other', sampleBeacon({ name: 'other' }))
  t.equal(await eventually(() => o.metrics.get(EVALUATIONS_METRIC), 1, { timeoutMs: 2_000, intervalMs: 10 }), 1)
})

t.test('a member applies the decisions of the current coordinator and reports; a newer term goes to the election as a claim', async (t) => {
  const o = orchestrator(t, [item('w1')])
  o.work.start()
  o.election.coordinator = 'coord'
  await o.start()
  o.receive(decision({ id: '3-stop' }), 'coord')
  t.same(o.work.runningIds(), [], 'its own work stopped, as decided')
  t.match(o.published, [{ topic: TOPICS.optimizationDecisions, value: { type: 'result', id: '3-stop', term: 3, outcome: 'applied', detail: 'stopped' } }])
  t.same(o.outcomes.map(([id, outcome]) => [id, outcome]), [['3-stop', 'applied']])

  o.receive(decision({ id: '3-stop' }), 'coord')
  t.equal(o.published.length, 1, 'the same decision again: not applied, not answered')

  o.receive(decision({ id: '3-rogue' }), 'rogue')
  t.match(o.published.at(-1), { value: { type: 'result', id: '3-rogue', outcome: 'stale', detail: 'not from the coordinator of term 3' } })

  o.receive(decision({ id: '5-new', term: 5 }), 'coord')
  t.same(o.claims, [['coord', 5, TOPICS.optimizationDecisions]], 'a decision of a term we have not heard of is its sender\'s claim')

  o.receive(decision({ id: '3-other', target: 'other' }), 'coord')
  t.equal(o.published.length, 3, 'a decision for another node is none of ours')
  t.same(o.metrics.series(DECISIONS_METRIC), { applied: 1, stale: 2 })
  t.same(o.metrics.series(REJECTED_METRIC), { [`replayed/${TOPICS.optimizationDecisions}`]: 1, [`stale-term/${TOPICS.optimizationDecisions}`]: 2 })
})

t.test('decisions are read and optimize requests served from start to stop only', async (t) => {
  const o = orchestrator(t)
  t.same({ topics: [...o.handlers.keys()], protocols: o.protocols }, { topics: [], protocols: [] }, 'built, it reads nothing')
  await o.start()
  t.same({ topics: [...o.handlers.keys()], protocols: o.protocols }, { topics: [TOPICS.optimizationDecisions], protocols: [OPTIMIZE_PROTOCOL] })
  t.same([o.membership.listenerCount('change'), o.membership.listenerCount('reap'), o.election.listenerCount('change'), o.work.listenerCount('change')], [2, 1, 1, 1])
  await t.rejects(o.orchestrator.optimize(), { code: 'ERR_NO_COORDINATOR', message: /no coordinator in term 3 yet/ })
  await o.orchestrator.stop()
  t.same({ topics: [...o.handlers.keys()], protocols: o.protocols }, { topics: [], protocols: [] })
  t.same([o.membership.listenerCount('change'), o.membership.listenerCount('reap'), o.election.listenerCount('change'), o.work.listenerCount('change')], [0, 0, 0, 0])
  await t.rejects(o.orchestrator.evaluate(), { code: 'ERR_NO_COORDINATOR', message: 'this node is not the coordinator' })
})
