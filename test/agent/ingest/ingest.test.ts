import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import t from 'tap'
import { apiText } from '../../../agent/cli/client.ts'
import { ingest, publishReadings, sensors, startAgent, stopAgents, tempDir, waitFor, writeSwarmKey } from '../../helpers/agents.ts'
import type { AgentProcess } from '../../helpers/agents.ts'
import { startMosquitto } from '../../helpers/mosquitto.ts'

// Real Mosquitto, real agent processes, real publishers in other processes.

const BATCH = 500
const RECEIVE_MAXIMUM = 1_000
/** The publisher's own window of unacknowledged messages (scripts/sensor-publisher.ts). */
const PUBLISHER_WINDOW = 1_000

function mqttConfig (url: string, extra: Record<string, unknown> = {}) {
  return {
    mqtt: {
      url,
      topics: ['shapes/#', 'bad/#', 'burst/#'],
      topicParsing: [{ topic: 'shapes/+/+', levels: '_/sensor/metric' }],
      valueFields: ['value', 'temperature', 'humidity'],
      maxPayloadBytes: 1024,
      batch: { maxMessages: BATCH, maxDelayMs: 20 },
      receiveMaximum: RECEIVE_MAXIMUM,
      ...extra
    }
  }
}

function db (a: AgentProcess) {
  const handle = new Database(join(a.dataDir, 'noodle.db'), { readonly: true })
  return handle
}

function query<T> (a: AgentProcess, sql: string, ...params: unknown[]): T[] {
  const handle = db(a)
  try {
    return handle.prepare(sql).all(...params) as T[]
  } finally {
    handle.close()
  }
}

function pub (port: number, topic: string, message: string | Buffer): void {
  execFileSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-t', topic, ...(typeof message === 'string' ? ['-m', message] : ['-s'])],
    typeof message === 'string' ? {} : { input: message })
}

/** Distinct values and rows stored for a topic's sensor. */
function landed (a: AgentProcess, sensor: string): { rows: number, uniq: number, min: number, max: number } {
  return query<{ rows: number, uniq: number, min: number, max: number }>(a,
    'SELECT count(*) AS rows, count(DISTINCT value) AS uniq, min(value) AS min, max(value) AS max FROM readings WHERE sensor = ?', sensor)[0] as never
}

