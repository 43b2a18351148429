import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { GOSSIP_CODECS } from '../../protocols/gossip-codecs.ts'
import { TOPICS } from '../../protocols/topics.ts'

// The wire names the docs give (gossip topics, stream protocols) are public: a peer, a tool or a firewall rule
// depends on them. Each one the docs name must be one the code speaks, and docs/gossip.md must name every topic.

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const docs = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)]
const read = (file: string): string => readFileSync(join(ROOT, file), 'utf8')

/** Every source file of ours, read once: where a stream protocol's name must appear. */
function sources (): string {
  return ['agent', 'common', 'protocols', 'runtime', 'media', 'identity']
    .flatMap((dir) => readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).map((f) => read(join(dir, f))))
    .join('\n')
}

t.test('docs/gossip.md names every gossip topic, and the docs no topic the agent does not have', async (t) => {
  const topics: string[] = Object.values(TOPICS)
  t.same(topics.filter((topic) => !read('docs/gossip.md').includes(`\`${topic}\``)), [], 'topics missing from docs/gossip.md')
  t.same([...GOSSIP_CODECS.keys()].sort(), topics.slice().sort(), 'each topic has its codec')
  const unknown = docs.flatMap((file) => [...read(file).matchAll(/\bnoodle\/\d+\/[a-z.]*[a-z]/g)]
    .map((m) => m[0]).filter((topic) => !topics.includes(topic)).map((topic) => `${file}: ${topic}`))
  t.same(unknown, [])
})

t.test('every stream protocol the docs name is one the agent speaks', async (t) => {
  const code = sources()
  const named = new Set(docs.flatMap((file) => [...read(file).matchAll(/\/noodle\/[a-z-]+\/\d+\.\d+\.\d+/g)].map((m) => m[0])))
  t.ok(named.size >= 2, `protocols named: ${[...named].join(' ')}`)
  t.same([...named].filter((protocol) => !code.includes(`'${protocol}'`)), [])
})

t.test('every metric the docs name is in docs/metrics.md, the reference tested against the registry', async (t) => {
  // `noodle_ingest_{received,stored}_total` names two.
  const expand = (name: string): string[] => {
    const braces = /^(.*)\{([a-z_,]+)\}(.*)$/.exec(name)
    return braces === null ? [name] : braces[2]!.split(',').map((part) => `${braces[1]}${part}${braces[3]}`)
  }
  const namedIn = (file: string): string[] =>
    [...read(file).matchAll(/\bnoodle_[a-z0-9_]*(?:\{[a-z_,]+\}[a-z0-9_]*)?[a-z0-9]/g)].flatMap((m) => expand(m[0]))
  const reference = new Set(namedIn('docs/metrics.md'))
  t.ok(reference.size > 10, `metrics in the reference: ${reference.size}`)
  const elsewhere = docs.filter((file) => file !== 'docs/metrics.md').flatMap((file) => namedIn(file).map((name) => ({ file, name })))
  // The page's session cookie is named like a metric, and is none.
  const notMetrics = new Set(['noodle_session'])
  t.same(elsewhere.filter(({ name }) => !reference.has(name) && !notMetrics.has(name)).map(({ file, name }) => `${file}: ${name}`), [])
})
