/**
 * The dependency rule, checked on every import of the source, read by a TypeScript parser (static, `import type`,
 * `export … from`, dynamic `import()`, `new URL('…', import.meta.url)`, `import.meta.resolve` and `require`):
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
 * such as agent/api/views.ts). The program's entry (agent/main/noodle.ts) is in agent/main/ too: it hands the CLI
 * the one thing the CLI cannot do itself, running an agent, so the rule has no exception.
 */
import { parse, type ParserOptions } from '@babel/parser'
import { isExportSpecifier, isIdentifier, isImportSpecifier, isMemberExpression, isMetaProperty, isStringLiteral, isTemplateLiteral, traverseFast, type Node } from '@babel/types'
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
  /** Named by an expression the code evaluates: `import()`, `new URL(…, import.meta.url)`, `import.meta.resolve`, `require`. */
  dynamic: boolean
}

export interface Edge {
  from: string
  to: string
  typeOnly: boolean
  dynamic: boolean
}

/** Babel's parser with TypeScript syntax: `import()` read as an ImportExpression, as ESTree has it. */
const PARSE_OPTIONS: ParserOptions = { sourceType: 'module', plugins: ['typescript'], createImportExpressions: true }

/** A specifier written as a literal: a string, or a template without substitutions; undefined when computed. */
function literal (node: Node | null | undefined): string | undefined {
  if (isStringLiteral(node)) return node.value
  if (isTemplateLiteral(node) && node.expressions.length === 0) return node.quasis[0]?.value.cooked ?? undefined
  return undefined
}

/** Whether `node` is `import.meta.<name>`. */
function isImportMeta (node: Node | null | undefined, name: string): boolean {
  return isMemberExpression(node) && !node.computed && isIdentifier(node.property, { name }) &&
    isMetaProperty(node.object) && node.object.meta.name === 'import' && node.object.property.name === 'meta'
}

/** The module a node names, if it names one: declarations, type imports and the calls that load or locate one. */
function importOf (node: Node): Import | undefined {
  const stated = (specifier: string, typeOnly: boolean): Import => ({ specifier, typeOnly, dynamic: false })
  const called = (specifier: string | undefined): Import | undefined =>
    specifier === undefined ? undefined : { specifier, typeOnly: false, dynamic: true }
  switch (node.type) {
    case 'ImportDeclaration':
      return stated(node.source.value, node.importKind === 'type' ||
        (node.specifiers.length > 0 && node.specifiers.every((s) => isImportSpecifier(s) && s.importKind === 'type')))
    case 'ExportNamedDeclaration':
      if (node.source == null) return undefined
      return stated(node.source.value, node.exportKind === 'type' ||
        (node.specifiers.length > 0 && node.specifiers.every((s) => isExportSpecifier(s) && s.exportKind === 'type')))
    case 'ExportAllDeclaration':
      return stated(node.source.value, node.exportKind === 'type')
    case 'TSImportType': // `type T = import('./x.ts').T`
      return stated(node.argument.value, true)
    case 'ImportExpression': // `await import('./x.ts')`
      return called(literal(node.source))
    case 'CallExpression': { // `import.meta.resolve('./x.ts')`, `require('./x.ts')`
      if (isImportMeta(node.callee, 'resolve') || isIdentifier(node.callee, { name: 'require' })) {
        return called(literal(node.arguments[0] as Node | undefined))
      }
      // `siblingModule(import.meta.url, 'worker')` (common/modules.ts): the module of that name beside this one.
      if (isIdentifier(node.callee, { name: 'siblingModule' }) && isImportMeta(node.arguments[0] as Node | undefined, 'url')) {
        const name = literal(node.arguments[1] as Node | undefined)
        return called(name === undefined ? undefined : `./${name}.ts`)
      }
      return undefined
    }
    case 'NewExpression': // `new URL('./worker.ts', import.meta.url)`
      if (isIdentifier(node.callee, { name: 'URL' }) && isImportMeta(node.arguments[1] as Node | undefined, 'url')) {
        return called(literal(node.arguments[0] as Node | undefined))
      }
      return undefined
    default:
      return undefined
  }
}

/** Every module specifier a TypeScript file names, in source order; what only a comment or a string shows is not one. */
export function importsOf (source: string, file = 'source'): Import[] {
  let ast: ReturnType<typeof parse>
  try {
    ast = parse(source, PARSE_OPTIONS)
  } catch (err) {
    throw new Error(`${file} does not parse: ${(err as Error).message}`, { cause: err })
  }
  const out: Import[] = []
  traverseFast(ast, (node) => {
    const found = importOf(node)
    if (found !== undefined) out.push(found)
  })
  return out
}

