/**
 * The dependency rule, checked on every import of the source (static, `import type`, `export … from`, dynamic
 * `import()` and `new URL('…', import.meta.url)`):
 *
 *   common/                             imports nothing of ours (errors, logger, stats, text…)
 *   protocols/   → common/              wire codecs and the rules they carry
 *   identity/    → protocols/, common/
 *   runtime/     → protocols/, common/
 *   media/       → runtime/, protocols/, common/
 *   agent/       → any of the above
 *
 * A leaf (common, protocols, identity, runtime, media) never imports agent/: what it needs of the agent (the
 * mesh, the membership, the work registry, the metrics) is a narrow interface the leaf declares and the agent's
 * object satisfies. Inside agent/, only the composition root (agent/main/) wires: no other subsystem imports
 * agent/main/, and agent/cli/ imports values of no other subsystem but agent/config/ (types only of the rest,
 * such as agent/api/views.ts). The one entry edge: the CLI's `noodle agent` loads the composition root lazily
 * (`import('../main/agent.ts')`), so other commands do not load the agent.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, posix, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

/** Each source folder and the folders it may import (itself included). */
const MAY_IMPORT: Record<string, readonly string[]> = {
  common: ['common'],
  protocols: ['protocols', 'common'],
  identity: ['identity', 'protocols', 'common'],
  runtime: ['runtime', 'protocols', 'common'],
  media: ['media', 'runtime', 'protocols', 'common'],
  agent: ['agent', 'media', 'runtime', 'identity', 'protocols', 'common']
}
const SOURCE = Object.keys(MAY_IMPORT)

/** agent/cli/ may import values of these subsystems; of the others, types only. */
const CLI_MAY_IMPORT = new Set(['cli', 'config'])

export interface Import {
  specifier: string
  /** Erased when the file runs: `import type`, `export type … from`, or `{ type A, type B }` alone. */
  typeOnly: boolean
  dynamic: boolean
}

export interface Edge {
  from: string
  to: string
  typeOnly: boolean
  dynamic: boolean
}

