#!/usr/bin/env node
/**
 * `npm run demo`: a 3-agent mesh on this machine. Three agents in separate processes, on loopback, joined by
 * bootstrap address (mDNS stays off: this machine's network is not ours to multicast on). Prints the
 * `noodle nodes` table, then keeps the mesh up for you to poke at until Ctrl-C; `--once` stops after the table.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { formatNodesTable } from '../agent/format.ts'
import { allSee, bootstrapAddr, nodes, startAgent, waitFor, waitForAgreement, writeSwarmKey } from './agents.ts'
import type { AgentProcess } from './agents.ts'

const once = process.argv.includes('--once')
const root = mkdtempSync(join(tmpdir(), 'noodle-demo-'))
const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
const agents: AgentProcess[] = []

async function shutdown (code: number): Promise<never> {
  for (const a of agents) a.child.kill('SIGTERM')
  await Promise.all(agents.map((a) => a.exited))
  rmSync(root, { recursive: true, force: true })
  process.exit(code)
}

try {
  const common = { root, swarmKeyFile, logLevel: 'info' }
  agents.push(await startAgent({ ...common, name: 'demo-1' }))
  const entry = await bootstrapAddr(agents[0] as AgentProcess)
  agents.push(...await Promise.all(['demo-2', 'demo-3'].map((name) => startAgent({ ...common, name, bootstrap: [entry] }))))
  await waitFor('the three agents to see each other', () => allSee(agents, agents, 'alive'), 20_000)
  await waitForAgreement('the three agents to agree on a coordinator', agents)
} catch (err) {
  process.stderr.write(`demo failed: ${(err as Error).message}\n${agents.map((a) => a.output()).join('\n')}`)
  await shutdown(1)
}

const first = agents[0] as AgentProcess
process.stdout.write(`$ noodle nodes --data-dir ${first.dataDir}\n${formatNodesTable(await nodes(first))}\n`)
if (once) await shutdown(0)

const cli = relative(process.cwd(), join(import.meta.dirname, '..', 'bin', 'noodle')) || 'bin/noodle'
process.stdout.write(`The mesh is up. In another terminal, try:
  ${cli} nodes --watch --data-dir ${first.dataDir}
  ${cli} status --json --data-dir ${agents[1]?.dataDir ?? ''}
  kill -TERM ${agents[2]?.child.pid ?? ''}    # demo-3 leaves: it turns "left"
  kill -STOP ${agents[1]?.child.pid ?? ''}    # demo-2 freezes: "suspect", never "dead"; kill -CONT revives it
  kill -KILL ${agents[1]?.child.pid ?? ''}    # demo-2 crashes: "dead" at once (its port refuses)
  ${cli} optimize --data-dir ${first.dataDir}   # ask the coordinator for a fresh placement
Ctrl-C stops the demo and removes ${root}.
`)
process.on('SIGINT', () => { void shutdown(0) })
process.on('SIGTERM', () => { void shutdown(0) })
