#!/usr/bin/env node
import { execFileSync, spawn } from 'node:child_process'
import type { ChildProcess, SpawnOptions } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { allSee, bootstrapAddr, startAgent, stopAgents, waitFor, waitForAgreement, writeSwarmKey } from './agents.ts'
import type { AgentProcess, StartOptions } from './agents.ts'

/**
 * Hosts in Linux network namespaces on one virtual switch, for tests and benchmarks of what crosses a network:
 * each host has `eth0` with 10.77.0.<n>/24, a multicast route for mDNS, and nothing else. The switch (a bridge)
 * lives in a namespace of its own too, so the machine's own network is never touched. Needs root.
 */
export class Testbed {
  /** Namespace names start with this; unique per testbed so parallel runs never collide. */
  readonly prefix: string
  readonly hosts: string[] = []
  private readonly switchNs: string
  /** Extra switches made by partition(), reused by later partitions. */
  private readonly bridges = new Set<string>()
  private created = false

  constructor (prefix = `nd${randomBytes(3).toString('hex')}`) {
    this.prefix = prefix
    this.switchNs = `${prefix}-sw`
  }

  /** Why namespaces cannot be made here, or null when they can. */
  static unavailableReason (): string | null {
    if (process.platform !== 'linux') return 'network namespaces need Linux'
    if (process.getuid?.() !== 0) return 'network namespaces need root'
    const probe = `ndprobe${process.pid}`
    try {
      execFileSync('ip', ['netns', 'add', probe], { stdio: 'pipe' })
      execFileSync('ip', ['netns', 'del', probe], { stdio: 'pipe' })
      return null
    } catch (err) {
      return `cannot create a network namespace: ${(err as Error).message.split('\n')[0] as string}`
    }
  }

  /** The address of host `i` (0-based). */
  address (i: number): string {
    return `10.77.0.${i + 1}`
  }

  /** Creates `count` hosts on the switch. Removes whatever it made if any step fails, or if we are interrupted. */
  create (count: number): this {
    this.created = true
    onExitOrSignal(this.destroy)
    try {
      ip('netns', 'add', this.switchNs)
      ip('-n', this.switchNs, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0')
      ip('-n', this.switchNs, 'link', 'set', 'br0', 'up')
      for (let i = 0; i < count; i++) this.addHost()
    } catch (err) {
      this.destroy()
      throw err
    }
    return this
  }

  /** One more host on the switch; returns its namespace name. */
  addHost (): string {
    const i = this.hosts.length
    const ns = `${this.prefix}-h${i}`
    ip('netns', 'add', ns)
    this.hosts.push(ns)
    ip('-n', ns, 'link', 'set', 'lo', 'up')
    ip('-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', `port${i}`, 'netns', this.switchNs)
    ip('-n', ns, 'addr', 'add', `${this.address(i)}/24`, 'dev', 'eth0')
    ip('-n', ns, 'link', 'set', 'eth0', 'up')
    // mDNS sends to 224.0.0.251; without a route for it the kernel has nowhere to send.
    ip('-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0')
    ip('-n', this.switchNs, 'link', 'set', `port${i}`, 'master', 'br0', 'up')
    return ns
  }

  /** Unplugs host `i` from the switch: no FIN, no RST, just silence, like a pulled cable. */
  cut (i: number): void {
    ip('-n', this.switchNs, 'link', 'set', `port${i}`, 'down')
  }

  heal (i: number): void {
    ip('-n', this.switchNs, 'link', 'set', `port${i}`, 'up')
  }

  /**
   * Splits the network: each group of host indexes gets a switch of its own, so hosts talk within their group
   * and hear nothing from the others (silence, no resets). Hosts in no group keep the original switch.
   */
  partition (groups: number[][]): void {
    groups.forEach((group, g) => {
      const bridge = `brp${g}`
      if (!this.bridges.has(bridge)) {
        ip('-n', this.switchNs, 'link', 'add', bridge, 'type', 'bridge', 'mcast_snooping', '0')
        ip('-n', this.switchNs, 'link', 'set', bridge, 'up')
        this.bridges.add(bridge)
      }
      for (const i of group) ip('-n', this.switchNs, 'link', 'set', `port${i}`, 'master', bridge)
    })
  }

  /** Ends every partition and cut: all hosts back on one switch, every port up. */
  healAll (): void {
    this.hosts.forEach((_, i) => {
      ip('-n', this.switchNs, 'link', 'set', `port${i}`, 'master', 'br0', 'up')
    })
  }

  /** Adds delay and loss on host `i`'s link (tc netem), e.g. netem(0, '20ms', '1%'). */
  netem (i: number, delay: string, loss = '0%'): void {
    ip('netns', 'exec', this.hosts[i] as string, 'tc', 'qdisc', 'replace', 'dev', 'eth0', 'root', 'netem', 'delay', delay, 'loss', loss)
  }

  /** Runs a command inside host `i`'s namespace. */
  spawn (i: number, command: string, args: string[], options: SpawnOptions = {}): ChildProcess {
    return spawn('ip', ['netns', 'exec', this.hosts[i] as string, command, ...args], options)
  }

  /** Removes every namespace this testbed made (their interfaces go with them). Safe to call twice. */
  readonly destroy = (): void => {
    if (!this.created) return
    this.created = false
    offExitOrSignal(this.destroy)
    this.bridges.clear()
    for (const ns of [...this.hosts, this.switchNs]) {
      try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'pipe' }) } catch { /* already gone */ }
    }
    this.hosts.length = 0
  }
}

