import { SETTINGS } from './config.ts'
import type { Setting } from './settings.ts'

/**
 * The configuration reference, a Markdown table made from the schema: docs/configuration.md holds it between two
 * markers (scripts/config-reference.ts writes it there; a test fails while the two disagree).
 */

export const REFERENCE_START = '<!-- config-reference: made from agent/config/schema.ts by scripts/config-reference.ts; edit the schema, not the table -->'
export const REFERENCE_END = '<!-- /config-reference -->'

const UNITS: Array<[number, string]> = [[86_400_000, 'd'], [3_600_000, 'h'], [60_000, 'min'], [1_000, 's']]
const BYTES: Array<[number, string]> = [[1024 ** 3, 'GiB'], [1024 ** 2, 'MiB'], [1024, 'KiB']]

/** `86400000` → `1 d`, `536870912` → `512 MiB`, for keys that say their unit (…Ms, …Sec, …Bytes); else nothing. */
function inWords (key: string, value: number): string | undefined {
  if (key.endsWith('Bytes')) {
    const [size, name] = BYTES.find(([size]) => value >= size && value % size === 0) ?? []
    return size === undefined ? undefined : `${value / size} ${name as string}`
  }
  const ms = key.endsWith('Ms') ? value : key.endsWith('Sec') ? value * 1000 : undefined
  if (ms === undefined || ms < 60_000) return undefined
  const [size, name] = UNITS.find(([size]) => ms % size === 0) ?? []
  return size === undefined ? undefined : `${ms / size} ${name as string}`
}

function code (text: string): string {
  return `\`${text}\``
}

function defaultCell ({ key, defaultValue, defaultText }: Setting): string {
  if (defaultText !== undefined) return defaultText
  if (defaultValue === undefined) return 'unset'
  if (Array.isArray(defaultValue)) return defaultValue.length === 0 ? 'none' : defaultValue.map((v) => code(String(v))).join(', ')
  const words = typeof defaultValue === 'number' ? inWords(key, defaultValue) : undefined
  return `${code(String(defaultValue))}${words === undefined ? '' : ` (${words})`}`
}

function flagCell ({ flag, kind }: Setting): string {
  if (flag === undefined) return ''
  if (flag.sets !== undefined) return `${code(`--${flag.name}`)} sets ${code(String(flag.sets))}`
  return `${code(`--${flag.name} ${flag.arg ?? ''}`.trimEnd())}${kind === 'list' ? ' (repeatable)' : ''}`
}

/** A table cell: a `|` would end it. */
function cell (text: string): string {
  return text.replace(/\|/g, '\\|')
}

/** The reference table: one row per setting, in the schema's order. */
export function referenceTable (settings: readonly Setting[] = SETTINGS): string {
  const rows = settings.map((s) => [
    code(s.key),
    s.env === undefined ? 'file only' : code(s.env),
    flagCell(s),
    s.type,
    defaultCell(s),
    s.description
  ])
  return [
    '| key | environment | flag | type | default | meaning |',
    '|---|---|---|---|---|---|',
    ...rows.map((row) => `| ${row.map(cell).join(' | ')} |`)
  ].join('\n') + '\n'
}

/** The table `doc` holds between the markers, or undefined when it has no markers. */
export function tableIn (doc: string): string | undefined {
  const start = doc.indexOf(REFERENCE_START)
  const end = doc.indexOf(REFERENCE_END, start)
  if (start < 0 || end < 0) return undefined
  return doc.slice(start + REFERENCE_START.length, end).trim() + '\n'
}

/** `doc` with `table` between the markers. */
export function withTable (doc: string, table: string): string {
  const start = doc.indexOf(REFERENCE_START)
  const end = doc.indexOf(REFERENCE_END, start)
  if (start < 0 || end < 0) throw new Error(`no reference markers (${REFERENCE_START} … ${REFERENCE_END}) to write the table between`)
  // Blank lines around the table: Markdown then reads the markers as HTML comments, not as part of it.
  return `${doc.slice(0, start + REFERENCE_START.length)}\n\n${table.trim()}\n\n${doc.slice(end)}`
}
