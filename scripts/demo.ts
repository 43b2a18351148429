#!/usr/bin/env node
/**
 * `npm run demo`: a 3-agent mesh on this machine. Three agents in separate processes, on loopback, joined by
 * bootstrap address (mDNS stays off: this machine's network is not ours to multicast on). demo-1 runs the
 * embedded MQTT broker, and simulated sensors (another process) publish to it. Prints the `noodle nodes` and
 * `noodle sensors` tables, then keeps the mesh up for you to poke at until Ctrl-C; `--once` stops after them.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { formatNodesTable, formatSensorsTable } from '../agent/format.ts'
import { PUBLISHER, allSee, bootstrapAddr, nodes, sensors, startAgent, waitFor, waitForAgreement, writeSwarmKey } from './agents.ts'
import { freePort } from './mosquitto.ts'
import type { AgentProcess } from './agents.ts'

const once = process.argv.includes('--once')
const root = mkdtempSync(join(tmpdir(), 'noodle-demo-'))
const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
const agents: AgentProcess[] = []
let simulator: ChildProcess | undefined
const mqttPort = await freePort()

async function shutdown (code: number): Promise<never> {
  simulator?.kill('SIGTERM')
  for (const a of agents) a.child.kill('SIGTERM')
  await Promise.all(agents.map((a) => a.exited))
  rmSync(root, { recursive: true, force: true })
  process.exit(code)
}

try {
  const common = { root, swarmKeyFile, logLevel: 'info' }
  // demo-1 ingests what the sensors publish to its embedded broker; topics name sensor and metric.
  agents.push(await startAgent({
    ...common,
    name: 'demo-1',
    config: {
      mqtt: {
        topics: ['sensors/#'],
        topicParsing: [{ topic: 'sensors/+/+', levels: '_/sensor/metric' }, { topic: 'sensors/+', levels: '_/sensor' }],
        valueFields: ['value', 'temperature', 'humidity'],
        embeddedBroker: { host: '127.0.0.1', port: mqttPort }
      }
    }
  }))
  simulator = spawn(process.execPath, [PUBLISHER, '--url', `mqtt://127.0.0.1:${mqttPort}`, '--simulate'], { stdio: 'ignore' })
  const entry = await bootstrapAddr(agents[0] as AgentProcess)
  agents.push(...await Promise.all(['demo-2', 'demo-3'].map((name) => startAgent({ ...common, name, bootstrap: [entry] }))))
  await waitFor('the three agents to see each other', () => allSee(agents, agents, 'alive'), 20_000)
  await waitForAgreement('the three agents to agree on a coordinator', agents)
  await waitFor('a few readings from each simulated sensor', async () => {
    const seen = await sensors(agents[0] as AgentProcess)
    return seen.length >= 4 && seen.every((s) => s.count >= 3)
  }, 20_000)
} catch (err) {
  process.stderr.write(`demo failed: ${(err as Error).message}\n${agents.map((a) => a.output()).join('\n')}`)
  await shutdown(1)
}

const first = agents[0] as AgentProcess
process.stdout.write(`$ noodle nodes --data-dir ${first.dataDir}\n${formatNodesTable(await nodes(first))}\n`)
process.stdout.write(`$ noodle sensors --data-dir ${first.dataDir}\n${formatSensorsTable(await sensors(first))}\n`)
if (once) await shutdown(0)

const cli = relative(process.cwd(), join(import.meta.dirname, '..', 'bin', 'noodle')) || 'bin/noodle'
process.stdout.write(`The mesh is up. In another terminal, try:
  ${cli} nodes --watch --data-dir ${first.dataDir}
  ${cli} status --json --data-dir ${agents[1]?.dataDir ?? ''}
  kill -TERM ${agents[2]?.child.pid ?? ''}    # demo-3 leaves: it turns "left"
  kill -STOP ${agents[1]?.child.pid ?? ''}    # demo-2 freezes: "suspect", never "dead"; kill -CONT revives it
  kill -KILL ${agents[1]?.child.pid ?? ''}    # demo-2 crashes: "dead" at once (its port refuses)
  ${cli} optimize --data-dir ${first.dataDir}   # ask the coordinator for a fresh placement
  ${cli} sensors --watch --data-dir ${first.dataDir}   # the simulated sensors, ingested over MQTT
  mosquitto_pub -p ${mqttPort} -t sensors/desk/co2 -m 612   # publish a reading of your own (or mosquitto_sub -t 'noodle/#' -v)
Ctrl-C stops the demo and removes ${root}.
`)
process.on('SIGINT', () => { void shutdown(0) })
process.on('SIGTERM', () => { void shutdown(0) })