t.test('ingest against Mosquitto', async (t) => {
  const broker = await startMosquitto()
  t.teardown(broker.close)
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const start = () => startAgent({ root, name: 'ingest-1', swarmKeyFile, logLevel: 'info', config: mqttConfig(broker.url) })
  let agent = await start()
  t.teardown(() => stopAgents([agent]))
  await waitFor('the agent to connect to the broker', async () => (await ingest(agent)).connected, 10_000)

  await t.test('every accepted shape lands with its sensor, metric, value and time', async (t) => {
    // Times from the last hour (an hour's start, so both SenML readings share one hour rollup): retention keeps them.
    const bt = Math.floor(Date.now() / 3_600_000) * 3600 - 3600
    const iso = new Date((bt + 120) * 1000).toISOString()
    pub(broker.port, 'shapes/kitchen/temperature', '21.5')
    pub(broker.port, 'shapes/hall/temperature', `{"value": 19, "ts": ${bt}}`)
    pub(broker.port, 'shapes/greenhouse/env', `{"temperature": 26.5, "humidity": 71, "ts": "${iso}"}`)
    pub(broker.port, 'shapes/freezer/any', `[{"bn": "urn:dev:freezer-1:", "bt": ${bt}, "n": "temp", "v": -18.5}, {"n": "temp", "t": 60, "v": -18}]`)
    const rows = await waitFor('6 readings', () => {
      const r = query<{ sensor: string, metric: string, ts: number, value: number }>(agent,
        "SELECT sensor, metric, ts, value FROM readings WHERE sensor IN ('kitchen', 'hall', 'greenhouse', 'freezer') ORDER BY sensor, metric, ts")
      return r.length === 6 && r
    }, 10_000)
    const kitchen = rows.find((r) => r.sensor === 'kitchen')
    t.ok(kitchen !== undefined && Math.abs(kitchen.ts - Date.now()) < 60_000, 'a bare number is stamped on arrival')
    t.same(rows.filter((r) => r.sensor !== 'kitchen'), [
      { sensor: 'freezer', metric: 'urn:dev:freezer-1:temp', ts: bt * 1000, value: -18.5 },
      { sensor: 'freezer', metric: 'urn:dev:freezer-1:temp', ts: (bt + 60) * 1000, value: -18 },
      { sensor: 'greenhouse', metric: 'humidity', ts: Date.parse(iso), value: 71 },
      { sensor: 'greenhouse', metric: 'temperature', ts: Date.parse(iso), value: 26.5 },
      { sensor: 'hall', metric: 'temperature', ts: bt * 1000, value: 19 }
    ], 'SenML: the topic names the sensor, bn + n the metric')
    const listed = await sensors(agent)
    const freezer = listed.find((s) => s.sensor === 'freezer')
    t.equal(freezer?.value, -18, 'noodle sensors shows the latest value')
    t.equal(freezer?.count, 2)
    t.equal(freezer?.ts, new Date((bt + 60) * 1000).toISOString())
    const rollup = query<{ count: number, min_value: number, max_value: number, last: number }>(agent,
      "SELECT count, min_value, max_value, last FROM rollups WHERE sensor = 'freezer' AND period = 3600000")
    t.same(rollup, [{ count: 2, min_value: -18.5, max_value: -18, last: -18 }], 'the hour rollup')
  })

  await t.test('each bad input lands in the dead letter with its reason, and the stream goes on', async (t) => {
    const before = await ingest(agent)
    const bad: Array<[string, string | Buffer]> = [
      ['oversize', 'x'.repeat(2000)],
      ['invalid-utf8', Buffer.from([0x31, 0xff, 0xfe])],
      ['bad-json', '{"value": 1'],
      ['non-finite', 'NaN'],
      ['bad-time', '{"value": 1, "ts": "soon"}'],
      ['bad-senml', '[{"n": "x", "v": "1"}]'],
      ['unknown-shape', 'hello']
    ]
    for (const [reason, payload] of bad) pub(broker.port, `bad/${reason}`, payload)
    pub(broker.port, 'shapes/after/bad', '42')
    const letters = await waitFor('7 dead letters', () => {
      const r = query<{ topic: string, reason: string, size: number, bytes: Buffer }>(agent, "SELECT topic, reason, size, bytes FROM dead_letters WHERE topic LIKE 'bad/%' ORDER BY id")
      return r.length === 7 && r
    }, 10_000)
    t.same(letters.map((l) => [l.topic, l.reason]), bad.map(([reason]) => [`bad/${reason}`, reason]))
    const oversize = letters[0]
    t.equal(oversize?.size, 2000, 'the full size is kept…')
    t.equal(oversize?.bytes.length, 1024, '…and the first KiB of the bytes')
    t.same(letters[1]?.bytes, Buffer.from([0x31, 0xff, 0xfe]), 'the bytes as they came')
    await waitFor('the good message after them', () => landed(agent, 'after').rows === 1, 10_000)
    const after = await ingest(agent)
    t.equal(after.rejected - before.rejected, 7, 'rejected counts them')
    t.equal(after.deadLetter - before.deadLetter, 7)
    t.equal(after.received - before.received, 8)
    t.same(Object.keys(after), ['received', 'stored', 'rejected', 'deadLetter', 'connected', 'broker', 'embeddedBroker'], 'noodle ingest prints exactly these fields')
  })

  await t.test('a burst of 100k QoS 1 messages from another process lands exactly once', async (t) => {
    const burst = publishReadings({ url: broker.url, topic: 'burst/a', count: 100_000 })
    await burst.done
    const result = await waitFor('100k readings', () => { const l = landed(agent, 'burst/a'); return l.rows >= 100_000 && l }, 60_000)
    t.same(result, { rows: 100_000, uniq: 100_000, min: 0, max: 99_999 })
  })

  await t.test('SIGKILL mid-burst, restart: every message is stored, duplicates only from the unacknowledged batch', async (t) => {
    const count = 60_000
    const burst = publishReadings({ url: broker.url, topic: 'burst/kill', count })
    await waitFor('some of the burst to land', () => landed(agent, 'burst/kill').rows > 5_000, 30_000)
    agent.child.kill('SIGKILL')
    await agent.exited
    const atKill = landed(agent, 'burst/kill').rows
    await burst.done // the broker queues the rest for the agent's persistent session
    agent = await start()
    const result = await waitFor('every message', () => { const l = landed(agent, 'burst/kill'); return l.uniq === count && l }, 60_000)
    t.ok(atKill < count, `killed part-way (${atKill} stored)`)
    t.equal(result.uniq, count, 'every message published is stored')
    t.equal(result.min, 0)
    t.equal(result.max, count - 1)
    t.ok(result.rows - count <= BATCH, `duplicates (${result.rows - count}) are at most one batch (${BATCH})`)
    const totals = await ingest(agent)
    t.ok(totals.stored >= 100_000 + count, 'the totals survived the restart')
  })
})

