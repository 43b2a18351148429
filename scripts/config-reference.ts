/**
 * Writes the configuration reference, made from the schema (agent/config/schema.ts), into docs/configuration.md
 * between its markers. Run it after changing a setting: `node scripts/config-reference.ts`. With `--check` it
 * writes nothing and fails while the file and the schema disagree; a path writes that file instead.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { referenceTable, withTable } from '../agent/config/reference.ts'

const args = process.argv.slice(2)
const file = args.find((a) => a !== '--check') ?? fileURLToPath(new URL('../docs/configuration.md', import.meta.url))
const before = readFileSync(file, 'utf8')
const after = withTable(before, referenceTable())
if (after === before) {
  process.stdout.write(`${file}: up to date\n`)
} else if (args.includes('--check')) {
  process.stderr.write(`${file}: the reference differs from the schema (run node scripts/config-reference.ts)\n`)
  process.exitCode = 1
} else {
  writeFileSync(file, after)
  process.stdout.write(`${file}: reference written\n`)
}
