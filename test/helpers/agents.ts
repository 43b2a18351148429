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
