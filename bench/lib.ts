/** Helpers shared by the benchmarks: reading agents' logs, and the Serf baseline on a testbed. */
import { execFile } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { promisify } from 'node:util'
import type { AgentProcess } from '../scripts/agents.ts'
import type { Testbed } from '../scripts/testbed.ts'

const execFileAsync = promisify(execFile)

export { commandExists } from '../scripts/agents.ts'

/** One line of an agent's JSON log; the fields the benchmarks read. */
export interface LogLine { time: number, msg: string, peer?: string, to?: string, reason?: string, coordinator?: string | null, term?: number }

export function logLines (agent: AgentProcess): LogLine[] {
  return agent.output().split('\n').flatMap((line) => { try { return [JSON.parse(line) as LogLine] } catch { return [] } })
}

export { percentile } from '../common/stats.ts'

/** Serf agent `i` on a testbed host, joining host 0 unless it is host 0. */
export function startSerf (bed: Testbed, i: number): ChildProcess {
  const args = ['agent', '-node', `s${i}`, '-bind', `${bed.address(i)}:7946`, '-rpc-addr', '127.0.0.1:7373', '-log-level', 'err']
  if (i > 0) args.push('-join', `${bed.address(0)}:7946`)
  return bed.spawn(i, 'serf', args, { stdio: 'ignore' })
}

/** `serf members` on host `i`: name and status (alive, failed, left) of every member it knows. */
export async function serfMembers (bed: Testbed, i: number): Promise<Array<{ name: string, status: string }>> {
  try {
    const { stdout } = await execFileAsync('ip', ['netns', 'exec', bed.hosts[i] as string, 'serf', 'members', '-format', 'json'], { encoding: 'utf8' })
    return (JSON.parse(stdout) as { members: Array<{ name: string, status: string }> }).members
  } catch { return [] }
}
