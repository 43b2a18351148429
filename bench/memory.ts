#!/usr/bin/env node
/**
 * Memory benchmark: what each part of the agent costs in resident memory, measured in fresh processes of the
 * pinned Node (node_modules/node/bin/node). Each stage imports everything the stages before it did and one part
 * more, in a process of its own; a line per stage gives its RSS, the private (anonymous) part of it, and V8's
 * heap, each after a full GC, and what the stage added to the one before (with bin/noodle's node flags and env):
 *
 *   bare node                        rss  45.8 MB  private   9.2 MB  heap   4.4 MB
 *   + type stripping (common/)       rss +25.3 MB  private +12.4 MB  heap  +4.1 MB
 *   …
 *
 * (Node's TypeScript stripper is WebAssembly whose memory grows with the largest file it strips: part of its cost
 * shows in the stages after the first .ts file.) Then whole agents, as bin/noodle starts them, idle with no camera
 * and no peer, sampled after `--idle-s`: at a first start (no compile cache) and at later ones (the unit's
 * CacheDirectory holds it: a warm cache never loads the stripper), then with bin/noodle's memory settings taken off
 * one at a time, and the JavaScript a release ships (`variants`); each with the time from spawn to "agent
 * started", and whether onnxruntime or node-av is mapped into the process at all (never, with no camera).
 *
 *   node bench/memory.ts [--idle-s 8] [--runs 3] [--parts imports,agent,variants]
 */
import { execFileSync, spawn } from 'node:child_process'
import { copyFileSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { percentile } from '../common/stats.ts'
import { COMPILED, appFiles, compileApp } from '../scripts/release.ts'

const { values } = parseArgs({ options: { 'idle-s': { type: 'string', default: '8' }, runs: { type: 'string', default: '3' }, parts: { type: 'string', default: 'imports,agent,variants' } } })
const idleMs = Number(values['idle-s']) * 1000
const runs = Math.max(1, Number(values.runs))
const parts = new Set((values.parts ?? '').split(','))
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const NODE = join(ROOT, 'node_modules/node/bin/node')
const BIN = join(ROOT, 'bin/noodle')
const MB = 1024 ** 2
/** What bin/noodle runs the agent with: its node flags and MALLOC_ARENA_MAX, read from it (variants change one). */
const binText = readFileSync(BIN, 'utf8')
const SHIPPED_FLAGS = [...binText.matchAll(/ (--[a-z-]+=\S+)/g)].map((m) => m[1] as string)
const SHIPPED_ENV = { MALLOC_ARENA_MAX: /MALLOC_ARENA_MAX:-(\d+)/.exec(binText)?.[1] }

/** Resident memory of a process, the private (anonymous) part of it, from /proc/<pid>/status (bytes). */
export function processMemory (pid: number | string): { rss: number, anon: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024
  return { rss: kb('VmRSS'), anon: kb('RssAnon') }
}

/** The shared objects and addons mapped into a process: what native code it has loaded. */
export function mappedLibraries (pid: number | string): string[] {
  const files = readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').map((line) => line.split(/\s+/)[5] ?? '')
  return [...new Set(files.filter((f) => f.endsWith('.node') || /\.so(\.|$)/.test(f)))]
}

const src = (path: string) => JSON.stringify(pathToFileURL(join(ROOT, path)).href)
const pkg = (name: string) => JSON.stringify(name)

/**
 * The stages, each the code a fresh process runs before it is measured (module code, cumulative). Imports only:
 * what loading a part costs before it does anything; the agent lines below show a whole one running.
 */
const STAGES: Array<[string, string]> = [
  ['bare node', ''],
  // The first .ts file brings in Node's TypeScript stripper (amaro, WebAssembly); common/ imports nothing else.
  ['+ type stripping (common/)', `await import(${src('common/errors.ts')}); await import(${src('common/stats.ts')}); await import(${src('common/bounded-map.ts')})`],
  ['+ zod and our schemas (config, wire)', `await import(${src('agent/config/schema.ts')}); await import(${src('protocols/gossip-codecs.ts')}); await import(${src('protocols/model-fetch.ts')})`],
  ['+ pino (logger)', `(await import(${src('common/logger.ts')}))`],
  ['+ prom-client', `await import(${pkg('prom-client')})`],
  ['+ libp2p with our services', ['libp2p', '@libp2p/tcp', '@chainsafe/libp2p-noise', '@chainsafe/libp2p-yamux', '@libp2p/identify', '@libp2p/ping', '@libp2p/bootstrap', '@libp2p/mdns', '@libp2p/pnet']
    .map((m) => `await import(${pkg(m)})`).join('; ')],
  ['+ gossipsub', `await import(${pkg('@libp2p/gossipsub')})`],
  ['+ better-sqlite3 (open a store)', `const { default: Database } = await import(${pkg('better-sqlite3')}); globalThis.db = new Database(':memory:'); globalThis.db.exec('CREATE TABLE t (x)')`],
  ['+ the whole agent (agent/main/agent.ts, not started)', `await import(${src('agent/main/agent.ts')})`],
  ['+ onnxruntime-node (in this thread)', `await import(${pkg('onnxruntime-node')})`],
  ['+ node-av (in this thread)', `await import(${pkg('node-av/api')})`]
]

interface Sample { rss: number, anon: number, heap: number }

/** Runs the stages up to `upTo` in a fresh process and returns its memory after a full GC. */
async function measureStage (upTo: number): Promise<Sample> {
  const code = STAGES.slice(0, upTo + 1).map(([, c]) => c).filter((c) => c !== '').join(';\n') +
    ';\nawait new Promise((r) => setTimeout(r, 300)); globalThis.gc(); globalThis.gc();\n' +
    'const s = (await import("node:fs")).readFileSync("/proc/self/status", "utf8"); const kb = (f) => Number(new RegExp(f + ":\\\\s+(\\\\d+) kB").exec(s)[1]) * 1024;\n' +
    'process.stdout.write(JSON.stringify({ rss: kb("VmRSS"), anon: kb("RssAnon"), heap: process.memoryUsage().heapUsed }))'
  // Module code from stdin: the bare stage must not load the TypeScript stripper.
  const out = execFileSync(NODE, [...SHIPPED_FLAGS, '--expose-gc', '--input-type=module', '-'], { input: code, cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...SHIPPED_ENV } })
  return JSON.parse(out) as Sample
}

