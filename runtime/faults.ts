import { readFileSync } from 'node:fs'

/**
 * Faults an operator (or a test) injects into inference (see runtime/faults-env.ts for `NOODLE_FAULTS`): read in
 * each inference worker, so this module imports nothing heavy.
 */
export interface Faults {
  /** Execution providers that run on the CPU under another name. */
  simulate: string[]
  /** A file listing lost providers, one a line: `name` or `name: why`. */
  lostFile?: string
}

export const NO_FAULTS: Faults = { simulate: [] }

const PROVIDER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/

/** Largest lost-providers file read: a few lines are all it ever holds. */
const MAX_LOST_BYTES = 4096

/**
 * The providers `lostFile` lists now, with why each is lost. A file that is missing, unreadable or too large
 * lists none: a fault file that cannot be read must not fail a healthy box.
 */
export function lostProviders (faults: Faults): Map<string, string> {
  const lost = new Map<string, string>()
  if (faults.lostFile === undefined) return lost
  let text: string
  try {
    const bytes = readFileSync(faults.lostFile)
    if (bytes.length > MAX_LOST_BYTES) return lost
    text = bytes.toString('utf8')
  } catch {
    return lost
  }
  for (const line of text.split('\n')) {
    const at = line.indexOf(':')
    const name = (at === -1 ? line : line.slice(0, at)).trim()
    const why = at === -1 ? '' : line.slice(at + 1).trim()
    if (PROVIDER_NAME.test(name)) lost.set(name, why === '' ? 'device lost' : why.slice(0, 100))
  }
  return lost
}
