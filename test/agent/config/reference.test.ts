import { execFile } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { z } from 'zod'
import { REFERENCE_END, REFERENCE_START, referenceTable, tableIn, withTable } from '../../../agent/config/reference.ts'
import { settingsOf } from '../../../agent/config/settings.ts'
import { SETTINGS } from '../../../agent/config/config.ts'

const DOC = new URL('../../../docs/configuration.md', import.meta.url)
const SCRIPT = fileURLToPath(new URL('../../../scripts/config-reference.ts', import.meta.url))

function script (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [SCRIPT, ...args], (err, stdout, stderr) => { resolve({ code: err == null ? 0 : Number(err.code), stdout, stderr }) })
  })
}

t.test('docs/configuration.md holds the reference the schema makes (run `node scripts/config-reference.ts`)', async (t) => {
  t.equal(tableIn(readFileSync(DOC, 'utf8')), referenceTable())
  t.match(await script(['--check']), { code: 0, stdout: /configuration\.md: up to date/ }, 'the script agrees (with --check it writes nothing)')
})

t.test('the script rewrites a stale table; with --check it refuses it and writes nothing', async (t) => {
  const stale = `# C\n\n${REFERENCE_START}\n| old |\n${REFERENCE_END}\n`
  const file = join(t.testdir({ 'c.md': stale }), 'c.md')
  t.match(await script(['--check', file]), { code: 1, stderr: /differs from the schema/ })
  t.equal(readFileSync(file, 'utf8'), stale)
  t.match(await script([file]), { code: 0, stdout: /reference written/ })
  t.equal(tableIn(readFileSync(file, 'utf8')), referenceTable())
})

t.test('the table: one row per setting, its default in words, cells that cannot break it', async (t) => {
  const schema = z.strictObject({
    sizeBytes: z.int().min(0).default(512 * 1024 ** 2).meta({ description: 'a | b' }),
    waitMs: z.int().min(1).max(10).default(90_000).meta({ description: 'w' }),
    keepSec: z.int().default(604_800).meta({ description: 'k' }),
    shortMs: z.int().default(500).meta({ description: 's' }),
    oddBytes: z.int().default(1000).meta({ description: 'o' }),
    on: z.boolean().default(true).meta({ description: 'on', flag: { name: 'no-on', sets: false, help: '' } }),
    hosts: z.array(z.string()).default(() => ['a', 'b']).meta({ description: 'h', flag: { name: 'host', arg: 'HOST', help: '' } }),
    none: z.array(z.string()).default(() => []).meta({ description: 'n' }),
    file: z.string().optional().meta({ description: 'f', defaultText: '`<dir>/f`' }),
    unset: z.string().optional().meta({ description: 'u' }),
    items: z.array(z.strictObject({ id: z.string() })).default(() => []).meta({ description: 'i' }),
    level: z.enum(['low', 'high']).default('low').meta({ description: 'l' }),
    ratio: z.number().positive().max(2).default(1).meta({ description: 'r' })
  })
  t.equal(referenceTable(settingsOf(schema)), [
    '| key | environment | flag | type | default | meaning |',
    '|---|---|---|---|---|---|',
    '| `sizeBytes` | `NOODLE_SIZE_BYTES` |  | integer ≥ 0 | `536870912` (512 MiB) | a \\| b |',
    '| `waitMs` | `NOODLE_WAIT_MS` |  | integer 1–10 | `90000` (90 s) | w |',
    '| `keepSec` | `NOODLE_KEEP_SEC` |  | integer | `604800` (7 d) | k |',
    '| `shortMs` | `NOODLE_SHORT_MS` |  | integer | `500` | s |',
    '| `oddBytes` | `NOODLE_ODD_BYTES` |  | integer | `1000` | o |',
    '| `on` | `NOODLE_ON` | `--no-on` sets `false` | boolean | `true` | on |',
    '| `hosts` | `NOODLE_HOSTS` | `--host HOST` (repeatable) | list of string | `a`, `b` | h |',
    '| `none` | `NOODLE_NONE` |  | list of string | none | n |',
    '| `file` | `NOODLE_FILE` |  | string | `<dir>/f` | f |',
    '| `unset` | `NOODLE_UNSET` |  | string | unset | u |',
    '| `items` | file only |  | list of objects | none | i |',
    '| `level` | `NOODLE_LEVEL` |  | low, high | `low` | l |',
    '| `ratio` | `NOODLE_RATIO` |  | number > 0, ≤ 2 | `1` | r |'
  ].join('\n') + '\n')
})

t.test('the table is written between the markers, and only there', async (t) => {
  const doc = `# C\n\nprose\n\n${REFERENCE_START}\nold table\n${REFERENCE_END}\n\nmore prose\n`
  const written = withTable(doc, '| new |\n')
  t.equal(written, `# C\n\nprose\n\n${REFERENCE_START}\n\n| new |\n\n${REFERENCE_END}\n\nmore prose\n`)
  t.equal(tableIn(written), '| new |\n')
  t.equal(withTable(written, '| new |\n'), written, 'writing it again changes nothing')
  t.equal(tableIn('# no markers\n'), undefined)
  t.throws(() => withTable('# no markers\n', '| t |\n'), /no reference markers/)
})

t.test('every setting the README and docs/ name in backticks is one (or an object of them)', async (t) => {
  const root = new URL('../../../', import.meta.url)
  const files = ['README.md', ...readdirSync(new URL('docs/', root)).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)]
  const tops = new Set(SETTINGS.map((s) => s.key.split('.')[0]))
  const known = new Set(SETTINGS.flatMap((s) => s.key.split('.').map((_, i, parts) => parts.slice(0, i + 1).join('.'))))
  const unknown = files.flatMap((file) => [...readFileSync(new URL(file, root), 'utf8').matchAll(/`([a-zA-Z]+(?:\.[a-zA-Z]+)+)`/g)]
    .map((m) => m[1] as string)
    .filter((key) => tops.has(key.split('.')[0]) && !/\.(ts|md|json)$/.test(key) && !known.has(key))
    .map((key) => `${file}: ${key}`))
  t.same(unknown, [])
})
