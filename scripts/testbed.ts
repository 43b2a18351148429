#!/usr/bin/env node
import { execFileSync, spawn } from 'node:child_process'
import type { ChildProcess, SpawnOptions } from 'node:child_process'
import { randomBytes } from 'node:crypto'

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

  /** Creates `count` hosts on the switch. Removes whatever it made if any step fails. */
  create (count: number): this {
    this.created = true
    process.once('exit', this.destroy)
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
    process.off('exit', this.destroy)
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

/** One host with loopback only, for agents that must find each other on "localhost" by mDNS. */
export function loopbackHost (prefix = `nd${randomBytes(3).toString('hex')}`): { ns: string, destroy: () => void } {
  const ns = `${prefix}-lo`
  ip('netns', 'add', ns)
  const destroy = (): void => {
    process.off('exit', destroy)
    try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'pipe' }) } catch { /* already gone */ }
  }
  process.once('exit', destroy)
  try {
    ip('-n', ns, 'link', 'set', 'lo', 'up', 'multicast', 'on')
    ip('-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'lo')
  } catch (err) {
    destroy()
    throw err
  }
  return { ns, destroy }
}
