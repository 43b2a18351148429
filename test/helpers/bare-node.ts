import { join } from 'node:path'
import { bareNode } from '../../scripts/bare-node.ts'
import { readSwarmKey } from '../../identity/keys.ts'
import { startAgent, stopAgents, tempDir, writeSwarmKey } from './agents.ts'
import type { AgentProcess, StartOptions } from './agents.ts'

export { bareNode }

/**
 * A real agent in a fresh mesh of its own, and a bare node that holds the same swarm key: a member that may be
 * hostile. Both are stopped at the test's end; the member is not connected yet.
 */
export async function agentAndMember (t: { teardown: (fn: () => void | Promise<void>) => void }, options: Omit<StartOptions, 'root' | 'swarmKeyFile'>):
Promise<{ root: string, swarmKeyFile: string, agent: AgentProcess, member: Awaited<ReturnType<typeof bareNode>> }> {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const agent = await startAgent({ root, swarmKeyFile, ...options })
  t.teardown(() => stopAgents([agent]))
  const member = await bareNode(readSwarmKey(swarmKeyFile))
  t.teardown(async () => { await member.stop() })
  return { root, swarmKeyFile, agent, member }
}