t.test('a broker restart mid-stream loses nothing', async (t) => {
  const broker = await startMosquitto()
  t.teardown(broker.close)
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const agent = await startAgent({ root, name: 'ingest-2', swarmKeyFile, logLevel: 'info', config: mqttConfig(broker.url) })
  t.teardown(() => stopAgents([agent]))
  await waitFor('the agent to connect', async () => (await ingest(agent)).connected, 10_000)
  const count = 40_000
  // A fixed client id: the publisher's own session (and its unacknowledged messages) outlives the restart.
  const burst = publishReadings({ url: broker.url, topic: 'burst/restart', count, clientId: 'restart-publisher' })
  await waitFor('some of the stream to land', () => landed(agent, 'burst/restart').rows > 5_000, 30_000)
  await broker.stop()
  // The broker's goodbye may wait behind a commit on the agent's event loop: noticed within moments, not at once.
  t.equal(await waitFor('the agent to notice the broker is gone', async () => (await ingest(agent)).connected === false, 5_000), true, 'the agent notices the broker is gone')
  await broker.start()
  const { connects, resent } = await burst.done
  const result = await waitFor('every message', () => { const l = landed(agent, 'burst/restart'); return l.uniq === count && l }, 60_000)
  t.equal(result.uniq, count, 'every message published is stored')
  // At-least-once on both legs: a row is stored twice only when the broker sent its message again (flagged DUP;
  // the agent counts those) or the publisher did (it counts the PUBLISH packets it sent again). The broker's
  // window is not a bound: Mosquitto 2.0.11 (Debian 12) overruns the receive maximum (its #2301, fixed in
  // 2.0.13), and 2899 messages were seen unacknowledged at its restart against our 1000.
  const agentLost = agent.output().split('\n').filter((line) => line.includes('mqtt: connection lost')).length
  const redelivered = Number(/^noodle_mqtt_redelivered_total (\d+)$/m.exec(await apiText(agent.socketPath, '/metrics'))?.[1])
  t.ok(agentLost >= 1 && connects >= 2 && resent <= (connects - 1) * PUBLISHER_WINDOW,
    `both sides reconnected (agent lost ${agentLost} connections; the publisher connected ${connects} times and resent ${resent})`)
  t.ok(result.rows - count <= redelivered + resent,
    `duplicates (${result.rows - count}) are at most what the broker sent again (${redelivered}) plus what the publisher resent (${resent})`)
  t.ok((await ingest(agent)).connected, 'reconnected')
})