const STATIC_IMPORT = /^[ \t]*import\s+(type\s+)?((?:[\w$]+\s*,\s*)?(?:\{[^}]*\}|\*\s*as\s+[\w$]+)|[\w$]+)\s*from\s*['"]([^'"]+)['"]/gm
const RE_EXPORT = /^[ \t]*export\s+(type\s+)?(\{[^}]*\}|\*(?:\s*as\s+[\w$]+)?)\s*from\s*['"]([^'"]+)['"]/gm
const SIDE_EFFECT = /^[ \t]*import\s*['"]([^'"]+)['"]/gm
const DYNAMIC = /\bimport\s*\(\s*(['"`])([^'"`]+)\1\s*\)/g
const NEW_URL = /\bnew\s+URL\s*\(\s*(['"`])([^'"`]+)\1\s*,\s*import\.meta\.url\s*\)/g

/** Whether an import's bindings are all types: `{ type A, type B as C }`. */
function onlyTypes (bindings: string): boolean {
  if (!bindings.startsWith('{')) return false
  const names = bindings.slice(1, -1).split(',').map((s) => s.trim()).filter((s) => s !== '')
  return names.length > 0 && names.every((s) => /^type\s/.test(s))
}

/** Whether the match at `index` stands in a comment (a line comment, or a line of a block comment). */
function inComment (source: string, index: number): boolean {
  const line = source.slice(source.lastIndexOf('\n', index - 1) + 1, index)
  return line.includes('//') || /^\s*(\/\*|\*)/.test(line)
}

/** Every module specifier a TypeScript file names. */
export function importsOf (source: string): Import[] {
  const out: Import[] = []
  for (const pattern of [STATIC_IMPORT, RE_EXPORT]) {
    for (const m of source.matchAll(pattern)) {
      out.push({ specifier: m[3] as string, typeOnly: m[1] !== undefined || onlyTypes(m[2] as string), dynamic: false })
    }
  }
  for (const m of source.matchAll(SIDE_EFFECT)) out.push({ specifier: m[1] as string, typeOnly: false, dynamic: false })
  for (const pattern of [DYNAMIC, NEW_URL]) {
    for (const m of source.matchAll(pattern)) {
      const specifier = m[2] as string
      if (inComment(source, m.index) || specifier.includes('${')) continue
      out.push({ specifier, typeOnly: false, dynamic: true })
    }
  }
  return out
}

/** The files of ours each file imports, as paths from the repository root; packages and `node:` are left out. */
export function edgesOf (file: string, source: string): Edge[] {
  return importsOf(source)
    .filter((i) => i.specifier.startsWith('.'))
    .map((i) => ({ from: file, to: posix.normalize(posix.join(posix.dirname(file), i.specifier)), typeOnly: i.typeOnly, dynamic: i.dynamic }))
}

/** The edges that break the rule, as "file → target". */
export function violations (edges: readonly Edge[]): string[] {
  const out: string[] = []
  for (const edge of edges) {
    const [fromTop, fromSub] = edge.from.split('/')
    const [toTop, toSub] = edge.to.split('/')
    const allowed = MAY_IMPORT[fromTop as string]
    if (allowed === undefined) continue
    const name = `${edge.from} → ${edge.to}`
    // Source never reaches into tests, scripts or benchmarks; what is not code (package.json) is not checked.
    if (!SOURCE.includes(toTop as string)) {
      if (edge.to.endsWith('.ts')) out.push(name)
      continue
    }
    if (!allowed.includes(toTop as string)) {
      out.push(name)
      continue
    }
    if (fromTop !== 'agent' || toTop !== 'agent' || fromSub === toSub) continue
    if (toSub === 'main') out.push(name)
    else if (fromSub === 'cli' && toSub !== 'main' && !CLI_MAY_IMPORT.has(toSub as string) && !edge.typeOnly) out.push(name)
  }
  return out
}

function sourceFiles (dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => relative(ROOT, join(e.parentPath, e.name)).split('\\').join('/'))
}

const edge = (from: string, to: string, { typeOnly = false, dynamic = false } = {}): Edge => ({ from, to, typeOnly, dynamic })

t.test('every form of import is read, comments are not', async (t) => {
  const source = [
    "import { a } from './a.ts'",
    "import type { B } from '../b.ts'",
    "import { type C, type D as E } from './c.ts'",
    "import { type F, g } from './f.ts'",
    'import def, {',
    '  h,',
    '  i',
    "} from './h.ts'",
    "import * as ns from './ns.ts'",
    "import './side.ts'",
    "export { j } from './j.ts'",
    "export type { K } from './k.ts'",
    "export * from './star.ts'",
    "import { EventEmitter } from 'node:events'",
    "const m = await import('./m.ts')",
    "const url = new URL('./worker.ts', import.meta.url)",
    "const other = new URL('https://example.com/')",
    "// const n = await import('./commented.ts')",
    "/* new URL('./block.ts', import.meta.url) */",
    " * import { x } from './doc.ts'",
    'const o = await import(`./${name}.ts`)'
  ].join('\n')
  t.same(importsOf(source), [
    { specifier: './a.ts', typeOnly: false, dynamic: false },
    { specifier: '../b.ts', typeOnly: true, dynamic: false },
    { specifier: './c.ts', typeOnly: true, dynamic: false },
    { specifier: './f.ts', typeOnly: false, dynamic: false },
    { specifier: './h.ts', typeOnly: false, dynamic: false },
    { specifier: './ns.ts', typeOnly: false, dynamic: false },
    { specifier: 'node:events', typeOnly: false, dynamic: false },
    { specifier: './j.ts', typeOnly: false, dynamic: false },
    { specifier: './k.ts', typeOnly: true, dynamic: false },
    { specifier: './star.ts', typeOnly: false, dynamic: false },
    { specifier: './side.ts', typeOnly: false, dynamic: false },
    { specifier: './m.ts', typeOnly: false, dynamic: true },
    { specifier: './worker.ts', typeOnly: false, dynamic: true }
  ])
  t.same(edgesOf('media/cameras.ts', "import type { ModelRuntime } from '../runtime/model-runtime.ts'\nimport { z } from 'zod'"),
    [edge('media/cameras.ts', 'runtime/model-runtime.ts', { typeOnly: true })], 'relative specifiers resolve from the repository root')
})

t.test('the rule catches each kind of violation', async (t) => {
  t.same(violations([
    edge('protocols/validator.ts', 'agent/metrics/metrics.ts', { typeOnly: true }),
    edge('runtime/pool.ts', 'media/camera.ts'),
    edge('protocols/codec.ts', 'runtime/tensors.ts'),
    edge('identity/keys.ts', 'runtime/files.ts'),
    edge('common/errors.ts', 'protocols/codec.ts'),
    edge('media/camera.ts', 'identity/keys.ts'),
    edge('runtime/pool.ts', 'test/helpers/agents.ts'),
    edge('agent/ingest/mqtt.ts', 'agent/main/lifecycle.ts', { typeOnly: true }),
    edge('agent/cli/cli.ts', 'agent/main/version.ts'),
    edge('agent/cli/format.ts', 'agent/main/agent.ts', { dynamic: true }),
    edge('agent/cli/cli.ts', 'agent/api/views.ts'),
    edge('agent/cli/cli.ts', 'agent/ingest/ingest.ts')
  ]), [
    'protocols/validator.ts → agent/metrics/metrics.ts',
    'runtime/pool.ts → media/camera.ts',
    'protocols/codec.ts → runtime/tensors.ts',
    'identity/keys.ts → runtime/files.ts',
    'common/errors.ts → protocols/codec.ts',
    'media/camera.ts → identity/keys.ts',
    'runtime/pool.ts → test/helpers/agents.ts',
    'agent/ingest/mqtt.ts → agent/main/lifecycle.ts',
    'agent/cli/cli.ts → agent/main/version.ts',
    'agent/cli/format.ts → agent/main/agent.ts',
    'agent/cli/cli.ts → agent/api/views.ts',
    'agent/cli/cli.ts → agent/ingest/ingest.ts'
  ])
  t.same(violations([
    edge('media/cameras.ts', 'runtime/model-runtime.ts'),
    edge('media/camera-credentials.ts', 'protocols/work.ts'),
    edge('identity/operators.ts', 'protocols/identity.ts'),
    edge('runtime/model-exchange.ts', 'common/errors.ts'),
    edge('agent/main/agent.ts', 'agent/api/server.ts'),
    edge('agent/ingest/mqtt.ts', 'agent/ingest/ingest.ts'),
    edge('agent/api/server.ts', 'agent/metrics/metrics.ts'),
    edge('agent/cli/cli.ts', 'agent/config/config.ts'),
    edge('agent/cli/cli.ts', 'agent/api/views.ts', { typeOnly: true }),
    edge('agent/main/noodle.ts', 'agent/cli/cli.ts'),
    edge('agent/main/version.ts', 'package.json', { dynamic: true })
  ]), [], 'allowed: the directions, inside a subsystem, the root wiring (the program entry included), the CLI\'s config and types')
})

t.test('the source keeps the rule', async (t) => {
  const edges = SOURCE.flatMap((dir) => sourceFiles(dir)).flatMap((file) => edgesOf(file, readFileSync(join(ROOT, file), 'utf8')))
  t.ok(edges.some((e) => e.from === 'media/cameras.ts' && e.to === 'runtime/model-runtime.ts'), 'the scan reads the tree (a known edge is found)')
  t.ok(edges.some((e) => e.dynamic && e.to === 'runtime/inference-worker.ts'), 'workers started by URL are edges too')
  t.same(violations(edges), [])
})
