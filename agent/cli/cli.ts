#!/usr/bin/env node
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import type { UiView } from '../api/routes/page.ts'
import type { ParseArgsConfig } from 'node:util'
import { apiGet, apiRequest, apiText } from './client.ts'
import { loadConfig } from '../config/config.ts'
import { agentFlagOptions, agentFlagsHelp } from '../config/flags.ts'
import type { AgentFlags } from '../config/config.ts'
import { AgentUnreachableError, ApiError, NoodleError, UsageError } from '../../common/errors.ts'
import {
  formatBench, formatCamerasTable, formatCompile, formatEventsTable, formatDecisionsTable, formatIngest, formatModelsTable, formatNodesTable, formatOperatorsTable, formatOptimize,
  formatSensorsTable, formatStatus
} from './format.ts'
import type { OperatorView } from '../../protocols/identity.ts'
import { escapeJson, escapeText } from '../../common/text.ts'
import type { BenchResult, CompileResult } from '../../runtime/model-runtime.ts'
import type { IngestStatus } from '../ingest/ingest.ts'
import { VERSION } from '../../common/version.ts'
import type { OptimizeResponse } from '../../protocols/optimize.ts'
import type { CameraListView, DecisionView, ModelView, NodeView, SensorReadingView, StatusView } from '../api/views.ts'
import type { EventView } from '../../media/camera-events.ts'

// The agent, libp2p and the key code load only for the commands that use them: `noodle nodes` stays quick.

const USAGE = `noodle ${VERSION} — edge mesh agent

Usage:
  noodle agent [options]          run the agent in the foreground (systemd runs this)
  noodle init [--data-dir DIR]    create the data dir, this node's identity and, if none, a swarm key
  noodle swarm-key                print a new swarm key (give every box of one mesh the same key)
  noodle status [--json]          this agent: name, peer id, role, coordinator and term, members
  noodle nodes [--json] [--watch] every member of the mesh as this agent sees it (* marks the coordinator)
  noodle decisions [--json] [--watch]  the coordinator's placement decisions this node issued or received
  noodle optimize [--json]        ask the coordinator for a fresh placement now (from any node)
  noodle sensors [--json] [--watch]  every sensor metric ingested here: latest value, rate, last seen
  noodle ingest [--json]          MQTT ingest totals: received, stored, rejected, dead letter, broker
  noodle cameras [--json] [--watch]  cameras: where each runs, fps in and inferred, skipped frames, latency
  noodle events [--camera C] [--label L] [--zone Z] [--since T] [--until T] [--limit N] [--json] [--watch]
                                  objects the cameras followed, newest first (T: ISO-8601, or 30m, 2h, 7d ago)
  noodle models [--json]          the ONNX models registered here, with their measured latency per provider
  noodle models compile FILE [--shape NAME=d1,d2,…]… [--json]  verify, optimize, benchmark and register an ONNX model file
  noodle models fetch ID [--json]  fetch a model another node announced (hash-checked), then compile it here
  noodle models bench ID [--runs N] [--shape 1,3,224,224 | --shape NAME=d1,d2,…]… [--json]  run a model flat out
  noodle metrics                  the agent's metrics in Prometheus's text format (as GET /metrics)
  noodle ui [--json]              where to open the web page (exit 1 when the agent serves none)
  noodle user list [--json]       operator accounts
  noodle user add NAME --email E --first-name F --last-name L [--phone P] [--role viewer|operator|admin] [--json]
                                  create one (the password is read from stdin, or asked for without echo)
  noodle user remove NAME         delete one
  noodle help | --version

Agent options (each also settable in the config file or as NOODLE_*, see docs/configuration.md):
${agentFlagsHelp()}
status, nodes, decisions, optimize, sensors, ingest, cameras, events and models reach the agent through --data-dir DIR (or --config FILE).
`

/** How the query commands find the agent: its config file or data dir, as `noodle agent` takes them. */
const COMMON = agentFlagOptions('config', 'data-dir')

