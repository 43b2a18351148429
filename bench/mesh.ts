#!/usr/bin/env node
/**
 * Mesh benchmark: N real agent processes (N = 3, 8, 16 by default) and, as the baseline in the same run,
 * HashiCorp Serf on the same namespace testbed. Prints per N:
 *   - convergence: time from the last agent's start until every agent sees all N alive
 *       (a) bootstrap addresses, on loopback: "cold" (N-1 agents started together) and "join" (one more agent
 *           joining those once settled);  (b) mDNS alone, N hosts on a namespace bridge, all started together
 *   - gossip traffic per agent while idle: gossipsub bytes sent and received, and bytes on the wire (rx+tx, eth0)
 *   - RSS per idle agent
 *   - CPU per idle agent, in % of one core (utime+stime from /proc/<pid>/stat over the idle window)
 * and Serf's cold and join convergence, wire bytes and idle CPU, with the ratios noodle/serf.
 * On a 2-core machine a cold start of many agents is bound by CPU (every process booting at once); the join
 * figure shows what the mesh itself takes.
 *
 *   node bench/mesh.ts [--sizes 3,8,16] [--idle-s 10] [--settle-s 5] [--parts bootstrap,mdns,serf] [--release]
 *
 * With `--release` the agents run from a core release staged for this machine (scripts/release.ts: the app
 * compiled to JavaScript, production dependencies), as an installed sensor box runs them, rather than from this
 * checkout's TypeScript.
 *
 * The idle window (gossip, CPU, wire) starts `--settle-s` after the mesh converged, for Noodle and Serf alike:
 * a newly converged mesh is still exchanging records and answering asks, which is not what idle costs.
 *
 * Namespace parts need root; without it they are skipped and say so.
 */
import { execFileSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Testbed } from '../scripts/testbed.ts'
import { allSee, bootstrapAddr, gossip, startAgent, waitFor, writeSwarmKey } from '../scripts/agents.ts'
import type { AgentProcess } from '../scripts/agents.ts'
import { stageRelease } from '../scripts/release.ts'
import type { Arch } from '../scripts/release.ts'
import { commandExists, logLines, serfMembers, startSerf } from './lib.ts'

const { values } = parseArgs({ options: { sizes: { type: 'string', default: '3,8,16' }, 'idle-s': { type: 'string', default: '10' }, 'settle-s': { type: 'string', default: '5' }, parts: { type: 'string', default: 'bootstrap,mdns,serf' }, release: { type: 'boolean', default: false } } })
const sizes = (values.sizes ?? '').split(',').map(Number)
const idleMs = Number(values['idle-s']) * 1000
const settleMs = Number(values['settle-s']) * 1000
const settle = async () => { await sleep(settleMs) }
const parts = new Set((values.parts ?? '').split(','))
const releaseOut = values.release === true ? mkdtempSync(join(tmpdir(), 'nb-release-')) : undefined
process.on('exit', () => { if (releaseOut !== undefined) rmSync(releaseOut, { recursive: true, force: true }) })
const bin = releaseOut === undefined
  ? undefined
  : join(stageRelease({ repo: fileURLToPath(new URL('..', import.meta.url)), arch: `linux-${process.arch}` as Arch, core: true, out: releaseOut, log: () => {} }), 'bin/noodle')
const netnsUnavailable = Testbed.unavailableReason()
const serfMissing = commandExists('serf') ? null : 'serf is not installed (apt-get install serf)'

// Interrupted: exit through 'exit' so that testbeds remove their namespaces, and take the agents down too.
const children = new Set<ChildProcess>()
process.on('exit', () => { for (const c of children) c.kill('SIGKILL') })
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130))

/**
 * From their logs: from the last agent's start until every agent lists every other alive; and, for a join, its
 * two halves: until the newcomer (the last agent) lists every other alive, and until every other lists it alive.
 */
function convergenceMs (agents: AgentProcess[]): { fromLastStart: number, newcomerSeesAll: number, allSeeNewcomer: number } {
  const started = agents.map((a) => logLines(a).find((l) => l.msg === 'agent started')?.time ?? NaN)
  const lastStart = Math.max(...started)
  const firstAlive = agents.map((a) => {
    const seen = new Map<string, number>()
    for (const l of logLines(a)) if (l.to === 'alive' && l.peer != null && !seen.has(l.peer)) seen.set(l.peer, l.time)
    return seen
  })
  const complete = agents.map((a, i) => Math.max(...agents.filter((o) => o !== a).map((o) => firstAlive[i]?.get(o.peerId) ?? NaN)))
  const newcomer = agents.at(-1) as AgentProcess
  return {
    fromLastStart: Math.max(...complete) - lastStart,
    newcomerSeesAll: (complete.at(-1) as number) - lastStart,
    allSeeNewcomer: Math.max(...agents.slice(0, -1).map((_, i) => firstAlive[i]?.get(newcomer.peerId) ?? NaN)) - lastStart
  }
}