function ip (...args: string[]): void {
  execFileSync('ip', args, { stdio: 'pipe' })
}

/**
 * Cleanups to run however the process ends: normal exit, or SIGINT/SIGTERM/SIGHUP (whose default action would end
 * the process without any 'exit' handler running, leaving namespaces and agents behind).
 */
const cleanups = new Set<() => void>()
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const

function runCleanups (): void {
  for (const fn of [...cleanups].reverse()) {
    try { fn() } catch { /* best effort: the others still run */ }
  }
  cleanups.clear()
}

function onSignal (signal: NodeJS.Signals): void {
  runCleanups()
  for (const s of SIGNALS) process.off(s, onSignal)
  // Die of the same signal, as the default action would have.
  process.kill(process.pid, signal)
}

/** Runs `fn` however the process ends (exit, SIGINT, SIGTERM, SIGHUP), unless `offExitOrSignal(fn)` first. */
export function onExitOrSignal (fn: () => void): void {
  if (cleanups.size === 0) {
    process.once('exit', runCleanups)
    for (const s of SIGNALS) process.on(s, onSignal)
  }
  cleanups.add(fn)
}

export function offExitOrSignal (fn: () => void): void {
  cleanups.delete(fn)
  if (cleanups.size === 0) {
    process.off('exit', runCleanups)
    for (const s of SIGNALS) process.off(s, onSignal)
  }
}

/** One host with loopback only, for agents that must find each other on "localhost" by mDNS. */
export function loopbackHost (prefix = `nd${randomBytes(3).toString('hex')}`): { ns: string, destroy: () => void } {
  const ns = `${prefix}-lo`
  ip('netns', 'add', ns)
  const destroy = (): void => {
    offExitOrSignal(destroy)
    try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'pipe' }) } catch { /* already gone */ }
  }
  onExitOrSignal(destroy)
  try {
    ip('-n', ns, 'link', 'set', 'lo', 'up', 'multicast', 'on')
    ip('-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'lo')
  } catch (err) {
    destroy()
    throw err
  }
  return { ns, destroy }
}

export interface AgentBedOptions {
  hosts: number
  /** Extra environment for every agent (timings), and per-host config (work, priority). */
  env?: Record<string, string>
  config?: (host: number) => Record<string, unknown> | undefined
  logLevel?: string
  /** Where data dirs go; default a fresh temporary folder, removed on destroy. */
  root?: string
}

/**
 * A Testbed with one agent per host, joined through host 0 (no mDNS, so that only the links we cut matter):
 * what the election tests and benchmarks run on. Agents are reached through their API sockets, which live on
 * the shared filesystem, so the test process itself stays outside every namespace.
 */
export class AgentBed {
  readonly net: Testbed
  readonly agents: AgentProcess[] = []
  readonly root: string
  private readonly options: AgentBedOptions
  private readonly ownsRoot: boolean
  private swarmKey = ''

  private constructor (options: AgentBedOptions) {
    this.options = options
    this.net = new Testbed()
    this.ownsRoot = options.root == null
    this.root = options.root ?? mkdtempSync(join(tmpdir(), 'nb-'))
  }

