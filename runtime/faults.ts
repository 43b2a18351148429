import { readSmallFile } from '../common/files.ts'
import { NAME_PATTERN } from '../common/name-pattern.ts'

/**
 * Faults an operator (or a test) injects into inference (see runtime/faults-env.ts for `NOODLE_FAULTS`): read in
 * each inference worker, so this module imports nothing heavy.
 */
export interface Faults {
  /** Execution providers that run on the CPU under another name. */
  simulate: string[]
  /** A file listing lost providers, one a line: `name` or `name: why`. */
  lostFile?: string
  /** Milliseconds added to every run on a provider (a slower device: which one a model runs on is then known). */
  slowMs?: Record<string, number>
}

export const NO_FAULTS: Faults = { simulate: [] }

/** A provider's name: a name (common/name-pattern.ts) of at most 32 characters, as the beacon lists providers. */
export const MAX_PROVIDER_NAME = 32

/** Largest lost-providers file read: a few lines are all it ever holds. */
const MAX_LOST_BYTES = 4096

/**
 * The providers `lostFile` lists now, with why each is lost. A file that is missing, unreadable, too large or not
 * a regular file (a FIFO would block the worker, `/dev/zero` never ends) lists none: a fault file that cannot be
 * read must not fail a healthy box.
 */
export function lostProviders (faults: Faults): Map<string, string> {
  const lost = new Map<string, string>()
  if (faults.lostFile === undefined) return lost
  let text: string
  try {
    text = readSmallFile(faults.lostFile, MAX_LOST_BYTES).toString('utf8')
  } catch {
    return lost
  }
  for (const line of text.split('\n')) {
    const at = line.indexOf(':')
    const name = (at === -1 ? line : line.slice(0, at)).trim()
    const why = at === -1 ? '' : line.slice(at + 1).trim()
    if (name.length <= MAX_PROVIDER_NAME && NAME_PATTERN.test(name)) lost.set(name, why === '' ? 'device lost' : why.slice(0, 100))
  }
  return lost
}