const COMMANDS = {
  agent: agentFlagOptions(),
  init: agentFlagOptions('config', 'data-dir', 'swarm-key'),
  'swarm-key': {},
  status: { ...COMMON, json: { type: 'boolean' } },
  nodes: { ...COMMON, json: { type: 'boolean' }, watch: { type: 'boolean' } },
  decisions: { ...COMMON, json: { type: 'boolean' }, watch: { type: 'boolean' } },
  optimize: { ...COMMON, json: { type: 'boolean' } },
  sensors: { ...COMMON, json: { type: 'boolean' }, watch: { type: 'boolean' } },
  ingest: { ...COMMON, json: { type: 'boolean' } },
  cameras: { ...COMMON, json: { type: 'boolean' }, watch: { type: 'boolean' } },
  events: {
    ...COMMON,
    json: { type: 'boolean' },
    watch: { type: 'boolean' },
    camera: { type: 'string' },
    label: { type: 'string' },
    zone: { type: 'string' },
    since: { type: 'string' },
    until: { type: 'string' },
    limit: { type: 'string' }
  },
  metrics: { ...COMMON },
  ui: { ...COMMON, json: { type: 'boolean' } },
  user: {
    ...COMMON,
    json: { type: 'boolean' },
    email: { type: 'string' },
    'first-name': { type: 'string' },
    'last-name': { type: 'string' },
    phone: { type: 'string' },
    role: { type: 'string' }
  },
  models: { ...COMMON, json: { type: 'boolean' }, runs: { type: 'string' }, shape: { type: 'string', multiple: true } },
  help: {},
  version: {}
} as const satisfies Record<string, ParseArgsConfig['options']>

type Command = keyof typeof COMMANDS

/** Commands that take positional arguments (`models compile FILE`). */
const TAKES_POSITIONALS = new Set<Command>(['models', 'user'])

function parse (argv: string[]): { command: Command, flags: Record<string, unknown>, positionals: string[] } {
  const [first, ...rest] = argv
  const command = first === undefined || first === '--help' || first === '-h'
    ? 'help'
    : first === '--version' || first === '-v' ? 'version' : first
  if (!(command in COMMANDS)) throw new UsageError(`unknown command "${command}" (try \`noodle help\`)`)
  try {
    const { values, positionals } = parseArgs({ args: rest, options: COMMANDS[command as Command], strict: true, allowPositionals: TAKES_POSITIONALS.has(command as Command) })
    return { command: command as Command, flags: values, positionals }
  } catch (err) {
    throw new UsageError(`${command}: ${(err as Error).message.split('\n')[0] as string}`)
  }
}

async function runInit (flags: { 'data-dir'?: string, config?: string, 'swarm-key'?: string }): Promise<void> {
  const config = loadConfig({ flags })
  const { ensureDataDir, ensureSwarmKey, loadOrCreateIdentity } = await import('../../identity/keys.ts')
  ensureDataDir(config.dataDir)
  const { peerId, created } = await loadOrCreateIdentity(config.dataDir)
  const wroteKey = ensureSwarmKey(config.swarmKeyFile)
  process.stdout.write([
    `data dir:  ${config.dataDir}`,
    `peer id:   ${peerId.toString()}${created ? ' (new)' : ''}`,
    `swarm key: ${config.swarmKeyFile}${wroteKey ? ' (new: copy it to every other box of this mesh)' : ''}`
  ].join('\n') + '\n')
}

/**
 * An answer as the CLI prints it: JSON (`--json`) with the characters a terminal would act on escaped, or the
 * table `format` makes. The agent's answer is not trusted: one that `format` cannot read is a one-line error.
 */
function rendered<T> (body: T, format: (body: T) => string, json: boolean | undefined): string {
  if (json === true) return jsonText(body)
  try {
    return format(body)
  } catch (err) {
    throw new ApiError(200, 'ERR_BAD_RESPONSE', `the agent's answer is not of the shape this noodle reads (${(err as Error).message})`)
  }
}

/** JSON for a terminal: pretty, one value, with what JSON leaves raw (C1 controls, bidi overrides) escaped. */
function jsonText (body: unknown): string {
  return escapeJson(JSON.stringify(body, null, 2)) + '\n'
}

type QueryCommand = 'status' | 'nodes' | 'decisions' | 'optimize' | 'sensors' | 'ingest' | 'cameras' | 'events'