  /** Creates the hosts, starts every agent and waits until all see all alive and agree on a coordinator. */
  static async start (options: AgentBedOptions): Promise<AgentBed> {
    const bed = new AgentBed(options)
    bed.net.create(options.hosts)
    // Registered after the namespaces, so that on an interrupt it runs first: agents die, then hosts go.
    onExitOrSignal(bed.killAll)
    try {
      bed.swarmKey = writeSwarmKey(join(bed.root, 'swarm.key'))
      bed.agents.push(await startAgent(bed.startOptions(0, [])))
      const boot = await bootstrapAddr(bed.agents[0] as AgentProcess)
      const rest = await Promise.all(Array.from({ length: options.hosts - 1 }, (_, i) => startAgent(bed.startOptions(i + 1, [boot]))))
      bed.agents.push(...rest)
      await waitFor('every agent to see every other alive', () => allSee(bed.agents, bed.agents, 'alive'), 60_000, 100)
      await waitForAgreement('one agreed coordinator', bed.agents, undefined, 30_000)
    } catch (err) {
      await bed.destroy()
      throw err
    }
    return bed
  }

  private startOptions (host: number, bootstrap: string[]): StartOptions {
    return {
      root: this.root,
      name: `host-${host}`,
      swarmKeyFile: this.swarmKey,
      netns: this.net.hosts[host],
      listen: ['/ip4/0.0.0.0/tcp/4001'],
      bootstrap,
      env: this.options.env,
      config: this.options.config?.(host),
      logLevel: this.options.logLevel ?? 'info'
    }
  }

  /** The agents still running. */
  get live (): AgentProcess[] {
    return this.agents.filter((a) => a.child.exitCode == null && a.child.signalCode == null)
  }

  indexOf (peerId: string): number {
    return this.agents.findIndex((a) => a.peerId === peerId)
  }

  /** Kills host `i`'s agent (SIGKILL: no leave message, sockets closed by the kernel) and waits for it to go. */
  async kill (i: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const agent = this.agents[i] as AgentProcess
    agent.child.kill(signal)
    await agent.exited
  }

  /** Starts host `i`'s agent again, with its data dir (same identity, same stored members and term). */
  async restart (i: number): Promise<AgentProcess> {
    const agent = await startAgent({ ...this.startOptions(i, []), dataDir: (this.agents[i] as AgentProcess).dataDir })
    this.agents[i] = agent
    return agent
  }

  cut (i: number): void { this.net.cut(i) }
  heal (i: number): void { this.net.heal(i) }
  partition (groups: number[][]): void { this.net.partition(groups) }
  healAll (): void { this.net.healAll() }
  netem (i: number, delay: string, loss?: string): void { this.net.netem(i, delay, loss) }

  /** Stops every agent politely (then by force), removes the namespaces and the data dirs. */
  async destroy (): Promise<void> {
    await stopAgents(this.live)
    offExitOrSignal(this.killAll)
    this.net.destroy()
    if (this.ownsRoot) rmSync(this.root, { recursive: true, force: true })
  }

  /** On interrupt: no time for politeness, and namespaces live on while a process is inside. */
  private readonly killAll = (): void => {
    for (const a of this.live) a.child.kill('SIGKILL')
    if (this.ownsRoot) rmSync(this.root, { recursive: true, force: true })
  }
}

const USAGE = `Usage: node scripts/testbed.ts [--hosts N]

Starts N hosts (default 5) in network namespaces, an agent on each, and waits; Ctrl-C removes everything.
Meanwhile, from another shell:  bin/noodle nodes --data-dir <root>/host-0
                                ip netns exec <prefix>-h2 …   (run anything on a host)
`

/** `node scripts/testbed.ts`: a mesh of namespaced hosts to explore by hand. */
async function main (): Promise<void> {
  const { values } = parseArgs({ options: { hosts: { type: 'string', default: '5' }, help: { type: 'boolean' } } })
  const hosts = Number(values.hosts)
  if (values.help === true || !Number.isInteger(hosts) || hosts < 1 || hosts > 200) {
    process.stdout.write(USAGE)
    return
  }
  const reason = Testbed.unavailableReason()
  if (reason != null) throw new Error(reason)
  const bed = await AgentBed.start({ hosts })
  const agreed = await waitForAgreement('one agreed coordinator', bed.agents)
  process.stdout.write(`${hosts} hosts up (namespaces ${bed.net.prefix}-h0…), data dirs under ${bed.root}\n` +
    `coordinator: host-${bed.indexOf(agreed.coordinator)}, term ${agreed.term}\n` +
    `try: bin/noodle nodes --data-dir ${bed.root}/host-0\nCtrl-C to tear down\n`)
  await new Promise(() => {})
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    process.stderr.write(`testbed: ${(err as Error).message}\n`)
    process.exitCode = 1
  })
}