/** The files of ours each file imports, as paths from the repository root; packages and `node:` are left out. */
export function edgesOf (file: string, source: string): Edge[] {
  return importsOf(source, file)
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

t.test('every form of import is read, comments and strings are not', async (t) => {
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
    "export { type L } from './l.ts'",
    "export * from './star.ts'",
    "export type * from './types.ts'",
    "import { EventEmitter } from 'node:events'",
    "const m = await import('./m.ts')",
    'const t = await import(`./template.ts`)',
    "const url = new URL('./worker.ts', import.meta.url)",
    "const sibling = siblingModule(import.meta.url, 'sibling-worker')",
    "const other = new URL('https://example.com/')",
    "const near = new URL('./not-a-module.ts', base)",
    "type P = import('./p.ts').P",
    "const r = require('./r.cjs')",
    "// const n = await import('./commented.ts')",
    "/* new URL('./block.ts', import.meta.url) */",
    '/**',
    " * import { x } from './doc.ts'",
    ' */',
    "const s = \"import { y } from './string.ts'\"",
    'const o = await import(`./${name}.ts`)',
    'const q = await import(name)'
  ].join('\n')
  t.same(importsOf(source), [
    { specifier: './a.ts', typeOnly: false, dynamic: false },
    { specifier: '../b.ts', typeOnly: true, dynamic: false },
    { specifier: './c.ts', typeOnly: true, dynamic: false },
    { specifier: './f.ts', typeOnly: false, dynamic: false },
    { specifier: './h.ts', typeOnly: false, dynamic: false },
    { specifier: './ns.ts', typeOnly: false, dynamic: false },
    { specifier: './side.ts', typeOnly: false, dynamic: false },
    { specifier: './j.ts', typeOnly: false, dynamic: false },
    { specifier: './k.ts', typeOnly: true, dynamic: false },
    { specifier: './l.ts', typeOnly: true, dynamic: false },
    { specifier: './star.ts', typeOnly: false, dynamic: false },
    { specifier: './types.ts', typeOnly: true, dynamic: false },
    { specifier: 'node:events', typeOnly: false, dynamic: false },
    { specifier: './m.ts', typeOnly: false, dynamic: true },
    { specifier: './template.ts', typeOnly: false, dynamic: true },
    { specifier: './worker.ts', typeOnly: false, dynamic: true },
    { specifier: './sibling-worker.ts', typeOnly: false, dynamic: true },
    { specifier: './p.ts', typeOnly: true, dynamic: false },
    { specifier: './r.cjs', typeOnly: false, dynamic: true }
  ])
  t.same(edgesOf('media/cameras.ts', "import type { ModelRuntime } from '../runtime/model-runtime.ts'\nimport { z } from 'zod'"),
    [edge('media/cameras.ts', 'runtime/model-runtime.ts', { typeOnly: true })], 'relative specifiers resolve from the repository root')
  t.throws(() => edgesOf('media/broken.ts', 'import { a from'), /^media\/broken\.ts does not parse: /, 'a file that does not parse fails the scan, named')
})

t.test('imports a line-by-line scan missed are read', async (t) => {
  const source = [
    "x = 1; import { y } from '../agent/config/config.ts'",
    'import {',
    '  a, // }',
    '  b',
    "} from '../agent/x.ts'",
    "const resolved = import.meta.resolve('../agent/main/agent.ts')",
    "const u = 'http://x'; await import('../agent/main/lifecycle.ts')"
  ].join('\n')
  t.same(importsOf(source), [
    { specifier: '../agent/config/config.ts', typeOnly: false, dynamic: false },
    { specifier: '../agent/x.ts', typeOnly: false, dynamic: false },
    { specifier: '../agent/main/agent.ts', typeOnly: false, dynamic: true },
    { specifier: '../agent/main/lifecycle.ts', typeOnly: false, dynamic: true }
  ], 'an import after a statement, a } in a comment, import.meta.resolve, a // in a string')
  t.same(violations(edgesOf('protocols/codec.ts', source)), [
    'protocols/codec.ts → agent/config/config.ts',
    'protocols/codec.ts → agent/x.ts',
    'protocols/codec.ts → agent/main/agent.ts',
    'protocols/codec.ts → agent/main/lifecycle.ts'
  ], 'each is a violation from a leaf')
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