const median = (xs: number[]) => percentile(xs, 50)
const fmt = (bytes: number, sign = false) => `${sign && bytes >= 0 ? '+' : ''}${(bytes / MB).toFixed(1)} MB`.padStart(sign ? 9 : 8)

async function imports (): Promise<void> {
  process.stdout.write(`\nimports: each stage in a fresh process, median of ${runs}; after a full GC\n`)
  let before: Sample | undefined
  for (let i = 0; i < STAGES.length; i++) {
    const samples: Sample[] = []
    for (let r = 0; r < runs; r++) samples.push(await measureStage(i))
    const s: Sample = { rss: median(samples.map((x) => x.rss)), anon: median(samples.map((x) => x.anon)), heap: median(samples.map((x) => x.heap)) }
    const name = (STAGES[i] as [string, string])[0].padEnd(54)
    process.stdout.write(before === undefined
      ? `${name} rss ${fmt(s.rss)}  private ${fmt(s.anon)}  heap ${fmt(s.heap)}\n`
      : `${name} rss ${fmt(s.rss - before.rss, true)}  private ${fmt(s.anon - before.anon, true)}  heap ${fmt(s.heap - before.heap, true)}\n`)
    before = s
  }
}

/**
 * One idle agent started as bin/noodle starts it (`env`, `nodeFlags` change that; `entry` is the CLI, another
 * for precompiled JS), sampled after idleMs. With no NODE_COMPILE_CACHE in `env` it runs without one.
 */