/** `noodle events`' filters. */
type EventFlags = Partial<Record<'camera' | 'label' | 'zone' | 'since' | 'until' | 'limit', string>>

/** A `--since`/`--until` time: `30s`, `30m`, `2h`, `7d` ago, or as given (ISO-8601, ms): the agent checks it. */
function timeFlag (text: string, now = Date.now()): string {
  const ago = /^(\d{1,6})([smhd])$/.exec(text)
  if (ago === null) return text
  const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[ago[2] as 's' | 'm' | 'h' | 'd']
  return new Date(now - Number(ago[1]) * unit).toISOString()
}

/** The events query the flags ask for. */
export function eventsPath (flags: EventFlags, now = Date.now()): string {
  const query = new URLSearchParams()
  for (const key of ['camera', 'label', 'zone', 'since', 'until', 'limit'] as const) {
    const value = flags[key]
    if (value !== undefined) query.set(key, key === 'since' || key === 'until' ? timeFlag(value, now) : value)
  }
  const text = query.toString()
  return text === '' ? '/api/v1/events' : `/api/v1/events?${text}`
}

async function runQuery (command: QueryCommand, flags: { 'data-dir'?: string, config?: string, json?: boolean, watch?: boolean } & EventFlags): Promise<void> {
  const { api } = loadConfig({ flags: { 'data-dir': flags['data-dir'], config: flags.config } })
  const render = <T>(body: T, format: (body: T) => string): string => rendered(body, format, flags.json)
  const show = async (): Promise<string> => {
    switch (command) {
      case 'status':
        return render(await apiGet<StatusView>(api.socketPath, '/api/v1/system/status'), formatStatus)
      case 'nodes':
        return render(await apiGet<NodeView[]>(api.socketPath, '/api/v1/mesh/nodes'), formatNodesTable)
      case 'decisions':
        return render(await apiGet<DecisionView[]>(api.socketPath, '/api/v1/ahr/decisions'), formatDecisionsTable)
      case 'optimize':
        // The coordinator may be another box, reached over the mesh: allow it longer than a local answer.
        return render(await apiRequest<OptimizeResponse>(api.socketPath, 'POST', '/api/v1/ahr/optimize', 10_000), formatOptimize)
      case 'sensors':
        return render(await apiGet<SensorReadingView[]>(api.socketPath, '/api/v1/sensors'), formatSensorsTable)
      case 'ingest':
        return render(await apiGet<IngestStatus>(api.socketPath, '/api/v1/ingest'), formatIngest)
      case 'cameras':
        return render(await apiGet<CameraListView[]>(api.socketPath, '/api/v1/cameras'), formatCamerasTable)
      case 'events':
        return render(await apiGet<EventView[]>(api.socketPath, eventsPath(flags)), formatEventsTable)
    }
  }
  if (flags.watch !== true) {
    process.stdout.write(await show())
    return
  }
  for (;;) {
    const text = await show()
    // Home the cursor and clear, then draw: one write, so the screen never flickers half-drawn.
    process.stdout.write(flags.json === true ? text : `\x1b[H\x1b[2J${text}`)
    await new Promise((resolve) => setTimeout(resolve, 1_000))
  }
}

/** A whole number flag, or a usage error naming it. */
function intFlag (name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined
  if (!/^\d+$/.test(text)) throw new UsageError(`--${name} must be a whole number, got ${JSON.stringify(text)}`)
  return Number(text)
}

/**
 * `--shape` values: `NAME=d1,d2,…` sizes an input by name; a bare `d1,d2,…` (or `1x3x224x224`) is the first input's
 * (bench only, as before inputs could be named).
 */
export function shapeFlags (values: readonly string[] = [], bareAllowed: boolean): { shape?: number[], shapes?: Record<string, number[]> } {
  // No prototype: an input named `constructor` or `__proto__` is a name like any other.
  const shapes: Record<string, number[]> = Object.create(null) as Record<string, number[]>
  let shape: number[] | undefined
  for (const value of values) {
    const named = /^([^=]+)=(.*)$/.exec(value)
    const dims = (named?.[2] ?? value).split(/[,x]/).map((d) => intFlag('shape', d) as number)
    if (named === null) {
      if (!bareAllowed) throw new UsageError(`--shape ${value}: name the input (--shape NAME=${value})`)
      if (shape !== undefined) throw new UsageError('--shape without a name is the first input\'s: give it once')
      shape = dims
    } else {
      if (Object.hasOwn(shapes, named[1] as string)) throw new UsageError(`--shape ${named[1]}= is given twice`)
      shapes[named[1] as string] = dims
    }
  }
  if (shape !== undefined && Object.keys(shapes).length > 0) throw new UsageError('--shape: give the first input\'s shape or shapes by name, not both')
  return { ...(shape === undefined ? {} : { shape }), ...(Object.keys(shapes).length === 0 ? {} : { shapes }) }
}

