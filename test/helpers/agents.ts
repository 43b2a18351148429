import * as agents from '../../scripts/agents.ts'
import type { AgentProcess, StartOptions } from '../../scripts/agents.ts'

export * from '../../scripts/agents.ts'

/** Fast timings so tests do not wait out production defaults; the logic is the same. */
export const FAST_TIMINGS: Record<string, string> = {
  NOODLE_HEALTH_INTERVAL_MS: '500',
  NOODLE_MEMBERSHIP_PROBE_AFTER_MS: '700',
  NOODLE_MEMBERSHIP_REDIAL_INTERVAL_MS: '500'
}

/** An agent process with the test timings. */
export function startAgent (o: StartOptions): Promise<AgentProcess> {
  return agents.startAgent({ ...o, env: { ...FAST_TIMINGS, ...o.env } })
}

/** How each observer lists each peer, by name: `{ observer: { peer: state } }`, 'missing' where it lists none. */
export async function seenStates (observers: AgentProcess[], peers: AgentProcess[]): Promise<Record<string, Record<string, string>>> {
  const rows = await Promise.all(observers.map(async (o) => {
    const seen = await agents.statesSeenBy(o)
    return [o.name, Object.fromEntries(peers.map((p) => [p.name, seen.get(p.peerId) ?? 'missing']))] as const
  }))
  return Object.fromEntries(rows)
}

/** The table `seenStates` shows once every observer lists every peer in `state`. */
export function statesOf (observers: AgentProcess[], peers: AgentProcess[], state: string): Record<string, Record<string, string>> {
  return Object.fromEntries(observers.map((o) => [o.name, Object.fromEntries(peers.map((p) => [p.name, state]))]))
}
