import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import t from 'tap'
import { apiGet } from '../../agent/cli/client.ts'
import type { DeadLetterView } from '../../agent/ingest/sensor-store.ts'
import { ingest, sensors, startAgent, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'
import type { AgentProcess } from '../helpers/agents.ts'
import { startMosquitto } from '../helpers/mosquitto.ts'

// Real Mosquitto, a real agent process, publishers in other processes (mosquitto_pub, QoS 1).

const MAX_PAYLOAD = 1024

function pub (port: number, topic: string, message: string): void {
  execFileSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-V', 'mqttv5', '-t', topic, '-s'], { input: message })
}

const deadLetters = async (a: AgentProcess) => await apiGet<DeadLetterView[]>(a.socketPath, '/api/v1/ingest/dead-letters')

async function goodCount (a: AgentProcess, sensor: string): Promise<number> {
  return (await sensors(a)).find((s) => s.sensor === sensor)?.count ?? 0
}

/** Connected is not yet subscribed: publishes probes until one is stored (what is published before is lost). */
async function subscribed (a: AgentProcess, port: number, topic: string): Promise<void> {
  await waitFor('the agent to subscribe', async () => {
    if (await goodCount(a, topic) > 0) return true
    pub(port, topic, '0')
    return false
  }, 15_000, 300)
}

t.test('poison readings go to the dead letter with their reasons; the stream goes on and everything is acknowledged', async (t) => {
  const broker = await startMosquitto()
  t.teardown(broker.close)
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const start = async () => await startAgent({
    root,
    name: 'ingest-poison',
    swarmKeyFile,
    logLevel: 'info',
    config: { mqtt: { url: broker.url, topics: ['poison/#', 'good/#'], maxPayloadBytes: MAX_PAYLOAD, batch: { maxMessages: 50, maxDelayMs: 20 } } }
  })
  let agent = await start()
  t.teardown(() => stopAgents([agent]))
  await subscribed(agent, broker.port, 'good/probe')
  const before = await ingest(agent)

  const now = Date.now()
  const poisons: Array<[topic: string, payload: string, reason: string]> = [
    // The message: an infinite time used to fail every commit of its batch, for good.
    ['poison/senml-bt', '[{"n":"t","v":1,"bt":1e308}]', 'non-finite'],
    ['poison/json-1e400', '{"value":1e400}', 'non-finite'],
    ['poison/plain-1e400', '1e400', 'non-finite'],
    ['poison/senml-v-1e400', '[{"n":"t","v":1e400}]', 'non-finite'],
    ['poison/ts-1e400', '{"value":1,"ts":1e400}', 'non-finite'],
    ['poison/senml-t-1e400', '[{"n":"t","v":1,"t":1e400}]', 'non-finite'],
    ['poison/senml-bt-plus-t', '[{"n":"t","v":1,"bt":1.7e308,"t":1.7e308}]', 'non-finite'],
    // Finite values whose rollup sum would overflow (Infinity, and then Infinity − Infinity = NaN).
    ['poison/sum-overflow', '[{"n":"t","v":1.7e308},{"n":"t","v":1.7e308},{"n":"t","v":-1.7e308}]', 'out-of-range'],
    ['poison/future-ms', `{"value":1,"ts":${now + 86_400_000}}`, 'time-in-future'],
    ['poison/future-iso', `{"value":1,"ts":"${new Date(now + 3_600_000).toISOString()}"}`, 'time-in-future'],
    // A relative SenML time (under 2^28 s) six years ahead.
    ['poison/senml-relative', '[{"n":"t","v":1,"t":200000000}]', 'time-in-future'],
    ['poison/senml-bt-future', '[{"n":"t","v":1,"bt":1e300}]', 'time-in-future'],
    ['poison/pre-2000-iso', '{"value":1,"ts":"1999-12-31T23:59:59Z"}', 'time-too-old'],
    ['poison/pre-2000-s', '{"value":1,"ts":946684799}', 'time-too-old'],
    ['poison/senml-pre-2000', '[{"n":"t","v":1,"bt":900000000}]', 'time-too-old']
  ]
  for (const [topic, payload] of poisons) pub(broker.port, topic, payload)
  for (let i = 1; i <= 5; i++) pub(broker.port, 'good/after', String(i))

  t.equal(await waitFor('the 5 good readings after the poison', async () => (await goodCount(agent, 'good/after')) === 5 && 5, 15_000), 5,
    'every good message after the poison is stored')
  const letters = (await deadLetters(agent)).filter((l) => l.topic.startsWith('poison/')).reverse()
  t.same(letters.map((l) => [l.topic, l.reason]), poisons.map(([topic, , reason]) => [topic, reason]), 'each poison is in the dead letter, with its reason')
  t.match(letters[0], { size: poisons[0]?.[1].length, payload: poisons[0]?.[1], detail: /not a finite number|overflows/ }, 'with its payload and what was wrong')
  const after = await ingest(agent)
  t.same({ received: after.received - before.received, stored: after.stored - before.stored, rejected: after.rejected - before.rejected, deadLetter: after.deadLetter - before.deadLetter },
    { received: poisons.length + 5, stored: 5, rejected: poisons.length, deadLetter: poisons.length }, 'the totals count each refusal')

  // Acknowledged: after a restart Mosquitto re-sends nothing. It delivers a session's queue in order, so once
  // a message published after the restart is stored, anything re-sent would have been received before it.
  await stopAgents([agent])
  agent = await start()
  await waitFor('the agent to connect again', async () => (await ingest(agent)).connected, 10_000)
  pub(broker.port, 'good/sentinel', '7')
  t.equal(await waitFor('the sentinel', async () => (await goodCount(agent, 'good/sentinel')) === 1 && 1, 15_000), 1)
  const restarted = await ingest(agent)
  t.equal(restarted.received - after.received, 1, 'nothing was re-delivered: every poison and good message had been acknowledged')
  t.equal(await goodCount(agent, 'good/after'), 5, 'no good message stored twice')
})

t.test('a message over the session\'s maximum packet size is dropped by the broker, and the session stays up', async (t) => {
  const broker = await startMosquitto()
  t.teardown(broker.close)
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const agent = await startAgent({
    root,
    name: 'ingest-packet',
    swarmKeyFile,
    logLevel: 'info',
    config: { mqtt: { url: broker.url, topics: ['big/#'], maxPayloadBytes: MAX_PAYLOAD, batch: { maxMessages: 50, maxDelayMs: 20 } } }
  })
  t.teardown(() => stopAgents([agent]))
  await subscribed(agent, broker.port, 'big/probe')
  const before = await ingest(agent)
  pub(broker.port, 'big/oversize', 'x'.repeat(2 * MAX_PAYLOAD)) // over maxPayloadBytes, under the packet limit
  pub(broker.port, 'big/huge', 'x'.repeat(1024 * 1024)) // over the packet limit the agent announced in CONNECT
  pub(broker.port, 'big/good', '1')
  t.equal(await waitFor('the good message', async () => (await goodCount(agent, 'big/good')) === 1 && 1, 15_000), 1)
  const letters = (await deadLetters(agent)).filter((l) => l.topic.startsWith('big/'))
  t.same(letters.map((l) => [l.topic, l.reason, l.size, l.payload.length]), [['big/oversize', 'oversize', 2 * MAX_PAYLOAD, 1024]],
    'an oversize payload reaches the dead letter (its first KiB); the huge one never reached the agent')
  const after = await ingest(agent)
  t.same({ received: after.received - before.received, connected: after.connected }, { received: 2, connected: true })
  t.notMatch(agent.output(), /reconnecting|connection lost/, 'the session was never dropped')
})

t.test('a flood of made-up sensor names stops at mqtt.maxSensors; known sensors go on being stored', async (t) => {
  const broker = await startMosquitto()
  t.teardown(broker.close)
  const root = tempDir(t)
  const agent = await startAgent({
    root,
    name: 'ingest-flood',
    swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')),
    logLevel: 'info',
    config: { mqtt: { url: broker.url, topics: ['flood/#'], maxSensors: 3, batch: { maxMessages: 50, maxDelayMs: 20 } } }
  })
  t.teardown(() => stopAgents([agent]))
  await subscribed(agent, broker.port, 'flood/probe')
  pub(broker.port, 'flood/probe', '1')
  // Seen twice, none of these is forgotten to make room (a name seen only once would be).
  const probes = await waitFor('the probe seen twice', async () => { const n = await goodCount(agent, 'flood/probe'); return n >= 2 && n })
  for (let i = 0; i < 5; i++) pub(broker.port, `flood/made-up-${i}`, `[{"v":${i}},{"v":${i}}]`)
  pub(broker.port, 'flood/probe', '7')
  // Messages are ingested in order: once the probe after the flood is stored, the flood has been read.
  await waitFor('the probe after the flood', async () => await goodCount(agent, 'flood/probe') > probes)
  t.same((await sensors(agent)).map((s) => s.sensor).sort(), ['flood/made-up-0', 'flood/made-up-1', 'flood/probe'], 'three sensors, no more')
  t.same((await deadLetters(agent)).map((d) => [d.topic, d.reason]).sort(),
    [['flood/made-up-2', 'too-many-sensors'], ['flood/made-up-3', 'too-many-sensors'], ['flood/made-up-4', 'too-many-sensors']])
})
