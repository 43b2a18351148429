#!/usr/bin/env node
/**
 * Where an idle agent's CPU goes. Starts N agents on loopback (agent 0, then the rest given its address), one of
 * them under V8's sampling profiler (`--cpu-prof`), lets the mesh settle, measures every agent's CPU over an idle
 * window (/proc/<pid>/stat), stops the profiled agent cleanly and counts the profile's samples over that window
 * alone: per function, per file and per package. Samples are counted, not weighed by their time deltas: on a busy
 * machine a descheduled process's next sample carries the whole wait. Each entry's share of the busy samples is
 * also shown as a share of the unprofiled agents' mean CPU (the profiled agent pays for the sampling).
 *
 *   node bench/idle-profile.ts [--n 16] [--settle-s 5] [--idle-s 10] [--interval-us 250] [--top 40] [--keep DIR]
 *                              [--config JSON]   (settings for every agent, e.g. '{"health":{"intervalMs":5000}}')
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { apiText } from '../agent/cli/client.ts'
import { allSee, bootstrapAddr, startAgent, stopAgents, waitFor, writeSwarmKey } from '../scripts/agents.ts'
import type { AgentProcess } from '../scripts/agents.ts'

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '16' },
    'settle-s': { type: 'string', default: '5' },
    'idle-s': { type: 'string', default: '10' },
    'interval-us': { type: 'string', default: '250' },
    top: { type: 'string', default: '40' },
    keep: { type: 'string' },
    config: { type: 'string' }
  }
})
const n = Number(values.n)
const settleMs = Number(values['settle-s']) * 1000
const idleMs = Number(values['idle-s']) * 1000
const top = Number(values.top)
const config = values.config == null ? undefined : JSON.parse(values.config) as Record<string, unknown>

interface ProfileNode { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, children?: number[] }
interface Profile { nodes: ProfileNode[], startTime: number, endTime: number, samples: number[], timeDeltas: number[] }

/** Gossipsub's count of received messages by how validation ended (valid, duplicate, invalid …), from /metrics. */
async function validations (agent: AgentProcess): Promise<Map<string, number>> {
  const counts = new Map<string, number>()
  for (const line of (await apiText(agent.socketPath, '/metrics')).split('\n')) {
    const m = /^gossipsub_(?:msg_received_prevalidation_total|pre_validation_(\w+)_total)\{[^}]*\} (\d+)/.exec(line)
    if (m != null) counts.set(m[1] ?? 'received', (counts.get(m[1] ?? 'received') ?? 0) + Number(m[2]))
  }
  return counts
}

const ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())
function cpuSeconds (pid: number | undefined): number {
  const stat = readFileSync(`/proc/${pid ?? 0}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond
}

/** Monotonic µs, the clock V8's profiler stamps its samples with (both read CLOCK_MONOTONIC on Linux). */
const nowUs = () => Number(process.hrtime.bigint() / 1000n)

const repository = new URL('..', import.meta.url).href

/** What a frame belongs to: a package under node_modules, one of our files, Node itself, or V8's own entries. */
function areaOf (url: string, functionName: string): string {
  if (url === '') return `(${functionName.replace(/[()]/g, '')})`
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1]
  if (pkg != null) return pkg
  if (url.startsWith('node:')) return 'node:'
  return url.startsWith(repository) ? url.slice(repository.length) : url
}

/** Busy samples per key (self time) among those taken between `fromUs` and `toUs`. */
function selfSamples (profile: Profile, fromUs: number, toUs: number, keyOf: (node: ProfileNode) => string): { byKey: Map<string, number>, total: number } {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]))
  const byKey = new Map<string, number>()
  let t = profile.startTime
  let total = 0
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0
    if (t < fromUs || t > toUs) continue
    const node = nodes.get(profile.samples[i] as number)
    if (node == null) continue
    const key = keyOf(node)
    if (key === '(idle)') continue
    byKey.set(key, (byKey.get(key) ?? 0) + 1)
    total++
  }
  return { byKey, total }
}

function printTop (title: string, { byKey, total }: { byKey: Map<string, number>, total: number }, cpu: number, count: number): void {
  console.log(`\n${title}: busy samples, their share, and that share of ${cpu.toFixed(2)} % of a core`)
  for (const [key, samples] of [...byKey].sort((a, b) => b[1] - a[1]).slice(0, count)) {
    const share = samples / total
    console.log(`${String(samples).padStart(6)} ${(share * 100).toFixed(1).padStart(5)} % ${(share * cpu).toFixed(3).padStart(7)} %  ${key}`)
  }
}

/** Agents that never came up in time (startAgent gave up on them without a handle back): found by their data dir. */
function killStrays (root: string): void {
  for (const pid of readdirSync('/proc').filter((entry) => /^\d+$/.test(entry))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').some((arg) => arg.startsWith(`${root}/`))) process.kill(Number(pid), 'SIGKILL')
    } catch { /* gone meanwhile */ }
  }
}

const root = mkdtempSync(join(tmpdir(), 'np-'))
const profileDir = values.keep ?? join(root, 'profile')
mkdirSync(profileDir, { recursive: true })
const agents: AgentProcess[] = []
process.on('exit', () => {
  for (const a of agents) a.child.kill('SIGKILL')
  killStrays(root)
})
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130))
try {
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const start = async (i: number, bootstrap: string[], env: Record<string, string> = {}) =>
    await startAgent({ root, swarmKeyFile, name: `p${i}`, bootstrap, logLevel: 'info', env, config })
  agents.push(await start(0, []))
  const entry = await bootstrapAddr(agents[0] as AgentProcess)
  // The profiled agent is a joiner like the others; its profile covers its whole life, cut to the window below.
  const profiled = await start(1, [entry], { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profileDir} --cpu-prof-interval=${Number(values['interval-us'])}` })
  agents.push(profiled)
  // In batches: many agents booting at once on a small machine miss startAgent's deadline.
  for (let i = 2; i < n; i += 3) {
    agents.push(...await Promise.all(Array.from({ length: Math.min(3, n - i) }, async (_, j) => await start(i + j, [entry]))))
  }
  await waitFor(`${n} agents to converge`, () => allSee(agents, agents, 'alive'), 120_000, 100)
  await new Promise((resolve) => setTimeout(resolve, settleMs))

  const validatedBefore = await validations(profiled)
  const fromUs = nowUs()
  const before = agents.map((a) => cpuSeconds(a.child.pid))
  await new Promise((resolve) => setTimeout(resolve, idleMs))
  const cpu = agents.map((a, i) => (cpuSeconds(a.child.pid) - (before[i] ?? 0)) / (idleMs / 1000) * 100)
  const toUs = nowUs()
  const validatedAfter = await validations(profiled)
  await stopAgents([profiled])

  const others = cpu.filter((_, i) => i !== 1)
  const mean = others.reduce((a, b) => a + b, 0) / others.length
  console.log(`N=${n} idle CPU per unprofiled agent: mean ${mean.toFixed(2)} % of a core, max ${Math.max(...others).toFixed(2)} %; ` +
    `the profiled one ${(cpu[1] ?? 0).toFixed(2)} %`)

  console.log(`messages received per second by the profiled agent, by how validation ended: ${[...validatedAfter]
    .map(([status, count]) => `${status} ${((count - (validatedBefore.get(status) ?? 0)) / (idleMs / 1000)).toFixed(1)}`).join(', ')}`)

  // Node names it CPU.<date>.<time>.<pid>.<thread>.<n>.cpuprofile; a kept folder may hold earlier runs' too.
  const file = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile') && f.split('.')[3] === String(profiled.child.pid))
  if (file == null) throw new Error(`no profile was written to ${profileDir}`)
  const profile = JSON.parse(readFileSync(join(profileDir, file), 'utf8')) as Profile
  if (profile.startTime > fromUs || profile.endTime < toUs) throw new Error('the profile does not cover the idle window (clocks differ?)')
  const frame = (node: ProfileNode) => {
    const { functionName, url, lineNumber } = node.callFrame
    return url === '' ? `(${functionName.replace(/[()]/g, '')})` : `${functionName || '(anonymous)'} ${areaOf(url, functionName)}:${lineNumber + 1}`
  }
  printTop('by package or file', selfSamples(profile, fromUs, toUs, (node) => areaOf(node.callFrame.url, node.callFrame.functionName)), mean, 25)
  printTop('by function', selfSamples(profile, fromUs, toUs, frame), mean, top)
  if (values.keep != null) console.log(`\nprofile kept: ${join(profileDir, file)} (idle window ${fromUs}..${toUs} µs)`)
} finally {
  await stopAgents(agents)
  killStrays(root)
  rmSync(root, { recursive: true, force: true })
}
