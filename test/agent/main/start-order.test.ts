import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { Agent } from '../../../agent/main/agent.ts'
import { loadConfig } from '../../../agent/config/config.ts'
import { createLogger } from '../../../common/logger.ts'
import { tempDir, writeSwarmKey } from '../../helpers/agents.ts'

const ROOT = join(import.meta.dirname, '../../..')

/**
 * Every part that uses the MemberBus, by its name in the agent's lifecycle, and the file where it does. The
 * runtime's is its onCompiled callback, wired in the composition root.
 */
const BUS_USERS: Record<string, string> = {
  runtime: 'agent/main/agent.ts',
  election: 'agent/coordination/election-service.ts',
  orchestrator: 'agent/coordination/orchestrator.ts',
  'member sync': 'agent/mesh/member-sync.ts',
  prober: 'agent/membership/prober.ts',
  membership: 'agent/membership/membership-service.ts',
  health: 'agent/membership/health-reporter.ts',
  'health history': 'agent/store/health-history.ts'
}

/** `bus.on('event'` and `bus.emit('event'` in a source file, as [verb, event] pairs. */
const busCalls = (src: string): Array<['on' | 'emit', string]> =>
  [...src.matchAll(/\bbus\.(on|emit)\('([\w-]+)'/g)].map((m) => [m[1] as 'on' | 'emit', m[2]!])

t.test('the table of bus users names every file that listens to or emits on the bus', async (t) => {
  const files = ['agent', 'common', 'media', 'runtime', 'protocols', 'identity']
    .flatMap((dir) => readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).map((f) => join(dir, f)))
  const users = files.filter((f) => busCalls(readFileSync(join(ROOT, f), 'utf8')).length > 0).sort()
  t.same(users, Object.values(BUS_USERS).sort())
})

t.test('every MemberBus listener starts before every emitter of its events (and so stops after it)', async (t) => {
  const dir = tempDir(t)
  const config = loadConfig({ env: {}, flags: { 'data-dir': dir, 'no-mdns': true, listen: ['/ip4/127.0.0.1/tcp/0'], 'swarm-key': writeSwarmKey(join(dir, 'swarm.key')) } })
  const agent = await Agent.create({ config, log: createLogger('silent') })
  const order = agent.startOrder
  t.same(Object.keys(BUS_USERS).filter((name) => !order.includes(name)), [], 'every bus user is in the lifecycle')

  const listeners = new Map<string, string[]>()
  const emitters = new Map<string, string[]>()
  for (const [name, file] of Object.entries(BUS_USERS)) {
    for (const [verb, event] of busCalls(readFileSync(join(ROOT, file), 'utf8'))) {
      const map = verb === 'on' ? listeners : emitters
      map.set(event, [...new Set([...map.get(event) ?? [], name])])
    }
  }
  t.same([...listeners.keys()].sort(), ['beacon', 'claim', 'member-met', 'news', 'own-beacon', 'probe-now', 'record-asked', 'record-wanted'], 'every event has its listener')
  const late: string[] = []
  for (const [event, names] of listeners) {
    // The exceptions are asks of the reporter, which starts last (it sends beacons, and membership hears our own):
    // news asks for an early beacon, member-met and record-asked for our record, and its first beacon, sent at
    // its start, carries both; record-wanted (ask a member for its record) is asked again at that member's next pulse a
    // second later (MemberBeacons' ASK_RETRY_MS), so one heard before the start is late, not lost.
    if (event === 'news' || event === 'member-met' || event === 'record-asked' || event === 'record-wanted') {
      t.same(names, ['health'], `${event} is heard by the health reporter alone`)
      continue
    }
    for (const listener of names) {
      for (const emitter of emitters.get(event) ?? []) {
        if (order.indexOf(listener) > order.indexOf(emitter)) late.push(`${listener} hears ${event} but starts after ${emitter}, which emits it`)
      }
    }
  }
  t.same(late, [], 'no event is emitted before its listeners start')
  t.same(order.filter((name) => ['work', 'election', 'orchestrator', 'prober', 'membership', 'health'].includes(name)),
    ['work', 'election', 'orchestrator', 'prober', 'membership', 'health'], 'decisions are read before any beacon is heard or sent')
})