async function runModels (positionals: string[], flags: { 'data-dir'?: string, config?: string, json?: boolean, runs?: string, shape?: string[] }): Promise<void> {
  const { api } = loadConfig({ flags: { 'data-dir': flags['data-dir'], config: flags.config } })
  const render = <T>(body: T, format: (body: T) => string): string => rendered(body, format, flags.json)
  const [sub, arg, ...extra] = positionals
  if (extra.length > 0) throw new UsageError(`models: unexpected ${JSON.stringify(extra[0])}`)
  // Compiling benchmarks every provider and a bench runs flat out: allow them minutes, not seconds.
  const long = 600_000
  switch (sub) {
    case undefined:
      process.stdout.write(render(await apiGet<ModelView[]>(api.socketPath, '/api/v1/models'), formatModelsTable))
      return
    case 'compile':
      if (arg === undefined) throw new UsageError('models compile: which file? (noodle models compile FILE)')
      process.stdout.write(render(await apiRequest<CompileResult>(api.socketPath, 'POST', '/api/v1/models/compile', long, { file: resolve(arg), ...shapeFlags(flags.shape, false) }), formatCompile))
      return
    case 'fetch':
      if (arg === undefined) throw new UsageError('models fetch: which model? (noodle models fetch ID)')
      process.stdout.write(render(await apiRequest<CompileResult>(api.socketPath, 'POST', '/api/v1/models/fetch', long, { id: arg }), formatCompile))
      return
    case 'bench': {
      if (arg === undefined) throw new UsageError('models bench: which model? (noodle models bench ID)')
      const body = { id: arg, runs: intFlag('runs', flags.runs), ...shapeFlags(flags.shape, true) }
      process.stdout.write(render(await apiRequest<BenchResult>(api.socketPath, 'POST', '/api/v1/models/bench', long, body), formatBench))
      return
    }
    default:
      throw new UsageError(`models: unknown subcommand "${sub}" (compile, fetch, bench)`)
  }
}

interface UserFlags { 'data-dir'?: string, config?: string, json?: boolean, email?: string, 'first-name'?: string, 'last-name'?: string, phone?: string, role?: string }

async function runUser (positionals: string[], flags: UserFlags): Promise<void> {
  const { api } = loadConfig({ flags: { 'data-dir': flags['data-dir'], config: flags.config } })
  const [sub, name, ...extra] = positionals
  if (extra.length > 0) throw new UsageError(`user: unexpected ${JSON.stringify(extra[0])}`)
  switch (sub) {
    case 'list': {
      const operators = await apiGet<OperatorView[]>(api.socketPath, '/api/v1/identity/users')
      process.stdout.write(rendered(operators, formatOperatorsTable, flags.json))
      return
    }
    case 'add': {
      if (name === undefined) throw new UsageError('user add: which username? (noodle user add NAME --email …)')
      const password = await readPassword()
      // Hashing is deliberately slow (scrypt): allow it more than a plain request.
      const created = await apiRequest<Record<string, string>>(api.socketPath, 'POST', '/api/v1/identity/register', 30_000, {
        username: name,
        email: flags.email ?? '',
        password,
        profile: { first_name: flags['first-name'] ?? '', last_name: flags['last-name'] ?? '', ...(flags.phone === undefined ? {} : { phone: flags.phone }) },
        ...(flags.role === undefined ? {} : { role: flags.role })
      })
      process.stdout.write(flags.json === true ? jsonText(created) : `created ${escapeText(String(created.username ?? name))} (${escapeText(String(created.user_id ?? '?'))})\n`)
      return
    }
    case 'remove':
      if (name === undefined) throw new UsageError('user remove: which username?')
      await apiRequest(api.socketPath, 'POST', '/api/v1/identity/users/remove', 5_000, { username: name })
      process.stdout.write(`removed ${name}\n`)
      return
    default:
      throw new UsageError(`user: unknown subcommand "${sub ?? ''}" (list, add, remove)`)
  }
}