/** Resident memory, and the private (anonymous) part of it: the rest is mostly the node binary's file pages. */
function memory (pid: number | undefined): { rss: number, anon: number } {
  const status = readFileSync(`/proc/${pid ?? 0}/status`, 'utf8')
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024
  return { rss: kb('VmRSS'), anon: kb('RssAnon') }
}

/** For `ip netns exec NS node …` the pid we hold is node's own: `ip netns exec` execs into it. */
function wireBytes (ns: string): number {
  const [link] = JSON.parse(execFileSync('ip', ['-n', ns, '-s', '-j', 'link', 'show', 'eth0'], { encoding: 'utf8' })) as Array<{ stats64: { rx: { bytes: number }, tx: { bytes: number } } }>
  return (link?.stats64.rx.bytes ?? 0) + (link?.stats64.tx.bytes ?? 0)
}

/** CPU time a process has used so far (user + system), in seconds: fields 14 and 15 of /proc/<pid>/stat. */
const ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())
function cpuSeconds (pid: number | undefined): number {
  const stat = readFileSync(`/proc/${pid ?? 0}/stat`, 'utf8')
  // The command name (field 2) may hold spaces; the fields after it are counted from its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond
}

/** Each process's CPU over an idle window of `ms`, in % of one core. */
async function idleCpu (pids: Array<number | undefined>, ms: number): Promise<number[]> {
  const before = pids.map(cpuSeconds)
  await new Promise((resolve) => setTimeout(resolve, ms))
  return pids.map((pid, i) => (cpuSeconds(pid) - (before[i] ?? 0)) / (ms / 1000) * 100)
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length
const kB = (bytes: number) => `${(bytes / 1000).toFixed(2)} kB/s`
const MB = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`
const pct = (xs: number[]) => `${mean(xs).toFixed(2)} % of a core per agent (max ${Math.max(...xs).toFixed(2)} %)`

function track (agent: AgentProcess): AgentProcess {
  children.add(agent.child)
  void agent.exited.then(() => children.delete(agent.child))
  return agent
}

async function stopAll (agents: AgentProcess[]): Promise<void> {
  for (const a of agents) a.child.kill('SIGKILL')
  await Promise.all(agents.map((a) => a.exited))
}

/**
 * Bootstrap on loopback. Cold: agent 0, then the other N-1 at once, each given agent 0's address. Join: once
 * those have settled, one more agent joins the same way, and the clock runs from its start alone.
 */
async function benchBootstrap (n: number): Promise<{ coldMs: number, joinMs: number, cpu: number }> {
  const root = mkdtempSync(join(tmpdir(), 'nb-'))
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const agents: AgentProcess[] = []
  const start = async (i: number, bootstrap: string[]) => track(await startAgent({ root, swarmKeyFile, name: `b${i}`, bootstrap, logLevel: 'info', bin }))
  try {
    agents.push(await start(0, []))
    const entry = await bootstrapAddr(agents[0] as AgentProcess)
    agents.push(...await Promise.all(Array.from({ length: n - 2 }, (_, i) => start(i + 1, [entry]))))
    await waitFor(`${n - 1} agents to converge`, () => allSee(agents, agents, 'alive'), 60_000, 50)
    const coldMs = convergenceMs(agents).fromLastStart
    await settle()
    const before = await Promise.all(agents.map(gossip))
    const cpu = await idleCpu(agents.map((a) => a.child.pid), idleMs)
    const after = await Promise.all(agents.map(gossip))
    const sent = after.map((g, i) => (g.sentBytes - (before[i]?.sentBytes ?? 0)) / (idleMs / 1000))
    const received = after.map((g, i) => (g.receivedBytes - (before[i]?.receivedBytes ?? 0)) / (idleMs / 1000))
    const mem = agents.map((a) => memory(a.child.pid))
    const rss = mem.map((m) => m.rss)

    agents.push(await start(n - 1, [entry]))
    await waitFor(`${n} agents to converge`, () => allSee(agents, agents, 'alive'), 60_000, 20)
    const joined = convergenceMs(agents)
    const joinMs = joined.fromLastStart
    console.log(`N=${String(n).padStart(2)} bootstrap  cold ${coldMs} ms, join ${joinMs} ms after the last start ` +
      `(it lists all alive at ${joined.newcomerSeesAll} ms, all list it at ${joined.allSeeNewcomer} ms)   ` +
      `gossip per agent (N=${n - 1}) sent ${kB(mean(sent))} + received ${kB(mean(received))}   ` +
      `RSS ${MB(mean(rss))} per agent (max ${MB(Math.max(...rss))}), of it private ${MB(mean(mem.map((m) => m.anon)))}   ` +
      `CPU (N=${n - 1}) ${pct(cpu)}`)
    return { coldMs, joinMs, cpu: mean(cpu) }
  } finally {
    await stopAll(agents)
    rmSync(root, { recursive: true, force: true })
  }
}

/** mDNS alone: N namespace hosts on a bridge, all agents started at once, no addresses given. */
async function benchMdns (n: number): Promise<{ convergedMs: number, wirePerHost: number }> {
  const root = mkdtempSync(join(tmpdir(), 'nb-'))
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const bed = new Testbed().create(n)
  const agents: AgentProcess[] = []
  try {
    agents.push(...await Promise.all(bed.hosts.map(async (ns, i) => track(await startAgent({
      root, swarmKeyFile, name: `m${i}`, netns: ns, mdns: true, listen: ['/ip4/0.0.0.0/tcp/4001'], logLevel: 'info', bin
    })))))
    await waitFor(`${n} agents to converge by mDNS`, () => allSee(agents, agents, 'alive'), 60_000, 50)
    const { fromLastStart } = convergenceMs(agents)
    await settle()
    const before = bed.hosts.map(wireBytes)
    await new Promise((resolve) => setTimeout(resolve, idleMs))
    const wire = bed.hosts.map((ns, i) => (wireBytes(ns) - (before[i] ?? 0)) / (idleMs / 1000))
    console.log(`N=${String(n).padStart(2)} mDNS       converged ${fromLastStart} ms after the last start   wire ${kB(mean(wire))} per host (rx+tx)`)
    return { convergedMs: fromLastStart, wirePerHost: mean(wire) }
  } finally {
    await stopAll(agents)
    bed.destroy()
    rmSync(root, { recursive: true, force: true })
  }
}

/** Serf on the same kind of testbed, cold (node 0, then N-2 at once with -join) and one more joining after. */
async function benchSerf (n: number): Promise<{ coldMs: number, joinMs: number, wirePerHost: number, cpu: number }> {
  const bed = new Testbed().create(n)
  const procs: ChildProcess[] = []
  const start = (i: number) => {
    const child = startSerf(bed, i)
    procs.push(child)
    children.add(child)
  }
  // Serf's start is its process start (it has no "started" line), which flatters it slightly.
  const converge = async (count: number) => {
    const started = Date.now()
    await waitFor('serf to converge', async () => (await Promise.all(bed.hosts.slice(0, count).map((_, i) => serfMembers(bed, i))))
      .every((members) => members.filter((m) => m.status === 'alive').length === count), 60_000, 20)
    return Date.now() - started
  }
  try {
    start(0)
    await waitFor('serf 0 to answer', async () => (await serfMembers(bed, 0)).length === 1, 10_000, 50)
    for (let i = 1; i < n - 1; i++) start(i)
    const coldMs = await converge(n - 1)
    await settle()
    const before = bed.hosts.slice(0, n - 1).map(wireBytes)
    // `ip netns exec` execs into serf, so the pid we hold is serf's own.
    const cpu = await idleCpu(procs.map((p) => p.pid), idleMs)
    const wire = bed.hosts.slice(0, n - 1).map((ns, i) => (wireBytes(ns) - (before[i] ?? 0)) / (idleMs / 1000))
    start(n - 1)
    const joinMs = await converge(n)
    console.log(`N=${String(n).padStart(2)} serf       cold ${coldMs} ms, join ${joinMs} ms after the last start (polled, ±20 ms)   ` +
      `wire ${kB(mean(wire))} per host (rx+tx, N=${n - 1})   CPU ${pct(cpu)}`)
    return { coldMs, joinMs, wirePerHost: mean(wire), cpu: mean(cpu) }
  } finally {
    for (const p of procs) p.kill('SIGKILL')
    bed.destroy()
  }
}

const skipped = [
  netnsUnavailable != null && `mDNS and serf parts (${netnsUnavailable})`,
  netnsUnavailable == null && serfMissing != null && parts.has('serf') && `serf part (${serfMissing})`
].filter(Boolean)
console.log(`mesh benchmark: sizes ${sizes.join(', ')}, idle window ${idleMs / 1000} s from ${settleMs / 1000} s after convergence, agents run from ${bin === undefined ? 'this checkout' : 'a core release (compiled)'}${skipped.length > 0 ? `; skipped: ${skipped.join(', ')}` : ''}`)
for (const n of sizes) {
  const boot = parts.has('bootstrap') ? await benchBootstrap(n) : undefined
  if (netnsUnavailable != null) continue
  const noodle = parts.has('mdns') ? await benchMdns(n) : undefined
  const serf = parts.has('serf') && serfMissing == null ? await benchSerf(n) : undefined
  if (serf == null) continue
  const ratios = [
    boot != null && `bootstrap cold ×${(boot.coldMs / serf.coldMs).toFixed(2)}, join ×${(boot.joinMs / serf.joinMs).toFixed(2)}, idle CPU ×${(boot.cpu / serf.cpu).toFixed(1)}`,
    noodle != null && `mDNS cold ×${(noodle.convergedMs / serf.coldMs).toFixed(2)}, wire bytes ×${(noodle.wirePerHost / serf.wirePerHost).toFixed(2)}`
  ].filter(Boolean)
  console.log(`N=${String(n).padStart(2)} ratio      noodle/serf: ${ratios.join('; ')}`)
}
