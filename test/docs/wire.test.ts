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