/** The password: the first line of stdin, or typed at a prompt that does not echo it. */
async function readPassword (): Promise<string> {
  const stdin = process.stdin
  if (!stdin.isTTY) {
    let text = ''
    for await (const chunk of stdin) text += String(chunk)
    return text.split('\n')[0]?.replace(/\r$/, '') ?? ''
  }
  process.stderr.write('password: ')
  stdin.setRawMode(true)
  let typed = ''
  try {
    for await (const chunk of stdin) {
      for (const ch of String(chunk)) {
        if (ch === '\r' || ch === '\n') return typed
        if (ch === '\u0003') throw new UsageError('cancelled')
        typed = ch === '\u007f' ? typed.slice(0, -1) : typed + ch
      }
    }
    return typed
  } finally {
    stdin.setRawMode(false)
    stdin.pause()
    process.stderr.write('\n')
  }
}

/** `noodle ui`: the page's addresses, each with how to reach it; exit 1 when the agent serves none. */
async function runUi (flags: { 'data-dir'?: string, config?: string, json?: boolean }): Promise<number> {
  const { api } = loadConfig({ flags: { 'data-dir': flags['data-dir'], config: flags.config } })
  const view = await apiGet<UiView>(api.socketPath, '/api/v1/ui')
  if (flags.json === true) process.stdout.write(jsonText(view))
  else process.stdout.write(view.urls.map((u) => `${u.url}  ${escapeText(u.how)}\n`).join(''))
  if (view.urls.length > 0) return 0
  if (flags.json !== true) process.stderr.write('noodle: the web page is not served: set api.tcp (HTTPS) or ui.http (loopback HTTP) and restart the agent\n')
  return 1
}

/** What the CLI cannot do itself: run an agent. The program's entry (agent/main/noodle.ts) provides it. */
export interface Program {
  runAgent: (flags: AgentFlags) => Promise<void>
}

export async function main (argv: string[], program: Program): Promise<number> {
  try {
    const { command, flags, positionals } = parse(argv)
    switch (command) {
      case 'help':
        process.stdout.write(USAGE)
        return 0
      case 'version':
        process.stdout.write(`${VERSION}\n`)
        return 0
      case 'swarm-key':
        process.stdout.write((await import('../../identity/keys.ts')).generateSwarmKey())
        return 0
      case 'init':
        await runInit(flags)
        return 0
      case 'agent':
        await program.runAgent(flags as AgentFlags)
        return -1
      case 'models':
        await runModels(positionals, flags)
        return 0
      case 'user':
        await runUser(positionals, flags)
        return 0
      case 'metrics': {
        const { api } = loadConfig({ flags: { 'data-dir': flags['data-dir'] as string | undefined, config: flags.config as string | undefined } })
        // Line by line: the format's newlines stay, anything a terminal would act on inside a line is escaped.
        process.stdout.write((await apiText(api.socketPath, '/metrics')).split('\n').map(escapeText).join('\n'))
        return 0
      }
      case 'ui':
        return await runUi(flags)
      case 'status':
      case 'nodes':
      case 'decisions':
      case 'optimize':
      case 'sensors':
      case 'ingest':
      case 'cameras':
      case 'events':
        await runQuery(command, flags)
        return 0
    }
  } catch (err) {
    if (err instanceof AgentUnreachableError) {
      process.stderr.write(`noodle: ${err.message} (start one with \`noodle agent\`, or pass --data-dir)\n`)
      return 1
    }
    if (err instanceof UsageError) {
      process.stderr.write(`noodle: ${err.message}\n`)
      return 2
    }
    if (err instanceof NoodleError) {
      // An API error can quote what the agent got from the wire (a name, a path): never raw to the terminal.
      process.stderr.write(`noodle: ${escapeText(err.message)}\n`)
      return 1
    }
    throw err
  }
}
