/**
 * The metric families in Prometheus text, by name: their HELP and TYPE lines, and the samples under them.
 * A sample whose family has no TYPE line is filed under its own name, with neither.
 */
export function families (text: string): Record<string, { help?: string, type?: string }> {
  const out: Record<string, { help?: string, type?: string }> = {}
  let current = ''
  for (const line of text.split('\n')) {
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line)
    if (meta !== null) {
      const [, kind, name, rest] = meta as unknown as [string, 'HELP' | 'TYPE', string, string]
      current = name
      out[name] = { ...out[name], [kind === 'HELP' ? 'help' : 'type']: rest }
      continue
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line)?.[1]
    if (sample === undefined) continue
    const suffixed = sample === current || (out[current]?.type === 'histogram' && /^(.*)_(bucket|sum|count)$/.exec(sample)?.[1] === current)
    if (!suffixed) out[sample] ??= {}
  }
  return out
}

type Families = ReturnType<typeof families>

/** prom-client's own defaults name three gauges `_total` (handles, requests, resources active now): theirs to name. */
const GAUGES_NAMED_TOTAL = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']

/** The families that lack a HELP (or have an empty one) or a TYPE line. */
export function untyped (found: Families): string[] {
  return Object.entries(found).filter(([, f]) => f.help === undefined || f.help === '' || f.type === undefined).map(([name]) => name)
}

/** The families whose name and type disagree: a `_total` that is not a counter, or a counter not named `_total`. */
export function mistyped (found: Families): string[] {
  return Object.entries(found)
    .filter(([name, f]) => name.endsWith('_total') ? f.type !== 'counter' && !GAUGES_NAMED_TOTAL.includes(name) : f.type === 'counter')
    .map(([name]) => name)
}