async function idleAgent (env: Record<string, string | undefined>, nodeFlags: string[], entry = join(ROOT, 'agent/main/noodle.ts')): Promise<{ rss: number, anon: number, heavy: string[], startMs: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'noodle-mem-'))
  try {
    const key = join(dir, 'swarm.key')
    const { generateSwarmKey } = await import('../identity/keys.ts')
    writeFileSync(key, generateSwarmKey(), { mode: 0o600 })
    const args = ['agent', '--data-dir', join(dir, 'data'), '--name', 'mem', '--swarm-key', key, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--log-level', 'info']
    // bin/noodle's command line, run directly so that each variant changes one thing.
    const environment: Record<string, string | undefined> = { ...process.env, NODE_COMPILE_CACHE: undefined, ...env }
    // Unset, not the string "undefined".
    for (const [key, value] of Object.entries(environment)) if (value === undefined) Reflect.deleteProperty(environment, key)
    const child = spawn(NODE, [...nodeFlags, entry, ...args], { env: environment, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (d: Buffer) => { output += d.toString() })
    child.stderr.on('data', (d: Buffer) => { output += d.toString() })
    const started = Date.now()
    while (!output.includes('"agent started"')) {
      if (child.exitCode !== null || Date.now() - started > 30_000) throw new Error(`the agent did not start:\n${output}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    const startMs = Date.now() - started
    await new Promise((resolve) => setTimeout(resolve, idleMs))
    if (child.exitCode !== null) throw new Error(`the agent exited while idle:\n${output}`)
    const pid = child.pid as number
    const { rss, anon } = processMemory(pid)
    const heavy = mappedLibraries(pid).filter((f) => /onnxruntime|node-av|libav|ffmpeg/i.test(f))
    child.kill('SIGTERM')
    await new Promise((resolve) => child.once('exit', resolve))
    return { rss, anon, heavy, startMs }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

async function agentLine (name: string, env: Record<string, string | undefined>, nodeFlags: string[], entry?: string): Promise<void> {
  const samples = []
  for (let r = 0; r < runs; r++) samples.push(await idleAgent(env, nodeFlags, entry))
  const heavy = [...new Set(samples.flatMap((s) => s.heavy))]
  process.stdout.write(`${name.padEnd(54)} rss ${fmt(median(samples.map((s) => s.rss)))}  private ${fmt(median(samples.map((s) => s.anon)))}  ` +
    `start ${Math.round(median(samples.map((s) => s.startMs)))} ms  onnxruntime/node-av mapped: ${heavy.length === 0 ? 'no' : heavy.join(', ')}\n`)
}


if (parts.has('imports')) await imports()
if (parts.has('agent') || parts.has('variants')) {
  process.stdout.write(`\nidle agent, no camera, no peer: ${values['idle-s']} s after "agent started", median of ${runs}\n`)
  await agentLine(`agent as bin/noodle runs it, first start (${[...SHIPPED_FLAGS, `MALLOC_ARENA_MAX=${SHIPPED_ENV.MALLOC_ARENA_MAX}`].join(' ')})`, SHIPPED_ENV, SHIPPED_FLAGS)
  // The unit's CacheDirectory: the first start fills it, every later one starts from it.
  const cache = mkdtempSync(join(tmpdir(), 'noodle-mem-cache-'))
  try {
    await idleAgent({ ...SHIPPED_ENV, NODE_COMPILE_CACHE: cache }, SHIPPED_FLAGS)
    await agentLine('agent as bin/noodle runs it, later starts (warm compile cache)', { ...SHIPPED_ENV, NODE_COMPILE_CACHE: cache }, SHIPPED_FLAGS)
  } finally {
    rmSync(cache, { recursive: true, force: true })
  }
}
if (parts.has('variants')) {
  // Each from the first start's settings, one thing changed. (--jitless cannot run TypeScript: the stripper is WebAssembly.)
  for (const flag of SHIPPED_FLAGS) await agentLine(`  without ${flag}`, SHIPPED_ENV, SHIPPED_FLAGS.filter((f) => f !== flag))
  await agentLine('  without MALLOC_ARENA_MAX (glibc default)', { MALLOC_ARENA_MAX: undefined }, SHIPPED_FLAGS)
  // Tried and not adopted: more RSS, not less.
  await agentLine('  + --single-threaded-gc', SHIPPED_ENV, [...SHIPPED_FLAGS, '--single-threaded-gc'])
  // The sources compiled to JavaScript as a release ships them (scripts/release.ts), so no type stripping happens.
  const out = mkdtempSync(join(tmpdir(), 'noodle-mem-js-'))
  try {
    compileApp(ROOT, out, appFiles(ROOT).filter((file) => COMPILED.test(file)), () => {})
    symlinkSync(join(ROOT, 'node_modules'), join(out, 'node_modules'))
    copyFileSync(join(ROOT, 'package.json'), join(out, 'package.json'))
    await agentLine('  compiled JavaScript, as a release ships it, no compile cache', SHIPPED_ENV, SHIPPED_FLAGS, join(out, 'agent/main/noodle.js'))
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
}
