import { execFileSync, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { apiGet, apiRequest } from '../agent/cli/client.ts'
import type { IngestStatus } from '../agent/ingest/ingest.ts'
import type { DecisionView, GossipView, NodeView, SensorReadingView, StatusView } from '../agent/api/views.ts'
import type { OptimizeResponse } from '../protocols/optimize.ts'
import { ensureDataDir, generateSwarmKey, loadOrCreateIdentity } from '../identity/keys.ts'

/**
 * Real agents as separate processes on this machine, for the tests, the demo and the benchmarks: each gets its
 * own data dir, they share a swarm key, and they are reached through their control API like an operator would.
 */

export const CLI = fileURLToPath(new URL('../agent/main/noodle.ts', import.meta.url))
/** The `noodle` command as installed: agents run through it, with its runtime and memory settings. */
export const BIN = fileURLToPath(new URL('../bin/noodle', import.meta.url))

export interface AgentProcess {
  name: string
  dataDir: string
  peerId: string
  socketPath: string
  child: ChildProcess
  /** Everything it printed, for failure messages. */
  output: () => string
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

export function writeSwarmKey (file: string): string {
  writeFileSync(file, generateSwarmKey(), { mode: 0o600 })
  return file
}

export interface StartOptions {
  root: string
  name: string
  swarmKeyFile: string
  listen?: string[]
  bootstrap?: string[]
  mdns?: boolean
  /** Run inside this network namespace (`ip netns exec`). */
  netns?: string
  env?: Record<string, string>
  /** Reuse a data dir (restart); default `<root>/<name>`. */
  dataDir?: string
  logLevel?: string
  /** Settings written to `<dataDir>/noodle.json` and passed with --config (work items, coordinator priority…). */
  config?: Record<string, unknown>
  /** The `noodle` to run: this checkout's bin/noodle unless told (a staged release's, in bench/mesh --release). */
  bin?: string
}

export async function startAgent (o: StartOptions): Promise<AgentProcess> {
  const dataDir = o.dataDir ?? join(o.root, o.name)
  ensureDataDir(dataDir)
  const { peerId } = await loadOrCreateIdentity(dataDir)
  const args = ['agent', '--data-dir', dataDir, '--name', o.name, '--swarm-key', o.swarmKeyFile, '--log-level', o.logLevel ?? 'debug']
  for (const l of o.listen ?? ['/ip4/127.0.0.1/tcp/0']) args.push('--listen', l)
  for (const b of o.bootstrap ?? []) args.push('--bootstrap', b)
  if (o.mdns !== true) args.push('--no-mdns')
  if (o.config != null) {
    const file = join(dataDir, 'noodle.json')
    writeFileSync(file, JSON.stringify(o.config))
    args.push('--config', file)
  }
  const bin = o.bin ?? BIN
  const [command, argv] = o.netns == null
    ? [bin, args]
    : ['ip', ['netns', 'exec', o.netns, bin, ...args]]
  const child = spawn(command, argv, {
    env: { ...process.env, ...o.env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout.on('data', (d: Buffer) => { output += d.toString() })
  child.stderr.on('data', (d: Buffer) => { output += d.toString() })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => { resolve({ code, signal }) })
  })
  const agent: AgentProcess = {
    name: o.name,
    dataDir,
    peerId: peerId.toString(),
    socketPath: join(dataDir, 'agent.sock'),
    child,
    output: () => output,
    exited
  }
  await waitFor(`${o.name}'s API`, async () => {
    if (child.exitCode != null) throw new Error(`${o.name} exited early:\n${output}`)
    try {
      return await status(agent)
    } catch {
      return undefined
    }
  }, 20_000)
  return agent
}

export const status = (a: AgentProcess) => apiGet<StatusView>(a.socketPath, '/api/v1/system/status')
export const nodes = (a: AgentProcess) => apiGet<NodeView[]>(a.socketPath, '/api/v1/mesh/nodes')
export const gossip = (a: AgentProcess) => apiGet<GossipView>(a.socketPath, '/api/v1/mesh/gossip')
export const decisions = (a: AgentProcess) => apiGet<DecisionView[]>(a.socketPath, '/api/v1/ahr/decisions')
export const ingest = (a: AgentProcess) => apiGet<IngestStatus>(a.socketPath, '/api/v1/ingest')
export const sensors = (a: AgentProcess) => apiGet<SensorReadingView[]>(a.socketPath, '/api/v1/sensors')
export const optimize = (a: AgentProcess) => apiRequest<OptimizeResponse>(a.socketPath, 'POST', '/api/v1/ahr/optimize', 10_000)

export interface Agreement { coordinator: string, term: number }

/** The coordinator and term every one of `agents` reports, when they all report the same one; else undefined. */
export async function agreedCoordinator (agents: AgentProcess[]): Promise<Agreement | undefined> {
  return agreementOf(await Promise.all(agents.map(status)))
}

function agreementOf (seen: StatusView[]): Agreement | undefined {
  const first = seen[0]
  if (first?.coordinator == null) return undefined
  return seen.every((s) => s.coordinator === first.coordinator && s.term === first.term)
    ? { coordinator: first.coordinator, term: first.term }
    : undefined
}

/** The agent's bootstrap address for others: its first listen address with its peer id. */
export async function bootstrapAddr (a: AgentProcess): Promise<string> {
  const self = (await nodes(a)).find((n) => n.peerId === a.peerId)
  const addr = self?.addrs[0]
  if (addr == null) throw new Error(`${a.name} has no address yet`)
  return `${addr}/p2p/${a.peerId}`
}

/** What `observer` thinks of each peer id: its state, or undefined if not listed. */
export async function statesSeenBy (observer: AgentProcess): Promise<Map<string, string>> {
  return new Map((await nodes(observer)).map((n) => [n.peerId, n.state]))
}

/** Waits until `agents` all report one coordinator and term that `accept` takes (polled every 50 ms). */
export async function waitForAgreement (what: string, agents: AgentProcess[], accept: (a: Agreement) => boolean = () => true,
  timeoutMs = 20_000): Promise<Agreement> {
  // What each agent last reported, so a timeout says who followed whom at which term instead of just "timed out".
  let lastSeen = ''
  try {
    return await waitFor(what, async () => {
      const answers = await Promise.allSettled(agents.map(status))
      lastSeen = answers.map((a, i) => `${agents[i]?.name ?? '?'} ${a.status === 'fulfilled'
        ? `follows ${a.value.coordinatorName ?? a.value.coordinator ?? 'none'} at term ${a.value.term}`
        : `gave no answer (${String(a.reason)})`}`).join('; ')
      const seen = answers.flatMap((a) => a.status === 'fulfilled' ? [a.value] : [])
      const agreed = seen.length === agents.length ? agreementOf(seen) : undefined
      return agreed != null && accept(agreed) ? agreed : undefined
    }, timeoutMs, 50)
  } catch (err) {
    throw new Error(`${(err as Error).message}; last seen: ${lastSeen || 'nothing'}`, { cause: err })
  }
}

/** Polls until `check` returns something other than undefined/false; fails with `what` after `timeoutMs`. */
export async function waitFor<T> (what: string, check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 15_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined && value !== false) return value
    } catch (err) {
      lastError = err
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError != null ? `: ${String(lastError)}` : ''}`)
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

/** Every observer lists every expected peer in the given state. */
export async function allSee (observers: AgentProcess[], peers: AgentProcess[], state: string): Promise<boolean> {
  for (const o of observers) {
    const seen = await statesSeenBy(o)
    if (!peers.every((p) => seen.get(p.peerId) === state)) return false
  }
  return true
}

/**
 * Stops agents that are still running as an operator would (SIGTERM), and SIGKILLs any that has not exited
 * within 5 s. A clean exit also lets a test run's coverage include what ran inside the agent.
 */
export async function stopAgents (agents: AgentProcess[]): Promise<void> {
  await Promise.all(agents.map(async (a) => {
    if (a.child.exitCode != null || a.child.signalCode != null) return
    a.child.kill('SIGTERM')
    const hung = setTimeout(() => { a.child.kill('SIGKILL') }, 5_000)
    await a.exited
    clearTimeout(hung)
  }))
}

/**
 * A fresh temporary folder removed after the test. Short on purpose: the agent's Unix socket lives in it and
 * socket paths are capped at 107 bytes, which tap's own fixture paths exceed.
 */
/** Whether a command is on PATH (a test or benchmark that needs a tool it can do without says so and skips). */
export function commandExists (cmd: string): boolean {
  try { execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'pipe' }); return true } catch { return false }
}

export function tempDir (t: { teardown: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'nd-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

export const PUBLISHER = fileURLToPath(new URL('./sensor-publisher.ts', import.meta.url))

export interface Publisher {
  child: ChildProcess
  /** Resolves when every message is acknowledged, with what the publisher printed ({ published, ms, connects, resent }). */
  done: Promise<{ published: number, ms: number, connects: number, resent: number }>
}

/**
 * Publishes `count` messages `{"value": i}` (i from `start`) to `topic` from a separate process
 * (scripts/sensor-publisher.ts). With a `clientId`, its session outlives a broker restart.
 */
export function publishReadings (o: { url: string, topic: string, count: number, start?: number, qos?: 0 | 1, clientId?: string }): Publisher {
  const args = [PUBLISHER, '--url', o.url, '--topic', o.topic, '--count', String(o.count), '--start', String(o.start ?? 0), '--qos', String(o.qos ?? 1)]
  if (o.clientId !== undefined) args.push('--client-id', o.clientId)
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (b: Buffer) => { out += b.toString() })
  child.stderr.on('data', (b: Buffer) => { out += b.toString() })
  const done = new Promise<{ published: number, ms: number, connects: number, resent: number }>((resolve, reject) => {
    child.once('exit', (code) => {
      if (code === 0) resolve(JSON.parse(out.trim().split('\n').at(-1) as string) as { published: number, ms: number, connects: number, resent: number })
      else reject(new Error(`publisher exited with ${String(code)}: ${out}`))
    })
  })
  return { child, done }
}
