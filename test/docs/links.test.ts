import { execFile } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

// The README and docs/ point at each other and at the code; a file moved or a heading renamed must fail here,
// with the broken references listed, rather than leave a newcomer at a dead link.

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const CLI = join(ROOT, 'agent/main/noodle.ts')
const DOCS = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)]
/** Top-level folders of the repository whose paths the docs name in backticks. */
const CODE_PATH = /^(agent|runtime|media|common|protocols|identity|scripts|bench|systemd|test|bin|docs)\//

/** The lines of a Markdown file outside fenced code blocks (a `# comment` in a shell block is not a heading). */
function prose (text: string): string[] {
  let fenced = false
  return text.split('\n').filter((line) => {
    if (line.startsWith('```')) {
      fenced = !fenced
      return false
    }
    return !fenced
  })
}

/** The lines inside fenced code blocks. */
function fencedLines (text: string): string[] {
  let fenced = false
  return text.split('\n').filter((line) => {
    if (line.startsWith('```')) {
      fenced = !fenced
      return false
    }
    return fenced
  })
}

/** A code path in a fenced block: a word that starts with a top-level folder and ends in a file or a slash. */
const FENCED_PATH = /(?<![\w/.-])(?:agent|runtime|media|common|protocols|identity|scripts|bench|systemd|bin)\/[\w./-]*[\w/]/g

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens; repeats get -1, -2… */
function anchors (text: string): Set<string> {
  const seen = new Map<string, number>()
  const out = new Set<string>()
  for (const line of prose(text)) {
    const heading = /^#{1,6}\s+(.*)$/.exec(line)
    if (heading === null) continue
    const slug = heading[1]!.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-')
    const n = seen.get(slug) ?? 0
    seen.set(slug, n + 1)
    out.add(n === 0 ? slug : `${slug}-${n}`)
  }
  return out
}

