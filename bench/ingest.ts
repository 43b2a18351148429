#!/usr/bin/env node
/**
 * `npm run bench:ingest`: MQTT ingest throughput against Mosquitto on loopback.
 *
 * The publisher is always Mosquitto's C client (`mosquitto_pub -l`), in its own process. The baseline subscriber
 * is Mosquitto's C client too (`mosquitto_sub`), measured in the same run: the ratio is Noodle's agent (parse,
 * store in SQLite, acknowledge after commit) against a subscriber that only reads. Times run from the first
 * publish to the last message stored (the agent) or read (mosquitto_sub); the agent's RSS is sampled under load.
 *
 *   node bench/ingest.ts [--messages 200000] [--trials 3]
 */
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ingest, startAgent, stopAgents, tempDir, waitFor, writeSwarmKey } from '../scripts/agents.ts'
import type { AgentProcess } from '../scripts/agents.ts'
import { startMosquitto } from '../scripts/mosquitto.ts'
import { commandExists, percentile } from './lib.ts'

const { values } = parseArgs({ options: { messages: { type: 'string', default: '200000' }, trials: { type: 'string', default: '3' }, qos: { type: 'string', default: '0,1' } } })
const N = Number(values.messages)
const TRIALS = Number(values.trials)
for (const cmd of ['mosquitto', 'mosquitto_pub', 'mosquitto_sub']) {
  if (!commandExists(cmd)) throw new Error(`${cmd} is needed (Debian packages mosquitto and mosquitto-clients)`)
}

const lines = Array.from({ length: N }, (_, i) => String(i)).join('\n') + '\n'

/**
 * Runs `mosquitto_pub -l` with all N lines, keeping its stdin open until `until` resolves: at EOF it exits
 * without waiting for its QoS 1 messages in flight, which would lose them.
 */
function publish (port: number, topic: string, qos: number, until: Promise<unknown>): void {
  const pub = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-t', topic, '-q', String(qos), '-l'], { stdio: ['pipe', 'ignore', 'inherit'] })
  pub.stdin.write(lines)
  void until.finally(() => { pub.stdin.end() })
}

async function cPair (port: number, qos: number, trial: number): Promise<number> {
  const topic = `bench/c/${qos}/${trial}`
  const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-t', topic, '-q', String(qos), '-C', String(N)], { stdio: ['ignore', 'ignore', 'inherit'] })
  await new Promise((resolve) => setTimeout(resolve, 300))
  const exited = new Promise((resolve) => sub.once('exit', resolve))
  const begun = performance.now()
  publish(port, topic, qos, exited)
  await exited
  return N / ((performance.now() - begun) / 1000)
}

function rssMb (pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? 0 : Number(m[1]) / 1024
}

async function agentRun (agent: AgentProcess, port: number, qos: number, trial: number): Promise<{ perS: number, lost: number, rssMb: number }> {
  const topic = `bench/agent/${qos}/${trial}`
  const before = (await ingest(agent)).stored
  let stored = before
  let peakRss = 0
  const begun = performance.now()
  let finishedAt = 0
  const done = (async () => {
    // Done when all N are stored, or when nothing more arrives for 3 s (QoS 0 may lose some: counted).
    let lastChange = performance.now()
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 20))
      const now = (await ingest(agent)).stored
      peakRss = Math.max(peakRss, rssMb(agent.child.pid as number))
      if (now !== stored) { stored = now; lastChange = performance.now(); finishedAt = lastChange }
      if (stored - before >= N || performance.now() - lastChange > 3_000) return
    }
  })()
  publish(port, topic, qos, done)
  await done
  return { perS: (stored - before) / ((finishedAt - begun) / 1000), lost: N - (stored - before), rssMb: peakRss }
}

const broker = await startMosquitto()
const t = { teardown: (fn: () => void) => { process.once('exit', fn) } }
const root = tempDir(t)
const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
const fmt = (x: number) => `${Math.round(x / 100) / 10}k`
process.stdout.write(`ingest benchmark: ${N} messages, ${TRIALS} trials, mosquitto_pub -l → Mosquitto 2 on loopback → subscriber\n`)
try {
  for (const qos of values.qos.split(',').map(Number)) {
    const agent = await startAgent({ root, name: `bench-q${qos}`, swarmKeyFile, logLevel: 'warn', config: { mqtt: { url: broker.url, topics: ['bench/agent/#'], qos, ...JSON.parse(process.env.BENCH_MQTT ?? '{}') } } })
    await waitFor('the agent to connect', async () => (await ingest(agent)).connected, 10_000)
    const c: number[] = []
    const a: Array<{ perS: number, lost: number, rssMb: number }> = []
    for (let i = 0; i < TRIALS; i++) {
      c.push(await cPair(broker.port, qos, i))
      a.push(await agentRun(agent, broker.port, qos, i))
    }
    await stopAgents([agent])
    const cMed = percentile(c, 50)
    const aMed = percentile(a.map((r) => r.perS), 50)
    process.stdout.write(`QoS ${qos}  C pair (mosquitto_sub)        ${fmt(cMed)} msg/s read   (trials ${c.map(fmt).join(' ')})\n`)
    process.stdout.write(`QoS ${qos}  noodle agent                  ${fmt(aMed)} msg/s stored (trials ${a.map((r) => fmt(r.perS)).join(' ')})` +
      `   lost ${a.reduce((s, r) => s + r.lost, 0)} of ${N * TRIALS}   RSS peak ${Math.max(...a.map((r) => r.rssMb)).toFixed(0)} MB\n`)
    process.stdout.write(`QoS ${qos}  ratio noodle/C pair ×${(aMed / cMed).toFixed(2)}\n`)
  }
} finally {
  await broker.close()
}
