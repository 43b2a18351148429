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