/** Inline code spans of the prose lines, and what is left of each line without them. */
function splitCode (line: string): { code: string[], rest: string } {
  const code: string[] = []
  const rest = line.replace(/`([^`]+)`/g, (_, span: string) => {
    code.push(span)
    return ''
  })
  return { code, rest }
}

function read (file: string): string {
  return readFileSync(join(ROOT, file), 'utf8')
}

t.test('every relative link in the README and docs/ reaches a file, and its anchor a heading', async (t) => {
  const broken: string[] = []
  let checked = 0
  for (const file of DOCS) {
    for (const line of prose(read(file))) {
      for (const [, target] of splitCode(line).rest.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue // http:, https:, mailto:
        checked++
        const [path, anchor] = target!.split('#') as [string, string | undefined]
        const dest = path === '' ? join(ROOT, file) : resolve(dirname(join(ROOT, file)), path)
        if (!existsSync(dest)) {
          broken.push(`${file}: ${target} (no such file)`)
        } else if (anchor !== undefined && (!dest.endsWith('.md') || !anchors(readFileSync(dest, 'utf8')).has(anchor))) {
          broken.push(`${file}: ${target} (no such heading in ${relative(ROOT, dest)})`)
        }
      }
    }
  }
  t.ok(checked > 20, `links checked: ${checked}`)
  t.same(broken, [])
})

t.test('every code path the README and docs/ name in backticks exists', async (t) => {
  const missing: string[] = []
  let checked = 0
  for (const file of DOCS) {
    // Diagrams and commands in fenced blocks name files too (`node scripts/mesh-publish.ts …`).
    for (const line of fencedLines(read(file))) {
      for (const [path] of line.matchAll(FENCED_PATH)) {
        checked++
        if (!existsSync(join(ROOT, path))) missing.push(`${file}: ${path}`)
      }
    }
    for (const line of prose(read(file))) {
      for (const span of splitCode(line).code) {
        // Each word of a span: `node bench/media.ts --frames 3000` names bench/media.ts.
        for (const path of span.split(/\s+/)) {
          // Patterns and elisions (`test/agent/<subsystem>/*.test.ts`, `agent/…`) name no one file.
          if (!CODE_PATH.test(path) || /[<>*…{}]/.test(path)) continue
          checked++
          if (!existsSync(join(ROOT, path))) missing.push(`${file}: ${path}`)
        }
      }
    }
  }
  t.ok(checked > 10, `paths checked: ${checked}`)
  t.same(missing, [])
})

t.test('the README links every page of docs/', async (t) => {
  const readme = read('README.md')
  const unlinked = DOCS.filter((f) => f !== 'README.md' && !readme.includes(`](${f})`))
  t.same(unlinked, [])
})

t.test('the CLI reference and the README table name exactly the commands of `noodle help`', async (t) => {
  const help = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, [CLI, 'help'], { timeout: 20_000 }, (err, stdout) => err ? reject(err) : resolve(stdout))
  })
  const usage = help.split('\n').filter((l) => l.startsWith('  noodle ')).map((l) => l.trim())
  // docs/cli.md's usage block: each line's synopsis, without the description after two spaces.
  const block = /```\n(noodle [\s\S]*?)```/.exec(read('docs/cli.md'))?.[1] ?? ''
  const synopses = block.split('\n').filter((l) => l.startsWith('noodle ')).map((l) => l.split(/ {2,}/)[0]!)
  // A synopsis covers a usage line when what follows it there is the description, not one more argument
  // (`[--json]`, `--flag`, `| …`, or a placeholder such as `FILE`).
  const moreArguments = /^\s+(?:[[|-]|[A-Z][A-Z0-9_]*(?:$|\s+[[A-Z|-]))/
  const covers = (synopsis: string, line: string): boolean =>
    line === synopsis || (line.startsWith(`${synopsis} `) && !moreArguments.test(line.slice(synopsis.length)))
  t.same({
    undocumented: usage.filter((line) => !synopses.some((s) => covers(s, line))),
    unknown: synopses.filter((s) => !usage.some((line) => covers(s, line)))
  }, { undocumented: [], unknown: [] }, 'docs/cli.md lists the commands of `noodle help`, with the same arguments')

  const commands = (lines: string[]): string[] =>
    [...new Set(lines.flatMap((l) => [...l.matchAll(/noodle ([a-z-]+)/g)].map((m) => m[1]!)))].sort()
  const table = prose(read('README.md')).filter((l) => l.startsWith('| `noodle '))
  const inTable = commands(table.map((row) => row.split(' | ')[0]!))
  t.same(inTable, commands(usage).filter((c) => c !== 'help'), 'the README table names each command once at least')
  t.ok(statSync(join(ROOT, 'README.md')).size < 16 * 1024, 'the README stays a five-minute read')
})

t.test('docs/architecture.md names classes, functions and files that exist', async (t) => {
  const text = read('docs/architecture.md')
  const sources = ['agent', 'common', 'protocols', 'runtime', 'media', 'identity']
    .flatMap((dir) => readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).map((f) => join(dir, f)))
  const code = new Map(sources.map((f) => [f, read(f)]))
  const exporter = (name: string): string | undefined => [...code].find(([, src]) =>
    new RegExp(`^export (?:declare )?(?:abstract )?(?:async )?(?:class|interface|type|function|const) ${name}\\b`, 'm').test(src))?.[0]
  const unknown: string[] = []
  const names = new Set<string>()
  // The steps of the diagrams (`HealthSampler       agent/…`), and `Name`, `Name.method()`, `camelCase()` in the text.
  for (const line of fencedLines(text)) {
    const step = /^([A-Z][A-Za-z]+)\s/.exec(line)
    if (step !== null) names.add(step[1]!)
    for (const [, name] of line.matchAll(/\b([A-Za-z]\w*(?:\.\w+)?)\(\)/g)) names.add(name!)
  }
  for (const line of prose(text)) {
    for (const span of splitCode(line).code) {
      const m = /^([A-Za-z]\w*(?:\.\w+)?)(\(.*\))?$/.exec(span)
      if (m === null || ['start', 'stop'].includes(m[1]!)) continue
      if (/[A-Z]/.test(m[1]!) || m[2] !== undefined) names.add(m[1]!)
    }
  }
  for (const name of names) {
    const [owner, member] = name.split('.') as [string, string | undefined]
    const file = exporter(owner)
    if (file === undefined) unknown.push(`${name}: nothing exports ${owner}`)
    else if (member !== undefined && !new RegExp(`^ {2}(?:(?:static|async|get) )*${member} ?[(<]`, 'm').test(code.get(file)!)) unknown.push(`${name}: no ${member} in ${file}`)
  }
  // The folder map: each `file.ts` or `folder/` a row names is in that row's folder.
  for (const row of prose(text).filter((l) => /^\| `[a-z]+\/[a-z]*\/?` \|/.test(l))) {
    const folder = /^\| `([^`]+)`/.exec(row)![1]!
    for (const span of splitCode(row.slice(row.indexOf('|', 2))).code) {
      if (/^[\w-]+(\.ts|\/)$/.test(span) && !existsSync(join(ROOT, folder, span))) unknown.push(`${folder}${span}`)
    }
  }
  t.ok(names.size > 15, `names checked: ${[...names].sort().join(' ')}`)
  t.same(unknown, [])
})
